"""Fuzzing machinery shared by the test suite and ``stress.fuzz_campaign``.

Theory of operation: every input starts as a *real-shaped* BitMEX message (welcome, acks, error
replies, table partials and deltas with realistic rows; client commands for the server role) and
is then damaged by *structured mutations* chosen by hypothesis: a value at some path replaced by a
hostile one (wrong type, huge or special number, odd unicode, deep nesting, enormous array or
string), a field deleted or added, rows duplicated, shuffled or multiplied, the action or table
swapped; frames are then serialised (NaN and big integers included) and possibly damaged as text
or bytes (truncation, stray bytes, duplicated keys, invalid UTF-8). Storage sequences also reorder
actions: deltas before partials, deletes before inserts, replays of earlier messages.

Three targets, each an ``@given(st.data())`` body that never raises but records into ``Findings``:

* ``server-frames``: ``decode_server_frame`` must return a well-typed event or raise
  ``RemoteProtocolError`` with a bounded text; decoded table messages then go through
  ``Storage.apply`` as the client would.
* ``client-frames``: ``decode_client_frame`` (server role) must never raise and return
  well-typed commands.
* ``storage``: sequences of valid and mutated messages applied to a ``Storage`` and, when
  accepted, to ``RefModel``, an independent reference model of the documented semantics. A
  crash is any exception other than ``RemoteProtocolError``; a corruption is a rejected message
  that changed anything (deep comparison of the store's whole state), an accepted message whose
  result differs from the model, a broken book index, a caller's message or a handed-out row
  modified. A *false rejection* (a well-formed message refused while nothing malformed had been
  accepted before) is reported apart.
"""

from __future__ import annotations

import functools
import json
import math
import reprlib
import sys
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from hypothesis import strategies as st

from bitmex_trio_websocket._exceptions import RemoteProtocolError
from bitmex_trio_websocket._protocol import (
    ACTIONS,
    HELP_REPLY,
    WELCOME_TEXT,
    AuthAck,
    AuthKeyExpires,
    CancelAllAfter,
    CancelAllAfterAck,
    ErrorReply,
    Help,
    HelpReply,
    Ping,
    Pong,
    Subscribe,
    SubscribeAck,
    TableMessage,
    Unrecognized,
    Unsubscribe,
    UnsubscribeAck,
    Welcome,
    decode_client_frame,
    decode_server_frame,
)
from bitmex_trio_websocket._storage import BOOK_TABLES, ApplyResult, Change, Storage, Violation

__all__ = [
    "CAMPAIGN",
    "SUITE",
    "TARGETS",
    "Findings",
    "RefModel",
    "Scale",
    "canon",
    "client_frame_case",
    "server_frame_case",
    "storage_case",
]

Row = dict[str, Any]
T = TypeVar("T")
Draw = st.DataObject
SYMBOLS: Final = ("XBTUSD", "ETHUSD", "SOLUSD")
NEW_SYMBOL: Final = "XRPUSD"
BOOK10: Final = "orderBook10"
KEYS: Final[dict[str, list[str]]] = {
    "orderBookL2": ["symbol", "id", "side"],
    "orderBookL2_25": ["symbol", "id", "side"],
    BOOK10: ["symbol"],
    "instrument": ["symbol"],
    "funding": ["timestamp", "symbol"],
    "trade": [],
    "execution": [],
    "order": ["orderID"],
    "position": ["account", "symbol", "currency"],
}
TABLES: Final = tuple(KEYS)
VIOLATION_KINDS: Final = frozenset({"unknown_key", "duplicate_insert", "crossed_book"})
# RemoteProtocolError text: its message plus a quoted 200-character prefix of the frame.
ERROR_TEXT_SLACK: Final = 1000


@dataclass(frozen=True, slots=True)
class Scale:
    """How big the hostile values may get (the suite stays small, the campaign goes big)."""

    max_array: int
    max_string: int
    depths: tuple[int, ...]
    max_steps: int
    max_bytes: int  # a multiplied array stops growing here (about its serialised size)


SUITE: Final = Scale(
    max_array=2_000,
    max_string=20_000,
    depths=(3, 64, 999, 1024),
    max_steps=8,
    max_bytes=1 << 20,
)
CAMPAIGN: Final = Scale(
    max_array=100_000,
    max_string=1_000_000,
    depths=(3, 64, 999, 1024, 1025, 5000),
    max_steps=16,
    max_bytes=16 << 20,
)

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = _short.maxdict = _short.maxtuple = 5
_short.maxlevel = 3


def short(obj: Any) -> str:
    """A bounded description of any input, deep or enormous ones included."""
    try:
        return _short.repr(obj)[:300]
    except Exception as exc:  # pragma: no cover - reprlib is defensive already
        return f"<unrepresentable {type(exc).__name__}>"


# --------------------------------------------------------------------------- findings


@dataclass
class Findings:
    """Counts per target and a few samples per distinct problem signature."""

    inputs: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    crashes: Counter[tuple[str, str]] = field(default_factory=Counter)
    corruptions: Counter[tuple[str, str]] = field(default_factory=Counter)
    false_rejections: Counter[tuple[str, str]] = field(default_factory=Counter)
    anomalies: Counter[tuple[str, str]] = field(default_factory=Counter)
    harness_errors: Counter[str] = field(default_factory=Counter)  # bugs of this module
    outcomes: Counter[str] = field(default_factory=Counter)  # "target table/action outcome"
    samples: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    def _note(self, kind: str, target: str, signature: str, detail: str) -> None:
        bucket = self.samples.setdefault((kind, target, signature), [])
        if len(bucket) < 3:
            bucket.append(detail[:600])

    def crash(self, target: str, exc: BaseException, subject: Any) -> None:
        signature = crash_signature(exc)
        self.crashes[(target, signature)] += 1
        self._note("crash", target, signature, short(subject))

    def corruption(self, target: str, signature: str, detail: str) -> None:
        self.corruptions[(target, signature)] += 1
        self._note("corruption", target, signature, detail)

    def anomaly(self, target: str, signature: str, detail: str) -> None:
        """A contract oddity that is neither a crash nor wrong state (typing, error texts)."""
        self.anomalies[(target, signature)] += 1
        self._note("anomaly", target, signature, detail)

    def false_rejection(self, target: str, exc: BaseException, subject: Any) -> None:
        signature = getattr(exc, "message", str(exc))[:120]
        self.false_rejections[(target, signature)] += 1
        self._note("false rejection", target, signature, short(subject))

    def merge(self, other: Findings) -> None:
        for name in ("inputs", "accepted", "rejected", "crashes", "corruptions"):
            getattr(self, name).update(getattr(other, name))
        self.false_rejections.update(other.false_rejections)
        self.anomalies.update(other.anomalies)
        self.harness_errors.update(other.harness_errors)
        self.outcomes.update(other.outcomes)
        for key, values in other.samples.items():
            bucket = self.samples.setdefault(key, [])
            bucket.extend(values[: 3 - len(bucket)])

    def problems(self, kind: str) -> dict[str, int]:
        counter = {
            "crash": self.crashes,
            "corruption": self.corruptions,
            "anomaly": self.anomalies,
        }[kind]
        return {f"{target}: {signature}": n for (target, signature), n in counter.items()}

    def report(self) -> str:
        lines = []
        for target in sorted(self.inputs):
            crashes = sum(n for (t, _), n in self.crashes.items() if t == target)
            corrupt = sum(n for (t, _), n in self.corruptions.items() if t == target)
            false = sum(n for (t, _), n in self.false_rejections.items() if t == target)
            odd = sum(n for (t, _), n in self.anomalies.items() if t == target)
            lines.append(
                f"{target:21} inputs {self.inputs[target]:>7}  accepted {self.accepted[target]:>7}"
                f"  rejected {self.rejected[target]:>7}  crashes {crashes:>5}  "
                f"corruptions {corrupt:>5}  false rejections {false:>4}  anomalies {odd:>4}"
            )
        for error, n in self.harness_errors.items():
            lines.append(f"harness error (not a finding) x{n}: {error}")
        for (kind, target, signature), samples in sorted(self.samples.items()):
            counter = {
                "crash": self.crashes,
                "corruption": self.corruptions,
                "false rejection": self.false_rejections,
                "anomaly": self.anomalies,
            }[kind]
            lines.append(f"{kind} [{target}] x{counter[(target, signature)]}: {signature}")
            lines.extend(f"    e.g. {sample}" for sample in samples)
        return "\n".join(lines)


