"""The replay feeder's hot loop (``_replay/_fastpath.FrameRunner``): what it does with each kind
of frame, and that its mypyc-compiled copy does exactly what the pure-Python one does.

``drive`` plays the feeder's part around ``FrameRunner.run`` without trio: runs of a few frames,
a full listener drained and its owed changes offered again, a frame off the fast path stepped
over, a rejected frame recorded and stepped over. Everything the loop shows the outside (its
returns, ``decoded``, the stats after each run, the calls it makes, what the listeners got) goes
into one log, and the two copies' logs must be equal. The comparisons skip where no compiled core
is built (fail instead with ``BITMEX_TRIO_WEBSOCKET_EXPECT_COMPILED=1``, as
``tests/test_cores.py``); the pure copy's behaviour is checked on its own everywhere.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from array import array
from collections.abc import Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks._common import BENCH_TABLES
from benchmarks.replay import write_day_file
from bitmex_trio_websocket import RemoteProtocolError, Storage, open_bitmex_replay
from bitmex_trio_websocket._protocol import DENSITY_CHECK_BYTES
from bitmex_trio_websocket._replay import _fastpath, _feeder
from bitmex_trio_websocket._replay._feeder import ReplayStats
from bitmex_trio_websocket._replay._sources import FrameBatch
from bitmex_trio_websocket._routing import Listener, Router
from bitmex_trio_websocket._storage import _core

from .helpers import stamp, stamped_time

EXPECT_COMPILED = os.environ.get("BITMEX_TRIO_WEBSOCKET_EXPECT_COMPILED", "") not in ("", "0")
COMPILED, WHY = _core.compiled_module()
T0 = 1_700_000_000.0
STAMP = "2023-11-14T22:13:20.000Z"
LAYOUTS = ("text", "plain", "stamped")
WANTED: dict[str, frozenset[str] | None] = {
    "orderBookL2": None,
    "quote": None,
    "trade": frozenset({"XBTUSD"}),
}


def compiled_runner() -> type[_fastpath.FrameRunner]:
    if COMPILED is None:
        if EXPECT_COMPILED:
            pytest.fail(f"no compiled core: {WHY}")
        pytest.skip(f"no compiled core: {WHY}")
    module = importlib.import_module("bitmex_trio_websocket._compiled._fastpath")
    runner: type[_fastpath.FrameRunner] = module.FrameRunner
    assert runner is not _fastpath.FrameRunner
    return runner


def dumps(message: Any) -> str:
    return orjson.dumps(message).decode()


def level(ident: int, side: str, size: int, price: float | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"symbol": "XBTUSD", "id": ident, "side": side, "size": size}
    if price is not None:
        row["price"] = price
    row["timestamp"] = STAMP
    return row


def trade(symbol: str, n: int) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "side": "Buy",
        "size": n,
        "price": 100.5,
        "trdMatchID": f"t{n}",
        "timestamp": STAMP,
    }


def l2(action: str, *rows: dict[str, Any]) -> str:
    return dumps({"table": "orderBookL2", "action": action, "data": list(rows)})


def trades(*rows: dict[str, Any]) -> str:
    return dumps({"table": "trade", "action": "insert", "data": list(rows)})


PARTIAL = dumps(
    {
        "table": "orderBookL2",
        "action": "partial",
        "keys": ["symbol", "id", "side"],
        "filter": {},
        "data": [level(1, "Sell", 5, 101.0), level(2, "Buy", 5, 100.0)],
    }
)
QUOTE = {"symbol": "XBTUSD", "bidSize": 1, "bidPrice": 100.0, "askPrice": 100.5, "askSize": 2}

# Every kind of frame the loop meets, by name (the scenario plays them in this order).
FRAMES: dict[str, str] = {
    "welcome": dumps({"info": "Welcome to the BitMEX Realtime API.", "version": "2.0"}),
    "partial": PARTIAL,
    "update 1": l2("update", level(1, "Sell", 6)),
    "unwanted table": dumps({"table": "instrument", "action": "update", "data": []}),
    "trades, some wanted": trades(trade("XBTUSD", 1), trade("ETHUSD", 2), trade("XBTUSD", 3)),
    "trades, none wanted": trades(trade("ETHUSD", 4)),
    "update 2": l2("update", level(2, "Buy", 7)),
    "insert": l2("insert", level(3, "Sell", 1, 102.0)),
    "malformed": '{"table":"orderBookL2","action":"update","data":[',
    "unknown level": l2("update", level(99, "Sell", 1)),
    "quote before its partial": dumps({"table": "quote", "action": "insert", "data": [QUOTE]}),
    "rejected": l2("explode"),
    "trade partial": dumps({"table": "trade", "action": "partial", "keys": [], "data": []}),
    "update 3": l2("update", level(3, "Sell", 2)),
    "too large": l2("update", *[level(1, "Sell", n) for n in range(1, 1400)]),
    "trade, spaced": '{"table": "trade", "action": "insert", "data": []}',
    "delete": l2("delete", level(3, "Sell", 0)),
    "update 4": l2("update", level(1, "Sell", 8)),
    "update 5": l2("update", level(2, "Buy", 9)),
}
assert len(FRAMES["too large"]) > DENSITY_CHECK_BYTES


def batch_of(texts: Sequence[str], layout: str) -> FrameBatch:
    """The batch ``_sources`` reads for these frames from each kind of file."""
    times = [T0 + n / 8 for n in range(len(texts))]
    if layout == "text":  # recordings, Tardis cache files: texts and times
        return FrameBatch("frames.txt", list(texts), 0, 1, times=times)
    if layout == "plain":  # plain slice lines, the time read from each line
        lines = [f"{stamp(t)} {text}".encode() for t, text in zip(times, texts, strict=True)]
        return FrameBatch("frames.txt", lines, 29, 1)
    stamps = array("d", (stamped_time(t) for t in times))  # plain lines, times read ahead
    return FrameBatch("frames.txt", [text.encode() for text in texts], 0, 1, stamps=stamps)


class Rejected(Exception):
    def __init__(self, index: int) -> None:
        self.index = index


def drive(
    runner_class: type[_fastpath.FrameRunner],
    texts: Sequence[str],
    layout: str,
    *,
    every: int = 4,
    buffer: int = 3,
) -> list[Any]:
    """Everything ``runner_class`` shows the outside on ``texts``, in order (see the module
    docstring): an ``orderBookL2`` listener holding ``buffer`` rows (a whole-table listener,
    handed its rows directly) and a ``trade:XBTUSD`` one (through ``offer_changes``)."""
    router, stats = Router(), ReplayStats()
    log: list[Any] = []
    book = Listener(("orderBookL2", None), buffer, "block", False)
    narrow = Listener(("trade", "XBTUSD"), math.inf, "block", False)  # type: ignore[arg-type]
    router.add(book)
    router.add(narrow)
    listeners = {"book": book, "trade": narrow}
    storage = Storage()
    storage.apply(  # its partial is off the fast path (a partial cut to a symbol)
        {
            "table": "trade",
            "action": "partial",
            "keys": [],
            "filter": {"symbol": "XBTUSD"},
            "data": [],
        }
    )

    def violations(result: Any, batch: FrameBatch, index: int) -> None:
        log.append(("violations", index, result.violations))

    def rejected(batch: FrameBatch, index: int, exc: RemoteProtocolError) -> BaseException:
        log.append(("rejected", index, str(exc)))
        return Rejected(index)

    def taken() -> None:
        for name, listener in listeners.items():
            log.append(("took", name, list(listener.items)))
            listener.items.clear()

    runner = runner_class(storage.apply, router, stats, violations, rejected)
    runner.plan(WANTED)
    batch = batch_of(texts, layout)
    index, end = 0, len(batch)
    while index < end:
        stop = min(end, index + every)
        try:
            index, stuck = runner.run(batch, index, stop)
        except Rejected as error:
            chained = (error.__cause__, error.__suppress_context__)  # raised ``from None``
            log.append(("raised", error.index, chained, dataclasses.asdict(stats), runner.decoded))
            index = error.index + 1
            continue
        log.append(("ran", index, dataclasses.asdict(stats), runner.decoded))
        if stuck is not None:
            result, (at, owed) = stuck
            log.append(("stuck", result.table, result.action, at, owed == [book]))
            taken()
            assert router.offer_changes(result.table, result.changes, at) is None
        elif index < stop:
            log.append(("off the fast path", index))
            index += 1
    taken()
    log.append(("store", storage.rows("orderBookL2"), storage.rows("trade")))
    return log


def entries(log: list[Any], kind: str) -> list[Any]:
    return [entry[1:] for entry in log if entry[0] == kind]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_loop_handles_every_kind_of_frame(layout: str) -> None:
    texts = list(FRAMES.values())
    names = list(FRAMES)
    log = drive(_fastpath.FrameRunner, texts, layout)

    off = [names[index] for (index,) in entries(log, "off the fast path")]
    assert off == ["welcome", "malformed", "trade partial", "too large", "trade, spaced"]
    assert [(names[i], why) for i, why in entries(log, "rejected")] == [
        ("rejected", "unknown table action: \"'explode'\"")
    ]
    [(index, chained, _, decoded)] = entries(log, "raised")
    assert names[index] == "rejected" and chained == (None, True) and decoded
    [(index, found)] = entries(log, "violations")
    assert names[index] == "unknown level" and found[0].kind == "unknown_key"
    # The listener of 3 rows is full at the insert and at update 5: the loop stops after each,
    # owing its change, and the driver drains the listener and offers the rest.
    assert entries(log, "stuck") == [
        ("orderBookL2", "insert", 0, True),
        ("orderBookL2", "update", 0, True),
    ]
    stops = [names[index - 1] for index, _, _ in entries(log, "ran")]
    assert "insert" in stops and "update 5" in stops
    took = entries(log, "took")
    actions = " ".join(change.action for name, got in took if name == "book" for change in got)
    assert actions == "partial update update insert update delete update update"
    trade_rows = [row for name, got in took if name == "trade" for c in got for row in c.rows]
    assert [row["size"] for row in trade_rows] == [1, 3]  # ETHUSD cut out

    final = entries(log, "ran")[-1][1]
    read = [names.index(name) for name in names if name not in off]
    assert final["messages"] == len(texts) - len(off)
    assert final["bytes"] == sum(len(texts[i]) for i in read)
    assert final["skipped"] == 2  # the unwanted table, and the trades all cut out
    assert final["dropped_before_partial"] == 1  # the quote
    assert final["violations"] == 0  # counted by the feeder's callable, not the loop
    assert final["data_time"] == pytest.approx(T0 + (len(texts) - 1) / 8, abs=1e-6)
    assert final["last_message_at"] is None  # the feeder reads the clock, never the loop


def test_decoded_says_whether_a_run_decoded_a_frame() -> None:
    log = drive(
        _fastpath.FrameRunner, [FRAMES["unwanted table"], FRAMES["update 1"]], "text", every=1
    )
    assert [entry[3] for entry in log if entry[0] == "ran"] == [False, True]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("every", [1, 3, 256])
def test_the_compiled_loop_does_what_the_pure_loop_does(layout: str, every: int) -> None:
    compiled = compiled_runner()
    texts = list(FRAMES.values())
    assert drive(compiled, texts, layout, every=every) == drive(
        _fastpath.FrameRunner, texts, layout, every=every
    )


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.sampled_from(sorted(FRAMES)), max_size=30),
    layout=st.sampled_from(LAYOUTS),
    every=st.integers(1, 8),
    buffer=st.integers(1, 4),
)
def test_the_loops_agree_on_any_order_of_frames(
    names: list[str], layout: str, every: int, buffer: int
) -> None:
    compiled = compiled_runner()
    texts = [FRAMES[name] for name in ["partial", *names]]
    options = {"every": every, "buffer": buffer}
    assert drive(compiled, texts, layout, **options) == drive(
        _fastpath.FrameRunner, texts, layout, **options
    )


def test_the_feeder_runs_the_active_cores_loop() -> None:
    compiled = _core.CORE == "compiled (mypyc)"
    assert (_feeder.FrameRunner is not _fastpath.FrameRunner) == compiled
    assert _feeder.FrameRunner.__module__.endswith("._compiled._fastpath") == compiled


async def replayed(path: Path) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    got: dict[str, list[Any]] = {table: [] for table in BENCH_TABLES}

    async def take(bws: Any, table: str) -> None:
        async with aclosing(bws.listen(table, buffer=2)) as rows:
            async for row in rows:
                got[table].append(row)

    with trio.fail_after(60):
        async with open_bitmex_replay(path) as bws:
            async with trio.open_nursery() as nursery:
                for table in BENCH_TABLES:
                    nursery.start_soon(take, bws, table)
            stats = dataclasses.asdict(bws.stats)
    assert stats.pop("last_message_at") is not None
    return got, stats


async def test_a_replay_is_the_same_with_either_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = compiled_runner()
    path = tmp_path / "day.json"
    write_day_file(path, 3000)
    monkeypatch.setattr(_feeder, "FrameRunner", _fastpath.FrameRunner)
    pure = await replayed(path)
    monkeypatch.setattr(_feeder, "FrameRunner", compiled)
    assert await replayed(path) == pure
    assert sum(map(len, pure[0].values())) > 3000 and pure[1]["messages"] == 3000
