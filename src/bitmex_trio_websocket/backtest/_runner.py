"""The backtest runner: a strategy against the in-memory emulator, in data time.

Theory of operation: ``run_backtest`` is one ``trio.run`` under ``MockClock(autojump_threshold=0)``:
trio's clock jumps to the next deadline whenever every task waits, so a day of data takes the
CPU time its messages cost and no more. The emulator is opened in memory (``listen=False``) over
the source: history (``open_emulator(history=..., speed=1.0)``: data time runs with trio's
clock from the first second of the data) or the synthetic market (``open_emulator(clock=...)``
reading a fixed start plus trio's clock, so its timestamps are data time too). One data second
is one trio second: the strategy's sleeps and timeouts, the client's heartbeats and its dead
man's switch refreshes, the emulator's switch timers and the market all share that clock.

``open_backtest`` yields the strategy's two clients, both authenticated with the emulator's
default credentials (``DEFAULT_API_KEY``) on the backtest's own account (``BACKTEST_ACCOUNT``,
funded with the balances given): ``bws`` (``open_bitmex_websocket`` over
``emulator.connect_in_memory``) and ``rest`` (``open_bitmex_rest`` over
``emulator.connect_rest_in_memory``, with a fixed ``clOrdID`` prefix so runs are repeatable).

``run_backtest`` adds the recording: a third client (the runner's own websocket) follows the
account's ``execution`` and ``order`` tables into a ``Recorder``, and a sampler reads the
account's margin and positions from the paper exchange once per data second and after each fill.
Before each sample, and before the end, the runner waits until every task is blocked
(``trio.testing.wait_all_tasks_blocked``): whatever a moment of data time causes (the market
step, the strategy's reaction, its order's rows) has happened before the moment is read or the
strategy is cancelled, whatever order trio ran the tasks in. That, the seeded market and
exchange, and the fixed clOrdID prefix are what make two runs give the same report bytes.

The run ends when the data ends (history), at ``end``, or after ``duration`` (synthetic: one hour
by default); the strategy is then cancelled. A strategy that returns early leaves its orders
working until then. An exception from the strategy ends the run and is raised from
``run_backtest`` as it was, with a note saying the data time and the fills so far.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import trio
import trio.testing

from .._client import BitMEXWebsocket, open_bitmex_websocket
from .._replay._sources import ReplaySource, source_files
from .._storage import Change
from ..emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, SCENARIOS, Emulator, open_emulator
from ..emulator.market._venue import Liquidity, Venue
from ._report import Recorder, Report, Sample, iso

if TYPE_CHECKING:
    from .._rest import BitMEXRest

__all__ = [
    "BACKTEST_ACCOUNT",
    "DEFAULT_DURATION",
    "SYNTHETIC",
    "SYNTHETIC_START",
    "Progress",
    "Strategy",
    "open_backtest",
    "run_backtest",
]

BACKTEST_ACCOUNT: Final = 200001  # not the emulator's default account, which a synthetic
# market opens with a position and orders of its own
SYNTHETIC: Final = "synthetic"
SYNTHETIC_START: Final = 1_735_689_600.0  # 2025-01-01T00:00:00Z: the synthetic market's default
DEFAULT_DURATION: Final = 3600.0  # a synthetic backtest with neither end nor duration
PRICED_SYMBOLS: Final = 8  # symbols whose price is sampled besides those the strategy traded
WS_URL: Final = "ws://backtest/realtime"  # in memory: the host only names the emulator
REST_URL: Final = "http://backtest/api/v1"

Strategy: TypeAlias = "Callable[[BitMEXWebsocket, BitMEXRest], Awaitable[object]]"


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a run is, handed to ``run_backtest(progress=...)`` once per data second."""

    data_time: float
    messages: int  # market messages stepped so far
    fills: int
    fraction: float | None  # of the run done, when its end is known in advance


def is_synthetic(source: object) -> bool:
    """Whether ``source`` names the synthetic market (``"synthetic"`` or a scenario name)
    rather than files (a file of that name, if one exists, wins)."""
    return (
        isinstance(source, str)
        and (source == SYNTHETIC or source in SCENARIOS)
        and not os.path.exists(source)
    )


def describe(source: ReplaySource | str) -> str:
    """The source as the report names it: the market, or the files' names."""
    if is_synthetic(source):
        return str(source)
    return ", ".join(os.path.basename(name) for name in source_files(source))


