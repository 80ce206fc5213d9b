"""Backtests in data time: a strategy written against the live API, run over history.

Theory of operation: a strategy is ``async def strategy(bws, rest)``, taking the websocket
client (``BitMEXWebsocket``) and the REST client (``BitMEXRest``), exactly as it would live.
``run_backtest(strategy, source)`` connects both, in memory, to the emulator trading ``source``
(BitMEX's history from a recording or Tardis slices, or the seeded synthetic market) and runs
everything under trio's ``MockClock``: data time is trio time, so the strategy's sleeps, the
clients' heartbeats and dead man's switch, and the market all keep the data's pace while a day
of data costs only the CPU time of its messages. The orders fill by the emulator's fill model
(docs/fill-model.rst; history has no market impact, docs/trading-history.rst says what that
means for results). ``open_backtest`` gives the two clients without running anything, for
code that drives its own ``trio.run``. The runner is in ``_runner``, the report in ``_report``,
its picture in ``_plot``, the command line's progress line in ``_progress``.

::

    from bitmex_trio_websocket.backtest import run_backtest

    async def strategy(bws, rest):
        async for quote in bws.listen("quote", "XBTUSD"):
            ...  # await rest.place_order(symbol="XBTUSD", side="Buy", orderQty=100, ...)

    report = run_backtest(strategy, "2025-01-01_XBTUSD.json.gz", seed=1)
    print(report.net_pnl, report.max_drawdown, len(report.fills))
    open("report.json", "wb").write(report.to_json())
    report.plot("report.png")  # extra "plot"

Deterministic: the same source, strategy and seed give the same report bytes (``to_json``).

The report format (``Report.to_json``, format version 1): one JSON object with sorted keys::

    {"format": "bitmex-trio-websocket backtest report", "version": 1,
     "summary": {"source", "seed", "start", "end" (ISO data times), "currency", "symbol",
                 "messages", "initial_equity", "final_equity", "realised_pnl",
                 "unrealised_pnl", "fees", "funding", "net_pnl", "turnover", "volume",
                 "max_drawdown", "max_drawdown_pct", "position", "fills", "orders" (counts)},
     "fills": [{"time", "timestamp", "symbol", "side", "qty", "price", "liquidity",
                "fee", "fee_rate", "realised_pnl", "value", "currency", "order_id",
                "cl_ord_id", "exec_id"}, ...],
     "orders": [{"order_id", "cl_ord_id", "symbol", "side", "ord_type", "qty", "price",
                 "stop_px", "status", "filled", "avg_price", "created", "updated",
                 "text"}, ...],
     "equity": {"columns": ["time", "equity", "wallet", "unrealised_pnl", "position",
                            "price"],
                "rows": [[...], ...]}}

Money is in settlement units (``XBt``: satoshis; ``USDt``: millionths of a USDT), quantities in
contracts, times (``time``) in epoch seconds of data time; ``_report``'s docstring defines each
figure (PnL before fees, fees and funding apart, net PnL = final - initial equity, drawdown over
the equity series). ``orders`` hold each order as it last stood, in placement order; ``fills``
every ``Trade`` execution of the account, in order.
"""

from ._report import Fill, OrderRecord, Point, Report
from ._runner import (
    BACKTEST_ACCOUNT,
    SYNTHETIC,
    Progress,
    open_backtest,
    run_backtest,
)

__all__ = [
    "BACKTEST_ACCOUNT",
    "SYNTHETIC",
    "Fill",
    "OrderRecord",
    "Point",
    "Progress",
    "Report",
    "open_backtest",
    "run_backtest",
]
