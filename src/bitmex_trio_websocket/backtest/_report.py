"""What a backtest did: its fills, orders, position and equity over data time, and the figures.

Theory of operation: sans-IO. ``Recorder`` is told, as the run goes, every ``execution`` and
``order`` row of the backtest's account (as the websocket delivered them) and, once per data
second and after each fill, the account's state (``Sample``: money of each settlement currency,
position and price of each symbol in play). ``Recorder.report`` then builds the ``Report``: a
frozen object whose every figure is computed here from those rows, so the same rows give the
same report, byte for byte, in ``to_json``.

Units are BitMEX's: money in the settlement currency's smallest unit (``XBt``: satoshis,
``USDt``: millionths of a USDT), quantities in contracts (long positive), prices as quoted,
times as epoch seconds of data time (and BitMEX's ISO text for fills and orders).

The figures, for the report's ``currency`` (fills settled in another currency are listed but
not counted):

* ``realised_pnl``: the price PnL of closed contracts, before fees (the fills' ``realisedPnl``,
  which BitMEX gave net of the fill's commission, plus that commission back);
* ``fees``: commissions paid (the fills' ``execComm``; negative: maker rebates received);
* ``funding``: funding paid (the ``Funding`` executions' ``execComm``; negative: received);
* ``unrealised_pnl``: the open position at the mark price when the backtest ended;
* ``net_pnl`` = realised - fees - funding + unrealised = ``final_equity`` - ``initial_equity``
  (equity is the margin balance: wallet balance plus unrealised PnL);
* ``turnover``: the summed absolute value of the fills (``|execCost|``), ``volume`` their summed
  contracts;
* ``max_drawdown``: the largest fall of equity from an earlier peak over the equity series,
  ``max_drawdown_pct`` the largest such fall relative to its peak.

Series: ``equity`` has one point per data second in which the account's money or the position or
price of ``symbol`` changed, one at each fill, one at the start and one at the end; ``symbol``
is the one symbol the series and the picture follow (the one asked for, else the first filled,
else the first in play).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

__all__ = ["FORMAT", "Fill", "OrderRecord", "Point", "Recorder", "Report", "Sample"]

FORMAT: Final = "bitmex-trio-websocket backtest report"
VERSION: Final = 1


def iso(t: float) -> str:
    """BitMEX's timestamp text (milliseconds, ``Z``) for epoch seconds."""
    ms = round(t * 1000)
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def parse_iso(text: str) -> float:
    """Epoch seconds of BitMEX's timestamp text."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True, slots=True)
class Fill:
    """One fill of the account (an ``execution`` row with ``execType`` Trade)."""

    time: float  # data time, epoch seconds
    timestamp: str  # the row's transactTime, as BitMEX wrote it
    symbol: str
    side: str  # "Buy" or "Sell"
    qty: int  # contracts (lastQty)
    price: float  # lastPx
    liquidity: str  # "maker" (AddedLiquidity) or "taker" (RemovedLiquidity)
    fee: int  # execComm, settlement units (negative: a rebate)
    fee_rate: float  # commission
    realised_pnl: int  # of the contracts this fill closed, before the fee
    value: int  # |execCost|, settlement units
    currency: str  # settlCurrency
    order_id: str
    cl_ord_id: str
    exec_id: str


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """One order of the account as it last stood (its ``order`` row, merged)."""

    order_id: str
    cl_ord_id: str
    symbol: str
    side: str
    ord_type: str
    qty: int
    price: float | None
    stop_px: float | None
    status: str  # ordStatus
    filled: int  # cumQty
    avg_price: float | None
    created: str  # the first row's timestamp
    updated: str  # the last row's timestamp
    text: str


@dataclass(frozen=True, slots=True)
class Point:
    """The account at one data time: equity (margin balance), wallet balance and unrealised PnL
    in the report's currency; position and mid price of the report's symbol."""

    time: float
    equity: int
    wallet: int
    unrealised_pnl: int
    position: int
    price: float | None


@dataclass(frozen=True, slots=True)
class Sample:
    """What the runner reads of the account at one data time (see ``Recorder.sample``):
    ``money`` maps a currency to (margin balance, wallet balance, unrealised PnL);
    ``positions`` a symbol to its contracts; ``prices`` a symbol to its book's mid price."""

    time: float
    money: Mapping[str, tuple[int, int, int]]
    positions: Mapping[str, int]
    prices: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Report:
    """A backtest's result; see the module docstring for each figure. ``to_json`` is the
    report's file format; ``plot`` draws it (extra ``plot``)."""

    source: str
    seed: int
    start: float  # data time the strategy started at
    end: float  # data time the backtest ended at
    currency: str
    symbol: str | None
    messages: int  # market messages (history frames or synthetic market events) stepped
    initial_equity: int
    final_equity: int
    realised_pnl: int
    unrealised_pnl: int
    fees: int
    funding: int
    net_pnl: int
    turnover: int
    volume: int
    max_drawdown: int
    max_drawdown_pct: float
    position: int  # the symbol's position at the end
    fills: tuple[Fill, ...] = field(repr=False)
    orders: tuple[OrderRecord, ...] = field(repr=False)
    equity: tuple[Point, ...] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """The figures without the series: what the command line prints."""
        figures = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("fills", "orders", "equity")
        }
        figures["start"], figures["end"] = iso(self.start), iso(self.end)
        figures["fills"], figures["orders"] = len(self.fills), len(self.orders)
        return figures

    def to_dict(self) -> dict[str, Any]:
        """The JSON document as Python values (``to_json`` serialises exactly this)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "summary": self.summary(),
            "fills": [asdict(fill) for fill in self.fills],
            "orders": [asdict(order) for order in self.orders],
            # columns rather than objects: a day of points is 86,400 rows
            "equity": {
                "columns": ["time", "equity", "wallet", "unrealised_pnl", "position", "price"],
                "rows": [
                    [p.time, p.equity, p.wallet, p.unrealised_pnl, p.position, p.price]
                    for p in self.equity
                ],
            },
        }

    def to_json(self, *, indent: bool = False) -> bytes:
        """The report as JSON bytes (UTF-8); the same report always gives the same bytes."""
        option = orjson.OPT_INDENT_2 if indent else 0
        return orjson.dumps(self.to_dict(), option=option | orjson.OPT_SORT_KEYS) + b"\n"

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None) -> None:
        """Draw the price of ``symbol`` with the fills marked, the position and the equity into
        ``path`` (PNG, SVG, PDF: by its suffix) with matplotlib (extra ``plot``)."""
        from ._plot import render_report

        render_report(self, path, title=title)


class Recorder:
    """Collects a backtest's rows and samples and builds its ``Report``."""

    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self._orders: dict[str, dict[str, Any]] = {}  # orderID -> merged row, placement order
        self._created: dict[str, str] = {}
        self._funding: list[tuple[str, int]] = []  # (currency, execComm)
        self.samples: list[Sample] = []
        self.symbols_in_play: list[str] = []  # symbols the account placed orders in, in order

    # ------------------------------------------------------------------ rows

    def on_execution(self, row: Mapping[str, Any]) -> Fill | None:
        """One ``execution`` row; the ``Fill`` it was, if a trade."""
        kind = row.get("execType")
        if kind == "Funding":
            self._funding.append((str(row.get("settlCurrency") or ""), int(row["execComm"])))
            return None
        if kind != "Trade" or not row.get("lastQty"):
            return None
        stamp = str(row.get("transactTime") or row["timestamp"])
        comm = int(row.get("execComm") or 0)
        fill = Fill(
            time=parse_iso(stamp),
            timestamp=stamp,
            symbol=str(row["symbol"]),
            side=str(row["side"]),
            qty=int(row["lastQty"]),
            price=float(row["lastPx"]),
            liquidity="maker" if row.get("lastLiquidityInd") == "AddedLiquidity" else "taker",
            fee=comm,
            fee_rate=float(row.get("commission") or 0.0),
            realised_pnl=int(row.get("realisedPnl") or 0) + comm,
            value=abs(int(row.get("execCost") or 0)),
            currency=str(row.get("settlCurrency") or row.get("currency") or ""),
            order_id=str(row.get("orderID") or ""),
            cl_ord_id=str(row.get("clOrdID") or ""),
            exec_id=str(row.get("execID") or ""),
        )
        self.fills.append(fill)
        self._in_play(fill.symbol)
        return fill

    def on_order(self, row: Mapping[str, Any]) -> None:
        """One ``order`` row (whole, as a listener yields it: updates merged)."""
        order_id = row.get("orderID")
        if not isinstance(order_id, str):
            return
        stored = self._orders.get(order_id)
        if stored is None:
            self._orders[order_id] = stored = {}
            self._created[order_id] = str(row.get("timestamp") or "")
        stored.update(row)
        symbol = row.get("symbol")
        if isinstance(symbol, str):
            self._in_play(symbol)

    def _in_play(self, symbol: str) -> None:
        if symbol not in self.symbols_in_play:
            self.symbols_in_play.append(symbol)

    # ------------------------------------------------------------------ samples

    def sample(self, sample: Sample) -> None:
        """The account at ``sample.time`` (kept only if something changed; a sample at the
        time of the previous one replaces it, unless that one is the first: the account as
        the strategy found it)."""
        samples = self.samples
        if samples:
            last = samples[-1]
            if sample.time <= last.time and len(samples) > 1:
                samples[-1] = Sample(last.time, sample.money, sample.positions, sample.prices)
                return
            if (last.money, last.positions, last.prices) == (
                sample.money,
                sample.positions,
                sample.prices,
            ):
                return
        samples.append(sample)

    # ------------------------------------------------------------------ the report

    def report(
        self,
        *,
        source: str,
        seed: int,
        start: float,
        end: float,
        messages: int,
        currency: str | None = None,
        symbol: str | None = None,
        final: Sample | None = None,
    ) -> Report:
        """The ``Report``; ``currency``/``symbol`` default as the module docstring says;
        ``final`` is the account at ``end`` (always a point)."""
        samples = list(self.samples)
        if final is not None:
            if len(samples) > 1 and samples[-1].time >= final.time:
                samples[-1] = final
            else:
                samples.append(final)
        if symbol is None:
            symbol = self.fills[0].symbol if self.fills else None
            if symbol is None and self.symbols_in_play:
                symbol = self.symbols_in_play[0]
        if currency is None:
            currency = self.fills[0].currency if self.fills else "XBt"
        points = _points(samples, currency, symbol)
        fills = tuple(self.fills)
        counted = [fill for fill in fills if fill.currency == currency]
        initial = points[0].equity if points else 0
        final_point = points[-1] if points else None
        final_equity = final_point.equity if final_point else initial
        realised = sum(fill.realised_pnl for fill in counted)
        fees = sum(fill.fee for fill in counted)
        funding = sum(comm for cur, comm in self._funding if cur == currency)
        drawdown, drawdown_pct = max_drawdown(point.equity for point in points)
        return Report(
            source=source,
            seed=seed,
            start=start,
            end=end,
            currency=currency,
            symbol=symbol,
            messages=messages,
            initial_equity=initial,
            final_equity=final_equity,
            realised_pnl=realised,
            unrealised_pnl=final_point.unrealised_pnl if final_point else 0,
            fees=fees,
            funding=funding,
            net_pnl=final_equity - initial,
            turnover=sum(fill.value for fill in counted),
            volume=sum(fill.qty for fill in counted),
            max_drawdown=drawdown,
            max_drawdown_pct=drawdown_pct,
            position=final_point.position if final_point else 0,
            fills=fills,
            orders=tuple(
                _order_record(row, self._created[oid]) for oid, row in self._orders.items()
            ),
            equity=tuple(points),
        )


