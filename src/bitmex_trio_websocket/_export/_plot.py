"""The first picture of a market's history: mid price, spread and traded volume over data time.

Theory of operation: ``MarketSeries`` is sans-IO. A replay in data time hands it each message's
``ApplyResult`` with the time the message was received (``note``); per symbol it keeps a point
whenever the book's best bid or ask changed (``t``, mid, spread) and every traded size (``t``,
size, side), in compact ``array`` columns. The plot shows the symbol named, or else the busiest
one; ``quote`` rows serve as a book too (``bidPrice``/``askPrice``).

``render_plot`` draws it with matplotlib (extra ``plot``, imported on use) on an off-screen
``Figure`` (no pyplot, no display, no global state): three panels sharing the time axis, mid price
and spread as step lines (the book holds its value until the next change), volume as bars per
time bucket, buys above the axis and sells below. Very long series are thinned to the last value
per pixel-sized bucket before drawing, which looks the same and draws in constant time.
"""

from __future__ import annotations

import os
from array import array
from typing import Any, Final

from .._events import ApplyResult
from .._storage import Storage
from ._errors import ExportError, require

__all__ = ["MarketSeries", "render_plot"]

BOOK_TABLES: Final = frozenset({"orderBookL2", "orderBookL2_25", "orderBook10"})
_MAX_POINTS: Final = 4000  # about one per pixel column of the saved figure
_NICE_BUCKETS: Final = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    21600,
)


class Track:
    """One symbol's top of book changes and trades, as compact columns."""

    __slots__ = ("mids", "spreads", "times", "top", "trade_buys", "trade_sizes", "trade_times")

    def __init__(self) -> None:
        self.times = array("d")
        self.mids = array("d")
        self.spreads = array("d")
        self.trade_times = array("d")
        self.trade_sizes = array("d")
        self.trade_buys = array("b")
        self.top: tuple[float, float] | None = None

    def weight(self) -> tuple[bool, int]:
        """How much there is to see: having trades first, then points."""
        return bool(self.trade_times), len(self.times) + len(self.trade_times)


class MarketSeries:
    """Top of book and trades over data time; see the module docstring.

    ``symbol``: the one to follow; ``None`` follows every symbol and draws the busiest (one
    with trades first).
    """

    def __init__(self, *, symbol: str | None = None, book_table: str = "orderBookL2") -> None:
        if book_table not in BOOK_TABLES and book_table != "quote":
            raise ValueError(f"{book_table!r} is neither an order book table nor quote")
        self.symbol = symbol
        self.book_table = book_table
        self.tracks: dict[str, Track] = {}

    def chosen(self) -> tuple[str, Track] | None:
        """The symbol to draw and its track (the named one, else the busiest)."""
        if self.symbol is not None:
            track = self.tracks.get(self.symbol)
            return None if track is None else (self.symbol, track)
        if not self.tracks:
            return None
        return max(self.tracks.items(), key=lambda item: item[1].weight())

    def note(self, result: ApplyResult, t: float, storage: Storage) -> None:
        """Take note of a message received at ``t`` and just applied to ``storage``."""
        table = result.table
        if table == self.book_table:
            for change in result.changes:
                if change.symbol is not None and self.symbol in (None, change.symbol):
                    self._sample(change.symbol, t, storage)
        elif table == "trade" and result.action == "insert":
            for change in result.changes:
                symbol = change.symbol
                if symbol is None or self.symbol not in (None, symbol):
                    continue
                track = self._track(symbol)
                for row in change.rows:
                    size = row.get("size")
                    if isinstance(size, int | float) and not isinstance(size, bool):
                        track.trade_times.append(t)
                        track.trade_sizes.append(float(size))
                        track.trade_buys.append(1 if row.get("side") == "Buy" else 0)

    def _track(self, symbol: str) -> Track:
        track = self.tracks.get(symbol)
        if track is None:
            track = self.tracks[symbol] = Track()
        return track

    def _sample(self, symbol: str, t: float, storage: Storage) -> None:
        if self.book_table == "quote":
            rows = storage.rows("quote", symbol)
            last = rows[-1] if rows else {}
            bid, ask = last.get("bidPrice"), last.get("askPrice")
        else:
            book = storage.book(symbol, self.book_table)
            best_bid, best_ask = book.best_bid, book.best_ask
            bid = best_bid[0] if best_bid else None
            ask = best_ask[0] if best_ask else None
        if not isinstance(bid, int | float) or not isinstance(ask, int | float):
            return
        track = self._track(symbol)
        top = (float(bid), float(ask))
        if top != track.top:
            track.top = top
            track.times.append(t)
            track.mids.append((top[0] + top[1]) / 2)
            track.spreads.append(top[1] - top[0])