def crash_signature(exc: BaseException) -> str:
    """Exception type, message head and the deepest frame inside the package."""
    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        if "bitmex_trio_websocket" in frame.filename:
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.name}:{frame.lineno}"
    return f"{type(exc).__name__}({str(exc)[:60]}) at {where}"


# --------------------------------------------------------------------------- hostile values

NAN: Final = float("nan")
HUGE_INTS: Final = (
    2**53 + 1, 2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**63) - 1, 10**30, -(10**30), 10**400,
)  # fmt: skip
SPECIAL_FLOATS: Final = (
    NAN, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324, sys.float_info.max, 0.1 + 0.2,
)  # fmt: skip
ODD_STRINGS: Final = (
    "", " ", "\x00", "\u202eXBTUSD", "XBT\u0301USD", "\U0001d4cd\U0001d4eb", "\U0001f600" * 3,
    "\ufeff", "\ud800", "XBTUSD\x00", "xbtusd", "XBTUSD ", "Buy ", "buy", "SELL", "null",
    "NaN", "1e400", '{"a":1}', "\\", '"', "\n", "\u65e5\u672c", "orderBookL2", "partial",
    "table", "a" * 300,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Deep:
    """Placeholder for a nesting too deep for recursive serialisers (built on demand)."""

    depth: int
    kind: str  # "list" or "dict"

    def build(self) -> Any:
        value: Any = []
        for _ in range(self.depth):
            value = [value] if self.kind == "list" else {"a": value}
        return value


@functools.cache
def _range(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


_BOOL: Final = st.booleans()


def between(data: Draw, low: int, high: int) -> int:
    """An integer in ``[low, high]`` (strategies cached: building them is the slow part)."""
    return data.draw(_range(low, high))


def pick(data: Draw, options: Sequence[T]) -> T:
    return options[data.draw(_range(0, len(options) - 1))]


def flip(data: Draw) -> bool:
    return data.draw(_BOOL)


def draw_hostile(data: Draw, scale: Scale) -> Any:
    """One hostile JSON-ish value."""
    kind = pick(data, (
                "null", "bool", "int", "huge", "float", "special", "string", "odd", "list",
                "dict", "deep", "array", "bigstring", "row",
            ))  # fmt: skip
    if kind == "null":
        return None
    if kind == "bool":
        return flip(data)
    if kind == "int":
        return between(data, -(2**31), 2**31)
    if kind == "huge":
        return pick(data, HUGE_INTS)
    if kind == "float":
        return data.draw(st.floats(allow_nan=False, allow_infinity=False))
    if kind == "special":
        return pick(data, SPECIAL_FLOATS)
    if kind == "string":
        return data.draw(st.text(max_size=12))
    if kind == "odd":
        return pick(data, ODD_STRINGS)
    if kind == "list":
        return data.draw(st.lists(st.integers() | st.text(max_size=3) | st.none(), max_size=4))
    if kind == "dict":
        return data.draw(
            st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=3), max_size=3)
        )
    if kind == "deep":
        depth = pick(data, scale.depths)
        return Deep(depth, pick(data, ("list", "dict"))).build()
    if kind == "array":
        size = pick(data, (0, 1, 100, scale.max_array))
        item = pick(data, (0, "x", None, NAN))
        return [item] * size
    if kind == "bigstring":
        return "\u00e9" * pick(data, (1000, scale.max_string))
    symbol = pick(data, SYMBOLS)
    return make_row(pick(data, TABLES), symbol, between(data, 0, 50))


# --------------------------------------------------------------------------- real-shaped rows


def _ts(n: int) -> str:
    return f"2025-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}.{n * 7 % 1000:03d}Z"


def _book_side(n: int) -> str:
    return "Buy" if n % 2 else "Sell"


