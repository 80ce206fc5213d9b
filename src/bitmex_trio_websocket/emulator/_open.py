"""``open_emulator``: its options checked, the market and hub built, the emulator's tasks run.

Theory of operation: ``open_emulator`` is where an emulator is put together, in this order:

1. the options are checked (``ValueError`` before anything starts), and the wall clock chosen:
   ``clock`` or ``time.time``, moved to just before a funding time by a scenario that asks for
   it (``funding_flip``);
2. the market: a ``ReplayedMarket`` over ``history`` (its accounts funded, the first
   ``HISTORY_PREROLL`` data seconds stepped so the first partials, hence the symbols, are known
   before anyone connects; the emulator's clock becomes its ``DataClock``), else the seeded
   synthetic ``Market`` (unless ``replay`` serves a recording to each session, with no market);
3. the ``Hub`` the connections share, with the REST app over the market, and the ``Emulator``
   handle with its ``MarketPump``;
4. one nursery owning everything: the TCP listener (unless ``listen=False``), the market pump,
   the spontaneous "Bye" closes and the deploy scenario; leaving the block cancels it all.

An exception raised in the ``async with`` body comes out as itself, not wrapped in a group.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Final

import trio

from .._replay._sources import ReplaySource
from ._handshake import DEFAULT_API_KEY, DEFAULT_API_SECRET
from ._http import IDLE_TIMEOUT
from ._hub import Hub
from ._limits import DEFAULT_LIMITS, Limits
from ._pump import DataClock
from ._replay import load_recording
from ._server import Emulator, unwrap
from .market import DEFAULT_ACCOUNT, Market, Scenario, scenario_named
from .market._instruments import FUNDING_INTERVAL
from .market._replayed import ReplayedMarket
from .market._venue import Venue
from .rest import DEFAULT_REST_LIMITS, RestApp, RestLimits

__all__ = ["HISTORY_BALANCES", "HISTORY_PREROLL", "open_emulator"]

# Data seconds replayed before a history emulator opens: BitMEX answered a recorder's subscribes
# within this, so the first partials, hence the symbols, are known when clients connect.
HISTORY_PREROLL: Final = 1.0
HISTORY_BALANCES: Final = {"XBt": 10**8, "USDt": 10_000 * 10**6}  # 1 XBT, 10,000 USDT each


def _rest_app(market: Venue | None, hub: Hub, limits: RestLimits) -> RestApp | None:
    """BitMEX's REST API over the market (none for a per-session replay: nothing to trade)."""
    if market is None:
        return None
    return RestApp(market, hub.authenticator, limits=limits)