def render_plot(
    series: MarketSeries,
    path: str | os.PathLike[str],
    *,
    bucket: float | None = None,
    title: str | None = None,
) -> float:
    """Draw ``series`` to ``path`` (PNG, or any format matplotlib knows by the suffix).

    ``bucket``: seconds of data time per volume bar (default: about 200 bars over the span).
    Returns the bucket used. ``ExportError`` when there is no book to draw.
    """
    chosen = series.chosen()
    if chosen is None or not chosen[1].times:
        what = f"{series.book_table}:{series.symbol}" if series.symbol else series.book_table
        raise ExportError(f"nothing to plot: the data holds no {what} top of book")
    symbol, track = chosen
    np: Any = require("numpy", extra="plot", purpose="plotting")
    figure_module: Any = require("matplotlib.figure", extra="plot", purpose="plotting")

    times = np.frombuffer(track.times, dtype=np.float64)
    trade_times = np.frombuffer(track.trade_times, dtype=np.float64)
    start = float(times[0])
    end = max(float(times[-1]), float(trade_times[-1]) if len(trade_times) else start)
    span = max(end - start, 1e-3)
    if bucket is None:
        bucket = float(next((b for b in _NICE_BUCKETS if span / b <= 240), _NICE_BUCKETS[-1]))
    point_times, mids, spreads = _thinned(
        np,
        times,
        np.frombuffer(track.mids, dtype=np.float64),
        np.frombuffer(track.spreads, dtype=np.float64),
        start,
        end,
    )

    def dates(seconds: Any) -> Any:
        return (np.asarray(seconds) * 1e6).astype("datetime64[us]")

    figure = figure_module.Figure(figsize=(11, 7.5), layout="constrained")
    price, spread, volume = figure.subplots(3, 1, sharex=True, height_ratios=(3, 1.2, 1.8))
    x = dates(np.append(point_times, end))
    price.step(x, np.append(mids, mids[-1]), where="post", linewidth=0.8, color="#1f4e9c")
    price.set_ylabel("mid price")
    spread.step(x, np.append(spreads, spreads[-1]), where="post", linewidth=0.8, color="#b5651d")
    spread.set_ylabel("spread")
    if len(trade_times):
        edges = start + bucket * np.arange(int(span // bucket) + 2)
        sizes = np.frombuffer(track.trade_sizes, dtype=np.float64)
        buys = np.frombuffer(track.trade_buys, dtype=np.int8).astype(bool)
        buy_volume, _ = np.histogram(trade_times[buys], bins=edges, weights=sizes[buys])
        sell_volume, _ = np.histogram(trade_times[~buys], bins=edges, weights=sizes[~buys])
        width = np.timedelta64(max(int(bucket * 1e6), 1), "us")
        left = dates(edges[:-1])
        volume.bar(left, buy_volume, width=width, align="edge", color="#2e8b57", label="buys")
        volume.bar(left, -sell_volume, width=width, align="edge", color="#c0392b", label="sells")
        volume.legend(loc="upper right", fontsize="small")
    else:
        volume.text(0.5, 0.5, "no trades in the data", ha="center", va="center",
                    transform=volume.transAxes)  # fmt: skip
        volume.set_yticks([])
    volume.axhline(0, color="black", linewidth=0.5)
    volume.set_ylabel(f"volume per {_duration(bucket)}")
    volume.set_xlabel("data time (UTC)")
    for axes in (price, spread, volume):
        axes.grid(True, linewidth=0.3, alpha=0.6)
        axes.ticklabel_format(axis="y", useOffset=False, style="plain")
    first, last = (str(d).replace("T", " ")[:19] for d in dates([start, end]))
    figure.suptitle(title or f"{symbol} ({series.book_table}), {first} to {last} UTC")
    figure.savefig(os.fspath(path), dpi=110)
    return bucket


def _thinned(np: Any, times: Any, mids: Any, spreads: Any, start: float, end: float) -> Any:
    """The last point in each of ``_MAX_POINTS`` equal time buckets (all points if fewer)."""
    if len(times) <= _MAX_POINTS:
        return times, mids, spreads
    edges = np.linspace(start, end, _MAX_POINTS + 1)[1:]
    last = np.unique(np.searchsorted(times, edges, side="right") - 1)
    last = last[last >= 0]
    return times[last], mids[last], spreads[last]


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
