"""Sans-IO websocket wire format for the client role (RFC 6455), after measuring the alternative.

Theory of operation
-------------------
trio-websocket runs a reader task per connection that parses frames with wsproto and hands each
message to the application over a memory channel: several task switches and a UTF-8 decode per
message before the client sees it. Measured (benchmarks/README.md), that plumbing cost more than
everything the client does with a message. So the client speaks the wire format itself:

* ``ClientHandshake``: the HTTP/1.1 upgrade, on h11 (the HTTP parser wsproto itself uses). It
  ends with ``Accepted(trailing)``, the bytes already read past the response (frames the server
  sent at once), or ``Rejected(status, headers, body)``.
* ``FrameReader.feed(data)``: complete data messages, as ``bytes`` payloads ready for orjson (no
  decode to ``str``), plus control frames queued in ``controls``. Fragmented messages are joined.
  Length is checked from the frame header, before the payload is buffered, so ``max_size``
  bounds memory; a large frame arriving in many reads is joined once (no quadratic copying).
* ``encode_frame``: masked client frames (the caller supplies the mask key: no randomness
  here), or unmasked server frames for the emulator and the benchmarks.

Server frames that break the RFC raise ``FramingError(code, reason)``: the connection must then be
failed with that close code (1002 protocol error, 1009 message too big). No I/O, no clock.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import h11

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Accepted",
    "ClientHandshake",
    "Control",
    "FrameReader",
    "FramingError",
    "Rejected",
    "close_payload",
    "encode_frame",
    "parse_close",
]

OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A rejection's body is only read for its error text (BitMEX's is a short JSON object).
MAX_REJECTION_BODY = 64 * 1024


class FramingError(Exception):
    """The server broke the wire format: fail the connection with ``code``. ``messages`` holds
    the complete messages that preceded the bad frame in the same ``feed``: still valid data."""

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


@dataclass(frozen=True, slots=True)
class Accepted:
    trailing: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    status_code: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


class ClientHandshake:
    """The opening handshake; ``nonce`` is 16 random bytes from the caller."""

    def __init__(self, host: str, target: str, nonce: bytes) -> None:
        self._key = base64.b64encode(nonce)
        self._expected_accept = base64.b64encode(hashlib.sha1(self._key + _GUID).digest())
        self._http = h11.Connection(h11.CLIENT)
        self._rejection: tuple[int, tuple[tuple[bytes, bytes], ...]] | None = None
        self._body = bytearray()
        self._request = self._http.send(
            h11.Request(
                method="GET",
                target=target,
                headers=[
                    (b"Host", host.encode("idna")),
                    (b"Upgrade", b"websocket"),
                    (b"Connection", b"Upgrade"),
                    (b"Sec-WebSocket-Key", self._key),
                    (b"Sec-WebSocket-Version", b"13"),
                ],
            )
        )

    def request_bytes(self) -> bytes:
        assert self._request is not None
        return self._request

    def receive_data(self, data: bytes) -> Accepted | Rejected | None:
        """Feed bytes (``b""`` for end of stream); the outcome once known, else ``None``.

        Raises ``FramingError`` (1002) for a response that is not HTTP or not a valid upgrade.
        """
        try:
            self._http.receive_data(data)
            while True:
                event = self._http.next_event()
                if event is h11.NEED_DATA:
                    if not data:
                        raise FramingError(1002, "connection closed during the handshake")
                    return None
                if isinstance(event, h11.InformationalResponse):
                    if event.status_code == 101:
                        self._check_upgrade(event.headers)
                        return Accepted(bytes(self._http.trailing_data[0]))
                    continue
                if isinstance(event, h11.Response):
                    headers = tuple((bytes(k), bytes(v)) for k, v in event.headers)
                    self._rejection = (event.status_code, headers)
                elif isinstance(event, h11.Data):
                    room = MAX_REJECTION_BODY - len(self._body)
                    self._body += bytes(event.data[:room])
                    if room <= len(event.data):
                        return self._rejected()
                elif event is h11.PAUSED or isinstance(
                    event, h11.EndOfMessage | h11.ConnectionClosed
                ):
                    return self._rejected()
        except h11.RemoteProtocolError as exc:
            if self._rejection is not None:  # a rejection with a malformed body is still one
                return self._rejected()
            raise FramingError(1002, f"bad handshake response: {exc}") from None

    def _rejected(self) -> Rejected:
        assert self._rejection is not None
        status, headers = self._rejection
        return Rejected(status, headers, bytes(self._body))

    def _check_upgrade(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        seen = {bytes(name).lower(): bytes(value) for name, value in headers}
        if seen.get(b"upgrade", b"").lower() != b"websocket":
            raise FramingError(1002, "handshake response without 'Upgrade: websocket'")
        tokens = [t.strip().lower() for t in seen.get(b"connection", b"").split(b",")]
        if b"upgrade" not in tokens:
            raise FramingError(1002, "handshake response without 'Connection: Upgrade'")
        if seen.get(b"sec-websocket-accept") != self._expected_accept:
            raise FramingError(1002, "handshake response with a wrong Sec-WebSocket-Accept")
        # Nothing was offered, so nothing may be accepted (a compressed frame would be garbage).
        if seen.get(b"sec-websocket-extensions") or seen.get(b"sec-websocket-protocol"):
            raise FramingError(1002, "handshake response accepts an extension never offered")


class FrameReader:
    """Server frames -> data message payloads (``feed``'s result) and ``controls``."""

    __slots__ = (
        "_chunks",
        "_fragments",
        "_fragments_size",
        "_held",
        "_need",
        "controls",
        "max_size",
    )

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.controls: list[Control] = []
        self._chunks: list[bytes] = []  # bytes of an incomplete frame
        self._held = 0
        self._need = 0  # bytes needed before parsing can continue (0: unknown, any will do)
        self._fragments: list[bytes] | None = None
        self._fragments_size = 0

    def feed(self, data: bytes) -> list[bytes]:
        if self._chunks:
            self._chunks.append(data)
            self._held += len(data)
            if self._held < self._need:
                return []  # the frame is still incomplete: don't rejoin for nothing
            data = b"".join(self._chunks)
            self._chunks = []
        messages: list[bytes] = []
        pos, end = 0, len(data)
        max_size = self.max_size
        need = 0
        try:
            while end - pos >= 2:
                first, second = data[pos], data[pos + 1]
                length = second & 0x7F
                start = pos + 2
                if length == 126:
                    start += 2
                    if start > end:
                        break
                    length = int.from_bytes(data[pos + 2 : start])
                elif length == 127:
                    start += 8
                    if start > end:
                        break
                    length = int.from_bytes(data[pos + 2 : start])
                opcode = first & 0x0F
                if second & 0x80:
                    raise FramingError(1002, "masked frame from the server")
                if first & 0x70:
                    raise FramingError(1002, "reserved bits set (no extension was negotiated)")
                if opcode >= 8:
                    if opcode > OP_PONG:
                        raise FramingError(1002, f"unknown opcode {opcode}")
                    if not first & 0x80 or length > 125:
                        raise FramingError(1002, "fragmented or oversized control frame")
                elif opcode == OP_CONTINUATION:
                    if self._fragments is None:
                        raise FramingError(1002, "continuation frame without a message")
                    if self._fragments_size + length > max_size:
                        raise FramingError(1009, f"message larger than {max_size} bytes")
                elif opcode > OP_BINARY:
                    raise FramingError(1002, f"unknown opcode {opcode}")
                elif self._fragments is not None:
                    raise FramingError(1002, "new message inside a fragmented one")
                elif length > max_size:
                    raise FramingError(1009, f"message larger than {max_size} bytes")
                stop = start + length
                if stop > end:
                    need = stop - pos
                    break
                payload = data[start:stop]
                pos = stop
                if opcode >= 8:
                    self.controls.append(Control(opcode, payload))
                elif first & 0x80:
                    if opcode:
                        messages.append(payload)
                    else:
                        assert self._fragments is not None
                        self._fragments.append(payload)
                        messages.append(b"".join(self._fragments))
                        self._fragments = None
                elif opcode:
                    self._fragments = [payload]
                    self._fragments_size = length
                else:
                    assert self._fragments is not None
                    self._fragments.append(payload)
                    self._fragments_size += length
        except FramingError as exc:
            exc.messages = messages
            raise
        self._need = need
        if pos < end:
            rest = data[pos:]
            self._chunks = [rest]
            self._held = len(rest)
        return messages


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


def close_payload(code: int | None, reason: str | None = None) -> bytes:
    """The body of a close frame (empty for no code)."""
    if code is None or code in (1005, 1006):  # "no status" codes are never sent
        return b""
    text = (reason or "").encode("utf-8")[:123]
    return code.to_bytes(2) + text.decode("utf-8", "ignore").encode("utf-8")


def parse_close(payload: bytes) -> tuple[int, str | None]:
    """A server close frame's ``(code, reason)``; 1005 when it carries no code."""
    if not payload:
        return 1005, None
    if len(payload) == 1:
        raise FramingError(1002, "close frame with a one-byte body")
    code = int.from_bytes(payload[:2])
    return code, payload[2:].decode("utf-8", "replace") or None
