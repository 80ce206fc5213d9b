"""Sans-IO websocket frames for the client role (RFC 6455 section 5): read, write, close bodies.

Theory of operation
-------------------
trio-websocket runs a reader task per connection that parses frames with wsproto and hands each
message to the application over a memory channel: several task switches and a UTF-8 decode to
``str`` per message before the client sees it. Measured (benchmarks/README.md), that plumbing
cost more than everything the client does with a message. So the client reads frames itself:

* ``_reader.FrameReader.feed(data)``: the complete data messages in ``data``, as ``bytes``
  payloads ready for orjson, plus control frames queued in ``controls``. It runs for every frame
  received, so it has a module of its own, compiled with the store core where the machine can
  (see ``_reader``); what it shares with the rest (opcodes, ``Control``, ``FramingError``) is
  here, in one copy for both.
* ``encode_frame``: masked client frames (the caller supplies the mask key: no randomness here),
  or unmasked server frames for the emulator and the benchmarks.
* ``close_payload`` / ``parse_close``: the body of a close frame, both ways.

A server that breaks the RFC raises ``FramingError(code, reason)``: the connection must then be
failed with that close code: 1002 (protocol error) for a malformed frame or a close code that may
not appear on the wire, 1007 (invalid payload data) for a text message or close reason that is not
UTF-8, 1009 (message too big) past ``max_size``. No I/O, no clock.

Deviations from RFC 6455, on purpose: a length written in more bytes than needed (a 5-byte payload
with a 16-bit length) is read rather than refused; nothing can go wrong by reading it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._exceptions import ProtocolError

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Control",
    "FramingError",
    "close_code_allowed",
    "close_payload",
    "encode_frame",
    "parse_close",
]

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA

# "No status" codes: they describe a close (no code given, connection lost, TLS failure) and
# must never be sent; a close frame meaning one of them has an empty body.
_NEVER_SENT = frozenset({1005, 1006, 1015})


class FramingError(ProtocolError):
    """The server broke the wire format: fail the connection with ``code``. ``messages`` holds
    the complete messages that preceded the bad frame in the same ``feed``: still valid data.

    Never reaches users: the connection turns it into ``ConnectionClosed`` with that code.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason
        self.messages: list[bytes] = []


@dataclass(frozen=True, slots=True)
class Control:
    """A ping, pong or close frame from the server."""

    opcode: int
    payload: bytes


def encode_frame(opcode: int, payload: bytes, mask_key: bytes | None) -> bytes:
    """One final frame: masked with ``mask_key`` (a client's), or unmasked for ``None`` (a
    server's: the emulator and the benchmarks' fake servers use this too)."""
    length = len(payload)
    mask_bit = 0 if mask_key is None else 0x80
    if length < 126:
        header = bytes((0x80 | opcode, mask_bit | length))
    elif length < 1 << 16:
        header = bytes((0x80 | opcode, mask_bit | 126)) + length.to_bytes(2)
    else:
        header = bytes((0x80 | opcode, mask_bit | 127)) + length.to_bytes(8)
    if mask_key is None:
        return header + payload
    if length:
        key = (mask_key * (length // 4 + 1))[:length]
        payload = (int.from_bytes(payload) ^ int.from_bytes(key)).to_bytes(length)
    return header + mask_key + payload


def close_code_allowed(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (RFC 6455 section 7.4 and IANA's registry):
    the defined codes 1000-1003 and 1007-1014, and 3000-4999 (libraries, applications). The rest
    of 0-2999 is reserved, unassigned or never sent (1005, 1006, 1015)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_payload(code: int | None, reason: str | None = None) -> bytes:
    """The body of a close frame: empty for no code or a code that is never sent (1005, 1006,
    1015); ``ValueError`` for any other code the RFC forbids. The reason is cut to fit a control
    frame (123 bytes) at a character boundary."""
    if code is None or code in _NEVER_SENT:
        return b""
    if not close_code_allowed(code):
        raise ValueError(f"close code {code} may not be sent (RFC 6455 section 7.4)")
    text = (reason or "").encode("utf-8")[:123]
    return code.to_bytes(2) + text.decode("utf-8", "ignore").encode("utf-8")


def parse_close(payload: bytes) -> tuple[int, str | None]:
    """A server close frame's ``(code, reason)``; 1005 when it carries no code.

    ``FramingError``: 1002 for a one-byte body or a code that may not be sent, 1007 for a reason
    that is not UTF-8.
    """
    if not payload:
        return 1005, None
    if len(payload) == 1:
        raise FramingError(1002, "close frame with a one-byte body")
    code = int.from_bytes(payload[:2])
    if not close_code_allowed(code):
        raise FramingError(1002, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FramingError(1007, "close reason is not valid UTF-8") from None
    return code, reason or None
