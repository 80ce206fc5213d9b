"""The feeder's direct hand-out (``Router.direct``): a table's only listener gets its changes
without ``offer_changes``; listeners coming, leaving, filling up or dropping still see exactly
the rows they should, in order."""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path

import orjson
import trio
import trio.lowlevel

from bitmex_trio_websocket import BitMEXReplay, open_bitmex_replay
from bitmex_trio_websocket._routing import Listener, Router

from .helpers import write_slices

TRADES = 1200  # several checkpoint runs (CHECKPOINT_EVERY frames each)


def trade_frames(count: int) -> list[tuple[float, str]]:
    partial = {"table": "trade", "action": "partial", "keys": [], "filter": {}, "data": []}
    frames = [(1_600_000_000.0, orjson.dumps(partial).decode())]
    for n in range(count):
        symbol = "XBTUSD" if n % 3 else "ETHUSD"
        row = {"symbol": symbol, "side": "Buy", "size": n + 1, "price": 100.5, "trdMatchID": str(n)}
        message = {"table": "trade", "action": "insert", "data": [row]}
        frames.append((1_600_000_000.0 + (n + 1) / 1000, orjson.dumps(message).decode()))
    return frames


def test_direct_names_a_tables_only_whole_table_listener() -> None:
    router = Router()
    wide = Listener(("trade", None), 4, "block", False)
    router.add(wide)
    assert router.direct == {"trade": wide}
    second = Listener(("trade", None), 4, "block", False)
    router.add(second)
    assert router.direct == {"trade": None}  # two listeners: offer_changes keeps their order
    router.remove(second)
    narrow = Listener(("trade", "XBTUSD"), 4, "block", False)
    router.add(narrow)
    assert router.direct == {"trade": None}  # a symbol listener too
    router.remove(narrow)
    router.remove(wide)
    assert router.direct == {}


async def take(bws: BitMEXReplay, out: list[int], *, buffer: int | None = None) -> None:
    async with aclosing(bws.listen("trade", buffer=buffer)) as rows:
        async for row in rows:
            out.append(row["size"])


async def test_a_full_block_listener_on_the_direct_route_gets_every_row_in_order(
    tmp_path: Path,
) -> None:
    path = write_slices(tmp_path / "trades.txt", trade_frames(TRADES))
    got: list[int] = []
    with trio.fail_after(20):
        async with open_bitmex_replay(path) as bws:
            # buffer=1: the queue is full after almost every frame, so the feeder waits for it.
            await take(bws, got, buffer=1)
    assert got == list(range(1, TRADES + 1))


async def test_a_drop_listener_on_the_direct_route_loses_and_counts_only_what_did_not_fit(
    tmp_path: Path,
) -> None:
    path = write_slices(tmp_path / "trades.txt", trade_frames(TRADES))
    got: list[int] = []
    dropped = 0
    with trio.fail_after(20):
        async with open_bitmex_replay(path) as bws:
            # The table's only listener, so on the direct route until its queue is full.
            async with aclosing(bws.listen("trade", buffer=2, overflow="drop")) as rows:
                async for row in rows:
                    got.append(row["size"])
                    for _, _, count in bws.listener_stats():  # (unregistered at the end)
                        dropped = count
                    await trio.lowlevel.checkpoint()
    assert got == sorted(got) and 0 < len(got) < TRADES  # in order, some lost, never blocking
    assert 0 < dropped <= TRADES - len(got)  # what it missed was counted as dropped


async def test_listeners_joining_and_leaving_mid_replay_see_exactly_their_rows(
    tmp_path: Path,
) -> None:
    path = write_slices(tmp_path / "trades.txt", trade_frames(TRADES))
    first: list[int] = []
    late: list[int] = []
    narrow: list[int] = []
    under_way, further = trio.Event(), trio.Event()
    with trio.fail_after(20):
        async with open_bitmex_replay(path) as bws:

            async def take_all() -> None:
                async with aclosing(bws.listen("trade")) as rows:
                    async for row in rows:
                        first.append(row["size"])
                        if len(first) == 300:
                            under_way.set()
                        elif len(first) == 600:
                            further.set()

            async def join_late() -> None:
                # Joins once the replay is under way (the direct route gives way to the
                # general one), leaves after 100 rows (it comes back).
                await under_way.wait()
                async with aclosing(bws.listen("trade")) as rows:
                    async for row in rows:
                        late.append(row["size"])
                        if len(late) == 100:
                            break

            async def one_symbol() -> None:
                await further.wait()
                async with aclosing(bws.listen("trade", "ETHUSD")) as rows:
                    async for row in rows:
                        narrow.append(row["size"])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(take_all)
                nursery.start_soon(join_late)
                nursery.start_soon(one_symbol)
    assert first == list(range(1, TRADES + 1))  # the first listener saw everything, once
    # A late trade listener gets the stored state first (trades: none kept), then the rest
    # consecutively from where it joined.
    assert len(late) == 100 and late == list(range(late[0], late[0] + 100))
    assert narrow and narrow == list(range(narrow[0], TRADES + 1, 3))
