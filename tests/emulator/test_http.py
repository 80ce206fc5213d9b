"""HTTP/1.1 on the emulator's port: websocket upgrades and REST requests side by side.

The REST app here is a stand-in that echoes what it received (the real one is tested in
tests/emulator/rest/ and end to end in test_paper*.py): these tests are about the transport,
keep-alive, framing, errors, publication of deltas and the faults. In memory under
``autojump_clock`` unless a test says TCP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h11
import orjson
import pytest
import trio
import trio.testing
from trio_websocket import open_websocket_url

from bitmex_trio_websocket.emulator import DEFAULT_ACCOUNT, Emulator, FaultKind, open_emulator
from bitmex_trio_websocket.emulator._http import IDLE_TIMEOUT
from bitmex_trio_websocket.emulator.market import Delta

from .http_client import HttpClient, Reply, read_response, read_to_eof

TIMEOUT = 30
EPOCH = 1_735_689_600.0
OVERLOADED = b'{"error":{"message":"The system is currently overloaded.","name":"HTTPError"}}'


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Sequence[tuple[str, str]]
    body: bytes
    deltas: Sequence[Delta] = ()
    switch: tuple[int, int] | None = None


@dataclass
class EchoRest:
    """Answers every request with what it saw; ``deltas``/``switch`` go with the next answer."""

    seen: list[tuple[str, str, bytes, float]] = field(default_factory=list)
    deltas: list[Delta] = field(default_factory=list)
    switch: tuple[int, int] | None = None
    overloads: int = 0
    clients: list[str] = field(default_factory=list)

    def handle(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        now: float,
        *,
        client: str = "local",
    ) -> Answer:
        self.seen.append((method, target, body, now))
        self.clients.append(client)
        if self.overloads:
            self.overloads -= 1
            return Answer(503, [("Content-Type", "application/json")], OVERLOADED)
        names = [name.decode().lower() for name, _ in headers]
        payload = {"method": method, "target": target, "length": len(body), "headers": names}
        deltas, self.deltas = self.deltas, []
        switch, self.switch = self.switch, None
        return Answer(
            200, [("Content-Type", "application/json")], orjson.dumps(payload), deltas, switch
        )

    def overload_next(self, n: int = 1) -> None:
        self.overloads += n


@asynccontextmanager
async def emulator_with_echo(**options: Any) -> AsyncIterator[tuple[Emulator, EchoRest]]:
    origin = trio.current_time()
    options.setdefault("listen", False)
    async with open_emulator(
        max_events=0, clock=lambda: EPOCH + trio.current_time() - origin, **options
    ) as emulator:
        echo = EchoRest()
        emulator._hub.rest = echo
        yield emulator, echo


def parse_responses(data: bytes, n: int) -> list[Reply]:
    """``n`` responses read back to back from ``data`` (pipelined answers)."""
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(data)
    replies = []
    for _ in range(n):
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        status, headers, body = 0, {}, bytearray()
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            else:
                raise AssertionError(event)
        replies.append(Reply(status, headers, bytes(body)))
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
    return replies


async def test_websocket_and_rest_share_the_port(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, _):
            async with emulator.open_memory_websocket() as ws:
                welcome = orjson.loads(await ws.get_message())
                assert welcome["info"] == "Welcome to the BitMEX Realtime API."
                client = HttpClient(await emulator.connect_rest_in_memory())
                reply = await client.request("GET", "/api/v1/instrument?symbol=XBTUSD")
                assert reply.status == 200
                assert reply.json()["target"] == "/api/v1/instrument?symbol=XBTUSD"
                assert reply.headers["content-type"] == "application/json"
                assert len(emulator.connections) == 1 and len(emulator.rest_connections) == 1
            await trio.aclose_forcefully(client.stream)


async def test_keep_alive_serves_many_requests_on_one_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            client = HttpClient(await emulator.connect_rest_in_memory())
            for i in range(5):
                reply = await client.request("POST", "/api/v1/order", json={"n": i})
                assert reply.status == 200 and "connection" not in reply.headers
            assert not client.closed
            [http] = emulator.rest_connections
            assert http.requests == 5
            assert [body for _, _, body, _ in echo.seen] == [
                orjson.dumps({"n": i}) for i in range(5)
            ]
            await trio.aclose_forcefully(client.stream)


async def test_the_rest_app_gets_the_emulator_clock(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            client = HttpClient(await emulator.connect_rest_in_memory())
            await client.request("GET", "/api/v1/position")
            await trio.sleep(7)
            await client.request("GET", "/api/v1/position")
            assert echo.seen[1][3] - echo.seen[0][3] == pytest.approx(7)
            assert echo.clients == ["local", "local"]
            await trio.aclose_forcefully(client.stream)


async def test_connection_close_is_honoured(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, _):
            client = HttpClient(await emulator.connect_rest_in_memory())
            reply = await client.request("GET", "/api/v1/order", headers=[("Connection", "close")])
            assert reply.status == 200 and reply.headers["connection"] == "close"
            assert client.closed
            assert await read_to_eof(client.stream) == b""
            await trio.testing.wait_all_tasks_blocked()
            assert emulator.rest_connections == []


async def test_http_1_0_closes_after_one_response(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, _):
            stream = await emulator.connect_rest_in_memory()
            await stream.send_all(b"GET /api/v1/trade HTTP/1.0\r\n\r\n")
            data = await read_to_eof(stream)
            assert data.startswith(b"HTTP/1.1 200 ") and b'"target":"/api/v1/trade"' in data


async def test_pipelined_requests_are_answered_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            stream = await emulator.connect_rest_in_memory()
            body = b'{"symbol":"XBTUSD"}'
            await stream.send_all(
                b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                b"GET /api/v1/order?reverse=true HTTP/1.1\r\nHost: x\r\n\r\n"
                b"DELETE /api/v1/order/all HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                % (len(body), body)
            )
            replies = parse_responses(await read_to_eof(stream), 3)
            assert [r.json()["target"] for r in replies] == [
                "/api/v1/order",
                "/api/v1/order?reverse=true",
                "/api/v1/order/all",
            ]
            assert [r.json()["length"] for r in replies] == [len(body), 0, 0]
            assert [m for m, _, _, _ in echo.seen] == ["POST", "GET", "DELETE"]


async def test_bad_request_is_400_with_bitmex_error_and_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            client = HttpClient(await emulator.connect_rest_in_memory())
            assert (await client.request("GET", "/api/v1/order")).status == 200
            await client.stream.send_all(b"GET /api/v1/order HTTP/1.1\r\nno colon here\r\n\r\n")
            data = await read_to_eof(client.stream)
            [reply] = parse_responses(data, 1)
            assert reply.status == 400
            assert reply.json() == {"error": {"message": "Bad Request", "name": "HTTPError"}}
            assert len(echo.seen) == 1  # the bad request never reached the app
            # ... nor does garbage as the very first bytes of a connection.
            stream = await emulator.connect_rest_in_memory()
            await stream.send_all(b"\x16\x03\x01 not http at all\r\n\r\n")
            [reply] = parse_responses(await read_to_eof(stream), 1)
            assert reply.status == 400


async def test_paths_outside_the_api_are_404(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            client = HttpClient(await emulator.connect_rest_in_memory())
            for target in ("/", "/api/v2/order", "/api/v1x", "/favicon.ico"):
                reply = await client.request("GET", target)
                assert reply.status == 404, target
                assert reply.json() == {"error": {"message": "Not Found", "name": "HTTPError"}}
            assert echo.seen == []
            assert not client.closed  # a 404 keeps the connection
            await trio.aclose_forcefully(client.stream)


async def test_websocket_path_without_upgrade_is_refused_as_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            stream = await emulator.connect_in_memory()
            await stream.send_all(b"GET /realtime HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = await read_response(stream)
            assert reply.status == 400 and echo.seen == []
            await trio.aclose_forcefully(stream)


async def test_large_body_arrives_whole_and_too_large_is_413(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            client = HttpClient(await emulator.connect_rest_in_memory())
            body = bytes(range(256)) * 3000  # 768,000 bytes, many reads
            reply = await client.request("PUT", "/api/v1/order", body=body)
            assert reply.status == 200 and reply.json()["length"] == len(body)
            assert echo.seen[-1][2] == body
            reply = await client.request("PUT", "/api/v1/order", body=b"x" * (2 * 1024 * 1024))
            assert reply.status == 413 and reply.json()["error"]["name"] == "HTTPError"
            assert len(echo.seen) == 1
            await trio.aclose_forcefully(client.stream)


async def test_chunked_body_and_expect_100_continue(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            stream = await emulator.connect_rest_in_memory()
            await stream.send_all(
                b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            assert (await stream.receive_some()).startswith(b"HTTP/1.1 100 ")
            await stream.send_all(b"hello")
            reply = await read_response(stream)
            assert reply.status == 200 and echo.seen[-1][2] == b"hello"
            await stream.send_all(
                b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
            reply = await read_response(stream)
            assert reply.status == 200 and echo.seen[-1][2] == b"abcde"
            await trio.aclose_forcefully(stream)


async def test_idle_keep_alive_connection_closes_after_90_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT + 2 * IDLE_TIMEOUT):
        async with emulator_with_echo() as (emulator, _):
            client = HttpClient(await emulator.connect_rest_in_memory())
            await client.request("GET", "/api/v1/order")
            start = trio.current_time()
            await trio.sleep(IDLE_TIMEOUT - 1)
            assert (await client.request("GET", "/api/v1/order")).status == 200  # still open
            start = trio.current_time()
            assert await read_to_eof(client.stream) == b""
            assert trio.current_time() - start == pytest.approx(IDLE_TIMEOUT)
            assert IDLE_TIMEOUT == 90.0


async def test_deltas_are_published_to_websocket_subscribers_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            async with emulator.open_memory_websocket() as ws:
                await ws.get_message()  # welcome
                await ws.send_message('{"op":"subscribe","args":["trade:XBTUSD"]}')
                await ws.get_message()  # ack
                partial = orjson.loads(await ws.get_message())
                assert partial["action"] == "partial"
                rows = [
                    {"symbol": "XBTUSD", "side": "Buy", "size": 100 * i, "price": 95000.5}
                    for i in (1, 2)
                ]
                echo.deltas = [Delta("trade", "insert", "XBTUSD", [row]) for row in rows]
                client = HttpClient(await emulator.connect_rest_in_memory())
                await client.request("POST", "/api/v1/order", json={})
                for row in rows:
                    message = orjson.loads(await ws.get_message())
                    assert (message["action"], message["data"]) == ("insert", [row])
                await trio.aclose_forcefully(client.stream)


async def test_cancel_all_after_over_rest_arms_the_same_switch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            client = HttpClient(await emulator.connect_rest_in_memory())
            echo.switch = (DEFAULT_ACCOUNT, 15_000)
            start = trio.current_time()
            await client.request("POST", "/api/v1/order/cancelAllAfter", json={"timeout": 15000})
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) == start + 15
            echo.switch = (DEFAULT_ACCOUNT, 0)  # disarmed the same way
            await client.request("POST", "/api/v1/order/cancelAllAfter", json={"timeout": 0})
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) is None
            echo.switch = (DEFAULT_ACCOUNT, 5_000)
            await client.request("POST", "/api/v1/order/cancelAllAfter", json={"timeout": 5000})
            await trio.sleep(6)
            assert emulator.dead_mans_switch_fired == [(DEFAULT_ACCOUNT, start + 5)]
            await trio.aclose_forcefully(client.stream)


async def test_overload_fault_is_served_and_logged(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, _):
            client = HttpClient(await emulator.connect_rest_in_memory())
            emulator.overload_next_requests(2)
            statuses = [(await client.request("GET", "/api/v1/order")).status for _ in range(3)]
            assert statuses == [503, 503, 200]
            assert emulator.fault_counts()[FaultKind.REST_OVERLOAD] == 2
            assert emulator.fault_log[0].detail == "GET /api/v1/order"
            await trio.aclose_forcefully(client.stream)


async def test_drop_rest_connections_closes_idle_and_busy_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo() as (emulator, echo):
            idle = HttpClient(await emulator.connect_rest_in_memory())
            await idle.request("GET", "/api/v1/order")
            busy = await emulator.connect_rest_in_memory()
            # Half a request: the head promises a body that never comes.
            await busy.send_all(
                b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc"
            )
            await trio.testing.wait_all_tasks_blocked()
            assert emulator.drop_rest_connections() == 2
            assert await read_to_eof(idle.stream) == b""
            assert await read_to_eof(busy) == b""
            await trio.testing.wait_all_tasks_blocked()
            assert emulator.rest_connections == []
            details = sorted(r.detail for r in emulator.fault_log)
            assert details == ["#0 idle", "#1 request in flight"]
            assert emulator.fault_counts()[FaultKind.REST_DROP] == 2
            assert len(echo.seen) == 1
            # The emulator still serves new connections.
            again = HttpClient(await emulator.connect_rest_in_memory())
            assert (await again.request("GET", "/api/v1/order")).status == 200
            await trio.aclose_forcefully(again.stream)


async def test_websocket_and_rest_over_tcp() -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_with_echo(listen=True) as (emulator, echo):
            assert emulator.rest_url == emulator.url.replace("ws://", "http://").replace(
                "/realtime", "/api/v1"
            )
            async with open_websocket_url(emulator.url) as ws:
                assert "Welcome" in await ws.get_message()
                assert emulator.port is not None
                async with await trio.open_tcp_stream("127.0.0.1", emulator.port) as stream:
                    client = HttpClient(stream)
                    for _ in range(3):
                        assert (await client.request("GET", "/api/v1/instrument")).status == 200
                    assert [http.requests for http in emulator.rest_connections] == [3]
                    assert echo.clients == ["127.0.0.1"] * 3  # per-address limits need it


def test_rest_url_needs_a_listener() -> None:
    async def main() -> None:
        async with open_emulator(listen=False, max_events=0) as emulator:
            with pytest.raises(RuntimeError, match="listen=False"):
                _ = emulator.rest_url

    trio.run(main)
