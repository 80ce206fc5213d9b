"""``orderBookL2_25`` and ``orderBook10`` derived from a history that recorded only ``orderBookL2``.

The history is a hand-written XBTUSD book of 30 levels a side (asks 101.0 up, bids 100.0 down,
0.5 apart), then one change a second: inside the top 25, below it, levels leaving and entering
the top 25 and the top 10. A subscriber of each derived table must hold, after every change,
exactly the top 25 (top 10) of the full book.
"""

from __future__ import annotations

from contextlib import aclosing
from pathlib import Path
from random import Random
from typing import Any

import trio
import trio.testing

from bitmex_trio_websocket import Storage, open_bitmex_websocket
from bitmex_trio_websocket.emulator import open_emulator
from bitmex_trio_websocket.emulator.market import Delta
from bitmex_trio_websocket.emulator.market._replayed import ReplayedMarket
from bitmex_trio_websocket.emulator.market._schemas import TABLE_SCHEMAS

from ..replay.helpers import write_slices
from ..support.history_frames import INSTRUMENT, T0, level, msg

BOOK_META = {"keys": ["symbol", "id", "side"], "types": TABLE_SCHEMAS["orderBookL2"].types}
ASKS = [level(1000 + i, "Sell", 100 + i, 101.0 + 0.5 * i) for i in range(30)]
BIDS = [level(2000 + i, "Buy", 200 + i, 100.0 - 0.5 * i) for i in range(30)]
CHANGES = [
    msg("orderBookL2", "update", [level(1000, "Sell", 999, 101.0)]),  # inside both tops
    msg("orderBookL2", "update", [level(2027, "Buy", 5, 86.5)]),  # below the top 25
    msg("orderBookL2", "delete", [level(2000, "Buy", 200, 100.0)]),  # 26th bid enters
    msg("orderBookL2", "insert", [level(2100, "Buy", 7, 100.5)]),  # a new best: 25th leaves
    msg("orderBookL2", "insert", [level(1100, "Sell", 9, 130.0)]),  # deep: nothing derived
    msg("orderBookL2", "delete", [level(1000 + i, "Sell", 0, 101.0 + 0.5 * i) for i in range(5)]),
    msg("orderBookL2", "update", [level(2009, "Buy", 33, 95.5)]),  # 9th bid: top 10 changes
    msg("orderBookL2", "update", [level(2020, "Buy", 44, 90.0)]),  # in the 25, not the 10
]


def frames(*extra: tuple[float, str]) -> list[tuple[float, str]]:
    return [
        (T0, msg("instrument", "partial", [INSTRUMENT], keys=["symbol"], filter={})),
        (T0, msg("orderBookL2", "partial", ASKS + BIDS, **BOOK_META, filter={"symbol": "XBTUSD"})),
        *((T0 + 2 + i, text) for i, text in enumerate(CHANGES)),
        *extra,
    ]


def top(storage: Storage, depth: int) -> tuple[list[Any], list[Any]]:
    book = storage.book("XBTUSD")
    return book.bids[:depth], book.asks[:depth]


def shown(storage: Storage, table: str) -> tuple[list[Any], list[Any]]:
    book = storage.book("XBTUSD", table)
    return book.bids[:], book.asks[:]


def subscriber(venue: ReplayedMarket, table: str) -> Storage:
    """A client's store of ``table``, from the partial the emulator would send now."""
    venue.enable_table(table)
    snap = venue.snapshot(table, "XBTUSD")
    client = Storage()
    partial = {"table": table, "action": "partial", "keys": snap.keys, "types": snap.types,
               "filter": snap.filter, "data": snap.rows}  # fmt: skip
    assert not client.apply(partial).violations
    return client


def apply(client: Storage, deltas: list[Delta], table: str) -> int:
    sent = 0
    for d in deltas:
        if d.table == table:
            message = {"table": table, "action": d.action, "data": d.rows}
            assert not client.apply(message).violations, message
            sent += 1
    return sent


def l2_ids(storage: Storage, table: str) -> set[Any]:
    sides = storage.data[table]["XBTUSD"]
    return {(side, i) for side in ("Buy", "Sell") for i in sides[side]}


def top_ids(storage: Storage) -> set[Any]:
    rows = storage.rows("orderBookL2", "XBTUSD")
    bids = sorted((r for r in rows if r["side"] == "Buy"), key=lambda r: -r["price"])[:25]
    asks = sorted((r for r in rows if r["side"] == "Sell"), key=lambda r: r["price"])[:25]
    return {(r["side"], r["id"]) for r in bids + asks}


def test_a_subscriber_holds_the_top_25_and_top_10_after_every_change(tmp_path: Path) -> None:
    venue = ReplayedMarket(write_slices(tmp_path / "slices.txt", frames()))
    venue.step(T0 + 1)
    l2_25, ten = subscriber(venue, "orderBookL2_25"), subscriber(venue, "orderBook10")
    assert shown(l2_25, "orderBookL2_25") == top(venue.storage, 25)
    assert shown(ten, "orderBook10") == top(venue.storage, 10)
    counts = []
    for i in range(len(CHANGES)):
        deltas = venue.step(T0 + 2 + i)
        counts.append((apply(l2_25, deltas, "orderBookL2_25"), apply(ten, deltas, "orderBook10")))
        assert shown(l2_25, "orderBookL2_25") == top(venue.storage, 25), i
        assert shown(ten, "orderBook10") == top(venue.storage, 10), i
        # The very levels (ids) of the full book, not just its prices and sizes.
        assert l2_ids(l2_25, "orderBookL2_25") == top_ids(venue.storage)
    # Messages per change: (orderBookL2_25, orderBook10); a change below a top sends nothing.
    assert counts == [(1, 1), (0, 0), (2, 1), (2, 1), (0, 0), (2, 1), (1, 1), (1, 0)]