class _Run:
    """One backtest's emulator and clock: data time = trio time + ``offset``."""

    def __init__(self, emulator: Emulator, history: bool, end: float | None) -> None:
        self.emulator = emulator
        self.venue: Venue = emulator.venue
        self.history = history
        self.end = end
        self.offset = emulator.now() - trio.current_time()
        self.start = emulator.now()

    def now(self) -> float:
        return self.emulator.now()

    def trio_time(self, data_time: float) -> float:
        return data_time - self.offset

    @property
    def messages(self) -> int:
        frames = getattr(self.venue, "frames", None)
        return frames if isinstance(frames, int) else self.emulator.events


@asynccontextmanager
async def _open_market(
    source: ReplaySource | str,
    *,
    seed: int,
    start: float | None,
    end: float | None,
    symbols: Sequence[str] | None,
    balances: dict[str, int],
    rate: float,
) -> AsyncIterator[_Run]:
    """The emulator over ``source``, in memory, with data time ``start`` reached."""
    accounts = {DEFAULT_API_KEY: (DEFAULT_API_SECRET, BACKTEST_ACCOUNT)}
    if is_synthetic(source):
        opened = SYNTHETIC_START if start is None else start
        origin = trio.current_time()

        def data_clock() -> float:
            return opened + (trio.current_time() - origin)

        scenario = None if source == SYNTHETIC else str(source)
        async with open_emulator(
            seed=seed, symbols=symbols, listen=False, rate=rate, accounts=accounts,
            clock=data_clock, scenario=scenario, balances=balances,
        ) as emulator:  # fmt: skip
            yield _Run(emulator, False, end)
        return
    async with open_emulator(
        seed=seed, listen=False, history=source, speed=1.0, accounts=accounts,
        balances=balances,
    ) as emulator:  # fmt: skip
        run = _Run(emulator, True, end)
        if start is not None and start > run.now():
            # The market steps on through the data before ``start`` (books are built from its
            # partials); nobody is connected yet.
            await trio.sleep_until(run.trio_time(start))
            run.start = run.now()
        yield run


@asynccontextmanager
async def _open_clients(
    run: _Run, *, seed: int, dead_mans_switch: bool
) -> AsyncIterator[tuple[BitMEXWebsocket, BitMEXRest]]:
    from .._rest import open_bitmex_rest  # the REST client imports nothing of ours back

    emulator = run.emulator
    async with (
        open_bitmex_websocket(
            WS_URL, DEFAULT_API_KEY, DEFAULT_API_SECRET, connect=emulator.connect_in_memory,
            dead_mans_switch=dead_mans_switch,
        ) as bws,
        open_bitmex_rest(
            REST_URL, DEFAULT_API_KEY, DEFAULT_API_SECRET,
            connect=emulator.connect_rest_in_memory, cl_ord_id_prefix=f"bt{seed}",
            clock=run.now,  # api-expires in data time: the emulator's clock
        ) as rest,
    ):  # fmt: skip
        yield bws, rest


@asynccontextmanager
async def open_backtest(
    source: ReplaySource | str = SYNTHETIC,
    *,
    seed: int = 1,
    start: float | None = None,
    symbols: Sequence[str] | None = None,
    balance_xbt_sats: int = 10**8,
    balance_usdt: int = 10_000 * 10**6,
    rate: float = 50.0,
    dead_mans_switch: bool = False,
) -> AsyncIterator[tuple[BitMEXWebsocket, BitMEXRest]]:
    """``(bws, rest)``: a websocket client and a REST client connected in memory to an
    emulator trading ``source`` (a replay source; ``"synthetic"`` or a scenario name for the
    seeded synthetic market), logged in to a fresh account holding the balances given.

    Run it under ``trio.testing.MockClock(autojump_threshold=0)`` to have data time (history
    at ``speed`` 1: one data second per trio second) cost no wall time; ``run_backtest`` does
    that and records a ``Report``. ``start``: data time to begin at (history: the market first
    steps through the data before it; synthetic: the market's opening time). ``symbols``: the
    synthetic market's symbols. ``rate``: synthetic market events per data second.
    """
    balances = {"XBt": balance_xbt_sats, "USDt": balance_usdt}
    async with (
        _open_market(source, seed=seed, start=start, end=None, symbols=symbols,
                     balances=balances, rate=rate) as run,
        _open_clients(run, seed=seed, dead_mans_switch=dead_mans_switch) as clients,
    ):  # fmt: skip
        yield clients


