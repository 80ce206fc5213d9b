"""``connect_websocket``: the upgrade over a trio stream, accepted, refused or failed.

Servers are trio-websocket's (for a refusal it writes) or a ``RawServer`` (for replies no
websocket server would give). Every test runs under ``trio.fail_after`` on the autojump clock.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
import trio_websocket
from trio_websocket import ConnectionRejected, HandshakeError

from bitmex_trio_websocket._websocket import _frames as wire
from bitmex_trio_websocket._websocket._connection import connect_websocket

from .helpers import (
    TIMEOUT,
    RawServer,
    close_body,
    connect,
    server_frame,
)


async def test_rejection_429_with_retry_after(autojump_clock: trio.abc.Clock) -> None:
    body = b'{"error":{"message":"Rate limit exceeded, retry in 30 seconds.","name":"HTTPError"}}'
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                request = await trio_websocket.wrap_server_stream(nursery, server_stream)
                await request.reject(429, extra_headers=[(b"Retry-After", b"30")], body=body)

            nursery.start_soon(serve)
            with pytest.raises(ConnectionRejected) as info:
                await connect(client_stream)
            await client_stream.aclose()
            nursery.cancel_scope.cancel()
    rejected = info.value
    assert rejected.status_code == 429
    assert (b"retry-after", b"30") in [(k.lower(), v) for k, v in rejected.headers]
    assert rejected.body == body
    assert isinstance(rejected, HandshakeError)  # what callers catching the base class expect


@pytest.mark.parametrize(
    "reply",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"\x15\x03\x03\x00\x02\x02\x28",  # a TLS alert, then hang up
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",  # no accept token
        b"",  # hang up at once
        b"HTTP/1.1 200 OK\r\nContent-Len",  # hang up mid-header
    ],
)
async def test_non_websocket_reply_is_a_handshake_error(
    autojump_clock: trio.abc.Clock, reply: bytes
) -> None:
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.memory_stream_pair()

        async def serve() -> None:
            await RawServer(server_stream).read_request()
            await server_stream.send_all(reply)
            await server_stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            with pytest.raises(HandshakeError) as info:
                await connect(client_stream)
            await client_stream.aclose()
    assert not isinstance(info.value, ConnectionRejected)


async def test_connection_broken_during_handshake_is_a_handshake_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.memory_stream_pair()
        await client_stream.aclose()  # sending the request fails
        with pytest.raises(HandshakeError):
            await connect(client_stream)
        await server_stream.aclose()


async def test_request_carries_host_and_target(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.memory_stream_pair()
        raw = RawServer(server_stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw.handshake)
            client = await connect_websocket(
                client_stream, "www.bitmex.com:443", "/realtime?subscribe=x", max_message_size=100
            )
        request_line, *headers = raw.request_head.split(b"\r\n")
        assert request_line == b"GET /realtime?subscribe=x HTTP/1.1"
        assert b"Host: www.bitmex.com:443" in headers
        await raw.send(server_frame(wire.OP_TEXT, b"ok"))
        assert await client.get_message() == b"ok"
        await client.send_message("hello")
        frame = await raw.read_frame()
        assert frame is not None
        assert (frame.opcode, frame.payload) == (wire.OP_TEXT, b"hello")
        await raw.send(server_frame(wire.OP_CLOSE, close_body(1000)))  # the server closes first
        await client.aclose()
        assert await raw.read_close() == (1000, b"")  # the echo
        assert await raw.at_eof()
