"""The fuzz targets: each an ``@given(st.data())`` body that records into ``Findings``.

Theory of operation: three targets, run small by the test suite and big by
``python -m stress.fuzz_campaign``:

* ``server-frames``: ``decode_server_frame`` must return a well-typed event or raise
  ``RemoteProtocolError`` with a bounded text; decoded table messages then go through
  ``Storage.apply`` as the client would.
* ``client-frames``: ``decode_client_frame`` (server role) must never raise and return
  well-typed commands.
* ``storage``: sequences of valid and mutated messages (deltas before partials, deletes before
  inserts, replays of earlier messages, resets) applied to a ``Storage`` and, when accepted, to
  ``RefModel``. A crash is any exception other than ``RemoteProtocolError``; a corruption is a
  rejected message that changed anything (deep comparison of the store's whole state), an
  accepted message whose result differs from the model, a broken book index, a caller's message or
  a handed-out row modified. A *false rejection* (a well-formed message refused while nothing
  malformed had been accepted before) is reported apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from hypothesis import strategies as st

from bitmex_trio_websocket import ApplyResult, Change, RemoteProtocolError, Storage, Violation
from bitmex_trio_websocket._protocol import (
    ACTIONS,
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

from .fuzz_findings import Findings, short
from .fuzz_messages import (
    BOOK10,
    KEYS,
    SYMBOLS,
    TABLES,
    Row,
    make_row,
    populated_storage,
    table_message,
)
from .fuzz_model import Expected, ModelError, RefModel, canon, state_of
from .fuzz_strategies import (
    Draw,
    Issued,
    Scale,
    approx_size,
    base_client_frame,
    base_server_frame,
    between,
    clone,
    damage_text,
    flip,
    mutate,
    pick,
    to_json,
    too_big,
    valid_message,
)

__all__ = [
    "TARGETS",
    "apply_checked",
    "check_client_frame",
    "check_server_frame",
    "client_frame_case",
    "server_frame_case",
    "storage_case",
]

VIOLATION_KINDS: Final = frozenset({"unknown_key", "duplicate_insert", "crossed_book"})
# RemoteProtocolError text: its message plus a quoted 200-character prefix of the frame.
ERROR_TEXT_SLACK: Final = 1000


# --------------------------------------------------------------------------- server frames


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


# --------------------------------------------------------------------------- storage


def _result_problem(
    result: Any, message: Mapping[str, Any], expected: Expected | None
) -> str | None:
    if not isinstance(result, ApplyResult):
        return "apply returned something else than an ApplyResult"
    if result.table != message["table"] or result.action != message["action"]:
        return "result table/action"
    if expected is not None and result.dropped != expected.dropped:
        return f"dropped {result.dropped} rows, the model {expected.dropped}"
    if not all(isinstance(c, Change) for c in result.changes):
        return "changes are not Change objects"
    symbols = [c.symbol for c in result.changes]
    if len(symbols) != len(set(symbols)):
        return "two changes for one symbol"
    odd = None
    for change in result.changes:
        if (change.table, change.action) != (result.table, result.action):
            return "change table/action"
        if any(type(r) is not dict or r.get("symbol") != change.symbol for r in change.rows):
            odd = "change row of another symbol"  # an anomaly: reported if nothing worse
    if not all(isinstance(v, Violation) and v.kind in VIOLATION_KINDS for v in result.violations):
        return "unknown violation kind"
    if expected is None:
        return odd
    if any(v.table != result.table for v in result.violations):
        return "violation of another table"
    violations = [(v.kind, v.symbol, v.key, v.detail) for v in result.violations]
    if violations != expected.violations:
        return f"violations {short(violations)}, the model {short(expected.violations)}"
    changes = [(c.symbol, list(c.rows)) for c in result.changes]
    if changes != list(expected.changes.items()):
        return "changed rows differ from the model's"
    return odd


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
    before = canon(state_of(storage))
    message_before = canon(message)
    try:
        result = storage.apply(message)
    except RemoteProtocolError as exc:
        findings.rejected[target] += 1
        findings.outcomes[f"{target} {_shape(message)} rejected"] += 1
        if canon(state_of(storage)) != before:
            findings.corruption(target, f"rejected but changed: {exc.message[:60]}", short(message))
        problem = _check_error_text(exc)
        if problem is not None:
            findings.anomaly(target, f"unbounded error text: {problem}", short(message))
        if expect_valid:
            findings.false_rejection(target, exc, message)
        return False
    except BaseException as exc:
        findings.crash(target, exc, message)
        if canon(state_of(storage)) != before:
            findings.corruption(target, "crashed half way: state changed", short(message))
        return False
    findings.accepted[target] += 1
    findings.outcomes[f"{target} {_shape(message)} accepted"] += 1
    if canon(message) != message_before:
        findings.corruption(target, "apply modified the caller's message", short(message))
    expected: Expected | None = None
    if model is not None:
        try:
            expected = model.apply(message)
        except ModelError as exc:
            findings.corruption(target, f"accepted a malformed message: {exc}", short(message))
            return True
        except (KeyError, TypeError) as exc:
            findings.corruption(target, f"accepted a malformed message: {exc!r}", short(message))
            return True
    problem = _result_problem(result, message, expected)
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


def storage_case(
    data: Draw, scale: Scale, findings: Findings, tables: Sequence[str] | None = None
) -> None:
    """A sequence of valid and mutated messages (and resets) against a store and the model,
    of up to three of ``tables`` (default: every modelled table)."""
    target = "storage"
    cap = pick(data, (2, 5, 1000))
    limits = {"execution": 3}
    ttl = pick(data, (60.0, 1.0, 0.0, None))  # the message timestamps span about a minute
    storage = Storage(max_table_len=cap, table_limits=limits, closed_order_ttl=ttl)
    model = RefModel(cap, limits, ttl)
    tables = data.draw(
        st.lists(st.sampled_from(tables or TABLES), min_size=1, max_size=3, unique=True)
    )
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
            message = valid_message(data, issued, tables, scale)
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
