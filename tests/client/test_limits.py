"""Every limit the client has, and what happens at it: message size, listener buffers, table caps.

Limits (README, "Client example" options and "Storage"):

* ``max_message_size`` (default 64 MiB): a bigger frame closes the socket with 1009; the client
  then reconnects (or, with ``reconnect=False``, listeners raise ``ConnectionClosed``).
* ``buffer`` (default 256 per listener, ``listen(buffer=...)`` per listener): ``overflow="block"``
  makes the reader wait (memory stays bounded, nothing is lost), ``"drop"`` drops and counts.
* ``Storage(max_table_len=1000, table_limits={...})``: keyless tables are ring buffers; keyed
  tables and books are never trimmed (BitMEX deletes their rows itself).
"""

from __future__ import annotations

import inspect
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from bitmex_trio_websocket import (
    BitMEXWebsocket,
    Change,
    ConnectionClosed,
    Disconnected,
    Reconnected,
    Resyncing,
    Storage,
    open_bitmex_websocket,
)
from bitmex_trio_websocket._client import DEFAULT_BUFFER, DEFAULT_MAX_MESSAGE_SIZE
from stress.soak import run_soak

from ..support.scripted_server import ScriptedServer, l2_row

URL = "ws://bitmex.test/realtime"
KEYS = {"trade": [], "orderBookL2": ["symbol", "id", "side"], "instrument": ["symbol"]}
README = Path(__file__).resolve().parents[2] / "README.md"


def trade(i: int, **extra: Any) -> dict[str, Any]:
    row = {"symbol": "XBTUSD", "side": "Buy", "size": i, "price": 1.0, **extra}
    return {"table": "trade", "action": "insert", "data": [row]}


def padded_trade(length: int) -> str:
    """A trade insert frame of exactly ``length`` characters."""
    bare = orjson.dumps(trade(1, note="")).decode()
    frame = orjson.dumps(trade(1, note="x" * (length - len(bare)))).decode()
    assert len(frame) == length
    return frame


async def next_change(events: AsyncIterator[Any], action: str | None = None) -> Change:
    async for item in events:
        if isinstance(item, Change) and action in (None, item.action):
            return item
    raise AssertionError("events ended")


@asynccontextmanager
async def scripted(
    partials: dict[str, list[dict[str, Any]]] | None = None, **client: Any
) -> AsyncIterator[tuple[ScriptedServer, BitMEXWebsocket]]:
    async with trio.open_nursery() as nursery:
        server = ScriptedServer(nursery, partials=partials or {}, keys=KEYS)
        async with open_bitmex_websocket(URL, connect=server.connect, **client) as bws:
            yield server, bws
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- message size


def test_default_message_size_is_64_mib_and_documented() -> None:
    default = inspect.signature(open_bitmex_websocket).parameters["max_message_size"].default
    assert default == DEFAULT_MAX_MESSAGE_SIZE == 64 * 1024 * 1024
    assert "`max_message_size` (64 MiB)" in README.read_text()
    assert inspect.signature(open_bitmex_websocket).parameters["buffer"].default == DEFAULT_BUFFER
    assert f"`buffer` ({DEFAULT_BUFFER} items per listener)" in README.read_text()


