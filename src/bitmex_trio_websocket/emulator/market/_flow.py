"""The synthetic order flow: what one market step does to a book, drawn from a seeded ``Random``.

Theory of operation: ``Market.step`` picks a symbol and an event kind and calls one of these.
Level changes are most steps: a cluster of nearby levels (one 78% of the time, 1.3 on average,
as in the 2021 capture: 79% of XBTUSD ``orderBookL2`` messages had one row, mean 1.32;
``../shared/captures/cryptofeed_BITMEX.ws.1.0.jsonl``), biased to the top of the book, changes
size, or new levels appear, or levels go. While the spread is wider than one tick, most level
events instead refill it (a new level one tick from the other side's best), so XBTUSD sits at
one tick nearly always, as every captured quote did (280 of 285 XBTUSD quotes in 2021; the
2024-11 orderBook10 row). Trades: a latent fair price random-walks with drift regimes and
reverts to the start price; the aggressor takes the levels between the touch and it. Then
instrument mark events (see ``_instruments``) and rare liquidation lifecycles. The book never
crosses and never gets thinner than ``MIN_LEVELS`` a side.

The draws from ``Random`` are the market's identity: the same seed and the same calls always give
byte-identical output, so the order of draws here must not change without reason (the tests pin
seeded outputs). ``book_event`` is the emulator's hot path and is written inline.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from math import log as _log
from random import Random
from typing import Any, Final

from ._book import MIN_LEVELS, Book, Books, Level, Side
from ._schemas import Delta, random_guid

__all__ = ["OrderFlow", "Trade"]

_ROWS_MEAN: Final = 0.65  # a book message changes 1 + floor(Exp(mean)) levels: 1.3 on average
_REFILL: Final = 0.98  # chance that a level event refills a spread wider than one tick
# A fifth of level events change a best level: ~6 quote rows a second for XBTUSD at the default
# rate (2021: ~10 a second, the capture above); deletes spare the best level nearly always.
_TOP_SHARE: Final = 0.2
_KEEP_BEST: Final = 0.95
_TOP_MEAN_RANK: Final = 45.0  # mean rank of a top-biased level pick
_CLUSTER_GAP: Final = 3.0  # mean extra rank gap between the levels one book message changes


@dataclass(frozen=True, slots=True)
class Trade:
    """A synthetic aggressor: its side, the worst tick it printed at, the quantity it took."""

    buy: bool
    worst_tick: int
    qty: int


class OrderFlow:
    """The random events of the synthetic market; see the module docstring."""

    def __init__(self, books: Books, rng: Random) -> None:
        self._books = books
        self._rng = rng
        self.fixed_trend: float | None = None  # a scenario's drift, never redrawn

    def book_event(self, book: Book, ts: str, out: list[Delta]) -> None:
        """Size changes, new levels or removed levels on one side (the hot path: inlined)."""
        books = self._books
        random = self._rng.random
        if book.asks.keys[0] + book.bids.keys[0] > 1 and random() < _REFILL:
            self.refill(book, random() < 0.5, ts, out)
            return
        side = book.bids if random() < 0.5 else book.asks
        keys = side.keys
        n = len(keys)
        count = 1 + int(-_ROWS_MEAN * _log(1.0 - random()))
        choice = random()
        insert_share = 0.16 * book.depth / n
        if choice < insert_share:
            self.insert_levels(book, side, count, ts, out)
            return
        deleting = choice < insert_share + 0.16 * n / book.depth and n - count >= MIN_LEVELS
        # a cluster of nearby levels, starting at a rank biased to the top of the book
        pick = random()
        if pick < _TOP_SHARE:  # the best level: what the quote table is made of
            rank = 1 if deleting and random() < _KEEP_BEST else 0
        elif pick < 0.75:
            rank = int(-_TOP_MEAN_RANK * _log(1.0 - random())) % n
        else:
            rank = int(random() * n)
        if rank == 0 and deleting and random() < _KEEP_BEST:
            rank = 1  # makers rarely pull the touch outright: the spread stays at one tick
        ranks = [rank]
        for _ in range(count - 1):
            rank += 1 + int(-_CLUSTER_GAP * _log(1.0 - random()))
            if rank >= n:
                break
            ranks.append(rank)
        first = ranks[0]
        before = books.top25(side, first) if deleting and books.derive25 else None
        symbol, name, price = book.symbol, side.name, book.contract.price
        legacy = books.legacy
        rows: list[dict[str, Any]] = []
        gone: dict[int, Level] = {}
        if deleting:
            for key in [keys[rank] for rank in ranks]:
                level = gone[key] = books.remove_level(book, side, key)
                if legacy:
                    rows.append({"symbol": symbol, "id": level.id, "side": name})
                else:
                    rows.append({"symbol": symbol, "id": level.id, "side": name,
                                 "price": price(level.tick), "timestamp": ts,
                                 "transactTime": ts})  # fmt: skip
            out.append(Delta("orderBookL2", "delete", symbol, rows))
        else:
            levels = side.levels
            lot = book.lot
            step = book.typical / 3
            for rank in ranks:
                level = levels[keys[rank]]
                lots = level.size // lot
                change = 1 + int(-step * _log(1.0 - random()))
                lots = lots - change if lots > change and random() < 0.5 else lots + change
                level.size = size = lots * lot
                level.ts = ts
                if legacy:
                    rows.append({"symbol": symbol, "id": level.id, "side": name, "size": size})
                else:
                    rows.append({"symbol": symbol, "id": level.id, "side": name, "size": size,
                                 "price": price(level.tick), "timestamp": ts,
                                 "transactTime": ts})  # fmt: skip
            out.append(Delta("orderBookL2", "update", symbol, rows))
            if books.derive25 and first < 25:  # size changes keep ranks: no diff needed
                top = [dict(row) for rank, row in zip(ranks, rows, strict=True) if rank < 25]
                out.append(Delta("orderBookL2_25", "update", symbol, top))
        if first < 10:
            books.after_book(book, side, before, first, ts, out, gone)
        elif before is not None:
            books.emit_l2_25(book, side, before, gone, (), ts, out)

    def refill(self, book: Book, buy: bool, ts: str, out: list[Delta]) -> None:
        """A market maker closes a spread wider than one tick: a new best level one tick from
        the other side's best."""
        books = self._books
        side = book.bids if buy else book.asks
        tick = book.asks.keys[0] - 1 if buy else -book.bids.keys[0] + 1
        before = books.top25(side, 0)
        level = books.add_level(book, side, tick, books.level_size(book), ts)
        out.append(Delta("orderBookL2", "insert", book.symbol, [books.full_row(book, side, level)]))
        books.after_book(book, side, before, 0, ts, out)

    def insert_levels(self, book: Book, side: Side, count: int, ts: str, out: list[Delta]) -> None:
        """New levels: mostly just behind the best, some inside the spread, some deep."""
        books = self._books
        random = self._rng.random
        bid = -book.bids.keys[0]
        ask = book.asks.keys[0]
        spread = ask - bid
        keys = side.keys
        levels = side.levels
        sign = side.sign
        span = abs(keys[-1] - keys[0]) + 20
        ticks: list[int] = []
        if spread > 1 and random() < 0.2:  # a new best level inside the spread
            ticks.append(bid + 1 + int(random() * (spread - 1)))
        for _ in range(3 * count):
            if len(ticks) >= count:
                break
            if random() < 0.85:
                offset = 1 + int(-book.insert_offset * _log(1.0 - random()))
            else:
                offset = 1 + int(random() * span)
            tick = bid - offset if side.buy else ask + offset
            if tick > 0 and sign * tick not in levels and tick not in ticks:
                ticks.append(tick)
        if not ticks:
            return
        first = min(bisect_left(keys, sign * tick) for tick in ticks)
        before = books.top25(side, first) if books.derive25 else None
        rows = [
            books.full_row(
                book, side, books.add_level(book, side, tick, books.level_size(book), ts)
            )
            for tick in ticks
        ]
        out.append(Delta("orderBookL2", "insert", book.symbol, rows))
        books.after_book(book, side, before, first, ts, out)

    def trade_event(
        self, book: Book, ts: str, out: list[Delta], *, max_levels: int = 12
    ) -> Trade | None:
        """The fair price moves (a random walk with drift regimes, reverting to the start
        price); an aggressor takes the levels between the touch and the fair price (at least
        one, part of the last one half of the time)."""
        random = self._rng.random
        if random() < 0.05:
            book.trend = 2 * random() - 1 if self.fixed_trend is None else self.fixed_trend
        noise = (random() + random() + random() - 1.5) * 2  # mean 0, sd 1
        book.fair += book.volatility * (noise + 0.5 * book.trend)
        if self.fixed_trend is None:
            book.fair += (book.anchor - book.fair) * 0.002
        else:  # a trend that stays: the price does not revert
            book.anchor = round(book.fair)
        bid, ask = -book.bids.keys[0], book.asks.keys[0]
        fair = book.fair
        buy = fair >= ask or (fair > bid and random() < (fair - bid) / (ask - bid))
        passive = book.asks if buy else book.bids
        spare = len(passive.keys) - MIN_LEVELS
        limit = min(max_levels, spare)
        plan: list[tuple[Level, int]] = []
        for level in passive.top(limit):
            if plan and ((level.tick > fair) if buy else (level.tick < fair)):
                break
            plan.append((level, level.size))
        if not plan:
            return None
        last = plan[-1][0]
        lots = last.size // book.lot
        if lots > 1 and (random() < 0.5 or len(plan) >= limit):
            plan[-1] = (last, book.lot * (1 + int(random() * (lots - 1))))
        elif len(plan) > spare:
            return None
        self._books.consume(book, passive, plan, buy, ts, out)
        return Trade(buy, last.tick, sum(take for _, take in plan))

    def liquidation_event(
        self, book: Book, ts: str, out: list[Delta], *, cascade: float = 0.0
    ) -> None:
        """A new liquidation order near the touch, or one of the live ones shrinks, moves or
        goes."""
        rng = self._rng
        liquidations = book.liquidations
        symbol = book.symbol
        if not cascade and liquidations and (len(liquidations) >= 3 or rng.random() < 0.7):
            order_id = next(iter(liquidations))
            row = liquidations[order_id]
            choice = rng.random()
            lots = row["leavesQty"] // book.lot
            taken = 1 + int(rng.random() * lots)
            if choice < 0.5 and taken < lots:
                update = {
                    "orderID": order_id,
                    "symbol": symbol,
                    "leavesQty": (lots - taken) * book.lot,
                }
            elif choice < 0.7:
                tick = book.contract.tick_of(row["price"])
                tick += (1 if row["side"] == "Buy" else -1) * (1 + int(rng.random() * 5))
                update = {"orderID": order_id, "symbol": symbol,
                          "price": book.contract.price(tick)}  # fmt: skip
            else:
                del liquidations[order_id]
                out.append(Delta("liquidation", "delete", symbol,
                                 [{"orderID": order_id, "symbol": symbol}]))  # fmt: skip
                return
            row.update(update)
            out.append(Delta("liquidation", "update", symbol, [update]))
            return
        buy = rng.random() < 0.5 and not cascade  # a cascade liquidates longs: sells
        offset = 1 + int(rng.random() * 10)
        tick = book.asks.keys[0] + offset if buy else -book.bids.keys[0] - offset
        order_id = random_guid(rng)
        new = {
            "orderID": order_id, "symbol": symbol, "side": "Buy" if buy else "Sell",
            "price": book.contract.price(tick),
            "leavesQty": book.lot * int(
                (1 + int(rng.expovariate(1.0 / (3 * book.typical)))) * (1 + 10 * cascade)
            ),
        }  # fmt: skip
        liquidations[order_id] = dict(new)
        out.append(Delta("liquidation", "insert", symbol, [new]))
