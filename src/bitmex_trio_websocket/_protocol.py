"""BitMEX realtime protocol, sans-IO: text frames <-> typed events and commands.

Theory of operation: every websocket text frame carries one JSON value, except the heartbeat
strings ``ping`` and ``pong``. This module turns frames into frozen event objects and back, for
both roles:

* client role: ``decode_server_frame`` (server -> us) and ``encode_*`` commands (us -> server);
* server role (the emulator): ``decode_client_frame`` and the ``encode_*`` replies.

It never touches a socket or a clock; times are passed in as text. Server frames that break the
protocol raise ``RemoteProtocolError`` quoting a bounded prefix of the frame; commands we are asked
to build that BitMEX would refuse raise ``LocalProtocolError`` before anything is sent. Client
frames a server cannot interpret decode to ``Unrecognized`` rather than raising, because the server
must answer them with BitMEX's 400 reply and keep the connection.

Unknown fields are ignored everywhere: BitMEX adds fields over time and stopped sending JSON nulls
in 2023, so a missing field and a null field mean the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

import orjson

from ._exceptions import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ACTIONS",
    "MAX_COMMAND_BYTES",
    "MAX_TOPICS_PER_COMMAND",
    "PING",
    "PONG",
    "PRIVATE_TABLES",
    "PUBLIC_TABLES",
    "SYMBOL_TABLES",
    "WELCOME_TEXT",
    "AuthAck",
    "AuthKeyExpires",
    "CancelAllAfter",
    "CancelAllAfterAck",
    "ClientCommand",
    "ErrorReply",
    "Help",
    "HelpReply",
    "Ping",
    "Pong",
    "ServerEvent",
    "Subscribe",
    "SubscribeAck",
    "TableMessage",
    "Unrecognized",
    "Unsubscribe",
    "UnsubscribeAck",
    "Welcome",
    "decode_client_frame",
    "decode_server_frame",
    "decode_server_frame_lean",
    "encode_auth_ack",
    "encode_auth_key_expires",
    "encode_cancel_all_after",
    "encode_cancel_all_after_ack",
    "encode_error",
    "encode_help",
    "encode_subscribe",
    "encode_subscribe_ack",
    "encode_table",
    "encode_unsubscribe",
    "encode_unsubscribe_ack",
    "encode_welcome",
    "make_topic",
    "parse_topic",
]

PING: Final = "ping"
PONG: Final = "pong"
WELCOME_TEXT: Final = "Welcome to the BitMEX Realtime API."
DOCS_URL: Final = "https://www.bitmex.com/app/wsAPI"
ACTIONS: Final = frozenset({"partial", "insert", "update", "delete"})

# BitMEX's exact per-command maximum is unconfirmed; big clients send 10 topics, one client saw
# "Max length is 20". Staying at 10 and well under any frame limit is always accepted.
MAX_TOPICS_PER_COMMAND: Final = 10
MAX_COMMAND_BYTES: Final = 4096
# A frame's size bounds its decoded cost only if its objects are not tiny: "{}," is 3 bytes of
# frame but a 64-byte dict, then a stored row. The sparsest real rows (order-book deletes) spend
# about 60 bytes per object, so a large frame with an object or array every 16 bytes is hostile
# and refused before decoding. Small frames are not worth counting.
DENSITY_CHECK_BYTES: Final = 64 * 1024
MIN_BYTES_PER_CONTAINER: Final = 16

PUBLIC_TABLES: Final = frozenset(
    {
        "announcement", "connected", "chat", "publicNotifications", "instrument", "settlement",
        "funding", "insurance", "liquidation", "orderBookL2", "orderBookL2_25", "orderBook10",
        "quote", "trade", "quoteBin1m", "quoteBin5m", "quoteBin1h", "quoteBin1d", "tradeBin1m",
        "tradeBin5m", "tradeBin1h", "tradeBin1d",
    }
)  # fmt: skip
PRIVATE_TABLES: Final = frozenset(
    {
        "privateNotifications", "account", "wallet", "affiliate", "margin", "position",
        "transact", "order", "execution",
    }
)  # fmt: skip
# Tables whose topic may carry ":SYMBOL"; the others are subscribed by bare name.
SYMBOL_TABLES: Final = frozenset(
    {
        "instrument", "settlement", "funding", "liquidation", "orderBookL2", "orderBookL2_25",
        "orderBook10", "quote", "trade", "quoteBin1m", "quoteBin5m", "quoteBin1h", "quoteBin1d",
        "tradeBin1m", "tradeBin5m", "tradeBin1h", "tradeBin1d", "order", "execution", "position",
    }
)  # fmt: skip

_FORBIDDEN_TOPIC_CHARS = frozenset(',:" \t\r\n')


def make_topic(table: str, symbol: str | None = None) -> str:
    """``table`` or ``table:SYMBOL``, validated (``LocalProtocolError`` on bad names)."""
    for part in (table, symbol):
        if part is None:
            continue
        if not isinstance(part, str) or not part or _FORBIDDEN_TOPIC_CHARS.intersection(part):
            raise LocalProtocolError(f"invalid table or symbol name: {part!r}")
    return table if symbol is None else f"{table}:{symbol}"


def parse_topic(topic: str) -> tuple[str, str | None]:
    """Split ``table:SYMBOL`` into ``(table, symbol)``; ``*`` means every symbol (``None``)."""
    table, sep, symbol = topic.partition(":")
    return table, (symbol if sep and symbol not in ("", "*") else None)


# --------------------------------------------------------------------------- server events


@dataclass(frozen=True, slots=True)
class Welcome:
    """The first frame of every connection."""

    version: str | None
    timestamp: str | None
    limit_remaining: int | None
    heartbeat_enabled: bool | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class SubscribeAck:
    topic: str
    request: Any


@dataclass(frozen=True, slots=True)
class UnsubscribeAck:
    topic: str
    request: Any


@dataclass(frozen=True, slots=True)
class AuthAck:
    """Success reply to ``authKeyExpires`` (or legacy ``authKey``)."""

    request: Any = field(repr=False)


@dataclass(frozen=True, slots=True)
class CancelAllAfterAck:
    """Dead man's switch reply; ``cancel_time`` is ``0`` when disarmed."""

    now: str
    cancel_time: str | int
    request: Any


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """``{"status":..,"error":..,"meta":..,"request":..}``; ``status``/``request`` may be absent."""

    status: int | None
    error: str
    meta: Mapping[str, Any]
    request: Any = field(repr=False)

    @property
    def op(self) -> str | None:
        op = self.request.get("op") if isinstance(self.request, Mapping) else None
        return op if isinstance(op, str) else None


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class HelpReply:
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class TableMessage:
    """A table message; ``message`` is the decoded dict, ready for ``Storage.apply``."""

    table: str
    action: str
    message: dict[str, Any] = field(repr=False, compare=False)