def _book_price(n: int) -> float:
    step = (n // 2 % 400 + 1) * 0.5
    return 1000.0 - step if n % 2 else 1000.0 + step


def _levels(n: int, buy: bool) -> list[list[float | int]]:
    sign = -1 if buy else 1
    return [[1000.0 + sign * (i + 1) * 0.5, 10 + (n + i) % 90] for i in range(10)]


def make_row(table: str, symbol: str, n: int) -> Row:
    """A valid full row of ``table`` whose key is a function of ``n`` (and ``symbol``)."""
    if table in BOOK_TABLES:
        return {
            "symbol": symbol,
            "id": 8_800_000_000 + n,
            "side": _book_side(n),
            "size": 1 + n * 7 % 1000,
            "price": _book_price(n),
            "timestamp": _ts(n),
        }
    if table == BOOK10:
        return {
            "symbol": symbol,
            "bids": _levels(n, True),
            "asks": _levels(n, False),
            "timestamp": _ts(n),
        }
    if table == "instrument":
        return {
            "symbol": symbol,
            "state": "Open",
            "lastPrice": 1000.0 + n,
            "markPrice": 1000.25 + n,
            "openInterest": 1_000_000 + n,
            "timestamp": _ts(n),
        }
    if table == "funding":
        return {
            "timestamp": _ts(n),
            "symbol": symbol,
            "fundingInterval": "2000-01-01T08:00:00.000Z",
            "fundingRate": 0.0001 * (n % 7 - 3),
        }
    if table in ("trade", "execution"):
        return {
            "timestamp": _ts(n),
            "symbol": symbol,
            "side": _book_side(n),
            "size": 100 + n,
            "price": 1000.0 + n * 0.5,
            "trdMatchID": f"{n:08x}-0000-4000-8000-{n:012x}",
        }
    if table == "order":
        return {
            "orderID": f"{n:08x}-{SYMBOLS.index(symbol) if symbol in SYMBOLS else 9:04x}"
            f"-4000-8000-{n:012x}",
            "account": 1,
            "symbol": symbol,
            "side": _book_side(n),
            "orderQty": 100 * (n % 5 + 1),
            "price": 990.0 + n,
            "ordStatus": "New",
            "timestamp": _ts(n),
        }
    if table == "position":
        return {
            "account": n % 3,
            "symbol": symbol,
            "currency": "XBt",
            "currentQty": n * 10 - 50,
            "avgEntryPrice": 1000.0 + n,
            "timestamp": _ts(n),
        }
    # A table we do not model: keyed by "symbol" and "n".
    return {"symbol": symbol, "n": n, "value": n * 1.5}


def update_row(table: str, symbol: str, n: int, variant: int) -> Row:
    """A valid update row for the row ``make_row(table, symbol, n)``."""
    full = make_row(table, symbol, n)
    keys = KEYS.get(table, ["symbol", "n"])
    row = {k: full[k] for k in keys}
    if table in BOOK_TABLES:
        row["size"] = 1 + (n + variant) * 13 % 1000
        if variant % 3 == 1:  # the level moves (price changes, never crossing the book)
            row["price"] = _book_price(n + 2 * (variant % 5 + 1))
        elif variant % 3 == 0:  # legacy (pre-2023) form: no price
            pass
        else:
            row["price"] = full["price"]
        return row
    if table == BOOK10:
        return make_row(table, symbol, n + variant)
    if table == "instrument":
        row["lastPrice"] = 1000.0 + n + variant
    elif table == "funding":
        row["fundingRate"] = 0.0002
    elif table == "order":  # BitMEX repeats account and symbol in order updates
        row.update(account=1, symbol=symbol)
        row["ordStatus"] = "Filled" if variant % 2 else "PartiallyFilled"
    elif table == "position":
        row["currentQty"] = variant
    else:
        row["value"] = variant
    return row


def delete_row(table: str, symbol: str, n: int) -> Row:
    full = make_row(table, symbol, n)
    row = {k: full[k] for k in KEYS.get(table, ["symbol", "n"])}
    if table in BOOK_TABLES and n % 2:
        row["price"] = full["price"]
    return row


def table_message(
    table: str,
    action: str,
    rows: list[Row],
    symbol: str | None = None,
    keys: list[str] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"table": table, "action": action}
    if action == "partial":
        message["keys"] = list(KEYS.get(table, ["symbol", "n"]) if keys is None else keys)
        message["types"] = {"symbol": "symbol"}
        message["filter"] = {} if symbol is None else {"symbol": symbol}
        if table in ("order", "position", "execution"):
            message["filter"]["account"] = 1
        message["attributes"] = {"symbol": "grouped"}
    message["data"] = rows
    return message


# --------------------------------------------------------------------------- mutations


def clone(value: Any, depth: int = 0) -> Any:
    """Copy the first levels of a message (the ones mutations touch); share the rest."""
    if depth > 6:
        return value
    if type(value) is dict:
        return {k: clone(v, depth + 1) for k, v in value.items()}
    if type(value) is list:
        return [clone(v, depth + 1) for v in value]
    return value


def _paths(tree: Any, limit: int = 64) -> list[tuple[Any, Any]]:
    """``(container, key)`` positions in the first four levels of ``tree``, breadth first."""
    out: list[tuple[Any, Any]] = []
    level: list[Any] = [tree]
    for _ in range(4):
        following: list[Any] = []
        for node in level:
            if type(node) is dict:
                items: Iterator[tuple[Any, Any]] = iter(list(node.items()))
            elif type(node) is list:
                items = iter(list(enumerate(node[:8])))
            else:
                continue
            for key, value in items:
                out.append((node, key))
                following.append(value)
        level = following
        if len(out) >= limit:
            break
    return out[:limit]


def approx_size(value: Any, budget: int) -> int:
    """Roughly the serialised size of ``value``; stops counting once past ``budget``."""
    total = 0
    stack = [value]
    while stack and total <= budget:
        item = stack.pop()
        if isinstance(item, str):
            total += (len(item) if item.isascii() else 6 * len(item)) + 2  # \uXXXX escapes
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.values())
            total += sum(len(str(k)) for k in item)
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            stack.extend(item)
        else:
            total += 8
    return total


def too_big(tree: Any, scale: Scale) -> bool:
    """Whether serialising ``tree`` would exceed a few times the scale's byte budget (shared
    references count every time): such inputs are skipped, not sent."""
    return approx_size(tree, 4 * scale.max_bytes) > 4 * scale.max_bytes


