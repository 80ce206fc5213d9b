"""Candles: ``tradeBin1m/5m/1h/1d`` and ``quoteBin1m/5m/1h/1d`` for every symbol, on the clock.

Theory of operation: ``Bins`` accumulates each symbol's trades into the open bin of every size
(``record``) and, when the market's clock passes a bin's end (``close_due``), sends one
``insert`` per symbol and bin size, dated the bin's **end** (ccxt subtracts the duration to get
the open; protocol reference section 9) and keeps it as the table's partial row: the partial of
``tradeBin1m:XBTUSD`` is the last closed bin, as BitMEX's was. A trade bin has ``open``,
``high``, ``low``, ``close``, ``trades``, ``volume``, ``vwap``, ``lastSize``, ``turnover``,
``homeNotional`` and ``foreignNotional`` (the 2024-11 XBTUSD tradeBin1m row,
``../shared/captures/nautilus_trader_bitmex_ws_rows.jsonl`` line 16; the 2025 tradeBin5m row,
``jkorf_BitMEX.Net_subscription_tests.jsonl`` line 12); a bin without trades repeats the last
close with zero volume and omits ``vwap`` and ``lastSize`` (BitMEX omits nulls since 2023). A
quote bin is the quote in force at the bin's end. Index symbols get trade bins of their
published prices (``trades`` counts publications, volume 0). Nothing here reads a clock: the
market passes ``now`` and its time formatter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Final

from ._schemas import Delta

__all__ = ["BIN_SIZES", "Bins"]

BIN_SIZES: Final = (("1m", 60), ("5m", 300), ("1h", 3600), ("1d", 86400))
MAX_CATCH_UP: Final = 1440  # bins of one size sent at most after a pause in the clock


class _Open:
    """One symbol's open trade bin of one size."""

    __slots__ = ("close", "foreign", "high", "home", "last_size", "low", "open", "trades",
                 "turnover", "volume")  # fmt: skip

    def __init__(self, price: float) -> None:
        self.open = self.high = self.low = self.close = price
        self.trades = self.volume = self.turnover = self.last_size = 0
        self.home = self.foreign = 0.0

    def add(self, price: float, size: int, gross: int, home: float, foreign: float) -> None:
        if not self.trades:
            self.open = self.high = self.low = price
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.close = price
        self.trades += 1
        self.volume += size
        self.turnover += abs(gross)
        self.home += home
        self.foreign += foreign
        self.last_size = size

    def row(self, ts: str, symbol: str, decimals: int) -> dict[str, Any]:
        row: dict[str, Any] = {
            "timestamp": ts, "symbol": symbol, "open": self.open, "high": self.high,
            "low": self.low, "close": self.close, "trades": self.trades, "volume": self.volume,
        }  # fmt: skip
        if self.volume:
            row["vwap"] = round(self.foreign / self.home, decimals + 4) if self.home else self.close
            row["lastSize"] = self.last_size
        row["turnover"] = self.turnover
        row["homeNotional"] = self.home
        row["foreignNotional"] = self.foreign
        return row


class Bins:
    """Every symbol's open and last closed bins; see the module docstring."""

    def __init__(self, start: float, fmt: Callable[[float], str]) -> None:
        self._fmt = fmt
        self._open: dict[tuple[str, int], _Open] = {}
        self._quotes: dict[str, dict[str, Any]] = {}
        self._decimals: dict[str, int] = {}
        self.last: dict[str, dict[str, dict[str, Any]]] = {}  # table -> symbol -> last bin row
        self._ends = {
            seconds: (math.floor(start / seconds) + 1) * seconds for _, seconds in BIN_SIZES
        }
        self.next_due = min(self._ends.values())

    def add_symbol(
        self, symbol: str, price: float, decimals: int, quote: dict[str, Any] | None, start: float
    ) -> None:
        """Start binning ``symbol``; its partial rows are a quiet bin that closed at the last
        boundary before ``start`` at ``price`` (and the quote in force)."""
        self._decimals[symbol] = decimals
        for name, seconds in BIN_SIZES:
            self._open[(symbol, seconds)] = _Open(price)
            end = self._fmt(math.floor(start / seconds) * seconds)
            row = _Open(price).row(end, symbol, decimals)
            self.last.setdefault(f"tradeBin{name}", {})[symbol] = row
            if quote is not None:
                self.last.setdefault(f"quoteBin{name}", {})[symbol] = {**quote, "timestamp": end}
        if quote is not None:
            self._quotes[symbol] = quote

    def record(self, symbol: str, rows: Iterable[dict[str, Any]]) -> None:
        """Trades (``trade`` rows) printed in ``symbol``."""
        opened = [self._open[(symbol, seconds)] for _, seconds in BIN_SIZES]
        for row in rows:
            price, size = row["price"], row["size"]
            gross = row.get("grossValue", 0)
            home, foreign = row.get("homeNotional", 0.0), row.get("foreignNotional", 0.0)
            for bin_ in opened:
                bin_.add(price, size, gross, home, foreign)

    def quote(self, symbol: str, row: dict[str, Any]) -> None:
        """The quote of ``symbol`` changed (the row is kept, not copied: never mutated)."""
        self._quotes[symbol] = row

    def close_due(self, now: float, out: list[Delta]) -> None:
        """Close every bin that ended at or before ``now``, oldest first."""
        while self.next_due <= now:
            end = self.next_due
            for name, seconds in BIN_SIZES:
                if self._ends[seconds] == end:
                    self._close(name, seconds, end, out)
                    self._ends[seconds] = end + seconds
                    if now - self._ends[seconds] > MAX_CATCH_UP * seconds:  # a long pause
                        self._ends[seconds] = (math.floor(now / seconds) + 1) * seconds
            self.next_due = min(self._ends.values())

    def _close(self, name: str, seconds: int, end: float, out: list[Delta]) -> None:
        ts = self._fmt(end)
        trades = self.last.setdefault(f"tradeBin{name}", {})
        quotes = self.last.setdefault(f"quoteBin{name}", {})
        for symbol, decimals in self._decimals.items():
            bin_ = self._open[(symbol, seconds)]
            row = bin_.row(ts, symbol, decimals)
            trades[symbol] = row
            out.append(Delta(f"tradeBin{name}", "insert", symbol, [dict(row)]))
            self._open[(symbol, seconds)] = _Open(bin_.close)
            quote = self._quotes.get(symbol)
            if quote is not None:
                quoted = {**quote, "timestamp": ts}
                quotes[symbol] = quoted
                out.append(Delta(f"quoteBin{name}", "insert", symbol, [dict(quoted)]))

    def rows(self, table: str, symbols: Iterable[str]) -> list[dict[str, Any]]:
        """Partial rows: the last closed bin of each symbol."""
        last = self.last.get(table, {})
        return [dict(last[symbol]) for symbol in symbols if symbol in last]