@asynccontextmanager
async def open_emulator(
    *,
    seed: int = 1,
    symbols: Iterable[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    listen: bool = True,
    rate: float = 50.0,
    max_events: int | None = None,
    replay: str | os.PathLike[str] | None = None,
    history: ReplaySource | None = None,
    speed: float = 0.0,
    accounts: Mapping[str, tuple[str, int]] | None = None,
    connection_budget: int = 720,
    budget_window: float = 3600.0,
    clock: Callable[[], float] | None = None,
    legacy_book: bool = False,
    max_queued_frames: int = 10_000,
    limits: Limits = DEFAULT_LIMITS,
    bye_every: float | None = None,
    scenario: Scenario | str | None = None,
    keep_alive: float = IDLE_TIMEOUT,
    balances: Mapping[str, int] | None = None,
    rest_limits: RestLimits = DEFAULT_REST_LIMITS,
) -> AsyncIterator[Emulator]:
    """Run a local BitMEX realtime emulator for the duration of the ``async with`` block.

    ``seed``/``symbols``/``legacy_book`` configure the synthetic market, which makes ``rate``
    changes per second (``0`` or ``inf``: as fast as possible) until ``max_events``, then stays
    still. ``replay`` serves a recording instead, to each session on its own from its start, at
    ``speed`` times real time (``0``: as fast as the client reads). ``history`` serves a replay
    source (a recording, Tardis slices, a folder or a list of them) as the one market everyone
    shares and trades against (``ReplayedMarket``): the emulator's clock is then the data's time,
    paced at ``speed`` times trio's clock (``0``: as fast as possible), and the dead man's switch
    runs on that clock too. ``accounts`` maps API keys to ``(secret, account number)``; by
    default the one default account (``DEFAULT_API_KEY`` / ``DEFAULT_API_SECRET``);
    ``balances`` (currency -> amount in settlement units, e.g. ``{"XBt": 10**8}``) funds the
    accounts of a replayed market, and those of a synthetic one but the default account.
    BitMEX's REST API is served on the same port (``rest_url``) with BitMEX's request
    limits, or ``rest_limits`` (per account: ``emulator.rest_app.set_limits``); an idle
    keep-alive connection is closed after ``keep_alive`` seconds.
    ``clock`` is the wall clock
    used for timestamps (default ``time.time``); the market opens at that clock's time, so a
    fixed ``clock`` makes a seeded run byte-identical. Timers run on trio's clock. With
    ``listen=False`` no TCP port is opened and only the in-memory variant is available.
    ``limits`` sets BitMEX's in-band limits (429 bursts, 503 pending, the error limit);
    ``bye_every`` (seconds, default off) closes every connection with 1000 "Bye" at seeded
    random intervals of that mean, as BitMEX's deploys did. ``scenario`` (a ``Scenario`` or
    one of the names in ``SCENARIOS``) bends the synthetic market into a regime; the
    ``funding_flip`` one moves the emulator's clock to just before a funding time and
    ``exchange_deploy`` makes the server close every connection now and then.
    """
    if max_events is not None and max_events < 0:
        raise ValueError("max_events must be non-negative")
    if connection_budget < 0 or max_queued_frames < 1:
        raise ValueError("connection_budget must be >= 0 and max_queued_frames >= 1")
    if speed < 0 or rate < 0:
        raise ValueError("speed and rate must be non-negative")
    if bye_every is not None and bye_every <= 0:
        raise ValueError("bye_every must be positive (or None: off)")
    if replay is not None and history is not None:
        raise ValueError("replay (per session) and history (a shared market): one or the other")
    wall = clock or time.time
    if isinstance(scenario, str):
        scenario = scenario_named(scenario)
    if scenario is not None and scenario.funding_in is not None and replay is None:
        # the market opens funding_in seconds before the next funding time (04/12/20 UTC)
        opened = wall()
        base = wall
        funding = ((opened - 4 * 3600) // FUNDING_INTERVAL + 1) * FUNDING_INTERVAL + 4 * 3600
        offset = funding - scenario.funding_in - opened
        if offset < 0:
            offset += FUNDING_INTERVAL

        def wall() -> float:
            return base() + offset

    account_map = (
        dict(accounts) if accounts else {DEFAULT_API_KEY: (DEFAULT_API_SECRET, DEFAULT_ACCOUNT)}
    )
    recording = load_recording(replay) if replay is not None else None
    market: Market | ReplayedMarket | None = None
    data_clock: DataClock | None = None
    if history is not None:
        replayed = ReplayedMarket(history, seed=seed)
        funds = dict(balances) if balances is not None else dict(HISTORY_BALANCES)
        for _, account in account_map.values():
            replayed.add_account(
                account, balance_xbt_sats=funds.get("XBt", 0), balance_usdt=funds.get("USDt", 0)
            )
        if replayed.start is not None:
            # Before anyone can connect: the first partials, so their symbols are known.
            replayed.step(replayed.start + HISTORY_PREROLL)
        market = replayed
        data_clock = DataClock(replayed, speed)
        wall = data_clock
    elif recording is None:
        market = Market(
            seed=seed,
            symbols=list(symbols) if symbols is not None else None,
            start_time=wall(),
            legacy_book=legacy_book,
            scenario=scenario,
        )
        for _, account in account_map.values():
            if account != DEFAULT_ACCOUNT:  # funded by ``balances`` when given
                funds = dict(balances or {})
                market.add_account(
                    account,
                    balance_xbt_sats=funds.get("XBt", 10**8),
                    balance_usdt=funds.get("USDt", 0),
                )
    hub = Hub(
        market=market,
        recording=recording,
        accounts=account_map,
        clock=wall,
        speed=speed,
        connection_budget=connection_budget,
        budget_window=budget_window,
        limits=limits,
    )
    hub.data_time_switches = data_clock is not None
    hub.rest = _rest_app(market, hub, rest_limits)
    emulator = Emulator(
        hub,
        rate=rate,
        max_events=max_events,
        max_queued_frames=max_queued_frames,
        keep_alive=keep_alive,
        data_clock=data_clock,
    )
    try:
        async with trio.open_nursery() as nursery:
            emulator._start(nursery)
            if listen:
                await nursery.start(emulator._serve_tcp, host, port)
            nursery.start_soon(emulator.pump.run)
            if bye_every is not None:
                nursery.start_soon(emulator._run_byes, bye_every, seed)
            if scenario is not None and scenario.deploy_after is not None:
                nursery.start_soon(emulator._run_deploys, scenario)
            try:
                yield emulator
            finally:
                emulator._start(None)
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Let callers catch their own exceptions from the body as usual.
        raise unwrap(group) from None