def _tweak(data: Draw, value: Any) -> Any:
    """A near miss of ``value``: same meaning to a human, different to a parser."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        as_float = float(value) if abs(value) < 2**1000 else math.inf
        as_text = str(value) if abs(value) < 10**1000 else "1e1000"
        return pick(data, (value + 1, -value, value * 10**20, as_float, as_text, value == 0, None))
    if isinstance(value, float):
        finite = math.isfinite(value)
        return pick(
            data,
            (
                -value,
                value * 1e300,
                int(value) if finite else 0,
                str(value),
                round(value, 1),
                NAN,
            ),
        )
    if isinstance(value, str):
        return pick(
            data,
            (
                value.upper(),
                value.lower(),
                value + " ",
                value + "\x00",
                value * 50 if len(value) < 1000 else value + value,
                "",
                value[:-1],
                value + "\u0301",
            ),
        )
    return value


def mutate(data: Draw, tree: Any, scale: Scale) -> Any:
    """Apply one structured mutation to ``tree`` (in place when possible); returns the tree."""
    op = pick(data, (
                "replace", "replace", "tweak", "delete", "add", "duplicate", "shuffle", "empty",
                "multiply", "action", "table", "root",
            ))  # fmt: skip
    if op == "root":
        return draw_hostile(data, scale)
    if type(tree) is dict and op == "action":
        tree["action"] = pick(data, (*sorted(ACTIONS), "Partial", "upsert", ""))
        return tree
    if type(tree) is dict and op == "table":
        tree["table"] = pick(data, (*TABLES, "orderBookL2 ", "", "\u00e9"))
        return tree
    paths = _paths(tree)
    if not paths:
        return draw_hostile(data, scale)
    container, key = paths[between(data, 0, len(paths) - 1)]
    value = container[key]
    if op == "delete":
        del container[key]
    elif op == "add":
        if type(container) is dict:
            container[pick(data, ("extra", "symbol", "id", "", "\u00e9"))] = draw_hostile(
                data, scale
            )
        else:
            container.insert(key, draw_hostile(data, scale))
    elif op == "duplicate" and type(container) is list:
        twin = dict(value) if type(value) is dict and flip(data) else value
        container.insert(key, twin)
    elif op == "shuffle" and type(value) is list and value:
        if flip(data):
            value.reverse()
        else:
            value.append(value.pop(0))
    elif op == "empty" and type(value) in (list, dict):
        value.clear()
    elif op == "multiply" and type(value) is list and value:
        count = pick(data, (2, 100, scale.max_array))
        size = approx_size(value, scale.max_bytes)
        if size <= scale.max_bytes:  # past it, the count is an underestimate: leave it be
            each = max(1, size // len(value))
            count = max(2, min(count, scale.max_bytes // each))
            value[:] = value * (count // len(value) + 1)
    elif op == "tweak":
        container[key] = _tweak(data, value)
    else:
        container[key] = draw_hostile(data, scale)
    return tree


# --------------------------------------------------------------------------- serialisation


def _scalar_json(item: Any, ascii_only: bool) -> str:
    if item is None:
        return "null"
    if item is True:
        return "true"
    if item is False:
        return "false"
    if isinstance(item, int):
        return str(item) if abs(item) < 10**4000 else "1" + "0" * 4000
    if isinstance(item, float):
        if math.isnan(item):
            return "NaN"
        if math.isinf(item):
            return "Infinity" if item > 0 else "-Infinity"
        return repr(item)
    return json.dumps(item if isinstance(item, str) else str(item), ensure_ascii=ascii_only)


def to_json(value: Any, *, ascii_only: bool = True) -> str:
    """JSON text of ``value``: NaN/Infinity literals, any depth or size."""
    try:
        return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))
    except (RecursionError, ValueError):
        pass  # too deep for the C encoder: the same text, without recursion
    # Post-order with an explicit stack. A container shared by several siblings (a multiplied
    # array of one deep value) is serialised once: texts are remembered by object identity.
    memo: dict[int, str] = {}
    result: list[str] = []
    # frame: [container, children, next index, parts, close, sink, shared]
    stack: list[list[Any]] = []

    def enter(item: Any, sink: list[str], shared: bool) -> None:
        if not isinstance(item, dict | list | tuple):
            sink.append(_scalar_json(item, ascii_only))
        elif shared and id(item) in memo:
            sink.append(memo[id(item)])
        elif isinstance(item, dict):
            keys = [json.dumps(str(k), ensure_ascii=ascii_only) + ":" for k in item]
            children = list(zip(keys, item.values(), strict=True))
            stack.append([item, children, 0, ["{"], "}", sink, shared])
        else:
            stack.append([item, [("", v) for v in item], 0, ["["], "]", sink, shared])

    enter(value, result, False)
    while stack:
        frame = stack[-1]
        item, children, index, parts, close, sink, shared = frame
        if index == len(children):
            stack.pop()
            parts.append(close)
            text = "".join(parts)
            if shared:
                memo[id(item)] = text
            sink.append(text)
            continue
        frame[2] = index + 1
        prefix, child = children[index]
        if index:
            parts.append(",")
        parts.append(prefix)
        enter(child, parts, len(children) > 1)
    return "".join(result)


def damage_text(data: Draw, text: str) -> str | bytes:
    """Serialised frame damage: truncation, stray characters, duplicate keys, bad bytes."""
    op = pick(data, (
                "none", "none", "none", "truncate", "insert", "dupkey", "dupkey", "bom",
                "trailing", "wrap", "bytes", "badutf8", "literal",
            ))  # fmt: skip
    if op == "truncate" and text:
        return text[: between(data, 0, len(text) - 1)]
    if op == "insert":
        at = between(data, 0, len(text))
        return text[:at] + pick(data, ('"', "{", "]", ",", "\x00", "\\")) + text[at:]
    if op == "dupkey" and text.startswith("{"):
        key = pick(data, ("table", "action", "data", "op", "args", "error", "success", "info"))
        dup = f'"{key}":{to_json(draw_hostile(data, SUITE))}'
        if flip(data) or text == "{}":
            return "{" + dup + ("," if text != "{}" else "") + text[1:]
        return text[:-1] + "," + dup + "}"
    if op == "bom":
        return "\ufeff" + text
    if op == "trailing":
        return text + pick(data, (" ", "x", "{}", "\n\n", "\x00"))
    if op == "wrap":
        return f"[{text}]"
    if op == "bytes":
        return text.encode("utf-8", "surrogatepass")
    if op == "badutf8":
        raw = text.encode("utf-8", "surrogatepass")
        at = between(data, 0, len(raw))
        bad = pick(data, (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"))
        return raw[:at] + bad + raw[at:]
    if op == "literal":
        return pick(data, (
                    "", "ping", "pong", '"pong"', "null", "[]", "{}", "1", "1e400", "NaN",
                    "true", " pong", "PONG", "help", '"help"',
                ))  # fmt: skip
    return text


# --------------------------------------------------------------------------- server frames


def base_server_frame(data: Draw) -> Any:
    """One real-shaped frame a BitMEX server sends (as a JSON tree, or a literal string)."""
    kind = pick(data, (
                "welcome", "subscribe", "unsubscribe", "auth", "cancel", "error", "help",
                "pong", "table", "table", "table", "table",
            ))  # fmt: skip
    symbol = pick(data, SYMBOLS)
    if kind == "welcome":
        welcome: dict[str, Any] = {
            "info": WELCOME_TEXT,
            "version": "2.0.0",
            "timestamp": _ts(5),
            "docs": "https://www.bitmex.com/app/wsAPI",
            "heartbeatEnabled": False,
        }
        if flip(data):
            welcome["limit"] = {"remaining": 719}
        return welcome
    if kind in ("subscribe", "unsubscribe"):
        topic = f"orderBookL2:{symbol}"
        return {"success": True, kind: topic, "request": {"op": kind, "args": [topic]}}
    if kind == "auth":
        return {
            "success": True,
            "request": {"op": "authKeyExpires", "args": ["key", 1_700_000_000, "ab" * 32]},
        }
    if kind == "cancel":
        armed = flip(data)
        return {
            "now": _ts(1),
            "cancelTime": _ts(61) if armed else 0,
            "request": {"op": "cancelAllAfter", "args": 60000 if armed else 0},
        }
    if kind == "error":
        status, text, meta, op = pick(
            data,
            (
                (400, "Unknown table: foo", {}, "subscribe"),
                (401, "Signature not valid.", {}, "authKeyExpires"),
                (429, "Rate limit exceeded, retry in 1 seconds.", {"retryAfter": 1}, "x"),
                (400, "You are already subscribed to this topic", {}, "subscribe"),
                (401, "Not authenticated.", {}, "cancelAllAfter"),
            ),
        )
        return {"status": status, "error": text, "meta": meta, "request": {"op": op, "args": []}}
    if kind == "help":
        return json.loads(json.dumps(HELP_REPLY))
    if kind == "pong":
        return "pong"
    return base_table_message(data)


def base_table_message(data: Draw) -> dict[str, Any]:
    """A valid table message of any table and action (no state needed)."""
    table = pick(data, TABLES)
    symbol = pick(data, SYMBOLS)
    action = pick(data, ("partial", "insert", "update", "delete"))
    if not KEYS[table] and action in ("update", "delete"):
        action = "insert"
    ns = data.draw(st.lists(st.integers(0, 40), min_size=1, max_size=4, unique=True))
    if action == "update":
        rows = [update_row(table, symbol, n, 1) for n in ns]
    elif action == "delete":
        rows = [delete_row(table, symbol, n) for n in ns]
    else:
        rows = [make_row(table, symbol, n) for n in ns]
    if table == BOOK10:
        rows = rows[:1]
    return table_message(table, action, rows, symbol if flip(data) else None)


def populated_storage() -> Storage:
    """A store with a small partial of every modelled table (fresh rows every call)."""
    storage = Storage()
    for table in TABLES:
        rows = [make_row(table, "XBTUSD", n) for n in range(4 if table != BOOK10 else 1)]
        storage.apply(table_message(table, "partial", rows, "XBTUSD"))
    return storage


def _event_problem(event: Any) -> str | None:
    """Why a decoded server event is not well-typed, or ``None``."""

    def optional(value: Any, kind: type | tuple[type, ...]) -> bool:
        return value is None or isinstance(value, kind)

    if isinstance(event, TableMessage):
        message = event.message
        ok = (
            isinstance(event.table, str)
            and event.action in ACTIONS
            and type(message) is dict
            and message.get("table") == event.table
            and message.get("action") == event.action
            and type(message.get("data")) is list
        )
        return None if ok else "TableMessage fields"
    if isinstance(event, Welcome):
        ok = (
            optional(event.version, str)
            and optional(event.timestamp, str)
            and optional(event.heartbeat_enabled, bool)
            and (event.limit_remaining is None or (type(event.limit_remaining) is int))
            and isinstance(event.raw, Mapping)
        )
        return None if ok else "Welcome fields"
    if isinstance(event, SubscribeAck | UnsubscribeAck):
        return None if isinstance(event.topic, str) else "ack topic"
    if isinstance(event, CancelAllAfterAck):
        ok = isinstance(event.now, str) and (
            isinstance(event.cancel_time, str) or type(event.cancel_time) is int
        )
        return None if ok else "CancelAllAfterAck fields"
    if isinstance(event, ErrorReply):
        ok = (
            isinstance(event.error, str)
            and (event.status is None or type(event.status) is int)
            and isinstance(event.meta, Mapping)
            and optional(event.op, str)
        )
        return None if ok else "ErrorReply fields"
    if isinstance(event, HelpReply):
        return None if isinstance(event.raw, Mapping) else "HelpReply raw"
    if isinstance(event, Pong | AuthAck):
        return None
    return f"unknown event type {type(event).__name__}"


def _check_error_text(exc: RemoteProtocolError) -> str | None:
    text = str(exc)
    if exc.frame is not None and len(exc.frame) > RemoteProtocolError.FRAME_PREFIX:
        return "frame prefix longer than FRAME_PREFIX"
    if len(text) > len(exc.message) + ERROR_TEXT_SLACK:
        return f"error text of {len(text)} characters"
    if len(exc.message) > 2 * ERROR_TEXT_SLACK:
        return f"error message of {len(exc.message)} characters"
    return None


def server_frame_case(data: Draw, scale: Scale, findings: Findings) -> None:
    """One hostile server frame: decode it, then store it as the client would."""
    tree = base_server_frame(data)
    mutated = False
    for _ in range(between(data, 0, 3)):
        tree = mutate(data, tree, scale)
        mutated = True
    if too_big(tree, scale):
        findings.outcomes["server-frames skipped: oversize"] += 1
        return
    text = tree if type(tree) is str else to_json(tree, ascii_only=flip(data))
    frame = damage_text(data, text)
    mutated = mutated or frame != text
    check_server_frame(frame, findings, expect_valid=not mutated)


def check_server_frame(frame: str | bytes, findings: Findings, *, expect_valid: bool) -> None:
    target = "server-frames"
    findings.inputs[target] += 1
    try:
        event = decode_server_frame(frame)
    except RemoteProtocolError as exc:
        findings.rejected[target] += 1
        problem = _check_error_text(exc)
        if problem is not None:
            findings.anomaly(target, f"unbounded error text: {problem}", short(frame))
        if expect_valid:
            findings.false_rejection(target, exc, frame)
        return
    except BaseException as exc:
        findings.crash(target, exc, frame)
        return
    findings.accepted[target] += 1
    problem = _event_problem(event)
    if problem is not None:
        findings.anomaly(target, f"ill-typed event: {problem}", short(frame))
    if isinstance(event, TableMessage):
        for storage in (Storage(), populated_storage()):
            apply_checked(storage, None, event.message, findings, "server-frames>storage", False)


# --------------------------------------------------------------------------- client frames


def base_client_frame(data: Draw) -> Any:
    kind = pick(data, ("subscribe", "unsubscribe", "auth", "authKey", "cancel", "help", "ping"))
    if kind in ("subscribe", "unsubscribe"):
        topics = data.draw(
            st.lists(st.sampled_from(("trade", "orderBookL2:XBTUSD", "instrument:*")), max_size=3)
        )
        return {"op": kind, "args": topics or "trade"}
    if kind in ("auth", "authKey"):
        op = "authKeyExpires" if kind == "auth" else "authKey"
        return {"op": op, "args": ["key", 1_700_000_000, "ab" * 32]}
    if kind == "cancel":
        return {"op": "cancelAllAfter", "args": pick(data, (60000, [0], [60000]))}
    return "help" if kind == "help" else "ping"


def _command_problem(command: Any) -> str | None:
    if isinstance(command, Subscribe | Unsubscribe):
        ok = (
            type(command.topics) is tuple
            and len(command.topics) > 0
            and all(isinstance(t, str) and t for t in command.topics)
        )
        return None if ok else "topics"
    if isinstance(command, AuthKeyExpires):
        ok = (
            isinstance(command.api_key, str)
            and type(command.expires) is int
            and isinstance(command.signature, str)
        )
        if ok and len(command.signature) >= 8 and command.signature in repr(command):
            return "signature in repr"
        return None if ok else "AuthKeyExpires fields"
    if isinstance(command, CancelAllAfter):
        ok = type(command.timeout_ms) is int and command.timeout_ms >= 0
        return None if ok else "CancelAllAfter timeout"
    if isinstance(command, Unrecognized):
        return None if isinstance(command.reason, str) else "Unrecognized reason"
    if isinstance(command, Ping | Help):
        return None
    return f"unknown command type {type(command).__name__}"


def client_frame_case(data: Draw, scale: Scale, findings: Findings) -> None:
    tree = base_client_frame(data)
    for _ in range(between(data, 0, 3)):
        tree = mutate(data, tree, scale)
    if too_big(tree, scale):
        findings.outcomes["client-frames skipped: oversize"] += 1
        return
    text = tree if tree in ("ping",) else to_json(tree, ascii_only=flip(data))
    check_client_frame(damage_text(data, text), findings)


def check_client_frame(frame: str | bytes, findings: Findings) -> None:
    target = "client-frames"
    findings.inputs[target] += 1
    try:
        command = decode_client_frame(frame)
    except BaseException as exc:
        findings.crash(target, exc, frame)
        return
    findings.accepted[target] += 1
    problem = _command_problem(command)
    if problem is not None:
        findings.anomaly(target, f"ill-typed command: {problem}", short(frame))


# --------------------------------------------------------------------------- state snapshots


class Ident:
    """Compares by identity: for values below the depth a snapshot expands."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ident) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"Ident({short(self.obj)})"