def run_backtest(
    strategy: Strategy,
    source: ReplaySource | str = SYNTHETIC,
    *,
    start: float | None = None,
    end: float | None = None,
    duration: float | None = None,
    seed: int = 1,
    symbols: Sequence[str] | None = None,
    symbol: str | None = None,
    currency: str | None = None,
    balance_xbt_sats: int = 10**8,
    balance_usdt: int = 10_000 * 10**6,
    rate: float = 50.0,
    dead_mans_switch: bool = False,
    progress: Callable[[Progress], object] | None = None,
) -> Report:
    """Run ``await strategy(bws, rest)`` over ``source`` in data time and report what it did.

    ``source``: a replay source (a recording, Tardis slices, a folder or a list of them) traded
    as history, or ``"synthetic"`` / a scenario name (``emulator.SCENARIOS``) for the seeded
    synthetic market. ``start``/``end`` (epoch seconds of data time) bound the run; history
    ends with its data at the latest, the synthetic market after ``duration`` seconds (default
    one hour) unless ``end`` is given. ``seed`` seeds the market and the exchange: the same
    source, strategy and seed give the same report, byte for byte. ``symbols``: the synthetic
    market's symbols (and the symbols whose price is sampled); ``symbol``/``currency``: what the
    report's series and figures follow (see ``Report``). ``progress`` is called once per data
    second. Blocking: it runs its own ``trio.run``; from async code use ``open_backtest``.
    """
    if end is not None and duration is not None:
        raise ValueError("give end or duration, not both")
    if duration is not None and not (duration > 0 and math.isfinite(duration)):
        raise ValueError("duration must be a positive number of seconds")
    if start is not None and end is not None and end <= start:
        raise ValueError("end must be after start")
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError("rate must be a positive number of events per second")
    if not callable(strategy):
        raise TypeError("strategy must be an async function taking (bws, rest)")
    label = describe(source)  # also checks that the files exist, before trio starts
    options = _Options(
        strategy, source, label, start, end, duration, seed, symbols, symbol, currency,
        {"XBt": balance_xbt_sats, "USDt": balance_usdt}, rate, dead_mans_switch, progress,
    )  # fmt: skip
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(partial(_backtest, options), clock=clock)


@dataclass(frozen=True, slots=True)
class _Options:
    strategy: Strategy
    source: ReplaySource | str
    label: str
    start: float | None
    end: float | None
    duration: float | None
    seed: int
    symbols: Sequence[str] | None
    symbol: str | None
    currency: str | None
    balances: dict[str, int]
    rate: float
    dead_mans_switch: bool
    progress: Callable[[Progress], object] | None


class _Failure:
    """The strategy's exception, once it raised one."""

    error: BaseException | None = None
    at: float = 0.0


async def _backtest(opts: _Options) -> Report:
    recorder = Recorder()
    failure = _Failure()
    async with _open_market(
        opts.source, seed=opts.seed, start=opts.start, end=opts.end, symbols=opts.symbols,
        balances=opts.balances, rate=opts.rate,
    ) as run:  # fmt: skip
        if run.end is None and not run.history:
            run.end = run.start + (opts.duration or DEFAULT_DURATION)
        elif run.end is None and opts.duration is not None:
            run.end = run.start + opts.duration
        sampler = _Sampler(run, recorder, opts)
        async with _open_recording(run, recorder, sampler) as recording:
            sampler.take()  # the account before the strategy: the initial equity
            async with _open_clients(
                run, seed=opts.seed, dead_mans_switch=opts.dead_mans_switch
            ) as (bws, rest):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_strategy, opts.strategy, bws, rest, failure, run,
                                       nursery.cancel_scope)  # fmt: skip
                    nursery.start_soon(sampler.run)
                    await _until_the_end(run)
                    # What this last moment causes happens before the strategy is stopped.
                    await trio.testing.wait_all_tasks_blocked()
                    nursery.cancel_scope.cancel()
                final = sampler.read(run.now())
            recording.cancel()
        if failure.error is not None:
            error = failure.error
            error.add_note(
                f"raised by the backtest's strategy at data time {iso(failure.at)} "
                f"({len(recorder.fills)} fills so far)"
            )
            raise error
        return recorder.report(
            source=opts.label, seed=opts.seed, start=run.start, end=final.time,
            messages=run.messages, currency=opts.currency, symbol=opts.symbol, final=final,
        )  # fmt: skip


async def _strategy(
    strategy: Strategy,
    bws: BitMEXWebsocket,
    rest: BitMEXRest,
    failure: _Failure,
    run: _Run,
    scope: trio.CancelScope,
) -> None:
    try:
        await strategy(bws, rest)
    except Exception as exc:
        failure.error, failure.at = exc, run.now()
        scope.cancel()
    # A strategy that returned leaves its orders working until the end.


async def _until_the_end(run: _Run) -> None:
    if run.end is None:
        await run.emulator.wait_still()
        return
    if not run.history:
        await trio.sleep_until(run.trio_time(run.end))
        return
    with trio.move_on_at(run.trio_time(run.end)):
        await run.emulator.wait_still()