async def test_multi_symbol_partial_over_1_mib_passes_with_defaults(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The 2021 library closed the socket on any message over trio-websocket's 1 MiB default.
    rows = [
        l2_row(n, "Buy" if n % 2 else "Sell", 100, 1000.0 + (n if n % 2 == 0 else -n), symbol)
        for symbol in ("XBTUSD", "ETHUSD", "SOLUSD")
        for n in range(10_000)
    ]
    assert len(orjson.dumps(rows)) > 1.5 * 1024 * 1024
    with trio.fail_after(60):
        async with scripted({"orderBookL2": rows}) as (_, bws):
            async with aclosing(bws.events("orderBookL2")) as events:
                changes = [await next_change(events, "partial") for _ in range(3)]
            assert sorted(str(change.symbol) for change in changes) == [
                "ETHUSD",
                "SOLUSD",
                "XBTUSD",
            ]
            assert sum(len(change.rows) for change in changes) == 30_000
            assert bws.stats.reconnects == 0
            assert len(bws.storage.book("SOLUSD").asks) == 5000


@pytest.mark.parametrize("over", [0, 1])
async def test_configured_message_size_is_inclusive_then_1009(
    autojump_clock: trio.abc.Clock, over: int
) -> None:
    limit = 64 * 1024
    with trio.fail_after(60):
        async with scripted(max_message_size=limit, reconnect=False) as (server, bws):
            async with aclosing(bws.events("trade")) as events:
                await next_change(events, "partial")
                await server.connections[-1].send_message(padded_trade(limit + over))
                if over:
                    with pytest.raises(ConnectionClosed) as info:
                        await next_change(events)
                    reason = info.value.reason
                    assert reason is not None and reason.code == 1009
                else:
                    change = await next_change(events, "insert")
                    assert len(change.rows[0]["note"]) > limit - 200


async def test_oversized_message_reconnects_and_resumes(autojump_clock: trio.abc.Clock) -> None:
    limit = 64 * 1024
    with trio.fail_after(60):
        async with scripted(max_message_size=limit) as (server, bws):
            async with aclosing(bws.events("trade")) as events:
                await next_change(events, "partial")
                await server.connections[-1].send_message(padded_trade(limit + 1))
                lost = next_event = None
                async for item in events:
                    if isinstance(item, Disconnected):
                        lost = item
                    if isinstance(item, Reconnected):
                        next_event = item
                        break
                assert lost is not None and lost.code == 1009 and next_event is not None
                await next_change(events, "partial")
                await server.push(trade(5))
                assert (await next_change(events, "insert")).rows[0]["size"] == 5
            assert bws.stats.reconnects == 1


async def test_a_frame_of_tiny_rows_is_refused_before_decoding(
    autojump_clock: trio.abc.Clock,
) -> None:
    # max_message_size bounds bytes, not rows: "{}," is 3 bytes of frame but a dict and a
    # stored row. Decoded, a 64 MiB frame of them would take gigabytes.
    limit = 128 * 1024
    rows = (limit - 100) // 3
    frame = '{"table":"trade","action":"insert","data":[' + ",".join(["{}"] * rows) + "]}"
    with trio.fail_after(60):
        async with scripted(max_message_size=limit) as (server, bws):
            async with aclosing(bws.events("trade")) as events:
                await next_change(events, "partial")
                tracemalloc.start()
                try:
                    await server.connections[-1].send_message(frame)
                    async for item in events:
                        assert not isinstance(item, Change), item.action
                        if isinstance(item, Resyncing):
                            break
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                # Refused as a protocol error: the topic is fetched again, the store intact.
                assert (await next_change(events)).action == "partial"
            assert bws.stats.protocol_errors == 1 and bws.stats.reconnects == 0
    # Server and client each hold the frame a couple of times; decoded it would be ~65 times.
    assert peak < 8 * limit, f"{peak / limit:.1f} times the frame"


# --------------------------------------------------------------------------- listener buffers


async def test_connection_buffer_is_every_listeners_default(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        async with scripted(buffer=5) as (server, bws):
            async with (
                aclosing(bws.events("trade", overflow="drop")) as default,
                aclosing(bws.events("trade", buffer=2, overflow="drop")) as small,
            ):
                await next_change(default, "partial")
                await next_change(small, "partial")
                for i in range(50):
                    await server.push(trade(i))
                await trio.sleep(1)
                assert sorted(bws.listener_stats()) == [("trade", 2, 48), ("trade", 5, 45)]
                # The oldest items are the ones kept; nothing was lost by the store.
                assert (await next_change(small)).rows[0]["size"] == 0
                assert len(bws.storage.data["trade"]) == 50


async def test_blocking_listener_bounds_what_the_reader_takes(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(300):
        async with scripted() as (server, bws):
            async with aclosing(bws.events("trade", buffer=3)) as events:
                await next_change(events, "partial")
                before = bws.stats.messages
                for i in range(100):
                    await server.push(trade(i))
                await trio.testing.wait_all_tasks_blocked()
                await trio.sleep(60)  # also: the heartbeat does not mistake this for silence
                taken = bws.stats.messages - before
                assert taken <= 3 + 3, taken  # the buffer, one in delivery, one in the socket
                assert bws.listener_stats() == [("trade", 3, 0)]
                sizes = [(await next_change(events)).rows[0]["size"] for _ in range(100)]
                assert sizes == list(range(100))
            assert bws.stats.reconnects == 0


@pytest.mark.parametrize("buffer", [-1, 1.5])
async def test_invalid_buffer_is_refused(autojump_clock: trio.abc.Clock, buffer: Any) -> None:
    with trio.fail_after(60):
        async with scripted() as (_, bws):
            with pytest.raises((ValueError, TypeError)):
                async with aclosing(bws.events("trade", buffer=buffer)) as events:
                    await events.__anext__()
            with pytest.raises(ValueError):
                async with aclosing(bws.events("trade", overflow="spill")) as events:  # type: ignore[arg-type]
                    await events.__anext__()


# --------------------------------------------------------------------------- table caps


async def test_keyless_table_cap_through_the_client(autojump_clock: trio.abc.Clock) -> None:
    storage = Storage(max_table_len=20)
    with trio.fail_after(60):
        async with scripted(storage=storage) as (server, bws):
            assert bws.storage is storage
            async with aclosing(bws.events("trade")) as events:
                await next_change(events, "partial")
                for i in range(100):
                    await server.push(trade(i))
                for _ in range(100):
                    await next_change(events, "insert")
            assert [row["size"] for row in storage.rows("trade")] == list(range(80, 100))


def test_per_table_limits_and_untrimmed_keyed_tables() -> None:
    storage = Storage(max_table_len=10, table_limits={"trade": 3})
    for table in ("trade", "quote"):
        storage.apply({"table": table, "action": "partial", "keys": [], "data": []})
        storage.apply(
            {
                "table": table,
                "action": "insert",
                "data": [{"symbol": "XBTUSD", "n": n} for n in range(50)],
            }
        )
    assert [row["n"] for row in storage.rows("trade")] == [47, 48, 49]
    assert [row["n"] for row in storage.rows("quote")] == list(range(40, 50))
    # Keyed tables and books are not trimmed: BitMEX deletes their rows itself.
    storage.apply(
        {
            "table": "instrument",
            "action": "partial",
            "keys": ["symbol"],
            "data": [{"symbol": f"S{n}"} for n in range(500)],
        }
    )
    storage.apply(
        {
            "table": "orderBookL2",
            "action": "partial",
            "keys": ["symbol", "id", "side"],
            "filter": {"symbol": "XBTUSD"},
            "data": [l2_row(n, "Sell", 1, 100.0 + n) for n in range(500)],
        }
    )
    assert len(storage.data["instrument"]) == 500
    assert len(storage.book("XBTUSD").asks) == 500


@pytest.mark.parametrize(
    "kwargs", [{"max_table_len": 0}, {"table_limits": {"trade": 0}}, {"max_table_len": -5}]
)
def test_table_caps_must_be_positive(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Storage(**kwargs)


# --------------------------------------------------------------------------- soak, small


async def test_soak_script_runs_in_memory(autojump_clock: trio.abc.Clock) -> None:
    # The real soak (python -m stress.soak) traces the heap over wall-clock minutes.
    with trio.fail_after(600):
        report = await run_soak(60, interval=20, rate=5, drop_every=25, in_memory=True, echo=False)
    assert len(report.samples) >= 3 and report.drops == 2
    assert report.samples[-1].messages > 100 and report.samples[-1].reconnects == 2
    assert "messages processed" in report.summary()