_SCALARS: Final = (int, str, bool, type(None), bytes)
_FLAT: Final = frozenset({int, str, bool, type(None), bytes, float})


def canon(obj: Any, depth: int = 0) -> Any:
    """A hashable, order-preserving deep image of ``obj`` (identity beyond depth 9).

    Used to prove that a rejected message changed nothing at all, private state included."""
    if depth > 9:
        return Ident(obj)
    t = type(obj)
    if t in _SCALARS:
        return obj
    if t is float:
        return ("nan",) if obj != obj else ("float", obj, math.copysign(1.0, obj))
    if isinstance(obj, dict):
        # The common case, a row of scalars, in C: tuples compare their items by identity
        # first, so even a NaN that stayed the same object compares equal.
        if set(map(type, obj.values())) <= _FLAT and set(map(type, obj)) <= _FLAT:
            return ("dict", t.__name__, tuple(obj.items()))
        return (
            "dict",
            t.__name__,
            tuple((canon(k, depth + 1), canon(v, depth + 1)) for k, v in obj.items()),
        )
    if isinstance(obj, list | tuple):
        if set(map(type, obj)) <= _FLAT:
            return (t.__name__, tuple(obj))
        return (t.__name__, tuple(canon(v, depth + 1) for v in obj))
    if isinstance(obj, set | frozenset):
        return ("set", frozenset(canon(v, depth + 1) for v in obj))
    slots = getattr(t, "__slots__", None)
    if slots is not None and not hasattr(obj, "__dict__"):
        names = (slots,) if isinstance(slots, str) else slots
        return ("obj", t.__name__, tuple(canon(getattr(obj, n, None), depth + 1) for n in names))
    if hasattr(obj, "__dict__"):
        return ("obj", t.__name__, canon(vars(obj), depth + 1))
    return Ident(obj)