class _Recording:
    def __init__(self, scope: trio.CancelScope) -> None:
        self._scope = scope

    def cancel(self) -> None:
        self._scope.cancel()


@asynccontextmanager
async def _open_recording(
    run: _Run, recorder: Recorder, sampler: _Sampler
) -> AsyncIterator[_Recording]:
    """The runner's own websocket following the account's ``execution`` and ``order`` rows;
    yields once both tables' partials have arrived (so no row of the strategy's is missed)."""
    async with (
        open_bitmex_websocket(
            WS_URL, DEFAULT_API_KEY, DEFAULT_API_SECRET, connect=run.emulator.connect_in_memory
        ) as watcher,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(_follow, watcher, "execution", recorder, sampler)
        await nursery.start(_follow, watcher, "order", recorder, sampler)
        yield _Recording(nursery.cancel_scope)
        nursery.cancel_scope.cancel()


async def _follow(
    watcher: BitMEXWebsocket,
    table: str,
    recorder: Recorder,
    sampler: _Sampler,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    started = False
    async with aclosing(watcher.events(table)) as items:
        async for item in items:
            if not isinstance(item, Change):
                continue  # a lifecycle event
            if not started:
                task_status.started()  # the partial: subscribed
                started = True
            for row in item.rows:
                if table == "order":
                    recorder.on_order(row)
                elif recorder.on_execution(row) is not None:
                    sampler.fill_seen()


class _Sampler:
    """Reads the account once per data second and after fills (see the module docstring)."""

    def __init__(self, run: _Run, recorder: Recorder, opts: _Options) -> None:
        self._run = run
        self._recorder = recorder
        self._progress = opts.progress
        self._fill = trio.Event()
        self._priced = list(opts.symbols or ())
        self._chosen = opts.symbols is not None

    def fill_seen(self) -> None:
        self._fill.set()

    def take(self) -> None:
        self._recorder.sample(self.read(self._run.now()))

    async def run(self) -> None:
        run = self._run
        second = math.floor(run.now()) + 1.0
        while True:
            with trio.move_on_at(run.trio_time(second)):
                await self._fill.wait()
            await trio.testing.wait_all_tasks_blocked()
            now = run.now()
            self._fill = trio.Event()  # no checkpoint since the wait: no fill slipped by
            self.take()
            if now >= second:
                second = math.floor(now) + 1.0
                if self._progress is not None:
                    self._progress(self._where(now))

    def _where(self, now: float) -> Progress:
        run = self._run
        fraction = None
        if run.end is not None and run.end > run.start:
            fraction = min(1.0, max(0.0, (now - run.start) / (run.end - run.start)))
        return Progress(now, run.messages, len(self._recorder.fills), fraction)

    def read(self, now: float) -> Sample:
        exchange = self._run.venue.exchange
        money = {
            str(row["currency"]): (
                int(row["marginBalance"]),
                int(row["walletBalance"]),
                int(row["unrealisedPnl"]),
            )
            for row in exchange.margins(BACKTEST_ACCOUNT)
        }
        positions = {
            str(row["symbol"]): int(row["currentQty"])
            for row in exchange.positions(BACKTEST_ACCOUNT)
            if row.get("currentQty")
        }
        prices: dict[str, float] = {}
        for name in self._symbols():
            price = mid_price(self._run.venue, name)
            if price is not None:
                prices[name] = price
        return Sample(now, money, positions, prices)

    def _symbols(self) -> Iterator[str]:
        seen = set(self._priced)
        yield from self._priced
        for name in self._recorder.symbols_in_play:
            if name not in seen:
                seen.add(name)
                yield name
        if not self._chosen:
            for name in self._run.venue.symbols[:PRICED_SYMBOLS]:
                if name not in seen:
                    yield name


def mid_price(venue: Venue, symbol: str) -> float | None:
    """The middle of the symbol's best bid and ask (one side when the other is empty), else
    its instrument row's mark price, else ``None``: the price fills are made against."""
    # A replayed market has a ``liquidity``; the synthetic market is its own.
    liquidity = cast(Liquidity, getattr(venue, "liquidity", venue))
    bid, ask = liquidity.best(symbol, "Buy"), liquidity.best(symbol, "Sell")
    if bid is not None and ask is not None:
        return (bid + ask) / 2
    if bid is not None or ask is not None:
        return bid if ask is None else ask
    for row in venue.public_rows("instrument", symbol):
        if row.get("symbol") == symbol:
            return _finite(row.get("markPrice"))
    return None


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