def max_drawdown(equity: Iterable[int]) -> tuple[int, float]:
    """``(largest fall from an earlier peak, largest fall relative to its peak)``."""
    peak: int | None = None
    worst, worst_pct = 0, 0.0
    for value in equity:
        if peak is None or value > peak:
            peak = value
            continue
        fall = peak - value
        worst = max(worst, fall)
        if peak > 0:
            worst_pct = max(worst_pct, fall / peak)
    return worst, round(worst_pct, 8)


def _points(samples: Sequence[Sample], currency: str, symbol: str | None) -> list[Point]:
    points: list[Point] = []
    last = len(samples) - 1
    for index, sample in enumerate(samples):
        equity, wallet, unrealised = sample.money.get(currency, (0, 0, 0))
        position = sample.positions.get(symbol, 0) if symbol is not None else 0
        price = sample.prices.get(symbol) if symbol is not None else None
        shown = (equity, wallet, unrealised, position, price)
        if points and index != last and _shown(points[-1]) == shown:
            continue  # nothing this series shows changed (another symbol's or currency's did)
        points.append(Point(sample.time, *shown))
    return points


def _shown(point: Point) -> tuple[int, int, int, int, float | None]:
    return point.equity, point.wallet, point.unrealised_pnl, point.position, point.price


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _order_record(row: Mapping[str, Any], created: str) -> OrderRecord:
    return OrderRecord(
        order_id=str(row.get("orderID") or ""),
        cl_ord_id=str(row.get("clOrdID") or ""),
        symbol=str(row.get("symbol") or ""),
        side=str(row.get("side") or ""),
        ord_type=str(row.get("ordType") or ""),
        qty=int(row.get("orderQty") or 0),
        price=_number(row.get("price")),
        stop_px=_number(row.get("stopPx")),
        status=str(row.get("ordStatus") or ""),
        filled=int(row.get("cumQty") or 0),
        avg_price=_number(row.get("avgPx")),
        created=created,
        updated=str(row.get("timestamp") or ""),
        text=str(row.get("text") or ""),
    )