# --------------------------------------------------------------------------- reference model


class ModelError(Exception):
    """The model cannot apply a message the store accepted (it is malformed)."""


def _finite_number(value: Any) -> bool:
    return type(value) in (int, float) and -sys.float_info.max <= value <= sys.float_info.max


def _key_value_ok(value: Any) -> bool:
    # Any integer is a fine key (Python compares them exactly); floats must be finite.
    return type(value) in (str, int) or (type(value) is float and math.isfinite(value))


class RefModel:
    """An independent model of ``Storage``'s documented semantics, in plain dicts and lists.

    Gating is decided by scanning the log of partials and resets; books are sorted from scratch.
    """

    def __init__(self, max_table_len: int, table_limits: Mapping[str, int]) -> None:
        self.max_table_len = max_table_len
        self.table_limits = dict(table_limits)
        self.keys: dict[str, list[str]] = {}
        self.log: defaultdict[str, list[tuple[str, str | None]]] = defaultdict(list)
        self.keyed: defaultdict[str, dict[tuple[Any, ...], Row]] = defaultdict(dict)
        self.keyless: defaultdict[str, list[Row]] = defaultdict(list)

    # gating ------------------------------------------------------------------

    def accepts(self, table: str, symbol: Any) -> bool:
        for kind, covered in reversed(self.log[table]):
            if covered is None or covered == symbol:
                return kind == "partial"
        return False

    def whole(self, table: str) -> bool:
        """``has_partial(table)``: the whole table is accepted, nothing carved out."""
        events = self.log[table]
        last = max((i for i, (_, c) in enumerate(events) if c is None), default=None)
        if last is None or events[last][0] != "partial":
            return False
        excluded: set[str | None] = set()
        for kind, covered in events[last + 1 :]:
            if kind == "reset":
                excluded.add(covered)
            else:
                excluded.discard(covered)
        return not excluded

    # structure ---------------------------------------------------------------

    def _forget(self, table: str, symbol: str | None) -> None:
        def keep(row: Row) -> bool:
            return symbol is not None and row.get("symbol") != symbol

        self.keyed[table] = {k: r for k, r in self.keyed[table].items() if keep(r)}
        self.keyless[table] = [r for r in self.keyless[table] if keep(r)]

    def reset(self, table: str, symbol: str | None) -> None:
        self.log[table].append(("reset", symbol))
        self._forget(table, symbol)

    def _append(self, table: str, rows: list[Row]) -> None:
        log = self.keyless[table]
        log.extend(rows)
        cap = self.table_limits.get(table, self.max_table_len)
        del log[: max(0, len(log) - cap)]

    @staticmethod
    def _row(row: Any) -> Row:
        if type(row) is not dict:
            raise ModelError("row is not an object")
        symbol = row.get("symbol")
        if symbol is not None and type(symbol) is not str:
            raise ModelError("row symbol is not a string")
        return row

    @staticmethod
    def _level(row: Row, full: bool) -> tuple[str, str, int]:
        symbol, side, level_id = row.get("symbol"), row.get("side"), row.get("id")
        if type(symbol) is not str or type(level_id) is not int or side not in ("Buy", "Sell"):
            raise ModelError("bad order book row key")
        for name in ("price", "size"):
            if (full or name in row) and not _finite_number(row.get(name)):
                raise ModelError(f"bad order book {name}")
        return (symbol, side, level_id)

    @staticmethod
    def _book10(row: Row) -> None:
        for side in ("bids", "asks"):
            levels = row.get(side, [])
            if type(levels) is not list:
                raise ModelError("orderBook10 levels")
            for level in levels:
                if type(level) is not list or len(level) != 2:
                    raise ModelError("orderBook10 level")
                if not (_finite_number(level[0]) and _finite_number(level[1])):
                    raise ModelError("orderBook10 level numbers")

    @staticmethod
    def _key(row: Row, keys: list[str]) -> tuple[Any, ...]:
        if any(k not in row for k in keys):
            raise ModelError("row lacks a key field")
        key = tuple(row[k] for k in keys)
        if not all(_key_value_ok(v) for v in key):
            raise ModelError("key field is not a string or finite number")
        return key

    # messages ----------------------------------------------------------------

    def apply(self, message: Mapping[str, Any]) -> int:
        """Apply an accepted message; the number of rows dropped (no partial for them)."""
        table, action, data = message["table"], message["action"], message["data"]
        if (
            type(table) is not str
            or not isinstance(action, str)
            or action not in ACTIONS
            or type(data) is not list
        ):
            raise ModelError("bad envelope")
        rows = [self._row(row) for row in data]
        if action == "partial":
            self._partial(table, message, rows)
            return 0
        book = table in BOOK_TABLES
        keys = self.keys.get(table)
        if not book and keys is None:
            return len(rows)
        if not book and keys == [] and action != "insert":
            raise ModelError(f"{action} on a keyless table")
        for row in rows:  # the whole message is validated, gated or not
            if book:
                self._level(row, action == "insert")
            elif keys:
                self._key(row, keys)
                if table == BOOK10 and action != "delete":
                    self._book10(row)
        dropped = 0
        for row in rows:
            symbol = row.get("symbol")
            if symbol is None and keys and action != "insert" and not book:
                # Storage files a symbol-less update/delete under the row it names.
                held = self.keyed[table].get(self._key(row, keys))
                if held is not None:
                    symbol = held.get("symbol")
            if not self.accepts(table, symbol):
                dropped += 1
                continue
            if book:
                self._book_delta(table, action, row)
            elif keys == []:
                self._append(table, [row])
            else:
                assert keys is not None
                self._keyed_delta(table, action, row, keys)
        return dropped

    def _partial(self, table: str, message: Mapping[str, Any], rows: list[Row]) -> None:
        keys = message.get("keys")
        if type(keys) is not list or any(type(k) is not str for k in keys):
            raise ModelError("partial keys")
        filt = message.get("filter") or {}
        if not isinstance(filt, Mapping):
            raise ModelError("partial filter")
        symbol = filt.get("symbol")
        if symbol is not None and type(symbol) is not str:
            raise ModelError("partial filter symbol")
        if symbol is not None and any(row.get("symbol") != symbol for row in rows):
            raise ModelError("row outside the partial's slice")
        book = table in BOOK_TABLES
        for row in rows:
            if book:
                self._level(row, True)
            elif keys:
                self._key(row, keys)
                if table == BOOK10:
                    self._book10(row)
        if not book and table in self.keys and self.keys[table] != keys:
            self.reset(table, None)  # re-keyed: the table starts afresh
        self.keys[table] = list(keys)
        self.log[table].append(("partial", symbol))
        self._forget(table, symbol)
        if book:
            for row in rows:
                self.keyed[table][self._level(row, True)] = row
        elif keys:
            for row in rows:
                self.keyed[table][self._key(row, keys)] = row
        else:
            self._append(table, rows)

    def _book_delta(self, table: str, action: str, row: Row) -> None:
        key = self._level(row, action == "insert")
        store = self.keyed[table]
        old = store.get(key)
        if action == "insert":
            store[key] = row
        elif old is None:
            pass  # reported as a violation, nothing to apply
        elif action == "update":
            merged = dict(old)
            merged.update(row)
            store[key] = merged
        else:
            del store[key]

    def _keyed_delta(self, table: str, action: str, row: Row, keys: list[str]) -> None:
        key = self._key(row, keys)
        book10 = table == BOOK10
        if book10 and action != "delete":
            self._book10(row)
        store = self.keyed[table]
        if action == "insert" or (action == "update" and book10):
            store[key] = row
        elif action == "update":
            if key in store:
                merged = dict(store[key])
                merged.update(row)
                store[key] = merged
        else:
            store.pop(key, None)

    # comparison --------------------------------------------------------------

    def levels(self, table: str, symbol: str, side: str) -> list[tuple[float, Any]]:
        if table == BOOK10:
            row = self.keyed[table].get((symbol,)) if self.keys.get(table) == ["symbol"] else None
            if not row:
                return []
            levels = [(float(p), s) for p, s in row.get("bids" if side == "Buy" else "asks", [])]
            levels.sort(key=lambda lv: -lv[0] if side == "Buy" else lv[0])
            return levels
        rows = [r for (s, sd, _), r in self.keyed[table].items() if s == symbol and sd == side]
        rows.sort(key=lambda r: ((-r["price"] if side == "Buy" else r["price"]), r["id"]))
        return [(float(r["price"]), r["size"]) for r in rows]

    def differences(self, storage: Storage) -> list[str]:
        """How ``storage`` differs from the model (empty when they agree)."""
        problems: list[str] = []
        tables = set(self.log) | set(storage.data) | set(self.keys)
        for table in sorted(tables, key=repr):
            if storage.keys.get(table) != self.keys.get(table):
                problems.append(f"{table}: keys {storage.keys.get(table)!r}")
            for symbol in (*SYMBOLS, NEW_SYMBOL):
                if storage.has_partial(table, symbol) != self.accepts(table, symbol):
                    problems.append(f"{table}: has_partial({symbol})")
            if storage.has_partial(table) != self.whole(table):
                problems.append(f"{table}: has_partial(whole)")
            store = storage.data.get(table) or {}
            if table in BOOK_TABLES:
                flat = {
                    (symbol, side, level_id): row
                    for symbol, sides in store.items()
                    for side, levels in sides.items()
                    for level_id, row in levels.items()
                }
                if flat != self.keyed[table]:
                    problems.append(
                        f"{table}: rows differ ({len(flat)} vs {len(self.keyed[table])})"
                    )
                symbols = {s for s, _, _ in self.keyed[table]} | set(store)
            elif self.keys.get(table) == [] or (table not in self.keys and not store):
                if list(store.values()) != self.keyless[table]:
                    problems.append(f"{table}: keyless rows differ")
                symbols = set()
            else:
                try:
                    expected = sorted(self.keyed[table].items(), key=lambda kv: kv[0])
                except TypeError:
                    problems.append(f"{table}: mixed key kinds accepted")
                    continue
                if list(store.items()) != expected:
                    problems.append(f"{table}: keyed rows differ")
                symbols = {r.get("symbol") for r in self.keyed[table].values()}
            if table in BOOK_TABLES or table == BOOK10:
                for symbol in sorted(s for s in symbols if isinstance(s, str)):
                    book = storage.book(symbol, table)
                    if list(book.bids) != self.levels(table, symbol, "Buy"):
                        problems.append(f"{table}:{symbol} bids differ")
                    if list(book.asks) != self.levels(table, symbol, "Sell"):
                        problems.append(f"{table}:{symbol} asks differ")
        return problems


