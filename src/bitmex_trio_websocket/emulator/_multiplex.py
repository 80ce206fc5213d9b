"""``/realtimemd`` framing: many virtual BitMEX connections over one websocket.

Theory of operation: on the multiplexed endpoint every frame in both directions is a JSON array
``[type, streamId, streamName, payload?]`` with type 0 = message, 1 = open stream, 2 = close
stream (BitMEX's primus-multiplex scheme, protocol reference section 14). The emulator gives each
open stream its own session (own auth, subscriptions and welcome) and wraps everything a session
sends as ``[0, id, name, <frame>]``. Wrapping is plain text concatenation around the already
encoded frame, so a delta fanned out to many streams is still encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from .._protocol import PING, ClientCommand, Ping, decode_client_frame

__all__ = ["MULTIPLEX_PATH", "MuxFrame", "decode_payload", "parse_mux_frame", "wrap_prefix"]

MULTIPLEX_PATH: Final = "/realtimemd"
MESSAGE: Final = 0
OPEN: Final = 1
CLOSE: Final = 2


@dataclass(frozen=True, slots=True)
class MuxFrame:
    kind: int
    stream_id: str
    name: str
    payload: Any = None


def parse_mux_frame(text: str | bytes) -> MuxFrame | None:
    """The multiplex envelope of ``text``, or ``None`` if it is not one."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if (
        not isinstance(obj, list)
        or len(obj) < 3
        or obj[0] not in (MESSAGE, OPEN, CLOSE)
        or isinstance(obj[0], bool)
        or not isinstance(obj[1], str)
        or not isinstance(obj[2], str)
        or (obj[0] == MESSAGE and len(obj) < 4)
    ):
        return None
    return MuxFrame(obj[0], obj[1], obj[2], obj[3] if len(obj) > 3 else None)


def decode_payload(payload: Any) -> ClientCommand:
    """The command inside a type-0 frame (the payload is JSON, already parsed)."""
    if payload == PING:
        return Ping()
    return decode_client_frame(orjson.dumps(payload))


def wrap_prefix(stream_id: str, name: str) -> str:
    """Text that, followed by a frame and ``]``, wraps the frame for this stream."""
    return f"[{MESSAGE},{orjson.dumps(stream_id).decode()},{orjson.dumps(name).decode()},"