ServerEvent: TypeAlias = (
    Welcome
    | SubscribeAck
    | UnsubscribeAck
    | AuthAck
    | CancelAllAfterAck
    | ErrorReply
    | Pong
    | HelpReply
    | TableMessage
)

_PONG_EVENT: Final = Pong()
_AUTH_OPS: Final = frozenset({"authKeyExpires", "authKey"})


def _loads(frame: str | bytes, what: str) -> Any:
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise RemoteProtocolError(f"{what} is not JSON", frame) from None


def decode_server_frame(frame: str | bytes) -> ServerEvent:
    """Decode one frame received from BitMEX (client role)."""
    event = decode_server_frame_lean(frame)
    if type(event) is dict:
        return TableMessage(event["table"], event["action"], event)
    return event  # type: ignore[return-value]  # (mypy cannot narrow by ``type() is``)


def decode_server_frame_lean(frame: str | bytes) -> dict[str, Any] | ServerEvent:
    """``decode_server_frame``, except that a table message is returned as its decoded dict,
    already checked (``table`` text, known ``action``, ``data`` list): the client's hot path
    then builds no event object per frame."""
    if frame == PONG or frame == b"pong":
        return _PONG_EVENT
    if len(frame) > DENSITY_CHECK_BYTES:
        _check_density(frame)
    obj = _loads(frame, "server frame")
    if type(obj) is not dict:
        raise RemoteProtocolError("server frame is not a JSON object", frame)
    table = obj.get("table")
    if table is not None:  # the hot path: nearly every frame is table data
        action = obj.get("action")
        if type(table) is not str or type(action) is not str or action not in ACTIONS:
            raise RemoteProtocolError("table message with bad table or unknown action", frame)
        if type(obj.get("data")) is not list:
            raise RemoteProtocolError("table message without a data array", frame)
        return obj
    if "error" in obj:
        return _decode_error(obj, frame)
    info = obj.get("info")
    if isinstance(info, str):  # before acks: the help reply has a "subscribe" field too
        if info == WELCOME_TEXT or "version" in obj or "limit" in obj:
            return _decode_welcome(obj)
        return HelpReply(obj)
    request = obj.get("request")
    if "subscribe" in obj or "unsubscribe" in obj:
        return _decode_ack(obj, request, frame)
    if "cancelTime" in obj:
        now, cancel_time = obj.get("now"), obj["cancelTime"]
        if (
            not isinstance(now, str)
            or not isinstance(cancel_time, str | int)
            or isinstance(cancel_time, bool)
        ):
            raise RemoteProtocolError("cancelAllAfter reply with bad now/cancelTime", frame)
        return CancelAllAfterAck(now, cancel_time, request)
    if obj.get("success") is True and isinstance(request, dict):
        op = request.get("op")
        if type(op) is str and op in _AUTH_OPS:
            return AuthAck(request)
    raise RemoteProtocolError("unrecognised server frame", frame)