# --------------------------------------------------------------------------- storage target


def _result_problem(result: Any, message: Mapping[str, Any], dropped: int | None) -> str | None:
    if not isinstance(result, ApplyResult):
        return "apply returned something else than an ApplyResult"
    if result.table != message["table"] or result.action != message["action"]:
        return "result table/action"
    if dropped is not None and result.dropped != dropped:
        return f"dropped {result.dropped} rows, the model {dropped}"
    if not all(isinstance(c, Change) for c in result.changes):
        return "changes are not Change objects"
    symbols = [c.symbol for c in result.changes]
    if len(symbols) != len(set(symbols)):
        return "two changes for one symbol"
    for change in result.changes:
        if (change.table, change.action) != (result.table, result.action):
            return "change table/action"
        if any(type(r) is not dict or r.get("symbol") != change.symbol for r in change.rows):
            return "change row of another symbol"
    if not all(isinstance(v, Violation) and v.kind in VIOLATION_KINDS for v in result.violations):
        return "unknown violation kind"
    return None


def _shape(message: Any) -> str:
    if not isinstance(message, Mapping):
        return "not-an-object"
    table, action = message.get("table"), message.get("action")
    table = table if isinstance(table, str) and table in KEYS else "other"
    return f"{table}/{action if isinstance(action, str) and action in ACTIONS else 'bad-action'}"


