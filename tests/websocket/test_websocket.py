"""The client's websocket connection (``_websocket``) against real and raw servers.

Most tests put our ``ClientWebSocket`` opposite a trio-websocket *server* over a memory stream
pair, so every frame we send is parsed by wsproto and every frame we read was written by it.
Misbehaviour a websocket library will not produce (fragmented messages, masked or reserved
frames, hang-ups at odd moments) comes from ``RawServer``, which does the upgrade by hand and
then writes bytes. Every test runs under ``trio.fail_after`` on the virtual (autojump) clock, so
a hang fails at once instead of stalling the suite.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
import trio_websocket
from trio_websocket import CloseReason, ConnectionClosed, ConnectionRejected, HandshakeError

from bitmex_trio_websocket._websocket import _frames as wire
from bitmex_trio_websocket._websocket._connection import ClientWebSocket, connect_websocket

from .test_wire import ClientFrame, decode_client_frame, server_frame

TIMEOUT = 30  # virtual seconds
MAX_SIZE = 4 << 20
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def reason_of(exc: ConnectionClosed) -> CloseReason:
    assert exc.reason is not None
    return exc.reason


def close_body(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


# ------------------------------------------------------------------------- trio-websocket


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


async def test_text_messages_both_ways(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await client.send_message("hello")
            assert await server.get_message() == "hello"
            await server.send_message('{"info":"Welcome"}')
            assert await client.get_message() == b'{"info":"Welcome"}'
            assert client.closed is None


@pytest.mark.parametrize("text", ["ünïcödé ✓ 漢字 🚀", "", "a" * 125, "b" * 126, "c" * 65536])
async def test_non_ascii_and_every_length_encoding_both_ways(
    autojump_clock: trio.abc.Clock, text: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await client.send_message(text)
            assert await server.get_message() == text
            await server.send_message(text)
            assert (await client.get_message()).decode("utf-8") == text


async def test_one_mebibyte_messages_both_ways(autojump_clock: trio.abc.Clock) -> None:
    text = "".join(chr(0x20 + i % 90) for i in range(1 << 20))
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await client.send_message(text)
            assert await server.get_message() == text
            await server.send_message(text)
            assert await client.get_message() == text.encode()


async def test_many_messages_arrive_in_order(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            for i in range(200):
                await server.send_message(f'{{"n":{i}}}')
            got = await collect(client, 200)
            assert [json.loads(m)["n"] for m in got] == list(range(200))
            for i in range(200):
                await client.send_message(str(i))
            assert [await server.get_message() for _ in range(200)] == [str(i) for i in range(200)]


async def test_server_ping_is_answered_with_its_payload(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server), trio.open_nursery() as nursery:
            nursery.start_soon(drain_until_closed, client)
            with trio.fail_after(5):
                await server.ping(b"are you there")  # returns once the matching pong arrives
                await server.ping(b"")
            # The connection is still good both ways.
            await server.send_message("after")
            await client.send_message("still here")
            assert await server.get_message() == "still here"
            nursery.cancel_scope.cancel()


async def test_unsolicited_pong_is_ignored(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await server.pong(b"unasked")
            await server.send_message("data")
            assert await client.get_message() == b"data"
            assert client.closed is None


@pytest.mark.parametrize(("code", "reason"), [(1000, "Bye"), (1001, None), (4000, "ünï")])
async def test_server_initiated_close(
    autojump_clock: trio.abc.Clock, code: int, reason: str | None
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await server.send_message("one")
            await server.send_message("two")
            async with trio.open_nursery() as nursery:
                # The server's aclose returns only once our echo has arrived.
                nursery.start_soon(server.aclose, code, reason)
                got, why = await drain_until_closed(client)
            assert got == [b"one", b"two"]  # data sent before the close is delivered first
            assert (why.code, why.reason) == (code, reason)
            assert client.closed is not None
            assert (client.closed.code, client.closed.reason) == (code, reason)
            # The server saw our echo: same code and reason.
            assert server.closed is not None
            assert (server.closed.code, server.closed.reason) == (code, reason)
            # Closed means closed: reading again and sending both refuse.
            with pytest.raises(ConnectionClosed) as again:
                await client.receive_messages()
            assert reason_of(again.value).code == code
            with pytest.raises(ConnectionClosed):
                await client.send_message("too late")
            await client.aclose()  # and closing a closed connection is fine


async def test_client_aclose_completes_the_close_handshake(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await client.aclose(1000, "client closed")
            with pytest.raises(ConnectionClosed) as info:
                await server.get_message()
            assert (reason_of(info.value).code, reason_of(info.value).reason) == (
                1000,
                "client closed",
            )
            assert client.closed is not None
            assert client.closed.code == 1000  # the server's reply
            with pytest.raises(ConnectionClosed):
                await client.send_message("after close")
            with pytest.raises(ConnectionClosed):
                await client.receive_messages()
            await client.aclose()  # idempotent


async def test_client_aclose_discards_data_in_flight(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            for i in range(10):
                await server.send_message(f"in flight {i}")
            await client.aclose(1000, "client closed")
            assert client.closed is not None
            assert client.closed.code == 1000
            with pytest.raises(ConnectionClosed) as info:
                await server.get_message()
            assert reason_of(info.value).reason == "client closed"


async def test_aclose_while_another_task_is_reading(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            results: list[tuple[list[bytes], CloseReason]] = []

            async def reader() -> None:
                results.append(await drain_until_closed(client))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await server.send_message("before")
                await trio.testing.wait_all_tasks_blocked()  # the reader is in receive_some
                await client.aclose(1000, "client closed")  # no BusyResourceError
            ((got, why),) = results
            assert got == [b"before"]
            assert why.code == 1000
            with pytest.raises(ConnectionClosed) as info:
                await server.get_message()
            assert (reason_of(info.value).code, reason_of(info.value).reason) == (
                1000,
                "client closed",
            )


async def test_aclose_on_connection_lost_is_quiet(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.memory_stream_pair()
        raw = RawServer(server_stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw.handshake)
            client = await connect(client_stream)
        await server_stream.aclose()
        await client.aclose()
        assert client.closed is not None
        assert client.closed.code == 1006


async def test_server_message_too_big_for_the_client_is_1009(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server(max_message_size=1000) as (client, server):
            await server.send_message("x" * 1000)  # the limit is inclusive
            assert await client.get_message() == b"x" * 1000
            await server.send_message("x" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                await client.receive_messages()
            assert reason_of(info.value).code == 1009
            # We told the server why (wsproto parsed our close frame).
            with pytest.raises(ConnectionClosed) as seen:
                await server.get_message()
            assert reason_of(seen.value).code == 1009
            await client.aclose()


async def test_peer_hangs_up_without_close_frame_is_1006(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.memory_stream_pair()
        async with real_server(streams=(client_stream, server_stream)) as (client, server):
            await server.send_message("last words")
            await server_stream.aclose()  # the TCP connection drops: no close frame
            got, why = await drain_until_closed(client)
            assert got == [b"last words"]
            assert why.code == 1006
            with pytest.raises(ConnectionClosed) as info:
                await client.send_message("anyone?")
            assert reason_of(info.value).code == 1006
            await client.aclose()


# --------------------------------------------------------------------------------- handshake


async def connect(stream: trio.abc.Stream, max_message_size: int = MAX_SIZE) -> ClientWebSocket:
    return await connect_websocket(
        stream, "example.com", "/realtime", max_message_size=max_message_size
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


# -------------------------------------------------------------------------------- raw server


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
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        await self.stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n" + then
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
            if frame.opcode == wire.OP_CLOSE:
                return int.from_bytes(frame.payload[:2], "big"), frame.payload[2:]

    async def at_eof(self) -> bool:
        """Whether the client closed its end (after any frames still buffered)."""
        while await self.read_frame() is not None:
            pass
        return True


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


async def test_server_fragmented_message_with_controls_inside(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(
                server_frame(wire.OP_TEXT, b'{"table":', fin=False)
                + server_frame(wire.OP_PING, b"mid-message")
                + server_frame(wire.OP_CONTINUATION, '"trade","x":"ü'.encode(), fin=False)
            )
            # The ping is answered though the message is incomplete.
            assert await client.receive_messages() == []
            pong = await raw.read_frame()
            assert pong is not None
            assert (pong.opcode, pong.payload) == (wire.OP_PONG, b"mid-message")
            await raw.send(server_frame(wire.OP_CONTINUATION, b'"}'))
            assert await client.get_message() == '{"table":"trade","x":"ü"}'.encode()


async def test_server_close_inside_a_fragmented_message(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(server_frame(wire.OP_TEXT, b"complete"))
            await raw.send(server_frame(wire.OP_TEXT, b"never fini", fin=False))
            await raw.send(server_frame(wire.OP_CLOSE, close_body(1001, b"going away")))
            got, why = await drain_until_closed(client)
            assert got == [b"complete"]  # the unfinished message is not delivered
            assert (why.code, why.reason) == (1001, "going away")
            assert await raw.read_close() == (1001, b"going away")


async def test_server_fragmented_message_split_across_reads(
    autojump_clock: trio.abc.Clock,
) -> None:
    parts = [b"a" * 70000, b"b" * 10, b"", b"c" * 300]
    data = b"".join(
        server_frame(
            wire.OP_BINARY if i == 0 else wire.OP_CONTINUATION, part, fin=i == len(parts) - 1
        )
        for i, part in enumerate(parts)
    )
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw), trio.open_nursery() as nursery:

            async def trickle() -> None:
                for i in range(0, len(data), 997):
                    await raw.send(data[i : i + 997])
                    await trio.sleep(0.01)
                await raw.send(server_frame(wire.OP_TEXT, b"next"))

            nursery.start_soon(trickle)
            assert await collect(client, 2) == [b"".join(parts), b"next"]


async def test_pong_from_raw_server_view(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(
                server_frame(wire.OP_PING, b"\x00\xffbinary") + server_frame(wire.OP_PING)
            )
            assert await client.receive_messages() == []  # pings are no messages
            first, second = await raw.read_frame(), await raw.read_frame()
            assert first is not None and second is not None
            assert (first.opcode, first.payload) == (wire.OP_PONG, b"\x00\xffbinary")
            assert (second.opcode, second.payload) == (wire.OP_PONG, b"")


async def test_messages_sent_with_the_101_are_delivered(autojump_clock: trio.abc.Clock) -> None:
    frames = b"".join(server_frame(wire.OP_TEXT, b"m%d" % i) for i in range(3))
    with trio.fail_after(TIMEOUT):
        async with raw_server(then=frames) as (client, raw):
            # No further read is needed: the raw server sends nothing more.
            assert await client.get_message() == b"m0"
            assert await client.get_message() == b"m1"
            assert await client.get_message() == b"m2"
            await raw.send(server_frame(wire.OP_TEXT, b"m3"))
            assert await client.get_message() == b"m3"


async def test_ping_sent_with_the_101_is_answered(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server(then=server_frame(wire.OP_PING, b"early")) as (client, raw):
            # The server waits for its pong before sending anything else.
            with trio.fail_after(5):  # TooSlowError: the ping that came with the 101 is ignored
                pong = await raw.read_frame()
            assert pong is not None
            assert (pong.opcode, pong.payload) == (wire.OP_PONG, b"early")
            await raw.send(server_frame(wire.OP_TEXT, b"thanks"))
            assert await client.get_message() == b"thanks"


async def test_close_sent_with_the_101_is_reported_and_echoed(
    autojump_clock: trio.abc.Clock,
) -> None:
    then = server_frame(wire.OP_TEXT, b"welcome") + server_frame(
        wire.OP_CLOSE, close_body(1008, b"go away")
    )
    with trio.fail_after(TIMEOUT):
        async with raw_server(then=then) as (client, raw):
            # The server sends nothing more and waits for the echo.
            with trio.fail_after(5):
                got, why = await drain_until_closed(client)
            assert got == [b"welcome"]
            assert (why.code, why.reason) == (1008, "go away")
            with trio.fail_after(5):
                echo = await raw.read_close()
            assert echo == (1008, b"go away")
            assert client.closed is not None
            assert (client.closed.code, client.closed.reason) == (1008, "go away")


async def test_bad_frame_sent_with_the_101_fails_the_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    then = server_frame(wire.OP_TEXT, b"welcome") + server_frame(wire.OP_TEXT, b"hi", mask=b"abcd")
    with trio.fail_after(TIMEOUT):
        # connect_websocket succeeds (the upgrade did) and raises nothing undocumented; the
        # connection is failed like any other framing error.
        async with raw_server(then=then) as (client, raw):
            assert await raw.read_close() == (1002, b"masked frame from the server")
            assert await client.get_message() == b"welcome"  # good data before the bad frame
            with pytest.raises(ConnectionClosed) as info:
                await client.get_message()
            assert reason_of(info.value).code == 1002
            await client.aclose()
            assert await raw.at_eof()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (server_frame(wire.OP_TEXT, b"hi", mask=b"abcd"), 1002),
        (server_frame(wire.OP_TEXT, b"hi", rsv=0b100), 1002),
        (server_frame(0x3, b"hi"), 1002),
        (server_frame(0xB, b""), 1002),
        (server_frame(wire.OP_PING, b"x", fin=False), 1002),
        (server_frame(wire.OP_PING, b"x" * 126), 1002),
        (server_frame(wire.OP_CONTINUATION, b"x"), 1002),
        (server_frame(wire.OP_CLOSE, b"\x03"), 1002),
        (server_frame(wire.OP_TEXT, length=1001), 1009),  # header only: no payload needed
        (
            server_frame(wire.OP_TEXT, b"x" * 600, fin=False)
            + server_frame(wire.OP_CONTINUATION, length=401, fin=True),
            1009,
        ),
    ],
    ids=[
        "masked",
        "rsv1",
        "opcode 3",
        "opcode 0xB",
        "fragmented ping",
        "long ping",
        "orphan continuation",
        "one-byte close",
        "oversize header",
        "oversize fragments",
    ],
)
async def test_framing_error_fails_the_connection_with_its_code(
    autojump_clock: trio.abc.Clock, frame: bytes, code: int
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server(max_message_size=1000) as (client, raw):
            await raw.send(server_frame(wire.OP_TEXT, b"fine"))
            assert await client.get_message() == b"fine"
            await raw.send(frame)
            got, why = await drain_until_closed(client)
            assert got == []
            assert why.code == code
            assert client.closed is not None and client.closed.code == code
            # The server is told why, in a close frame it can parse.
            sent_code, sent_reason = await raw.read_close()
            assert sent_code == code
            assert sent_reason.decode("utf-8")
            with pytest.raises(ConnectionClosed):
                await client.send_message("after failure")
            # aclose does not wait for a reply from a server that broke the protocol.
            await client.aclose()
            assert await raw.at_eof()


async def test_messages_before_a_framing_error_in_the_same_read_are_delivered(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(
                server_frame(wire.OP_TEXT, b"fine") + server_frame(wire.OP_TEXT, b"x", rsv=0b100)
            )
            got, why = await drain_until_closed(client)
            assert why.code == 1002
            assert got == [b"fine"]


async def test_eof_from_raw_server_is_1006(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(server_frame(wire.OP_TEXT, b"partial")[:4])
            await raw.stream.aclose()
            got, why = await drain_until_closed(client)
            assert got == []
            assert why.code == 1006


async def test_empty_close_frame_is_1005_and_echoed_empty(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(server_frame(wire.OP_CLOSE))
            _, why = await drain_until_closed(client)
            assert why.code == 1005
            echo = await raw.read_frame()
            assert echo is not None
            assert (echo.opcode, echo.payload) == (wire.OP_CLOSE, b"")


async def test_aclose_when_the_peer_never_answers_is_bounded(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            with trio.move_on_after(3) as scope:
                await client.aclose(1000, "client closed")
            assert scope.cancelled_caught  # it did wait for the reply...
            assert client.closed is not None
            # ... and still sent its close frame and closed the stream.
            assert await raw.read_close() == (1000, b"client closed")
            assert await raw.at_eof()
            with pytest.raises(ConnectionClosed):
                await client.send_message("after close")


async def test_aclose_when_the_peer_never_reads_is_bounded(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Lockstep streams have no buffer: a send blocks until the peer reads, like a full socket.
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.lockstep_stream_pair()
        raw = RawServer(server_stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw.handshake)
            client = await connect(client_stream)
        with trio.move_on_after(3) as scope:
            await client.aclose()
        assert scope.cancelled_caught
        with pytest.raises(trio.ClosedResourceError):
            await client_stream.send_all(b"x")  # the stream was closed anyway
        await server_stream.aclose()


async def test_aclose_after_server_close_frame_is_immediate(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(server_frame(wire.OP_CLOSE, close_body(1001, b"restart")))
            _, why = await drain_until_closed(client)
            assert (why.code, why.reason) == (1001, "restart")
            start = trio.current_time()
            await client.aclose()
            assert trio.current_time() == start
            assert await raw.read_close() == (1001, b"restart")  # the echo, once
            assert await raw.at_eof()


async def test_client_close_reason_is_truncated_to_a_valid_control_frame(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await client.aclose(4000, "é" * 200)
            with pytest.raises(ConnectionClosed) as info:
                await server.get_message()
            reason = reason_of(info.value)
            assert reason.code == 4000
            assert reason.reason is not None
            assert set(reason.reason) == {"é"}
            assert len(reason.reason.encode()) <= 123


async def test_concurrent_senders_do_not_interleave_frames(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Lockstep streams make send_all yield mid-write, where interleaving would happen.
    with trio.fail_after(TIMEOUT):
        streams = trio.testing.lockstep_stream_pair()
        async with real_server(streams=streams) as (client, server):
            texts = [f"{i}:" + "x" * (i * 997 % 70000) for i in range(20)]
            got: list[str | bytes] = []

            async def server_reads() -> None:
                for _ in texts:
                    got.append(await server.get_message())

            async with trio.open_nursery() as senders:
                senders.start_soon(server_reads)
                for text in texts:
                    senders.start_soon(client.send_message, text)
            # wsproto parsed every frame: none was cut into by another.
            assert sorted(got) == sorted(texts)
            await client.aclose()