def _check_density(frame: str | bytes) -> None:
    if isinstance(frame, str):
        containers = frame.count("{") + frame.count("[")
    else:
        containers = frame.count(b"{") + frame.count(b"[")
    if containers * MIN_BYTES_PER_CONTAINER > len(frame):
        raise RemoteProtocolError(
            f"frame of {len(frame)} bytes with {containers} objects or arrays: too dense to "
            "decode safely",
            frame,
        )


def _decode_error(obj: dict[str, Any], frame: str | bytes) -> ErrorReply:
    error, status, meta = obj["error"], obj.get("status"), obj.get("meta")
    if not isinstance(error, str):
        raise RemoteProtocolError("error reply whose error is not text", frame)
    if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
        raise RemoteProtocolError("error reply with a non-integer status", frame)
    return ErrorReply(status, error, meta if isinstance(meta, dict) else {}, obj.get("request"))


def _decode_ack(obj: dict[str, Any], request: Any, frame: str | bytes) -> ServerEvent:
    if obj.get("success") is not True:
        # Tolerate the old {"success": false, ...} failure form that some clients still expect.
        return ErrorReply(None, str(obj.get("error", "subscription failed")), {}, request)
    if "subscribe" in obj:
        topic = obj["subscribe"]
        if isinstance(topic, str):
            return SubscribeAck(topic, request)
    else:
        topic = obj["unsubscribe"]
        if isinstance(topic, str):
            return UnsubscribeAck(topic, request)
    raise RemoteProtocolError("subscription ack whose topic is not text", frame)


def _decode_welcome(obj: dict[str, Any]) -> Welcome:
    limit = obj.get("limit")
    remaining = limit.get("remaining") if isinstance(limit, dict) else None
    heartbeat = obj.get("heartbeatEnabled")
    version, timestamp = obj.get("version"), obj.get("timestamp")
    return Welcome(
        version if isinstance(version, str) else None,
        timestamp if isinstance(timestamp, str) else None,
        remaining if isinstance(remaining, int) and not isinstance(remaining, bool) else None,
        heartbeat if isinstance(heartbeat, bool) else None,
        obj,
    )


