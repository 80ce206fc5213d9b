"""A hand-made XBTUSD history whose backtest figures are computed by hand.

Prices are chosen so that inverse values are whole: 100 contracts are worth 1e8 * 100 / price
satoshis, 1 XBT at 100.0 and 0.8 XBT at 125.0. The data:

* T0: instrument (mark 100, taker fee 0.075 %), book bids 99.5 x 1000 / asks 100.0 x 1000;
* T0 + 5: the mark falls to 95.0 (a long's drawdown);
* T0 + 10: the book moves up (bids 125.0 x 1000, asks 125.5 x 1000), the mark to 125.0;
* T0 + 30: the mark back at 100.0 (the data ends here).

``buy_then_sell`` buys 100 at market when it starts (T0 + 1, after the emulator's opening second:
100.0 from the asks) and sells them at market 20 s later (T0 + 21: 125.0 from the bids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import trio

from bitmex_trio_websocket.emulator.market._schemas import TABLE_SCHEMAS

from ..replay.helpers import write_slices
from ..support.history_frames import INSTRUMENT, T0, TS, level, msg

# By hand (see the module docstring):
BUY_COST: Final = 100_000_000  # |execCost| of 100 at 100.0
SELL_COST: Final = 80_000_000  # |execCost| of 100 at 125.0
BUY_FEE: Final = 75_000  # 0.075 % taker
SELL_FEE: Final = 60_000
REALISED: Final = 20_000_000  # value at exit - value at entry: -80e6 - (-100e6)
# At mark 95.0 the long's value is round(-1e8 * 100 / 95) = -105,263,158: 5,263,158 under cost.
LOW_EQUITY: Final = 10**8 - BUY_FEE - 5_263_158
FINAL_EQUITY: Final = 10**8 + REALISED - BUY_FEE - SELL_FEE


def mark(price: float) -> dict[str, Any]:
    return {"symbol": "XBTUSD", "markPrice": price, "timestamp": TS}


def frames() -> list[tuple[float, str]]:
    book_meta = {"keys": ["symbol", "id", "side"], "types": TABLE_SCHEMAS["orderBookL2"].types}
    book = [level(1, "Sell", 1000, 100.0), level(2, "Buy", 1000, 99.5)]
    moved = [level(3, "Sell", 1000, 125.5), level(4, "Buy", 1000, 125.0)]
    gone = [{"symbol": "XBTUSD", "id": 1, "side": "Sell"}, {"symbol": "XBTUSD", "id": 2,
                                                             "side": "Buy"}]  # fmt: skip
    return [
        (T0, msg("instrument", "partial", [INSTRUMENT], keys=["symbol"], filter={})),
        (T0, msg("orderBookL2", "partial", book, **book_meta, filter={"symbol": "XBTUSD"})),
        (T0, msg("trade", "partial", [], keys=[], filter={"symbol": "XBTUSD"})),
        (T0 + 5, msg("instrument", "update", [mark(95.0)])),
        (T0 + 10, msg("orderBookL2", "insert", moved)),
        (T0 + 10, msg("orderBookL2", "delete", gone)),
        (T0 + 10, msg("instrument", "update", [mark(125.0)])),
        (T0 + 30, msg("instrument", "update", [mark(100.0)])),
    ]


def write_history(folder: Path) -> Path:
    return write_slices(folder / "history.txt", frames())


async def buy_then_sell(bws: Any, rest: Any) -> None:
    await rest.place_order(symbol="XBTUSD", side="Buy", orderQty=100, ordType="Market")
    await trio.sleep(20)
    await rest.place_order(symbol="XBTUSD", side="Sell", orderQty=100, ordType="Market")
