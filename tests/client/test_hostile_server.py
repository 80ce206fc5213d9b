"""Hostile servers: the client copes (as documented) or fails with a typed error, never hangs.

Every test runs under ``trio.fail_after``; timers run on the virtual clock; memory is measured with
``tracemalloc`` peaks. Servers are the scripted server (over memory streams, or lockstep streams
when the test needs TCP-like pushback), its raw sibling ``RawServer`` (hand-made frames below the
level a websocket library allows), or the emulator's fault hooks.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
import trio.testing
import trio_websocket

from bitmex_trio_websocket import (
    AuthenticationError,
    BitMEXWebsocket,
    Change,
    ConnectionClosed,
    ConnectionTimeout,
    Disconnected,
    Reconnected,
    RemoteProtocolError,
    Resyncing,
    open_bitmex_websocket,
)
from bitmex_trio_websocket import _protocol as proto
from bitmex_trio_websocket.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, open_emulator

from ..support.scripted_server import (
    API_KEY,
    API_SECRET,
    RawConnection,
    RawServer,
    ScriptedServer,
    l2_row,
)

URL = "ws://bitmex.test/realtime"
MIB = 1024 * 1024
WELCOME = proto.encode_welcome("2025-01-01T00:00:00.000Z", limit_remaining=719)
TRADE_KEYS = {"trade": [], "orderBookL2": ["symbol", "id", "side"]}


def trade(i: int) -> dict[str, Any]:
    return {
        "table": "trade",
        "action": "insert",
        "data": [{"symbol": "XBTUSD", "side": "Buy", "size": i, "price": 1.0}],
    }


async def next_of(events: AsyncIterator[Any], kind: type) -> Any:
    async for item in events:
        if isinstance(item, kind):
            return item
    raise AssertionError(f"events ended before a {kind.__name__}")


async def next_partial(events: AsyncIterator[Any]) -> Change:
    while True:
        item: Change = await next_of(events, Change)
        if item.action == "partial":
            return item


@asynccontextmanager
async def scripted(
    server_cls: type[ScriptedServer] = ScriptedServer,
    server_options: dict[str, Any] | None = None,
    **client: Any,
) -> AsyncIterator[tuple[ScriptedServer, BitMEXWebsocket]]:
    async with trio.open_nursery() as nursery:
        server = server_cls(nursery, keys=TRADE_KEYS, **(server_options or {}))
        async with open_bitmex_websocket(URL, connect=server.connect, **client) as bws:
            yield server, bws
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- garbage frames

GARBAGE: list[str | bytes] = [
    "not json",
    "{",
    "[]",
    "null",
    '"pong "',
    "NaN",
    "[" * 1025 + "]" * 1025,
    '{"table":"trade","action":"upsert","data":[]}',
    '{"table":"trade","action":"insert","data":{}}',
    '{"info":7}',
    b"\xff\xfe\x00garbage",  # a binary frame that is not UTF-8
    b"",
]


@pytest.mark.parametrize("frame", GARBAGE, ids=lambda f: repr(f)[:30])
async def test_garbage_frame_resyncs_every_topic_and_the_client_lives_on(
    autojump_clock: trio.abc.Clock, frame: str | bytes
) -> None:
    with trio.fail_after(60):
        async with scripted() as (server, bws):
            async with aclosing(bws.events("trade")) as events:
                await next_partial(events)
                await server.connections[-1].send_message(frame)
                assert await next_of(events, Resyncing) == Resyncing(
                    "trade", None, "undecodable frame"
                )
                await next_partial(events)
                await server.push(trade(7))
                change = await next_of(events, Change)
                assert [row["size"] for row in change.rows] == [7]
            assert bws.stats.protocol_errors == 1
            assert bws.stats.reconnects == 0


async def test_table_message_the_store_rejects_resyncs_that_table_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(60):
        async with scripted() as (server, bws):
            async with (
                aclosing(bws.events("trade")) as trades,
                aclosing(bws.events("orderBookL2")) as book,
            ):
                await next_partial(trades)
                await next_partial(book)
                await server.push({"table": "trade", "action": "insert", "data": [5, "x"]})
                assert await next_of(trades, Resyncing) == Resyncing("trade", None, "bad message")
                await next_partial(trades)
                await server.push(trade(1))
                assert (await next_of(trades, Change)).rows[0]["size"] == 1
            assert (bws.stats.protocol_errors, bws.stats.resyncs) == (1, 1)


async def test_emulator_malformed_and_raw_frames_are_ridden_through(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(120):
        async with open_emulator(seed=3, listen=False, rate=20) as emulator:
            async with open_bitmex_websocket(URL, connect=emulator.connect_in_memory) as bws:
                async with aclosing(bws.events("instrument")) as events:
                    await next_partial(events)
                    connection = await emulator.wait_connection(0)
                    connection.send_malformed_frame()
                    connection.send_raw('{"table":"instrument","action":"update","data":[[]]}')
                    connection.send_raw("\u0000" * 1000)
                    # One resync covers all three: the topic is already being re-fetched.
                    await next_of(events, Resyncing)
                    await next_partial(events)
                    assert isinstance(await next_of(events, Change), Change)
                assert bws.stats.protocol_errors == 3
                assert bws.stats.reconnects == 0


async def test_binary_frame_carrying_json_is_decoded_like_text(
    autojump_clock: trio.abc.Clock,
) -> None:
    # BitMEX only sends text; a JSON binary frame is accepted as the same message (documented
    # in _protocol: decode_server_frame takes str or bytes).
    with trio.fail_after(60):
        async with scripted() as (server, bws):
            async with aclosing(bws.events("trade")) as events:
                await next_partial(events)
                await server.connections[-1].send_message(orjson.dumps(trade(3)))
                await server.push(trade(4))
                assert [(await next_of(events, Change)).rows[0]["size"] for _ in range(2)] == [3, 4]
            assert bws.stats.protocol_errors == 0


# --------------------------------------------------------------------------- huge frames


async def test_frame_just_under_the_64_mib_default_is_accepted(
    autojump_clock: trio.abc.Clock,
) -> None:
    # One frame a byte short of the default limit (the 2021 library died at 1 MiB).
    head = '{"table":"trade","action":"insert","data":[{"symbol":"XBTUSD","size":1,"note":"'
    tail = '"}]}'
    size = 64 * MIB - 1
    with trio.fail_after(60):
        async with scripted() as (server, bws):
            async with aclosing(bws.events("trade")) as events:
                await next_partial(events)
                await server.connections[-1].send_message(
                    head + "x" * (size - len(head) - len(tail)) + tail
                )
                change = await next_of(events, Change)
                assert len(change.rows[0]["note"]) == size - len(head) - len(tail)
                del change
            assert bws.stats.bytes >= size
            assert bws.stats.reconnects == 0
            bws.storage.reset("trade")


async def _huge_frame_script(connection: RawConnection, index: int) -> None:
    """Welcome, then (first connection only) a 64 MiB text frame streamed in 64 KiB chunks."""
    await connection.send_text(WELCOME)
    if index == 0:
        await connection.send_header(64 * MIB)
        chunk = b"x" * 65536
        for _ in range(64 * 16):
            await connection.send_payload(chunk)


@pytest.mark.parametrize("reconnect", [True, False])
async def test_64_mib_frame_over_a_1_mib_limit_closes_1009_in_bounded_memory(
    autojump_clock: trio.abc.Clock, reconnect: bool
) -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            server = RawServer(nursery, _huge_frame_script)
            tracemalloc.start()
            try:
                async with open_bitmex_websocket(
                    URL, connect=server.connect, max_message_size=MIB, reconnect=reconnect
                ) as bws:
                    async with aclosing(bws.events("trade")) as events:
                        if reconnect:
                            lost = await next_of(events, Disconnected)
                            assert lost.code == 1009
                            await next_of(events, Reconnected)
                        else:
                            with pytest.raises(ConnectionClosed) as info:
                                await next_of(events, Change)
                            reason = info.value.reason
                            assert reason is not None and reason.code == 1009
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            # The client stopped reading at the limit: never near the 64 MiB announced.
            assert peak < 4 * MIB, peak
            assert bws.stats.connects == (2 if reconnect else 1)
            nursery.cancel_scope.cancel()


async def test_partial_of_100k_rows(autojump_clock: trio.abc.Clock) -> None:
    rows = [
        l2_row(i, "Buy" if i % 2 else "Sell", 1 + i % 50, 50_000.0 + (i if i % 2 == 0 else -i))
        for i in range(100_000)
    ]
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, partials={"orderBookL2:XBTUSD": rows}, keys=TRADE_KEYS)
            async with open_bitmex_websocket(URL, connect=server.connect) as bws:
                async with aclosing(bws.events("orderBookL2", "XBTUSD")) as events:
                    partial = await next_partial(events)
                    assert len(partial.rows) == 100_000
                book = bws.storage.book("XBTUSD")
                assert (len(book.bids), len(book.asks)) == (50_000, 50_000)
                assert book.best_bid == (49_999.0, 2) and book.best_ask == (50_000.0, 1)
                bids = book.bids[:1000]
                assert bids == sorted(bids, reverse=True)
            nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- floods


async def test_endless_stream_is_pushed_back_in_bounded_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    sent = 0
    with trio.fail_after(600):
        async with scripted(server_options={"lockstep": True}, buffer=16) as (server, bws):
            async with aclosing(bws.events("trade")) as events:
                await next_partial(events)

                async def flood() -> None:
                    nonlocal sent
                    # The server side: trio-websocket's own class.
                    with contextlib.suppress(trio_websocket.ConnectionClosed):
                        while True:
                            await server.push(trade(sent))
                            sent += 1

                server.nursery.start_soon(flood)
                sizes: list[int] = []
                while len(sizes) < 100:
                    sizes += [row["size"] for row in (await next_of(events, Change)).rows]
                # Stop reading for a long while: the server must be pushed back, and the
                # heartbeat must not take the backpressure for a dead peer.
                tracemalloc.start()
                try:
                    await trio.sleep(120)
                    await trio.testing.wait_all_tasks_blocked()
                    backlog = sent - len(sizes)
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                assert backlog <= 16 + 8, backlog  # listener buffer + a few frames in flight
                assert peak < MIB, peak
                assert bws.stats.connects == 1
                while len(sizes) < 1000:
                    sizes += [row["size"] for row in (await next_of(events, Change)).rows]
                assert sizes[:1000] == list(range(1000))  # lossless and in order


async def test_endless_stream_with_a_dropping_listener_stays_bounded(
    autojump_clock: trio.abc.Clock,
) -> None:
    frames = 1200
    with trio.fail_after(600):
        async with scripted() as (server, bws):
            async with aclosing(bws.events("trade", buffer=8, overflow="drop")) as events:
                await next_partial(events)
                tracemalloc.start()
                try:
                    for i in range(frames):  # nobody reads the listener meanwhile
                        await server.push(trade(i))
                    await trio.testing.wait_all_tasks_blocked()
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                assert bws.listener_stats() == [("trade", 8, frames - 8)]
                assert len(bws.storage.data["trade"]) == 1000  # the keyless table cap
                assert peak < 2 * MIB, peak
                received = [(await next_of(events, Change)).rows[0]["size"] for _ in range(8)]
                assert received == list(range(8))


# --------------------------------------------------------------------------- silent servers


async def _silent(connection: RawConnection, index: int) -> None:
    pass


async def _data_first(connection: RawConnection, index: int) -> None:
    await connection.send_text(orjson.dumps(trade(1)).decode())


async def test_server_that_never_sends_the_welcome_times_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = RawServer(nursery, _silent)
            started = trio.current_time()
            with pytest.raises(ConnectionTimeout, match="welcome"):
                async with open_bitmex_websocket(URL, connect=server.connect, timeout=7):
                    pass
            assert trio.current_time() - started == pytest.approx(7, abs=0.5)
            nursery.cancel_scope.cancel()


async def test_black_hole_that_never_sends_the_welcome_times_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Closing the failed socket used to wait forever for the peer's close frame (issue 8).
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = RawServer(nursery, _silent, answer_close=False)
            with pytest.raises(ConnectionTimeout, match="welcome"):
                async with open_bitmex_websocket(URL, connect=server.connect, timeout=7):
                    pass
            nursery.cancel_scope.cancel()


async def test_server_that_sends_data_before_the_welcome_is_a_protocol_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = RawServer(nursery, _data_first)
            with pytest.raises(RemoteProtocolError, match="welcome"):
                async with open_bitmex_websocket(URL, connect=server.connect):
                    pass
            nursery.cancel_scope.cancel()


async def _trickle(connection: RawConnection, index: int) -> None:
    """Welcome, then a frame that never finishes: one byte every two seconds."""
    await connection.send_text(WELCOME)
    if index == 0:
        await connection.send_header(1000)
        for _ in range(1000):
            await trio.sleep(2)
            await connection.send_payload(b" ")


async def test_a_frame_that_never_finishes_is_caught_by_the_heartbeat(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            server = RawServer(nursery, _trickle)
            async with open_bitmex_websocket(
                URL, connect=server.connect, heartbeat_interval=5, heartbeat_timeout=5
            ) as bws:
                started = trio.current_time()
                async with aclosing(bws.events("trade")) as events:
                    lost = await next_of(events, Disconnected)
                    assert lost.code == 1006
                    assert trio.current_time() - started <= 11
                    await next_of(events, Reconnected)
            nursery.cancel_scope.cancel()


class StallsAfterSubscribeServer(ScriptedServer):
    """First connection: no ack, one more frame a second later, then total silence (no pongs
    either). Later connections behave."""

    async def _answer(self, ws: Any, cmd: proto.ClientCommand) -> None:
        if len(self.connections) == 1 and isinstance(cmd, proto.Subscribe):
            await trio.sleep(1)
            await ws.send_message(proto.encode_table("trade", "insert", [trade_row(1)]))
            self.answer_pings = False
            return
        if len(self.connections) > 1:
            self.answer_pings = True
        await super()._answer(ws, cmd)


def trade_row(size: int) -> dict[str, Any]:
    return {"symbol": "XBTUSD", "side": "Buy", "size": size, "price": 1.0, "timestamp": "x"}


async def test_a_server_falling_silent_after_a_subscribe_is_a_reconnect_not_a_refusal(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The ack watchdog used to fail the listener at subscribe + timeout whenever any frame had
    # arrived since the subscribe, racing the heartbeat: a stall right after one more frame
    # then cost the subscription instead of a reconnect. It now asks for a pong first.
    with trio.fail_after(300):
        async with scripted(StallsAfterSubscribeServer, timeout=10) as (_, bws):
            async with aclosing(bws.events("trade")) as events:
                lost = await next_of(events, Disconnected)
                assert lost.reason == "heartbeat timeout"
                await next_of(events, Reconnected)
                partial = await next_of(events, Change)
                assert partial.action == "partial"
            assert bws.stats.reconnects == 1


async def test_server_that_never_acks_subscriptions_fails_the_listener(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Used to wait forever: heartbeats kept the connection alive (issue 8).
    with trio.fail_after(300):
        async with scripted(server_options={"ignore_commands": {"subscribe"}}, timeout=10) as (
            server,
            bws,
        ):
            started = trio.current_time()
            with pytest.raises(ConnectionTimeout, match="acknowledge"):
                async with aclosing(bws.listen("trade")) as rows:
                    async for _ in rows:
                        pass
            assert trio.current_time() - started <= 2 * 10
            # The failure is that listener's alone: the connection lives on.
            await trio.sleep(30)
            assert bws.stats.connected and bws.stats.reconnects == 0
            assert len(server.commands("ping")) >= 3


# --------------------------------------------------------------------------- authentication


async def test_server_that_refuses_every_auth_fails_at_once(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery)
            started = trio.current_time()
            with pytest.raises(AuthenticationError) as info:
                async with open_bitmex_websocket(URL, API_KEY, "wrong", connect=server.connect):
                    pass
            assert info.value.status == 401
            assert trio.current_time() - started < 1
            nursery.cancel_scope.cancel()


async def test_auth_refused_on_every_reconnect_gives_up_with_a_typed_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(600):
        async with open_emulator(seed=5, listen=False, rate=5) as emulator:
            started = trio.current_time()
            with pytest.raises(AuthenticationError):
                async with open_bitmex_websocket(
                    URL,
                    DEFAULT_API_KEY,
                    DEFAULT_API_SECRET,
                    connect=emulator.connect_in_memory,
                    backoff_max=8,
                ) as bws:
                    async with aclosing(bws.events("order")) as events:
                        await next_partial(events)
                        emulator.fail_next_auth(1000)
                        await (await emulator.wait_connection(0)).drop()
                        async for _ in events:
                            pass
            # At most five refusals, each after a capped backoff.
            assert trio.current_time() - started < 5 * (8 + 10)


# --------------------------------------------------------------------------- found here
# Each of these killed or hung the client when written (issue 8); all fixed since.


async def test_error_reply_with_non_list_args_is_survived(autojump_clock: trio.abc.Clock) -> None:
    # Used to raise TypeError in the reader and kill the client (issue 8).
    with trio.fail_after(60):
        async with scripted() as (server, bws):
            async with aclosing(bws.events("trade")) as events:
                await next_partial(events)
                for args in (5, True, {"trade": 1}, None):
                    await server.push(
                        {"status": 400, "error": "x", "request": {"op": "subscribe", "args": args}}
                    )
                await server.push(trade(2))
                assert (await next_of(events, Change)).rows[0]["size"] == 2
            assert bws.stats.reconnects == 0


async def test_unhashable_action_frame_is_survived(autojump_clock: trio.abc.Clock) -> None:
    # decode_server_frame used to raise TypeError, which killed the client (issue 8).
    with trio.fail_after(60):
        async with scripted() as (server, bws):
            async with aclosing(bws.events("trade")) as events:
                await next_partial(events)
                await server.connections[-1].send_message('{"table":"trade","action":[],"data":[]}')
                await next_of(events, Resyncing)
                await next_partial(events)


async def test_binary_garbage_with_a_frame_hook_is_survived(autojump_clock: trio.abc.Clock) -> None:
    # The hook used to decode binary frames as strict UTF-8 first (UnicodeDecodeError).
    frames: list[tuple[str, str]] = []
    with trio.fail_after(60):
        async with scripted(frame_hook=lambda way, frame: frames.append((way, frame))) as (
            server,
            bws,
        ):
            async with aclosing(bws.events("trade")) as events:
                await next_partial(events)
                await server.connections[-1].send_message(b"\xff\xfe garbage")
                await next_of(events, Resyncing)
                await next_partial(events)


async def test_deeply_nested_row_is_survived(autojump_clock: trio.abc.Clock) -> None:
    # orjson decodes 1000-deep nesting; the store must refuse it with its typed error.
    with trio.fail_after(60):
        async with scripted() as (server, bws):
            async with aclosing(bws.events("trade")) as events:
                await next_partial(events)
                await server.connections[-1].send_message(
                    '{"table":"trade","action":"insert","data":[' + "[" * 1000 + "]" * 1000 + "]}"
                )
                assert await next_of(events, Resyncing) == Resyncing("trade", None, "bad message")
                await next_partial(events)


class EchoingServer(ScriptedServer):
    """Answers auth and cancelAllAfter three times, and sends replies nobody asked for."""

    async def _answer(self, ws: Any, cmd: proto.ClientCommand) -> None:
        await super()._answer(ws, cmd)
        if isinstance(cmd, proto.AuthKeyExpires | proto.CancelAllAfter):
            for _ in range(2):
                await super()._answer(ws, cmd)
            await ws.send_message(proto.encode_auth_ack({"op": "authKeyExpires", "args": []}))
            await ws.send_message(proto.encode_cancel_all_after_ack("x", 0, {}))
            await ws.send_message(proto.encode_unsubscribe_ack("never-subscribed", {}))


async def test_duplicated_and_unsolicited_replies_are_ignored(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            server = EchoingServer(nursery, keys=TRADE_KEYS)
            async with open_bitmex_websocket(
                URL, API_KEY, API_SECRET, dead_mans_switch=True, connect=server.connect
            ) as bws:
                async with aclosing(bws.events("trade")) as events:
                    await next_partial(events)
                    await trio.sleep(50)  # three dead man's switch refreshes, each echoed
                    await server.push(trade(9))
                    assert (await next_of(events, Change)).rows[0]["size"] == 9
                assert (bws.stats.reconnects, bws.stats.protocol_errors) == (0, 0)
            nursery.cancel_scope.cancel()
