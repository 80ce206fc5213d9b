"""A momentum taker: buys when recent trades are mostly buys, sells when mostly sells, with a stop.

Theory of operation. ``strategy(bws, rest)`` is the whole bot, written against the live API:
the websocket client ``bws`` (authenticated) for public trades and the account's position,
the REST client ``rest`` for orders. The same function runs live (``main()`` below) and in a
backtest (``bitmex-trio-websocket backtest SOURCE examples.momentum:strategy``), because every
wait in it is on trio's clock, which the backtest runs in the data's time.

Trade flow: every public trade is kept for ``window`` seconds with its size signed by the
aggressor's side; the flow is (bought - sold) / (bought + sold), from -1 (only sellers took) to
1 (only buyers took). Once a second:

* flat, with at least ``min_volume_lots`` traded in the window and the flow beyond
  ``threshold``: take the market in the flow's direction (a Market order), then protect the
  position at once with a stop on the exchange (``ordType=Stop``, ``stopPx`` ``stop_fraction``
  away from the entry, ``execInst=Close,LastPrice``: triggered by the last price): if the bot
  dies, the stop still closes the position;
* in a position: leave with a Market order (and cancel the stop) when the flow turns beyond the
  threshold against it or after ``hold_at_most`` seconds.

The bot's position is the account's (the ``position`` table's ``currentQty``): run it on an
account of its own (a BitMEX sub-account). Its stop and its exits use ``execInst=Close``, which
closes the whole position and never more, so a stop that fires while the bot is leaving cannot
reverse the position. On the way out (cancellation, an error, the end of a backtest's data) it
cancels its stop and closes its position, shielded from the cancellation that is stopping it.

Run it live with ``python examples/momentum.py`` (an emulator started in the same process), or
give a network: the URL the ``bitmex-trio-websocket emulator`` command prints. BitMEX itself
closed on 2026-09-23: ``mainnet`` and ``testnet`` are accepted and fail with
``ExchangeClosedError``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections import deque
from contextlib import AsyncExitStack, aclosing, suppress
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from bitmex_trio_websocket import (
    BitMEXAPIError,
    BitMEXRest,
    BitMEXWebsocket,
    open_bitmex_rest,
    open_bitmex_websocket,
)

log = logging.getLogger("examples.momentum")  # main() shows it; a backtest does not


@dataclass(frozen=True, slots=True)
class Settings:
    symbol: str = "XBTUSD"
    window: float = 30.0  # seconds of public trades the flow is measured over
    threshold: float = 0.6  # |flow| needed to enter (and, against the position, to leave)
    min_volume_lots: int = 10  # lots traded in the window, or the flow means nothing
    order_lots: int = 1  # each entry's size, in the contract's lots
    stop_fraction: float = 0.002  # the stop's distance from the entry price (0.2%)
    hold_at_most: float = 300.0  # seconds in a position before leaving anyway
    check_every: float = 1.0


DEFAULTS: Final = Settings()


async def strategy(bws: BitMEXWebsocket, rest: BitMEXRest, settings: Settings = DEFAULTS) -> None:
    """Trade ``settings.symbol`` on trade-flow momentum until cancelled."""
    [instrument] = await rest.instruments(settings.symbol)
    bot = Momentum(
        settings,
        rest,
        tick=float(instrument["tickSize"]),
        lot=int(instrument["lotSize"]),
        # Unique per run (trio's clock: data time in a backtest, so runs repeat exactly).
        tag=f"mo{int(trio.current_time() * 1000) % 10**10:x}",
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_trades, bws, bot)
            nursery.start_soon(follow_position, bws, bot)
            while True:
                await trio.sleep(settings.check_every)
                await bot.check(trio.current_time())
    finally:
        with trio.move_on_after(10) as cleanup:
            cleanup.shield = True
            await bot.exit_position()
            log.info("stop canceled, position closed")


async def follow_trades(bws: BitMEXWebsocket, bot: Momentum) -> None:
    async with aclosing(bws.listen("trade", bot.settings.symbol)) as trades:
        async for trade in trades:
            bot.on_trade(trio.current_time(), trade)


async def follow_position(bws: BitMEXWebsocket, bot: Momentum) -> None:
    async with aclosing(bws.listen("position")) as positions:
        async for row in positions:
            bot.on_position(row)


@dataclass(slots=True)
class Momentum:
    settings: Settings
    rest: BitMEXRest
    tick: float
    tag: str
    lot: int
    position: int = 0  # the account's position in the symbol (currentQty)
    entered_at: float | None = None  # trio time of the last entry
    stop: str | None = None  # the protecting stop's clOrdID
    trades: deque[tuple[float, int]] = field(default_factory=deque)  # (time, signed size)
    _sent: int = 0

    def on_trade(self, now: float, trade: dict[str, Any]) -> None:
        size = int(trade.get("size") or 0)
        if trade.get("side") in ("Buy", "Sell") and size:  # settlement rows have no side
            self.trades.append((now, size if trade["side"] == "Buy" else -size))

    def on_position(self, row: dict[str, Any]) -> None:
        if row.get("symbol") == self.settings.symbol and "currentQty" in row:
            self.position = int(row["currentQty"])

    def flow(self, now: float) -> tuple[float, int]:
        """(bought - sold) / traded over the window, and what traded."""
        while self.trades and self.trades[0][0] < now - self.settings.window:
            self.trades.popleft()
        traded = sum(abs(size) for _, size in self.trades)
        return (sum(size for _, size in self.trades) / traded if traded else 0.0), traded

    async def check(self, now: float) -> None:
        flow, traded = self.flow(now)
        if traded < self.settings.min_volume_lots * self.lot:
            flow = 0.0
        if self.position == 0:
            if self.stop is not None:  # the stop closed the position: its leftovers go
                log.info("stopped out")
                await self.cancel_stop()
            if abs(flow) >= self.settings.threshold:
                await self.enter("Buy" if flow > 0 else "Sell", now)
        elif (
            (self.position > 0 and flow <= -self.settings.threshold)
            or (self.position < 0 and flow >= self.settings.threshold)
            or (self.entered_at is not None and now - self.entered_at >= self.settings.hold_at_most)
        ):
            await self.exit_position()

    async def enter(self, side: str, now: float) -> None:
        try:
            row = await self.rest.place_order(
                symbol=self.settings.symbol,
                side=side,
                orderQty=self.settings.order_lots * self.lot,
                ordType="Market",
                clOrdID=self.next_id(),
            )
        except BitMEXAPIError:
            return  # e.g. not enough margin: try again later
        filled = int(row.get("cumQty") or 0)
        if not filled:
            return  # nothing to take
        # A Market order's reply is final; the position row follows on the websocket.
        self.position += filled if side == "Buy" else -filled
        self.entered_at = now
        log.info("%s %d @ %s (flow)", side, filled, row["avgPx"])
        entry, away = float(row["avgPx"]), float(row["avgPx"]) * self.settings.stop_fraction
        if side == "Buy":
            stop_px = math.floor((entry - away) / self.tick) * self.tick
        else:
            stop_px = math.ceil((entry + away) / self.tick) * self.tick
        self.stop = self.next_id()
        try:
            await self.rest.place_order(
                symbol=self.settings.symbol,
                side="Sell" if side == "Buy" else "Buy",
                ordType="Stop",
                stopPx=stop_px,
                execInst="Close,LastPrice",  # closes whatever is open when it triggers
                clOrdID=self.stop,
            )
        except BitMEXAPIError:
            self.stop = None
            await self.exit_position()  # unprotected is not an option

    async def exit_position(self) -> None:
        await self.cancel_stop()
        if self.position:
            log.info("leaving a position of %+d", self.position)
            # Refused when already closed (the stop got there first): the position row says so.
            with suppress(BitMEXAPIError):
                await self.rest.place_order(
                    symbol=self.settings.symbol,
                    side="Sell" if self.position > 0 else "Buy",
                    ordType="Market",
                    execInst="Close",  # the whole position, and never beyond it
                    clOrdID=self.next_id(),
                )
        self.entered_at = None

    async def cancel_stop(self) -> None:
        if self.stop is not None:
            stop, self.stop = self.stop, None
            with suppress(BitMEXAPIError):  # already triggered and filled
                await self.rest.cancel_order(clOrdID=stop)

    def next_id(self) -> str:
        self._sent += 1
        return f"{self.tag}-{self._sent}"


def rest_network(network: str) -> str:
    """The REST API beside a websocket URL: ws://host:port/realtime -> http://host:port/api/v1."""
    if network in ("mainnet", "testnet"):
        return network  # BitMEX closed on 2026-09-23: both now fail with ExchangeClosedError
    scheme, _, rest = network.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}/api/v1"