def test_a_random_walk_of_the_book_keeps_the_derived_tables_exact(tmp_path: Path) -> None:
    rng = Random(17)
    live = {(r["side"], r["id"]): r for r in ASKS + BIDS}
    extra: list[tuple[float, str]] = []
    next_id = 5000
    for step in range(300):
        side = rng.choice(("Buy", "Sell"))
        mine = [r for (s, _), r in live.items() if s == side]
        kind = rng.random()
        if kind < 0.3 or len(mine) < 5:
            # A new level at a free price on its side of the spread (asks > 100.5 > bids).
            taken = {r["price"] for r in live.values()}
            prices = [p / 2 for p in (range(202, 280) if side == "Sell" else range(140, 201))]
            price = rng.choice([p for p in prices if p not in taken])
            row = level(next_id, side, rng.randint(1, 500), price)
            next_id += 1
            live[(side, row["id"])] = row
            extra.append((T0 + 20 + step, msg("orderBookL2", "insert", [row])))
        elif kind < 0.6:
            row = rng.choice(mine)
            del live[(side, row["id"])]
            extra.append((T0 + 20 + step, msg("orderBookL2", "delete", [row])))
        else:
            row = {**rng.choice(mine), "size": rng.randint(1, 500)}
            live[(side, row["id"])] = row
            extra.append((T0 + 20 + step, msg("orderBookL2", "update", [row])))
    venue = ReplayedMarket(write_slices(tmp_path / "slices.txt", frames(*extra)))
    venue.step(T0 + 1)
    l2_25, ten = subscriber(venue, "orderBookL2_25"), subscriber(venue, "orderBook10")
    sent = 0
    for t, _ in frames(*extra)[2:]:
        deltas = venue.step(t)
        sent += apply(l2_25, deltas, "orderBookL2_25") + apply(ten, deltas, "orderBook10")
        assert shown(l2_25, "orderBookL2_25") == top(venue.storage, 25)
        assert shown(ten, "orderBook10") == top(venue.storage, 10)
    assert sent > 100


def test_a_recorded_table_is_sent_as_recorded_and_takes_over_from_the_derived(
    tmp_path: Path,
) -> None:
    # The recorder subscribed orderBookL2_25 late: until its partial the table is derived,
    # then the recorded one (here deliberately two levels) replaces it.
    recorded = [level(1000, "Sell", 1, 101.0), level(2000, "Buy", 2, 100.0)]
    late = (T0 + 30, msg("orderBookL2_25", "partial", recorded, **BOOK_META,
                         filter={"symbol": "XBTUSD"}))  # fmt: skip
    after = (T0 + 31, msg("orderBookL2_25", "update", [level(1000, "Sell", 3, 101.0)]))
    deep = (T0 + 32, msg("orderBookL2", "update", [level(2001, "Buy", 77, 99.5)]))
    venue = ReplayedMarket(write_slices(tmp_path / "slices.txt", frames(late, after, deep)))
    venue.step(T0 + 1)
    client = subscriber(venue, "orderBookL2_25")
    apply(client, venue.step(T0 + 29), "orderBookL2_25")
    assert shown(client, "orderBookL2_25") == top(venue.storage, 25)
    apply(client, venue.step(T0 + 30), "orderBookL2_25")
    assert shown(client, "orderBookL2_25") == ([(100.0, 2)], [(101.0, 1)])
    apply(client, venue.step(T0 + 31), "orderBookL2_25")
    assert apply(client, venue.step(T0 + 32), "orderBookL2_25") == 0  # no longer derived
    assert shown(client, "orderBookL2_25") == ([(100.0, 2)], [(101.0, 3)])
    assert venue.snapshot("orderBookL2_25", "XBTUSD").rows == client.rows(
        "orderBookL2_25", "XBTUSD"
    )


async def test_our_client_over_the_emulator_sees_the_derived_tables(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    source = write_slices(tmp_path / "slices.txt", frames())
    seen: dict[str, dict[float, tuple[list[Any], list[Any]]]] = {}
    with trio.fail_after(60):
        async with (
            open_emulator(listen=False, history=source, speed=1.0) as emulator,
            open_bitmex_websocket(
                "ws://emulator/realtime", connect=emulator.connect_in_memory
            ) as bws,
        ):

            async def follow(table: str) -> None:
                held = seen.setdefault(table, {})
                async with aclosing(bws.events(table, "XBTUSD")) as events:
                    async for _ in events:
                        held[emulator.now()] = shown(bws.storage, table)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow, "orderBookL2_25")
                nursery.start_soon(follow, "orderBook10")
                await emulator.wait_still()  # the data has ended
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
    # At every data time a derived message arrived, the client held the top of the full book
    # as the data had it then.
    for table, depth in (("orderBookL2_25", 25), ("orderBook10", 10)):
        times = sorted(seen[table])
        assert len(times) >= 5
        reference = ReplayedMarket(source)
        for t in times:
            reference.step(t)
            assert seen[table][t] == top(reference.storage, depth), (table, t)
