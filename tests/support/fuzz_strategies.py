"""Hypothesis strategies for the fuzzers: hostile values, structured mutations, damaged frames.

Theory of operation: an input starts as a real-shaped message (``fuzz_messages``) and is damaged
by *structured mutations* chosen by hypothesis: a value at some path replaced by a hostile one
(wrong type, huge or special number, odd unicode, deep nesting, enormous array or string), a field
deleted or added, rows duplicated, shuffled or multiplied, the action or table swapped. Frames are
then serialised (NaN and big integers included, any depth) and possibly damaged as text or bytes
(truncation, stray bytes, duplicated keys, invalid UTF-8).

``Scale`` bounds how big the hostile values get: ``SUITE`` for the test suite, ``CAMPAIGN`` for
``python -m stress.fuzz_campaign``. Draws go through ``between``/``pick``/``flip``, which cache
their strategies (building strategies is the slow part of a draw).
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from hypothesis import strategies as st

from bitmex_trio_websocket._protocol import ACTIONS, HELP_REPLY, WELCOME_TEXT

from .fuzz_messages import (
    BOOK10,
    KEYS,
    NEW_SYMBOL,
    SYMBOLS,
    TABLES,
    delete_row,
    make_row,
    table_message,
    ts,
    update_row,
)

__all__ = [
    "CAMPAIGN",
    "SUITE",
    "Deep",
    "Draw",
    "Issued",
    "Scale",
    "approx_size",
    "base_client_frame",
    "base_server_frame",
    "base_table_message",
    "between",
    "clone",
    "damage_text",
    "draw_hostile",
    "flip",
    "mutate",
    "pick",
    "to_json",
    "too_big",
    "valid_message",
]

T = TypeVar("T")
Draw = st.DataObject


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


# --------------------------------------------------------------------------- whole frames


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
            "timestamp": ts(5),
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
            "now": ts(1),
            "cancelTime": ts(61) if armed else 0,
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


Issued = defaultdict[tuple[str, str], set[int]]


def valid_message(data: Draw, issued: Issued, tables: list[str], scale: Scale) -> dict[str, Any]:
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
