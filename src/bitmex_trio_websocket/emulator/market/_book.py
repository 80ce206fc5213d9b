"""Books and trades: each symbol's order book, last trade and quote, and the rows they make.

Theory of operation: a ``Book`` holds one symbol's price levels as integer ticks. Each ``Side``
keeps ``sign * tick`` in an ascending list (so index 0 is the best level on both sides) and the
``Level`` objects by the same key; a level has an opaque random 11-digit id (or, in the
pre-2023 ``legacy`` form, the id BitMEX's old price formula gave it), a size in contracts and the
time it last changed. ``Books`` owns every ``Book`` plus what they share: the seeded ``Random``
(level ids and sizes), the book format, which derived tables are on, and the trade-match counter.

Every change to a level is applied to the stored level exactly as the emitted delta describes it,
so ``rows`` (a partial's image) at any moment equals the first image with every later delta
applied. Derived tables cost nothing until enabled: ``orderBookL2_25`` forwards size changes
inside the top 25 and otherwise diffs the top 25 levels of the side an event touched (only when
the event reached into them), and ``orderBook10`` is a full top-10 row whenever an event reached
into the top 10. A quote row is made whenever the best level of either side changes; quote rows
wait in ``pending_quotes`` and the market sends them once a second, one message per symbol, as
BitMEX did (2021 capture: one ``quote`` message a second carrying every change of that second,
``../shared/captures/cryptofeed_BITMEX.ws.1.0.jsonl`` lines 256, 403, 564...).

``consume`` is the one way liquidity is taken, by the synthetic flow (``_flow``) and by
account orders alike: the levels go or shrink, then come the derived tables and quote, the
trade rows (one per resting order filled, so a level can print several rows at one price, as in
the 2021 capture's ``[100, 900]`` at one price, line 344; BitMEX's tick directions) and the
instrument's new last price and volumes, in the order a server sends them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from math import log as _log
from random import Random
from typing import Any, Final

from ._instruments import Contract, Instrument, InstrumentSpec
from ._schemas import Delta

__all__ = ["MIN_LEVELS", "Book", "Books", "Level", "Side"]

MIN_LEVELS: Final = 40  # no side of a book ever gets thinner than this


class Level:
    __slots__ = ("id", "size", "tick", "ts")

    def __init__(self, level_id: int, tick: int, size: int, ts: str) -> None:
        self.id = level_id
        self.tick = tick
        self.size = size
        self.ts = ts  # when the level last changed: its timestamp and transactTime


class Side:
    """One side of a book. ``keys`` holds ``sign * tick`` ascending, so index 0 is the best
    level on both sides; ``levels`` maps the same keys to levels."""

    __slots__ = ("buy", "keys", "levels", "name", "sign")

    def __init__(self, buy: bool) -> None:
        self.buy = buy
        self.name = "Buy" if buy else "Sell"
        self.sign = -1 if buy else 1
        self.keys: list[int] = []
        self.levels: dict[int, Level] = {}

    def best(self) -> Level:
        return self.levels[self.keys[0]]

    def top(self, count: int) -> list[Level]:
        levels = self.levels
        return [levels[key] for key in self.keys[:count]]


class Book:
    """One symbol: its two sides, instrument, last trade, quote, live liquidations, and the
    state of its synthetic order flow (fair price, drift)."""

    __slots__ = (
        "anchor", "asks", "bids", "contract", "depth", "fair", "ids", "insert_offset",
        "instrument", "last_direction", "last_tick", "legacy_base", "legacy_factor",
        "liquidations", "lot", "ob10_ts", "pending_quotes", "quote", "spec", "symbol", "trade",
        "trend", "typical", "volatility",
    )  # fmt: skip

    def __init__(self, spec: InstrumentSpec) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.contract = Contract(spec)
        self.instrument = Instrument(spec, self.contract)
        self.lot = spec.lot_size
        self.typical = spec.typical_lots
        self.depth = spec.depth
        self.insert_offset = 6.0 * spec.spacing  # mean offset of a new level from the best
        self.volatility = 0.4 * spec.spacing  # fair price move per trade event, in ticks
        self.trend = 0.0  # -1..1: the current drift of the fair price
        self.anchor = round(spec.start_price / spec.tick_size)  # price reverts to it, ticks
        self.fair = float(self.anchor)  # where trades push the price, in ticks
        self.bids = Side(True)
        self.asks = Side(False)
        self.ids: set[int] = set()
        legacy_tick = spec.legacy_tick or spec.tick_size
        self.legacy_factor = round(spec.tick_size / legacy_tick)
        self.legacy_base = 100_000_000 * spec.legacy_index
        self.last_tick = self.anchor
        self.last_direction = "ZeroPlusTick"
        self.ob10_ts = ""
        self.trade: dict[str, Any] = {}
        self.quote: dict[str, Any] = {}
        self.pending_quotes: list[dict[str, Any]] = []  # sent by the market once a second
        self.liquidations: dict[str, dict[str, Any]] = {}


class Books:
    """Every symbol's ``Book`` and the rows and deltas their changes make; see the module
    docstring. ``legacy`` selects the pre-2023 order-book form; ``derive25``/``derive10`` say
    whether ``orderBookL2_25``/``orderBook10`` deltas are made."""

    def __init__(self, rng: Random, *, legacy: bool) -> None:
        self.rng = rng
        self.legacy = legacy
        self.derive25 = False
        self.derive10 = False
        self.by_symbol: dict[str, Book] = {}
        self._match = 0

    # ------------------------------------------------------------------ construction

    def open(
        self, spec: InstrumentSpec, start: float, ts: str, fmt: Callable[[float], str]
    ) -> Book:
        """A new book of ``spec.depth`` levels a side around the start price, its instrument,
        a first trade and quote."""
        rng = self.rng
        book = Book(spec)
        for side, first in ((book.bids, book.anchor), (book.asks, book.anchor + 1)):
            offset = 0
            for index in range(spec.depth):
                tick = first - offset if side.buy else first + offset
                self.add_level(book, side, tick, self.level_size(book), ts)
                gap = spec.spacing * (1 + index / spec.spacing_growth) - 0.5
                offset += 1 + int(-gap * _log(1.0 - rng.random()))
        contract = book.contract
        bid, ask = book.bids.best(), book.asks.best()
        bid_price, ask_price = contract.price(bid.tick), contract.price(ask.tick)
        book.instrument.open(bid_price, ask_price, start, ts, fmt, rng)
        book.last_tick = bid.tick
        gross, home, foreign = contract.notionals(book.lot, bid_price)
        book.trade = {
            "timestamp": ts, "symbol": spec.symbol, "side": "Sell", "size": book.lot,
            "price": bid_price, "tickDirection": "ZeroPlusTick",
            "trdMatchID": self.next_match_id(), "grossValue": gross, "homeNotional": home,
            "foreignNotional": foreign, "trdType": "Regular",
        }  # fmt: skip
        book.quote = self.quote_row(book, ts)
        book.ob10_ts = ts
        self.by_symbol[spec.symbol] = book
        return book

    # ------------------------------------------------------------------ level primitives

    def next_match_id(self) -> str:
        self._match += 1
        return f"00000000-006d-1000-0000-{self._match:012x}"

    def level_size(self, book: Book) -> int:
        return book.lot * (1 + int(-book.typical * _log(1.0 - self.rng.random())))

    def add_level(self, book: Book, side: Side, tick: int, size: int, ts: str) -> Level:
        key = side.sign * tick
        keys = side.keys
        keys.insert(bisect_left(keys, key), key)
        level_id = self.rng.randrange(10_000_000_000, 100_000_000_000)
        if self.legacy:  # the random id is drawn anyway, so both formats see the same market
            level_id = book.legacy_base - tick * book.legacy_factor
        else:
            ids = book.ids
            while level_id in ids:
                level_id = self.rng.randrange(10_000_000_000, 100_000_000_000)
            ids.add(level_id)
        level = side.levels[key] = Level(level_id, tick, size, ts)
        return level

    def remove_level(self, book: Book, side: Side, key: int) -> Level:
        keys = side.keys
        del keys[bisect_left(keys, key)]
        level = side.levels.pop(key)
        book.ids.discard(level.id)
        return level

    # ------------------------------------------------------------------ rows

    def full_row(self, book: Book, side: Side, level: Level) -> dict[str, Any]:
        if self.legacy:  # the 2019-2021 feed wrote whole prices as integers (``"price":11584``)
            price = book.contract.price(level.tick)
            return {"symbol": book.symbol, "id": level.id, "side": side.name, "size": level.size,
                    "price": int(price) if price.is_integer() else price}  # fmt: skip
        return {
            "symbol": book.symbol, "id": level.id, "side": side.name, "size": level.size,
            "price": book.contract.price(level.tick), "timestamp": level.ts,
            "transactTime": level.ts,
        }  # fmt: skip

    def update_row(self, book: Book, side: Side, level: Level) -> dict[str, Any]:
        if self.legacy:
            return {"symbol": book.symbol, "id": level.id, "side": side.name, "size": level.size}
        return self.full_row(book, side, level)

    def delete_row(self, book: Book, side: Side, level: Level, ts: str) -> dict[str, Any]:
        if self.legacy:
            return {"symbol": book.symbol, "id": level.id, "side": side.name}
        return {
            "symbol": book.symbol, "id": level.id, "side": side.name,
            "price": book.contract.price(level.tick), "timestamp": ts, "transactTime": ts,
        }  # fmt: skip

    def book_rows(self, book: Book, depth: int | None) -> list[dict[str, Any]]:
        """``orderBookL2`` rows (the top ``depth`` a side, or all): asks high to low, then bids
        high to low, like a BitMEX partial."""
        asks = book.asks.top(len(book.asks.keys) if depth is None else depth)
        bids = book.bids.top(len(book.bids.keys) if depth is None else depth)
        rows = [self.full_row(book, book.asks, level) for level in reversed(asks)]
        rows.extend(self.full_row(book, book.bids, level) for level in bids)
        return rows

    @staticmethod
    def ob10_row(book: Book) -> dict[str, Any]:
        price = book.contract.price
        return {
            "symbol": book.symbol,
            "bids": [[price(level.tick), level.size] for level in book.bids.top(10)],
            "asks": [[price(level.tick), level.size] for level in book.asks.top(10)],
            "timestamp": book.ob10_ts,
        }

    @staticmethod
    def quote_row(book: Book, ts: str) -> dict[str, Any]:
        bid, ask = book.bids.best(), book.asks.best()
        price = book.contract.price
        return {
            "timestamp": ts, "symbol": book.symbol, "bidSize": bid.size,
            "bidPrice": price(bid.tick), "askPrice": price(ask.tick), "askSize": ask.size,
        }  # fmt: skip

    def public_rows(self, table: str, books: Sequence[Book]) -> list[dict[str, Any]]:
        """Partial rows of a book-derived table (order books, trade, quote, liquidation)."""
        if table in ("orderBookL2", "orderBookL2_25"):
            depth = 25 if table == "orderBookL2_25" else None
            return [row for book in books for row in self.book_rows(book, depth)]
        if table == "orderBook10":
            return [self.ob10_row(book) for book in books]
        if table == "trade":
            return [dict(book.trade) for book in books]
        if table == "quote":
            return [dict(book.quote) for book in books]
        if table == "liquidation":
            return [dict(row) for book in books for row in book.liquidations.values()]
        raise ValueError(f"not a book table: {table!r}")

    # ------------------------------------------------------------------ derived tables

    def after_book(
        self,
        book: Book,
        side: Side,
        before: list[int] | None,
        min_rank: int,
        ts: str,
        out: list[Delta],
        gone: dict[int, Level] | None = None,
        resized: Sequence[Level] = (),
    ) -> None:
        """Derived tables and quote after ``side`` changed at ``min_rank`` or deeper."""
        if before is not None:
            self.emit_l2_25(book, side, before, gone or {}, resized, ts, out)
        if min_rank < 10:
            book.ob10_ts = ts
            if self.derive10:
                out.append(Delta("orderBook10", "update", book.symbol, [self.ob10_row(book)]))
        if min_rank == 0:
            book.quote = self.quote_row(book, ts)
            book.pending_quotes.append(dict(book.quote))

    def top25(self, side: Side, min_rank: int) -> list[int] | None:
        """The keys of the top 25 levels before a change at ``min_rank``, if L2_25 needs them."""
        if not self.derive25 or min_rank >= 25:
            return None
        return side.keys[:25]

    def emit_l2_25(
        self,
        book: Book,
        side: Side,
        before: list[int],
        gone: dict[int, Level],
        resized: Sequence[Level],
        ts: str,
        out: list[Delta],
    ) -> None:
        """``orderBookL2_25`` deltas from the keys of the top 25 before and after a change that
        removed the ``gone`` levels, added levels and/or changed the size of ``resized``."""
        after = side.keys[:25]
        was, now = set(before), set(after)
        levels = side.levels
        symbol = book.symbol
        deletes = [
            self.delete_row(book, side, gone[key] if key in gone else levels[key], ts)
            for key in before
            if key not in now
        ]
        inserts = [self.full_row(book, side, levels[key]) for key in after if key not in was]
        updates = [
            self.update_row(book, side, level)
            for level in resized
            if side.sign * level.tick in was and side.sign * level.tick in now
        ]
        if deletes:
            out.append(Delta("orderBookL2_25", "delete", symbol, deletes))
        if inserts:
            out.append(Delta("orderBookL2_25", "insert", symbol, inserts))
        if updates:
            out.append(Delta("orderBookL2_25", "update", symbol, updates))

    # ------------------------------------------------------------------ taking liquidity

    def crossing_plan(self, book: Book, buy: bool, tick: int, qty: int) -> list[tuple[Level, int]]:
        """What a limit order of ``qty`` at ``tick`` takes from the other side at once: the
        levels it crosses, best first, and the quantity taken from each; it never empties the
        book below ``MIN_LEVELS`` a side."""
        passive = book.asks if buy else book.bids
        plan: list[tuple[Level, int]] = []
        wanted = qty
        removable = len(passive.keys) - MIN_LEVELS
        for key in passive.keys:
            level = passive.levels[key]
            if (level.tick > tick) if buy else (level.tick < tick):
                break
            take = min(level.size, wanted)
            if take == level.size:
                if removable <= 0:
                    break
                removable -= 1
            plan.append((level, take))
            wanted -= take
            if not wanted:
                break
        return plan

    def consume(
        self,
        book: Book,
        side: Side,
        plan: list[tuple[Level, int]],
        buy: bool,
        ts: str,
        out: list[Delta],
    ) -> list[str]:
        """An aggressor takes ``plan`` (top levels of ``side``, best first, and the quantity
        taken from each). Sends book, derived, trade, quote and instrument deltas; returns the
        trade rows' trdMatchIDs."""
        before = self.top25(side, 0)
        deletes: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        gone: dict[int, Level] = {}
        resized: list[Level] = []
        for level, take in plan:
            if take >= level.size:
                key = side.sign * level.tick
                gone[key] = self.remove_level(book, side, key)
                deletes.append(self.delete_row(book, side, level, ts))
            else:
                level.size -= take
                level.ts = ts
                resized.append(level)
                updates.append(self.update_row(book, side, level))
        symbol = book.symbol
        if deletes:
            out.append(Delta("orderBookL2", "delete", symbol, deletes))
        if updates:
            out.append(Delta("orderBookL2", "update", symbol, updates))
        self.after_book(book, side, before, 0, ts, out, gone, resized)
        contract = book.contract
        aggressor = "Buy" if buy else "Sell"
        rows: list[dict[str, Any]] = []
        match_ids: list[str] = []
        volume = turnover = 0
        home_total = foreign_total = 0.0
        direction = book.last_direction
        rng = self.rng
        lot = book.lot
        for level, take in plan:
            if level.tick > book.last_tick:
                direction = "PlusTick"
            elif level.tick < book.last_tick:
                direction = "MinusTick"
            elif direction in ("PlusTick", "MinusTick"):
                direction = "ZeroPlusTick" if direction == "PlusTick" else "ZeroMinusTick"
            book.last_tick = level.tick
            price = contract.price(level.tick)
            # the resting orders this take filled, oldest first: one trade row each
            lots = take // lot
            makers = min(lots, 1 + int(-0.7 * _log(1.0 - rng.random())))
            for maker in range(makers, 0, -1):
                part = lots if maker == 1 else 1 + int(rng.random() * (lots - maker))
                lots -= part
                size = part * lot
                gross, home, foreign = contract.notionals(size, price)
                rows.append({
                    "timestamp": ts, "symbol": symbol, "side": aggressor, "size": size,
                    "price": price, "tickDirection": direction,
                    "trdMatchID": self.next_match_id(), "grossValue": gross,
                    "homeNotional": home, "foreignNotional": foreign, "trdType": "Regular",
                })  # fmt: skip
                volume += size
                turnover += gross
                home_total += home
                foreign_total += foreign
                if direction in ("PlusTick", "MinusTick"):
                    direction = "ZeroPlusTick" if direction == "PlusTick" else "ZeroMinusTick"
            match_ids.append(rows[-1]["trdMatchID"])
        book.last_direction = direction
        book.trade = dict(rows[-1])
        out.append(Delta("trade", "insert", symbol, rows))
        book.instrument.record_trades(
            rows[-1]["price"], direction, volume, turnover, home_total, foreign_total, ts, out
        )
        return match_ids
