"""The synthetic market's accounts: the default account and what it starts with.

Theory of operation: accounts, orders and the private tables live in the paper exchange
(``emulator.exchange``), which the ``Market`` owns. What is left here is the synthetic market's
own choice of initial state: ``DEFAULT_ACCOUNT`` (the account the default API key logs in to)
opens with 1 XBT and 10,000 USDT, a long position and a few resting orders, one near the touch
(the market's trades soon fill it) and others a few percent away, so a client that subscribes
to the private tables sees rows at once. Nothing is sent for this initial state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ._book import Book

__all__ = ["DEFAULT_ACCOUNT", "seed_default_account"]

DEFAULT_ACCOUNT: Final = 100001  # the account the default API key logs in to


def seed_default_account(
    exchange: Exchange, books: Mapping[str, Book], symbols: Sequence[str], now: float
) -> None:
    """Open ``DEFAULT_ACCOUNT`` with its deposits, position and resting orders."""
    exchange.add_account(DEFAULT_ACCOUNT, {"XBt": 10**8, "USDt": 10_000 * 10**6}, now)
    main = "XBTUSD" if "XBTUSD" in books else symbols[0]
    others = [symbol for symbol in symbols if symbol != main]
    second = "ETHUSD" if "ETHUSD" in others else (others[0] if others else main)
    book = books[main]
    price = book.contract.price
    bid, ask = book.bids.best().tick, book.asks.best().tick
    exchange.seed_position(DEFAULT_ACCOUNT, main, 10 * book.lot, price(bid))
    orders = [
        (main, "Buy", 5 * book.lot, price(bid - 20)),
        (main, "Buy", 10 * book.lot, price(round(bid * 0.98))),
        (main, "Sell", 3 * book.lot, price(round(ask * 1.02))),
    ]
    book2 = books[second]
    orders.append((second, "Sell", 10 * book2.lot, book2.contract.price(
        round(book2.asks.best().tick * 1.015))))  # fmt: skip
    for symbol, side, qty, limit in orders:
        params = {"symbol": symbol, "side": side, "orderQty": qty, "price": limit}
        exchange.place_order(DEFAULT_ACCOUNT, params, now)