# The account main() opens for the bot on an emulator it starts itself: an account of its own.
BOT_ACCOUNT: Final = ("example-bot-key", "example-bot-secret-emulator-only", 200001)


async def run_live(
    network: str | None, key: str | None, secret: str | None, duration: float, settings: Settings
) -> None:
    async with AsyncExitStack() as stack:
        if network is None:
            from bitmex_trio_websocket.emulator import open_emulator

            bot_key, bot_secret, number = BOT_ACCOUNT
            emulator = await stack.enter_async_context(
                open_emulator(seed=1, accounts={bot_key: (bot_secret, number)})
            )
            network, key, secret = emulator.url, bot_key, bot_secret
        bws = await stack.enter_async_context(open_bitmex_websocket(network, key, secret))
        rest = await stack.enter_async_context(open_bitmex_rest(rest_network(network), key, secret))
        log.info("trading %s on momentum on %s for %g s", settings.symbol, network, duration)
        with trio.move_on_after(duration):
            await strategy(bws, rest, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "network",
        nargs="?",
        help="a ws:// URL, such as the one `bitmex-trio-websocket emulator --account "
        "KEY:SECRET:2` prints; default: an emulator in this process. mainnet and testnet "
        "are BitMEX's own servers, closed since 2026-09-23",
    )
    parser.add_argument("--api-key", default=os.environ.get("BITMEX_API_KEY"))
    parser.add_argument("--api-secret", default=os.environ.get("BITMEX_API_SECRET"))
    parser.add_argument("--symbol", default=DEFAULTS.symbol)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default: 60)")
    args = parser.parse_args()
    if args.network is not None and not (args.api_key and args.api_secret):
        parser.error("--api-key and --api-secret (or BITMEX_API_KEY/BITMEX_API_SECRET) needed")
    settings = Settings(symbol=args.symbol)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trio.run(run_live, args.network, args.api_key, args.api_secret, args.duration, settings)


if __name__ == "__main__":
    main()