# --------------------------------------------------------------------------- client commands


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _command_batches(topics: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for topic in topics:
        table, symbol = parse_topic(topic)
        if make_topic(table, symbol) != topic and not topic.endswith(":*"):
            raise LocalProtocolError(f"invalid topic: {topic!r}")
        cost = len(topic.encode()) + 3  # quotes and comma
        if batch and (len(batch) >= MAX_TOPICS_PER_COMMAND or size + cost > MAX_COMMAND_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(topic)
        size += cost
    if batch:
        yield batch


def encode_subscribe(topics: Iterable[str]) -> list[str]:
    """``subscribe`` frames for ``topics``, batched; no frame at all for no topics."""
    return [_dumps({"op": "subscribe", "args": batch}) for batch in _command_batches(topics)]


def encode_unsubscribe(topics: Iterable[str]) -> list[str]:
    """``unsubscribe`` frames for ``topics``, batched; no frame at all for no topics."""
    return [_dumps({"op": "unsubscribe", "args": batch}) for batch in _command_batches(topics)]


def encode_auth_key_expires(api_key: str, expires: int, signature: str) -> str:
    if not api_key or not signature:
        raise LocalProtocolError("authKeyExpires needs an API key and a signature")
    if not isinstance(expires, int) or isinstance(expires, bool) or expires <= 0:
        raise LocalProtocolError("expires must be a positive integer (seconds)")
    return _dumps({"op": "authKeyExpires", "args": [api_key, expires, signature]})


def encode_cancel_all_after(timeout_ms: int) -> str:
    """Arm (``timeout_ms`` > 0) or disarm (0) the dead man's switch."""
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms < 0:
        raise LocalProtocolError("cancelAllAfter timeout must be a non-negative integer (ms)")
    return _dumps({"op": "cancelAllAfter", "args": timeout_ms})


# --------------------------------------------------------------------------- server role


@dataclass(frozen=True, slots=True)
class Subscribe:
    topics: tuple[str, ...]
    request: Any


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    topics: tuple[str, ...]
    request: Any


@dataclass(frozen=True, slots=True)
class AuthKeyExpires:
    """``authKeyExpires`` (or legacy ``authKey`` with a nonce, ``legacy=True``)."""

    api_key: str
    expires: int
    signature: str = field(repr=False)
    request: Any = field(repr=False)
    legacy: bool = False


@dataclass(frozen=True, slots=True)
class CancelAllAfter:
    timeout_ms: int
    request: Any


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Unrecognized:
    """Anything a server must answer with 400 "Unrecognized request" (``request`` echoed)."""

    request: Any
    reason: str


ClientCommand: TypeAlias = (
    Subscribe | Unsubscribe | AuthKeyExpires | CancelAllAfter | Ping | Help | Unrecognized
)


def _as_args(args: Any) -> list[Any] | None:
    if isinstance(args, list):
        return args
    return None if args is None else [args]


def decode_client_frame(frame: str | bytes) -> ClientCommand:
    """Decode one frame received from a client (server role). Never raises."""
    if frame == PING or frame == b"ping":
        return Ping()
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return Unrecognized({}, "not JSON")
    if obj == "help":
        return Help()
    if not isinstance(obj, dict):
        return Unrecognized(obj, "not a JSON object")
    op, args = obj.get("op"), _as_args(obj.get("args"))
    if type(op) is not str:  # also keeps unhashable JSON (arrays, objects) out of the set tests
        return Unrecognized(obj, "op is not a string")
    if op in ("subscribe", "unsubscribe"):
        if not args or not all(isinstance(t, str) and t for t in args):
            return Unrecognized(obj, f"{op} needs topic strings")
        cls = Subscribe if op == "subscribe" else Unsubscribe
        return cls(tuple(args), obj)
    if op in _AUTH_OPS:
        if (
            args is None
            or len(args) != 3
            or not isinstance(args[0], str)
            or not isinstance(args[2], str)
            or not isinstance(args[1], int | float)
            or isinstance(args[1], bool)
            or not math.isfinite(args[1])
        ):
            return Unrecognized(obj, f"{op} needs [apiKey, expires, signature]")
        return AuthKeyExpires(args[0], int(args[1]), args[2], obj, legacy=op == "authKey")
    if op == "cancelAllAfter":
        if args is None or len(args) != 1:
            return Unrecognized(obj, "cancelAllAfter needs a timeout in ms")
        timeout = args[0]
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
            return Unrecognized(obj, "cancelAllAfter needs a timeout in ms")
        return CancelAllAfter(timeout, obj)
    return Unrecognized(obj, "unknown op")


def encode_welcome(
    timestamp: str,
    *,
    version: str = "2.0.0",
    limit_remaining: int | None = None,
    heartbeat_enabled: bool = False,
    docs: str = DOCS_URL,
    app_name: str | None = None,
) -> str:
    welcome: dict[str, Any] = {
        "info": WELCOME_TEXT,
        "version": version,
        "timestamp": timestamp,
        "docs": docs,
        "heartbeatEnabled": heartbeat_enabled,
    }
    if limit_remaining is not None:
        welcome["limit"] = {"remaining": limit_remaining}
    if app_name is not None:
        welcome["appName"] = app_name
    return _dumps(welcome)


def encode_subscribe_ack(topic: str, request: Any) -> str:
    return _dumps({"success": True, "subscribe": topic, "request": request})


def encode_unsubscribe_ack(topic: str, request: Any) -> str:
    return _dumps({"success": True, "unsubscribe": topic, "request": request})


def encode_auth_ack(request: Any) -> str:
    return _dumps({"success": True, "request": request})


def encode_cancel_all_after_ack(now: str, cancel_time: str | int, request: Any) -> str:
    return _dumps({"now": now, "cancelTime": cancel_time, "request": request})


def encode_error(
    status: int, error: str, *, meta: Mapping[str, Any] | None = None, request: Any = None
) -> str:
    return _dumps(
        {"status": status, "error": error, "meta": dict(meta or {}), "request": request or {}}
    )


HELP_REPLY: Final[Mapping[str, Any]] = {
    "info": "See https://www.bitmex.com/app/wsAPI and https://www.bitmex.com/explorer for more "
    "documentation.",
    "usage": 'Send a message in the format: {"op": string, "args": Array<string>}',
    "ops": ["authKey", "authKeyExpires", "cancelAllAfter", "subscribe", "unsubscribe"],
    "subscribe": 'To subscribe, send: {"op": "subscribe", "args": [subscriptionTopic, ...]}.',
    "subscriptionSubjects": {
        "authenticationRequired": sorted(PRIVATE_TABLES),
        "public": sorted(PUBLIC_TABLES),
    },
}


def encode_help() -> str:
    return _dumps(HELP_REPLY)


def encode_table(
    table: str,
    action: str,
    data: Sequence[Mapping[str, Any]],
    *,
    keys: list[str] | None = None,
    types: Mapping[str, str] | None = None,
    filter: Mapping[str, Any] | None = None,
) -> str:
    """A table message. Partials carry ``keys``, ``types`` and ``filter`` as BitMEX sends them."""
    if action not in ACTIONS:
        raise LocalProtocolError(f"unknown action {action!r}")
    message: dict[str, Any] = {"table": table, "action": action}
    if action == "partial":
        message["keys"] = list(keys or [])
        message["types"] = dict(types or {})
        message["filter"] = dict(filter or {})
    message["data"] = data if isinstance(data, list) else list(data)
    return _dumps(message)
