"""A backtest's picture: the price with the strategy's fills marked, its position, its equity.

Theory of operation: ``render_report`` draws a ``Report`` with matplotlib (extra ``plot``,
imported on use through ``_export``'s ``require``, so a missing matplotlib is one clear
``MissingExtraError`` line naming the ``pip install`` that brings it) on an off-screen
``Figure`` (no pyplot, no display, no global state). Three panels share the data-time axis: the
report symbol's mid price as a step line (it holds until the next sample) with buys as green
upward triangles and sells as red downward ones at their fill prices; the position in contracts;
the equity (margin balance) in the report's currency, with the largest drawdown shaded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final

from .._export._errors import ExportError, require

if TYPE_CHECKING:
    from ._report import Report

__all__ = ["render_report"]

_UNITS: Final = {"XBt": ("XBT", 1e8), "USDt": ("USDT", 1e6)}


def render_report(report: Report, path: str | os.PathLike[str], *, title: str | None = None
                  ) -> None:  # fmt: skip
    """Save the picture of ``report`` to ``path`` (format by suffix)."""
    require("matplotlib", extra="plot", purpose="plotting a backtest")
    figure_module = require("matplotlib.figure", extra="plot", purpose="plotting a backtest")
    np = require("numpy", extra="plot", purpose="plotting a backtest")
    points = report.equity
    if not points:
        raise ExportError("nothing to plot: the backtest recorded no account state")

    def dates(seconds: Any) -> Any:
        return (np.asarray(seconds, dtype=np.float64) * 1e6).astype("datetime64[us]")

    times = np.array([p.time for p in points])
    x = dates(times)
    unit, scale = _UNITS.get(report.currency, (report.currency, 1.0))
    figure = figure_module.Figure(figsize=(11, 7.5), layout="constrained")
    price, position, equity = figure.subplots(3, 1, sharex=True, height_ratios=(3, 1.2, 1.8))

    priced = [(p.time, p.price) for p in points if p.price is not None]
    if priced:
        price.step(dates([t for t, _ in priced]), [v for _, v in priced], where="post",
                   linewidth=0.8, color="#1f4e9c", label=f"{report.symbol} mid")  # fmt: skip
    fills = [fill for fill in report.fills if fill.symbol == report.symbol]
    for side, marker, colour in (("Buy", "^", "#2e8b57"), ("Sell", "v", "#c0392b")):
        chosen = [fill for fill in fills if fill.side == side]
        if chosen:
            price.scatter(dates([f.time for f in chosen]), [f.price for f in chosen],
                          marker=marker, color=colour, s=28, zorder=3,
                          label=f"{side.lower()}s ({len(chosen)})")  # fmt: skip
    price.set_ylabel("price")
    price.legend(loc="upper left", fontsize="small")

    position.step(x, [p.position for p in points], where="post", linewidth=0.9, color="#6a3d9a")
    position.axhline(0, color="black", linewidth=0.5)
    position.set_ylabel("position")

    values = np.array([p.equity for p in points], dtype=np.float64) / scale
    equity.step(x, values, where="post", linewidth=0.9, color="#b5651d")
    peaks = np.maximum.accumulate(values)
    equity.fill_between(x, values, peaks, step="post", color="#c0392b", alpha=0.15,
                        label="drawdown")  # fmt: skip
    equity.set_ylabel(f"equity ({unit})")
    equity.set_xlabel("data time (UTC)")
    for axes in (price, position, equity):
        axes.grid(True, linewidth=0.3, alpha=0.6)
        axes.ticklabel_format(axis="y", useOffset=False, style="plain")
    net = report.net_pnl / scale
    figure.suptitle(
        title
        or f"{report.source}: {report.symbol or 'no symbol'}, {len(report.fills)} fills, "
        f"net {net:+.8g} {unit}, max drawdown {report.max_drawdown / scale:.8g} {unit}"
    )
    figure.savefig(os.fspath(path), dpi=110)
