"""The other end of the wire for the websocket tests, and the peers our client talks to.

Bytes, written independently of the code under test: ``server_frame`` builds any frame a server
could send, including ones no library would (masked, reserved bits, bad lengths);
``decode_client_frame`` reads the client's frames back; ``accept_token`` is RFC 6455's
derivation. ``RawServer`` does the upgrade by hand over a trio stream, then writes raw bytes and
reads the client's frames.

Peers: ``real_server`` puts our ``ClientWebSocket`` opposite a trio-websocket server (wsproto
parses every frame we send and writes every frame we read); ``raw_server`` opposite a
``RawServer``. Both run over memory streams: tests use them on the autojump clock.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
import trio.testing
import trio_websocket
from trio_websocket import CloseReason, ConnectionClosed

from bitmex_trio_websocket._websocket._connection import ClientWebSocket, connect_websocket
from bitmex_trio_websocket._websocket._frames import OP_CLOSE

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 6455 section 1.3: the sample nonce and the accept token a server derives from it.
RFC_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
RFC_NONCE = base64.b64decode(RFC_KEY)


def server_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """One frame as a server would send it (``length`` overrides the header's length)."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 1 << 16:
        header = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if mask is not None:
        header += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + payload


@dataclass(frozen=True)
class ClientFrame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    length_code: int  # the 7-bit length field: the length, 126 or 127
    mask_key: bytes
    payload: bytes  # unmasked


def unmask(payload: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def decode_client_frame(frame: bytes) -> tuple[ClientFrame, bytes]:
    """One client frame off the front of ``frame``; the rest."""
    first, second = frame[0], frame[1]
    length_code = second & 0x7F
    pos = 2
    length = length_code
    if length_code == 126:
        length = int.from_bytes(frame[2:4], "big")
        pos = 4
    elif length_code == 127:
        length = int.from_bytes(frame[2:10], "big")
        pos = 10
    masked = bool(second & 0x80)
    key = frame[pos : pos + 4] if masked else b""
    pos += len(key)
    body = frame[pos : pos + length]
    assert len(body) == length, "truncated client frame"
    return (
        ClientFrame(
            fin=bool(first & 0x80),
            rsv=(first >> 4) & 0x7,
            opcode=first & 0x0F,
            masked=masked,
            length_code=length_code,
            mask_key=key,
            payload=unmask(body, key) if masked else body,
        ),
        frame[pos + length :],
    )


def accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


class RawServer:
    """Just enough of a websocket server to send frames no library would."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""
        self.request_head = b""

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def read_request(self) -> bytes:
        """The upgrade request's ``Sec-WebSocket-Key``."""
        while b"\r\n\r\n" not in self.buffer:
            assert await self._fill(), "client hung up during the request"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        self.request_head = head
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                return value.strip()
        raise AssertionError("no Sec-WebSocket-Key")

    async def handshake(self, then: bytes = b"") -> None:
        """Accept, and send ``then`` in the same write as the 101."""
        key = await self.read_request()
        await self.stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_token(key)
            + b"\r\n\r\n"
            + then
        )

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_frame(self) -> ClientFrame | None:
        """The client's next frame (checked masked), ``None`` at end of stream."""
        while True:
            if len(self.buffer) >= 2:
                try:
                    frame, rest = decode_client_frame(self.buffer)
                except AssertionError:
                    pass  # incomplete
                else:
                    self.buffer = rest
                    assert frame.masked, "client frames must be masked"
                    assert frame.fin and frame.rsv == 0
                    return frame
            if not await self._fill():
                assert self.buffer == b"", "client hung up mid-frame"
                return None

    async def read_close(self) -> tuple[int, bytes]:
        """Skip to the client's close frame: its code and reason bytes."""
        while True:
            frame = await self.read_frame()
            assert frame is not None, "no close frame before end of stream"
            if frame.opcode == OP_CLOSE:
                return int.from_bytes(frame.payload[:2], "big"), frame.payload[2:]

    async def at_eof(self) -> bool:
        """Whether the client closed its end (after any frames still buffered)."""
        while await self.read_frame() is not None:
            pass
        return True


# ------------------------------------------------------------------------------------ peers

TIMEOUT = 30  # virtual seconds
MAX_SIZE = 4 << 20


def reason_of(exc: ConnectionClosed) -> CloseReason:
    assert exc.reason is not None
    return exc.reason


def close_body(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


@asynccontextmanager
async def real_server(
    *,
    max_message_size: int = MAX_SIZE,
    server_max: int = MAX_SIZE,
    streams: tuple[trio.abc.Stream, trio.abc.Stream] | None = None,
) -> AsyncIterator[tuple[ClientWebSocket, trio_websocket.WebSocketConnection]]:
    """Our client connected to a trio-websocket server over ``streams`` (client end, server
    end), by default a memory stream pair."""
    client_stream, server_stream = streams or trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        send, receive = trio.open_memory_channel[trio_websocket.WebSocketConnection](1)

        async def serve() -> None:
            request = await trio_websocket.wrap_server_stream(
                nursery, server_stream, max_message_size=server_max
            )
            assert request.path == "/realtime?heartbeat=1"
            await send.send(await request.accept())

        nursery.start_soon(serve)
        client = await connect_websocket(
            client_stream, "example.com", "/realtime?heartbeat=1", max_message_size=max_message_size
        )
        server = await receive.receive()
        try:
            yield client, server
        finally:
            await trio.aclose_forcefully(client_stream)
            nursery.cancel_scope.cancel()


async def collect(client: ClientWebSocket, count: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < count:
        got.extend(await client.receive_messages())
    return got


async def drain_until_closed(client: ClientWebSocket) -> tuple[list[bytes], CloseReason]:
    """Every message until ``ConnectionClosed``; the messages and the close reason."""
    got: list[bytes] = []
    while True:
        try:
            got.extend(await client.receive_messages())
        except ConnectionClosed as exc:
            return got, reason_of(exc)


async def connect(stream: trio.abc.Stream, max_message_size: int = MAX_SIZE) -> ClientWebSocket:
    return await connect_websocket(
        stream, "example.com", "/realtime", max_message_size=max_message_size
    )


@asynccontextmanager
async def raw_server(
    then: bytes = b"", max_message_size: int = MAX_SIZE
) -> AsyncIterator[tuple[ClientWebSocket, RawServer]]:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    raw = RawServer(server_stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(raw.handshake, then)
        client = await connect(client_stream, max_message_size)
    try:
        yield client, raw
    finally:
        await trio.aclose_forcefully(client_stream)
        await trio.aclose_forcefully(server_stream)
