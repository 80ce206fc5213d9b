"""A market maker: one post-only bid and one post-only ask around the mid, following the book.

Theory of operation. ``strategy(bws, rest)`` is the whole bot, written against the live API:
the websocket client ``bws`` (authenticated) for the book and the account's executions, the
REST client ``rest`` for orders. The same function runs live (``main()`` below) and in a
backtest (``bitmex-trio-websocket backtest SOURCE examples.market_maker:strategy``), because
every wait in it is on trio's clock, which the backtest runs in the data's time.

Four tasks share one ``Quoter``:

* the book task wakes the quoter whenever the best bid or ask changes;
* the quoter (at most once per ``requote_every`` seconds) works out where each side should be,
  ``half_spread_ticks`` from the mid but never through the touch, and places, amends or cancels
  to get there. Orders carry ``execInst=ParticipateDoNotInitiate`` (post-only): an order that
  would take liquidity is canceled by the exchange instead, so the bot only ever earns the
  maker rebate. A side whose fills took the position to ``max_position_lots`` is not quoted;
* the executions task follows the bot's own orders (by their ``clOrdID`` prefix) to their
  fills and ends, and keeps the bot's own position;
* the switch task keeps BitMEX's dead man's switch armed (``cancelAllAfter`` 60 s, renewed every
  15 s): if the bot hangs or loses its connection, the exchange cancels its orders.

On the way out (cancellation, an error, the end of a backtest's data) it cancels its quotes and
disarms the switch, shielded from the cancellation that is stopping it.

Run it live with ``python examples/market_maker.py`` (an emulator started in the same process),
or give a network: the URL the ``bitmex-trio-websocket emulator`` command prints. BitMEX itself
closed on 2026-09-23: ``mainnet`` and ``testnet`` are accepted and fail with
``ExchangeClosedError``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
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

log = logging.getLogger("examples.market_maker")  # main() shows it; a backtest does not

CLOSED: Final = frozenset({"Filled", "Canceled", "Rejected"})


@dataclass(frozen=True, slots=True)
class Settings:
    symbol: str = "XBTUSD"
    quote_lots: int = 1  # each quote's size, in the contract's lots
    half_spread_ticks: int = 1  # distance from the mid, in ticks (never through the touch)
    max_position_lots: int = 5  # stop quoting the side that would grow the position further
    requote_every: float = 1.0  # seconds between two rounds of amends (rate limits)
    switch_timeout_ms: int = 60_000  # the dead man's switch's timeout ...
    switch_every: float = 15.0  # ... renewed this often


DEFAULTS: Final = Settings()


async def strategy(bws: BitMEXWebsocket, rest: BitMEXRest, settings: Settings = DEFAULTS) -> None:
    """Make a market in ``settings.symbol`` until cancelled."""
    [instrument] = await rest.instruments(settings.symbol)
    quoter = Quoter(
        settings,
        rest,
        tick=float(instrument["tickSize"]),
        lot=int(instrument["lotSize"]),
        # Unique per run (trio's clock: data time in a backtest, so runs repeat exactly).
        tag=f"mm{int(trio.current_time() * 1000) % 10**10:x}",
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_switch_armed, rest, settings)
            nursery.start_soon(follow_executions, bws, quoter)
            nursery.start_soon(follow_book, bws, quoter)
            await quoter.run(bws)
    finally:
        with trio.move_on_after(10) as cleanup:
            cleanup.shield = True
            await quoter.cancel_all()
            await rest.cancel_all_after(0)  # disarm: nothing of ours is left to protect
            log.info("quotes canceled, switch disarmed; position %+d", quoter.position)


async def keep_switch_armed(rest: BitMEXRest, settings: Settings) -> None:
    while True:
        await rest.cancel_all_after(settings.switch_timeout_ms)
        await trio.sleep(settings.switch_every)


async def follow_book(bws: BitMEXWebsocket, quoter: Quoter) -> None:
    book = bws.storage.book
    last: tuple[Any, Any] = (None, None)
    async with aclosing(bws.events("orderBookL2", quoter.settings.symbol)) as changes:
        async for _ in changes:
            levels = book(quoter.settings.symbol)
            touch = (levels.best_bid, levels.best_ask)
            if touch != last:
                last = touch
                quoter.book_moved.set()


async def follow_executions(bws: BitMEXWebsocket, quoter: Quoter) -> None:
    async with aclosing(bws.listen("execution")) as executions:
        async for row in executions:
            quoter.on_execution(row)


@dataclass(slots=True)
class Quote:
    clOrdID: str
    price: float
    orderID: str | None = None  # known once the REST reply is in


@dataclass(slots=True)
class Quoter:
    settings: Settings
    rest: BitMEXRest
    tick: float
    lot: int
    tag: str
    position: int = 0  # contracts bought minus sold by this bot
    quotes: dict[str, Quote] = field(default_factory=dict)  # by side
    book_moved: trio.Event = field(default_factory=trio.Event)
    _sent: int = 0

    async def run(self, bws: BitMEXWebsocket) -> None:
        while True:
            await self.book_moved.wait()
            self.book_moved = trio.Event()
            book = bws.storage.book(self.settings.symbol)
            if book.best_bid is not None and book.best_ask is not None:
                await self.requote(book.best_bid[0], book.best_ask[0])
            await trio.sleep(self.settings.requote_every)

    def targets(self, best_bid: float, best_ask: float) -> dict[str, float | None]:
        """Where each side should rest (``None``: not quoted)."""
        mid, offset = (best_bid + best_ask) / 2, self.settings.half_spread_ticks * self.tick
        bid = min(best_bid, math.floor((mid - offset) / self.tick) * self.tick)
        ask = max(best_ask, math.ceil((mid + offset) / self.tick) * self.tick)
        limit = self.settings.max_position_lots * self.lot
        return {
            "Buy": bid if self.position < limit else None,
            "Sell": ask if self.position > -limit else None,
        }

    async def requote(self, best_bid: float, best_ask: float) -> None:
        for side, price in self.targets(best_bid, best_ask).items():
            quote = self.quotes.get(side)
            if price is None:
                if quote is not None:
                    await self.cancel(side, quote)
            elif quote is None:
                await self.place(side, price)
            elif quote.orderID is not None and not math.isclose(quote.price, price):
                await self.amend(side, quote, price)

    async def place(self, side: str, price: float) -> None:
        self._sent += 1
        quote = Quote(f"{self.tag}-{self._sent}", price)
        self.quotes[side] = quote  # before sending: its executions may come before the reply
        try:
            row = await self.rest.place_order(
                symbol=self.settings.symbol,
                side=side,
                orderQty=self.settings.quote_lots * self.lot,
                price=price,
                execInst="ParticipateDoNotInitiate",
                clOrdID=quote.clOrdID,
            )
        except BitMEXAPIError:
            row = {"ordStatus": "Rejected"}  # e.g. not enough margin: try again next round
        if row["ordStatus"] in CLOSED:  # post-only: it would have taken, so it was canceled
            self._forget(quote.clOrdID)
        else:
            quote.orderID = row["orderID"]

    async def amend(self, side: str, quote: Quote, price: float) -> None:
        try:
            await self.rest.amend_order(orderID=quote.orderID, price=price)
            quote.price = price
        except BitMEXAPIError:
            # Filled or canceled meanwhile (its execution is on its way) or a post-only amend
            # that would cross: cancel and place afresh next round.
            await self.cancel(side, quote)

    async def cancel(self, side: str, quote: Quote) -> None:
        self._forget(quote.clOrdID)
        with suppress(BitMEXAPIError):  # already gone
            await self.rest.cancel_order(clOrdID=quote.clOrdID)

    async def cancel_all(self) -> None:
        for side, quote in list(self.quotes.items()):
            await self.cancel(side, quote)

    def on_execution(self, row: dict[str, Any]) -> None:
        clordid = row.get("clOrdID") or ""
        if not clordid.startswith(self.tag + "-"):
            return  # another bot's, or placed by hand
        if row.get("execType") == "Trade":
            qty = int(row["lastQty"])
            self.position += qty if row["side"] == "Buy" else -qty
            log.info("%s %d @ %s: position %+d", row["side"], qty, row["lastPx"], self.position)
            self.book_moved.set()  # the position changed: the sides may change too
        if row.get("ordStatus") in CLOSED:
            self._forget(clordid)

    def _forget(self, clordid: str) -> None:
        for side, quote in list(self.quotes.items()):
            if quote.clOrdID == clordid:
                del self.quotes[side]


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
        log.info("making a market in %s on %s for %g s", settings.symbol, network, duration)
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