def apply_checked(
    storage: Storage,
    model: RefModel | None,
    message: Any,
    findings: Findings,
    target: str,
    expect_valid: bool,
    handed_out: list[tuple[Row, Any]] | None = None,
) -> bool:
    """Apply one message and classify the outcome; ``True`` if it was accepted."""
    findings.inputs[target] += 1
    before = canon(vars(storage))
    message_before = canon(message)
    try:
        result = storage.apply(message)
    except RemoteProtocolError as exc:
        findings.rejected[target] += 1
        findings.outcomes[f"{target} {_shape(message)} rejected"] += 1
        if canon(vars(storage)) != before:
            findings.corruption(target, f"rejected but changed: {exc.message[:60]}", short(message))
        problem = _check_error_text(exc)
        if problem is not None:
            findings.anomaly(target, f"unbounded error text: {problem}", short(message))
        if expect_valid:
            findings.false_rejection(target, exc, message)
        return False
    except BaseException as exc:
        findings.crash(target, exc, message)
        if canon(vars(storage)) != before:
            findings.corruption(target, "crashed half way: state changed", short(message))
        return False
    findings.accepted[target] += 1
    findings.outcomes[f"{target} {_shape(message)} accepted"] += 1
    if canon(message) != message_before:
        findings.corruption(target, "apply modified the caller's message", short(message))
    dropped: int | None = None
    if model is not None:
        try:
            dropped = model.apply(message)
        except ModelError as exc:
            findings.corruption(target, f"accepted a malformed message: {exc}", short(message))
            return True
        except (KeyError, TypeError) as exc:
            findings.corruption(target, f"accepted a malformed message: {exc!r}", short(message))
            return True
    problem = _result_problem(result, message, dropped)
    if problem is not None:
        if problem.startswith("change row of another symbol"):
            findings.anomaly(target, f"result: {problem}", short(message))
        else:
            findings.corruption(target, f"result: {problem}", short(message))
    if model is not None:
        try:
            differences = model.differences(storage)
        except Exception as exc:
            findings.crash(target, exc, message)
            return True
        if differences:
            findings.corruption(
                target, f"state differs from model: {differences[0]}", short(message)
            )
    if handed_out is not None and len(handed_out) < 200:
        handed_out.extend((row, canon(row)) for c in result.changes for row in c.rows[:20])
    return True


Issued = defaultdict[tuple[str, str], set[int]]


def _valid_message(data: Draw, issued: Issued, tables: list[str], scale: Scale) -> dict[str, Any]:
    table = pick(data, tables)
    symbol = pick(data, (*SYMBOLS, NEW_SYMBOL))
    keys = KEYS[table]
    action = pick(data, ("partial", "insert", "insert", "update", "update", "delete"))
    if not keys and action in ("update", "delete"):
        action = "insert"
    known = sorted(issued[(table, symbol)])
    if action == "partial":
        size = pick(data, (0, 1, 3, 8, 20, min(scale.max_array, 5_000)))
        whole = flip(data)
        if table == BOOK10:
            size = min(size, 1)
        symbols = SYMBOLS if whole and table != BOOK10 else (symbol,)
        rows = [make_row(table, symbols[n % len(symbols)], n) for n in range(size)]
        for n in range(min(size, 30)):
            issued[(table, symbols[n % len(symbols)])].add(n)
        return table_message(table, "partial", rows, None if whole else symbol)
    count = between(data, 1, 4)
    if action == "insert":
        start = between(data, 0, 60)
        ns = list(range(start, start + count))
        issued[(table, symbol)].update(ns)
        rows = [make_row(table, symbol, n) for n in ns]
    else:
        pool = known or [0]
        ns = [pick(data, pool) if between(data, 0, 9) else 99
              for _ in range(count)]  # fmt: skip
        ns = list(dict.fromkeys(ns))
        if action == "update":
            variant = between(data, 1, 30)
            rows = [update_row(table, symbol, n, variant) for n in ns]
        else:
            rows = [delete_row(table, symbol, n) for n in ns]
    if table == BOOK10:
        rows = rows[:1]
    return table_message(table, action, rows)


def storage_case(data: Draw, scale: Scale, findings: Findings) -> None:
    """A sequence of valid and mutated messages (and resets) against a store and the model."""
    target = "storage"
    cap = pick(data, (2, 5, 1000))
    limits = {"execution": 3}
    storage = Storage(max_table_len=cap, table_limits=limits)
    model = RefModel(cap, limits)
    tables = data.draw(st.lists(st.sampled_from(TABLES), min_size=1, max_size=3, unique=True))
    history: list[dict[str, Any]] = []
    issued: Issued = defaultdict(set)
    handed_out: list[tuple[Row, Any]] = []
    tainted = False  # a mutated message was accepted: later refusals may be legitimate
    for table in tables:
        if flip(data):
            rows = [make_row(table, s, n) for s in SYMBOLS for n in range(3)]
            for s in SYMBOLS:
                issued[(table, s)].update(range(3))
            if table == BOOK10:
                rows = [make_row(table, "XBTUSD", 0)]
            history.append(table_message(table, "partial", rows))
            apply_checked(storage, model, history[-1], findings, target, True, handed_out)
    for _ in range(between(data, 1, scale.max_steps)):
        op = pick(data, ("valid", "valid", "mutated", "mutated", "mutated", "reset", "replay"))
        if op == "reset":
            table = pick(data, tables)
            symbol = pick(data, (None, *SYMBOLS))
            storage.reset(table, symbol)
            model.reset(table, symbol)
            continue
        if op == "replay" and history:
            # Out of order: an earlier message again, possibly under another action.
            message = clone(history[between(data, 0, len(history) - 1)])
            if flip(data):
                message["action"] = pick(data, sorted(ACTIONS))
                if message["action"] == "partial":
                    message.setdefault("keys", KEYS.get(message["table"], []))
            valid = False
        else:
            message = _valid_message(data, issued, tables, scale)
            valid = op != "mutated"
            if not valid:
                for _ in range(between(data, 1, 3)):
                    message = mutate(data, message, scale)
                # Applied as Python objects, shared references cost per reference (rows are
                # processed one by one): keep messages near what a 64 MiB frame can carry.
                if approx_size(message, scale.max_bytes // 16) > scale.max_bytes // 16:
                    findings.outcomes["storage skipped: oversize"] += 1
                    continue
        if not valid and between(data, 0, 4) == 0 and not too_big(message, scale):
            # Through the wire format, as the client would see it (duplicate keys included).
            frame = damage_text(data, to_json(message))
            try:
                event = decode_server_frame(frame)
            except RemoteProtocolError:
                continue
            except BaseException as exc:
                findings.crash("server-frames", exc, frame)
                continue
            if not isinstance(event, TableMessage):
                continue
            message = event.message
        accepted = apply_checked(
            storage, model, message, findings, target, valid and not tainted, handed_out
        )
        if accepted:
            if valid:
                history.append(message)
            else:
                tainted = True
    for row, then in handed_out:
        if canon(row) != then:
            findings.corruption(target, "a row handed out earlier changed", short(row))
            break


TARGETS: Final[dict[str, Callable[[Draw, Scale, Findings], None]]] = {
    "server-frames": server_frame_case,
    "client-frames": client_frame_case,
    "storage": storage_case,
}
