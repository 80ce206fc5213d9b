"""Contract maths (emulator/exchange/_positions.py) against numbers computed by hand.

Each test works one formula of docs/contract-maths.rst on the three contract kinds: XBTUSD
(inverse, multiplier -100000000, lot 100, XBt), XBTUSDT (linear, multiplier 1, 10^6 contracts
per XBT, USDt) and ETHUSD (quanto, multiplier 100 XBt per USD per contract). The arithmetic is
in the comments so a reader can check it without running anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import pytest

from bitmex_trio_websocket.emulator.exchange._positions import (
    CROSS,
    NO_ID,
    Position,
    Terms,
    apply_fill,
    apply_funding,
    fill_costs,
    funding_execution,
    is_liquidated,
    liquidate,
    liquidation_execution,
    liquidation_prices,
    margin_row,
    open_order_costs,
    opening_qty,
    order_cost,
    position_margins,
    position_row,
    valid_leverage,
    wallet_row,
)
from bitmex_trio_websocket.emulator.market._instruments import Contract, spec_for

XBTUSD = Contract(spec_for("XBTUSD"))
XBTUSDT = Contract(spec_for("XBTUSDT"))
ETHUSD = Contract(spec_for("ETHUSD"))
TS = "2025-01-01T04:00:00.000Z"
CAPTURES: Final = Path(__file__).resolve().parents[4] / "shared" / "captures"
CCXT: Final = CAPTURES / "ccxt_pro_bitmex_comment_examples.jsonl"


def fill(contract: Contract, pos: Position, signed: int, price: float, maker: bool = False) -> int:
    exec_cost, exec_comm, _ = fill_costs(contract, signed, price, maker)
    return apply_fill(contract, pos, signed, price, exec_cost, exec_comm)


def opened(contract: Contract, qty: int, price: float, leverage: float = 10.0) -> Position:
    pos = Position(leverage)
    pos.qty = qty
    pos.cost = contract.value(qty, price)
    return pos


# ------------------------------------------------------------------ values, fees, entry


def test_fill_costs_taker_fee_and_maker_rebate() -> None:
    # XBTUSD buy 1000 @ 50000: 10 lots * round(-1e8 * 100 / 50000) = -2,000,000 XBt
    assert fill_costs(XBTUSD, 1000, 50_000.0, False) == (-2_000_000, 1500, 0.00075)
    assert fill_costs(XBTUSD, 1000, 50_000.0, True) == (-2_000_000, -500, -0.00025)
    # XBTUSDT sell 1000 @ 50000: 1000 * 50000 * 1 = 5e7 USDt (0.001 XBT = 50 USDT)
    assert fill_costs(XBTUSDT, -1000, 50_000.0, False) == (-50_000_000, 37_500, 0.00075)
    # ETHUSD buy 10 @ 3000: 10 * 3000 * 100 = 3,000,000 XBt; maker rebate 750
    assert fill_costs(ETHUSD, 10, 3000.0, True) == (3_000_000, -750, -0.00025)


def test_per_instrument_fees() -> None:
    terms = Terms(maker_fee=-0.0001, taker_fee=0.0005)
    assert fill_costs(XBTUSDT, 1000, 50_000.0, False, terms) == (50_000_000, 25_000, 0.0005)
    assert fill_costs(XBTUSDT, 1000, 50_000.0, True, terms) == (50_000_000, -5_000, -0.0001)


def test_average_entry_inverse_is_the_harmonic_mean() -> None:
    pos = Position()
    # taker: comm 1500 on 2,000,000 and 1875 on 2,500,000 (10 * round(-1e10 / 40000))
    assert fill(XBTUSD, pos, 1000, 50_000.0) == -1500
    assert fill(XBTUSD, pos, 1000, 40_000.0) == -1875
    assert (pos.qty, pos.cost, pos.comm, pos.realised_pnl) == (2000, -4_500_000, 3375, -3375)
    # 2000 / (1000/50000 + 1000/40000) = 44444.44 (two decimals: tick 0.1 + one)
    assert XBTUSD.entry_price(pos.qty, pos.cost) == 44_444.44


def test_average_entry_linear_and_quanto_are_the_arithmetic_mean() -> None:
    pos = Position()
    fill(XBTUSDT, pos, 2000, 50_000.0)
    fill(XBTUSDT, pos, 2000, 40_000.0)
    assert (pos.qty, pos.cost) == (4000, 180_000_000)
    assert XBTUSDT.entry_price(pos.qty, pos.cost) == 45_000.0
    eth = Position()
    fill(ETHUSD, eth, -10, 3000.0)
    fill(ETHUSD, eth, -30, 3400.0)
    # (10 * 3000 + 30 * 3400) / 40 = 3300
    assert (eth.qty, eth.cost) == (-40, -13_200_000)
    assert ETHUSD.entry_price(eth.qty, eth.cost) == 3300.0


# ------------------------------------------------------------------ realised PnL


def test_realised_pnl_on_reduce_and_flip_inverse() -> None:
    pos = opened(XBTUSD, 2000, 44_444.44)
    pos.cost = -4_500_000  # as bought above: 1000 @ 50000 + 1000 @ 40000
    # sell 500 @ 60000: entry share round(-4.5e6 * 500 / 2000) = -1,125,000; exit value
    # 5 * round(-1e10 / 60000) = -833,335; PnL 291,665; taker comm round(833,335 * 0.00075) = 625
    assert fill(XBTUSD, pos, -500, 60_000.0) == 291_665 - 625
    assert (pos.qty, pos.cost, pos.realised_cost) == (1500, -3_375_000, -1_125_000)
    # sell 2500 @ 50000: closes 1500 (PnL -3,000,000 + 3,375,000 = 375,000), opens 1000 short
    # at 50000 (cost +2,000,000); comm round(5,000,000 * 0.00075) = 3750
    assert fill(XBTUSD, pos, -2500, 50_000.0) == 375_000 - 3750
    assert (pos.qty, pos.cost) == (-1000, 2_000_000)
    assert XBTUSD.entry_price(pos.qty, pos.cost) == 50_000.0
    assert pos.realised_pnl == 291_040 + 371_250


def test_realised_pnl_linear_and_quanto() -> None:
    pos = opened(XBTUSDT, 4000, 45_000.0)
    # sell 1000 @ 60000 as maker: 1000 * (60000 - 45000) = 15,000,000 USDt (15 USDT) plus the
    # rebate 0.00025 * 60,000,000 = 15,000
    assert fill(XBTUSDT, pos, -1000, 60_000.0, maker=True) == 15_015_000
    assert (pos.qty, pos.cost) == (3000, 135_000_000)
    eth = opened(ETHUSD, -40, 3300.0)
    # buy back 50 @ 3000: closes 40 short (40 * 100 * (3300 - 3000) = 1,200,000 XBt), opens 10
    # long at 3000; taker comm round(50 * 3000 * 100 * 0.00075) = 11,250
    assert fill(ETHUSD, eth, 50, 3000.0) == 1_200_000 - 11_250
    assert (eth.qty, eth.cost) == (10, 3_000_000)


# ------------------------------------------------------------------ unrealised PnL and rows


def test_unrealised_pnl_at_mark_in_the_position_row() -> None:
    pos = opened(XBTUSD, 1000, 50_000.0)
    row = position_row(1, "XBTUSD", XBTUSD, pos, 55_000.0, (0, 0, 0, 0), TS)
    # mark value 10 * round(-1e10 / 55000) = -1,818,180; PnL -1,818,180 + 2,000,000
    assert row["markValue"] == -1_818_180
    assert row["unrealisedPnl"] == 181_820
    assert row["unrealisedPnlPcnt"] == 0.0909  # 181,820 / 2,000,000
    assert row["unrealisedRoePcnt"] == 0.9091  # the unrounded ratio times leverage 10
    assert (row["homeNotional"], row["foreignNotional"]) == (0.0181818, 1000.0)
    short = opened(XBTUSDT, -3000, 50_000.0)
    row = position_row(1, "XBTUSDT", XBTUSDT, short, 48_000.0, (0, 0, 0, 0), TS)
    # short 0.003 XBT from 50000 to 48000: 3000 * 2000 = 6,000,000 USDt (6 USDT)
    assert (row["unrealisedPnl"], row["homeNotional"]) == (6_000_000, -0.003)
    eth = opened(ETHUSD, 10, 3000.0)
    row = position_row(1, "ETHUSD", ETHUSD, eth, 2900.0, (0, 0, 0, 0), TS)
    assert row["unrealisedPnl"] == -100_000  # 10 * 100 * (2900 - 3000)


def test_isolated_margins_inverse() -> None:
    pos = opened(XBTUSD, 1000, 50_000.0)
    m = position_margins(XBTUSD, pos, 0)
    # posInit 10% of 2,000,000; posComm: taker fee at the bankruptcy value 2,000,000 * 1.1;
    # posMaint 0.5% + posComm
    assert (m.pos_init, m.pos_comm, m.pos_cross) == (200_000, 1650, 0)
    assert (m.pos_margin, m.pos_maint, m.maint_margin) == (201_650, 11_650, 201_650)
    short = opened(XBTUSD, -1000, 50_000.0)
    assert position_margins(XBTUSD, short, 0).pos_comm == 1350  # 2,000,000 * 0.9 * 0.00075


def test_position_row_leverage_columns() -> None:
    pos = opened(XBTUSDT, 1000, 50_000.0, leverage=25.0)
    row = position_row(1, "XBTUSDT", XBTUSDT, pos, 50_000.0, (1000, 40_000_000, 0, 0), TS)
    assert (row["leverage"], row["crossMargin"], row["initMarginReq"]) == (25.0, False, 0.04)
    assert row["posMargin"] == 2_000_000 + 36_000  # 4% of 5e7 + 5e7 * 0.96 * 0.00075
    assert row["initMargin"] == round(40_000_000 * (0.04 + 0.00075))  # 1,630,000
    cross = opened(XBTUSDT, 1000, 50_000.0, leverage=CROSS)
    row = position_row(
        1, "XBTUSDT", XBTUSDT, cross, 49_000.0, (0, 0, 0, 0), TS, available=9_000_000
    )
    # cross: instrument's 1% initial margin, shown as 100x; the 1 USDT loss is held as posCross
    assert (row["leverage"], row["crossMargin"], row["initMarginReq"]) == (100.0, True, 0.01)
    # posComm at the bankruptcy value (5e7 - 500,000 - 1,000,000) * 0.00075 = 36,375
    assert (row["posCross"], row["posMargin"]) == (1_000_000, 500_000 + 36_375 + 1_000_000)
    assert row["maintMargin"] == 536_375


def test_valid_leverage() -> None:
    assert valid_leverage(0) and valid_leverage(0.01) and valid_leverage(100)
    assert not valid_leverage(100.5) and not valid_leverage(-1) and not valid_leverage(0.001)
    assert not valid_leverage(60, Terms(init_margin=0.02))  # a 50x instrument


# ------------------------------------------------------------------ liquidation


@pytest.mark.parametrize(
    ("contract", "qty", "entry", "leverage", "expected"),
    [
        # inverse long: loss 9.5% of the cost at 50000 / 1.095, 10% at 50000 / 1.1
        (XBTUSD, 1000, 50_000.0, 10.0, (45_662.1, 45_454.5)),
        # inverse short: 1e11 / (2e6 * 0.905), 1e11 / (2e6 * 0.9)
        (XBTUSD, -1000, 50_000.0, 10.0, (55_248.6, 55_555.6)),
        # linear: 50000 * (1 -+ 0.095), 50000 * (1 -+ 0.1)
        (XBTUSDT, 1000, 50_000.0, 10.0, (45_250.0, 45_000.0)),
        (XBTUSDT, -1000, 50_000.0, 10.0, (54_750.0, 55_000.0)),
        # quanto at 25x: 3000 * (1 - 0.035), 3000 * (1 - 0.04)
        (ETHUSD, 10, 3000.0, 25.0, (2895.0, 2880.0)),
        # 1x short inverse: liquidated once 0.5% of the cost is left, 1e11 / 10,000; never
        # bankrupt (BitMEX showed 100000000); 1x long linear: 50000 * 0.005, bankrupt at 0
        (XBTUSD, -1000, 50_000.0, 1.0, (10_000_000.0, 100_000_000.0)),
        (XBTUSDT, 1000, 50_000.0, 1.0, (250.0, 0.0)),
    ],
)
def test_isolated_liquidation_and_bankruptcy_prices(
    contract: Contract, qty: int, entry: float, leverage: float, expected: tuple[float, float]
) -> None:
    got = liquidation_prices(contract, qty, entry, init_req=1 / leverage, maint_req=0.005)
    assert got == expected
    pos = opened(contract, qty, entry, leverage)
    row = position_row(1, contract.spec.symbol, contract, pos, entry, (0, 0, 0, 0), TS)
    assert (row["liquidationPrice"], row["bankruptPrice"]) == expected


def test_cross_liquidation_uses_the_available_margin() -> None:
    # long 0.001 XBT @ 50000 (cost 5e7 USDt), 1% initial margin, 10 USDT available: it may lose
    # 0.5% * 5e7 + 1e7 = 10,250,000 before liquidation -> (5e7 - 10,250,000) / 1000 = 39750;
    # bankrupt after 1% * 5e7 + 1e7 -> 39500
    assert liquidation_prices(XBTUSDT, 1000, 50_000.0, init_req=0.01, extra=1e7) == (
        39_750.0,
        39_500.0,
    )
    pos = opened(XBTUSDT, 1000, 50_000.0, CROSS)
    row = position_row(1, "XBTUSDT", XBTUSDT, pos, 50_000.0, (0, 0, 0, 0), TS, available=10**7)
    assert row["liquidationPrice"] == 39_750.0
    # at 45000 the loss (5 USDT) came out of the available margin, which counts it already:
    # the liquidation price stays put
    row = position_row(1, "XBTUSDT", XBTUSDT, pos, 45_000.0, (0, 0, 0, 0), TS, available=5 * 10**6)
    assert (row["liquidationPrice"], row["bankruptPrice"]) == (39_750.0, 39_500.0)


def test_is_liquidated_at_the_rows_liquidation_price() -> None:
    long = opened(XBTUSD, 1000, 50_000.0)
    assert not is_liquidated(long, 1.0)  # no row built yet: no price known
    position_row(1, "XBTUSD", XBTUSD, long, 46_000.0, (0, 0, 0, 0), TS)
    assert not is_liquidated(long, 45_662.2)
    assert is_liquidated(long, 45_662.1)
    short = opened(XBTUSDT, -1000, 50_000.0)
    position_row(1, "XBTUSDT", XBTUSDT, short, 50_000.0, (0, 0, 0, 0), TS)
    assert not is_liquidated(short, 54_749.5)
    assert is_liquidated(short, 54_750.0)
    assert not is_liquidated(Position(), 0.0)


def test_liquidation_loses_the_position_margin_at_the_bankruptcy_price() -> None:
    pos = opened(XBTUSD, 1000, 50_000.0)
    position_row(1, "XBTUSD", XBTUSD, pos, 45_600.0, (0, 0, 0, 0), TS)
    assert is_liquidated(pos, 45_600.0)
    signed, price, exec_cost, exec_comm, realised = liquidate(XBTUSD, pos, 45_600.0)
    # sold 1000 at 45454.5: 10 * round(1e10 / 45454.5) = 2,200,000; fee = posComm 1650;
    # the account loses posMargin 201,650
    assert (signed, price, exec_cost, exec_comm, realised) == (
        -1000, 45_454.5, 2_200_000, 1650, -201_650,
    )  # fmt: skip
    assert (pos.qty, pos.cost, pos.realised_pnl, pos.comm) == (0, 0, -201_650, 1650)
    row = liquidation_execution(1, "XBTUSD", XBTUSD, signed, price, exec_cost, exec_comm,
                                realised, "e", "m", TS)  # fmt: skip
    assert row["execType"] == "Trade" and row["text"] == "Liquidation"
    assert (row["orderID"], row["side"], row["lastQty"], row["lastPx"]) == (
        NO_ID, "Sell", 1000, 45_454.5,
    )  # fmt: skip
    assert (row["ordType"], row["timeInForce"], row["ordStatus"]) == (
        "Limit", "ImmediateOrCancel", "Filled",
    )  # fmt: skip
    assert row["tradePublishIndicator"] == "DoNotPublishTrade"
    assert (row["execCost"], row["execComm"], row["foreignNotional"]) == (2_200_000, 1650, 1000.0)


def test_liquidation_of_a_linear_short() -> None:
    pos = opened(XBTUSDT, -2000, 50_000.0)
    position_row(1, "XBTUSDT", XBTUSDT, pos, 55_000.0, (0, 0, 0, 0), TS)
    # posInit 10% of 1e8; posComm ceil(1e8 * 1.1 * 0.00075) = 82,500 -> loses 10,082,500
    _, price, exec_cost, exec_comm, realised = liquidate(XBTUSDT, pos, 55_000.0)
    assert (price, exec_cost, exec_comm, realised) == (55_000.0, 110_000_000, 82_500, -10_082_500)


# ------------------------------------------------------------------ funding


def test_funding_longs_pay_shorts_at_a_positive_rate() -> None:
    long = opened(XBTUSD, 1000, 50_000.0)
    # value at the mark 2,000,000 * 0.0001 = 200 XBt paid
    assert apply_funding(XBTUSD, long, 50_000.0, 0.0001) == (-2_000_000, 200)
    assert (long.realised_pnl, long.comm) == (-200, 200)
    short = opened(XBTUSD, -1000, 50_000.0)
    assert apply_funding(XBTUSD, short, 50_000.0, 0.0001) == (2_000_000, -200)
    assert short.realised_pnl == 200
    # a negative rate: longs receive; linear 5e7 USDt * 0.0001 = 5000; quanto 3e6 * ...
    assert apply_funding(XBTUSDT, opened(XBTUSDT, 1000, 50_000.0), 50_000.0, -0.0001)[1] == -5000
    assert apply_funding(ETHUSD, opened(ETHUSD, -10, 3000.0), 3000.0, -0.0001)[1] == 300
    assert apply_funding(ETHUSD, Position(), 3000.0, 0.0001) == (0, 0)


def test_funding_execution_row() -> None:
    row = funding_execution(1, "XBTUSD", XBTUSD, 1000, 50_000.0, 0.0001, -2_000_000, 200, "e", TS)
    assert (row["execType"], row["text"], row["commission"]) == ("Funding", "Funding", 0.0001)
    assert (row["lastQty"], row["lastPx"], row["execCost"], row["execComm"]) == (
        1000, 50_000.0, -2_000_000, 200,
    )  # fmt: skip
    assert (row["orderID"], row["trdMatchID"], row["realisedPnl"]) == (NO_ID, NO_ID, -200)
    assert "side" not in row and "ordStatus" not in row


# ------------------------------------------------------------------ orders


def test_opening_qty_counts_only_what_opens() -> None:
    assert opening_qty(0, 500) == 500
    assert opening_qty(1000, 500) == 500  # adds to a long
    assert opening_qty(1000, -1500) == 500  # closes 1000, opens 500 short
    assert opening_qty(1000, -800) == 0
    assert opening_qty(1000, -1500, resting_same_side=400) == 900  # 400 close first
    assert opening_qty(-1000, 300, resting_same_side=2000) == 300


def test_order_cost() -> None:
    # 2,000,000 * (10% + 0.075%) = 201,500; cross: 1% + 0.075%; 25x linear: 5e7 * 4.075%
    assert order_cost(XBTUSD, 1000, 50_000.0) == 201_500
    assert order_cost(XBTUSD, 1000, 50_000.0, leverage=CROSS) == 21_500
    assert order_cost(XBTUSDT, 1000, 50_000.0, leverage=25.0) == 2_037_500
    assert order_cost(ETHUSD, 10, 3000.0, leverage=2.0) == 1_502_250  # 3e6 * 50.075%


def test_open_order_costs() -> None:
    orders = [(True, 1000, 50_000.0), (True, 500, 40_000.0), (False, 200, 60_000.0)]
    # 2,000,000 + 5 * 250,000; 2 * round(1e10 / 60000) = 333,334
    assert open_order_costs(XBTUSD, orders) == (1500, 3_250_000, 200, 333_334)


# ------------------------------------------------------------------ money rows


def test_margin_and_wallet_rows_agree() -> None:
    pos = Position()
    fill(XBTUSD, pos, 1000, 50_000.0)  # taker: realised -1500
    eth = opened(ETHUSD, 10, 3000.0, leverage=5.0)
    deposit = 100_000_000
    positions = [(XBTUSD, pos, 55_000.0), (ETHUSD, eth, 2900.0)]
    row = margin_row(1, "XBt", deposit, positions, 2_000_000, TS, order_margin=201_500)
    wallet = wallet_row(1, "XBt", deposit, pos.realised_pnl + eth.realised_pnl, TS)
    assert row["walletBalance"] == wallet["amount"] == deposit - 1500
    assert row["unrealisedPnl"] == 181_820 - 100_000
    assert row["marginBalance"] == row["walletBalance"] + row["unrealisedPnl"]
    # maintMargin sums the positions' (posInit + posComm): 201,650 and 20% of 3e6 + posComm
    # ceil(3e6 * 0.8 * 0.00075) = 600,000 + 1800
    assert row["maintMargin"] == 201_650 + 601_800
    position_rows = [
        position_row(1, "XBTUSD", XBTUSD, pos, 55_000.0, (0, 0, 0, 0), TS),
        position_row(1, "ETHUSD", ETHUSD, eth, 2900.0, (0, 0, 0, 0), TS),
    ]
    assert row["maintMargin"] == sum(r["maintMargin"] for r in position_rows)
    assert row["initMargin"] == 201_500
    assert row["excessMargin"] == row["marginBalance"] - row["maintMargin"] - row["initMargin"]
    assert row["availableMargin"] == row["excessMargin"] > 0
    assert row["withdrawableMargin"] == row["availableMargin"]
    assert (row["grossComm"], row["grossExecCost"]) == (1500, 2_000_000 + 3_000_000)


def test_margin_row_available_never_negative() -> None:
    pos = opened(XBTUSDT, 10_000, 50_000.0, leverage=1.0)  # 5e8 USDt of cost on 1e8 deposit
    row = margin_row(1, "USDt", 100_000_000, [(XBTUSDT, pos, 50_000.0)], 0, TS)
    assert row["excessMargin"] < 0 and row["availableMargin"] == 0
    assert row["withdrawableMargin"] == 0


# ------------------------------------------------------------------ against BitMEX's rows


@pytest.mark.skipif(not CCXT.is_file(), reason="../shared/captures is absent")
def test_cross_position_row_matches_bitmex_2023() -> None:
    """The 2023-12 XBTUSD cross position update quoted by ccxt (seq 13): 400 contracts, mark
    43772.75, maintMarginReq 0.35% then. Its cost is markValue - unrealisedPnl."""
    [real] = [
        json.loads(line)["msg"]["data"][0]
        for line in CCXT.read_text().splitlines()
        if json.loads(line).get("seq") == 13
    ]
    pos = Position(CROSS)
    pos.qty = real["currentQty"]
    pos.cost = real["markValue"] - real["unrealisedPnl"]  # -912,269
    terms = Terms(maint_margin=0.0035)
    row = position_row(1, "XBTUSD", XBTUSD, pos, real["markPrice"], (0, 0, 0, 0), TS, terms=terms)
    for name in ("markValue", "riskValue", "homeNotional", "posCross", "posComm", "posMargin",
                 "posMaint", "maintMargin", "unrealisedPnl", "unrealisedRoePcnt"):  # fmt: skip
        assert row[name] == real[name], name


@pytest.mark.parametrize(
    ("contract", "qty", "entry", "leverage"),
    [
        (XBTUSD, 1000, 50_000.0, 10.0),
        (XBTUSD, -5000, 61_234.5, 3.0),
        (XBTUSDT, 7000, 50_000.0, 50.0),
        (XBTUSDT, -2000, 41_000.5, 20.0),
        (ETHUSD, 25, 3123.45, 25.0),
        (ETHUSD, -40, 2999.99, 5.0),
    ],
)
def test_at_the_liquidation_price_the_position_keeps_its_maintenance_margin(
    contract: Contract, qty: int, entry: float, leverage: float
) -> None:
    """The liquidation price and the margin columns agree: there, posMargin + unrealised PnL
    = posMaint (within a tick's value, the price being rounded to the tick); at the
    bankruptcy price only posComm is left."""
    pos = opened(contract, qty, entry, leverage)
    row = position_row(1, contract.spec.symbol, contract, pos, entry, (0, 0, 0, 0), TS)
    tick = contract.tick_size
    for price, left in ((row["liquidationPrice"], row["posMaint"]),
                        (row["bankruptPrice"], row["posComm"])):  # fmt: skip
        equity = row["posMargin"] + contract.value(qty, price) - pos.cost
        # a tick either way, plus the per-lot rounding of inverse values
        slack = abs(contract.value(qty, price + tick) - contract.value(qty, price - tick))
        assert abs(equity - left) <= slack + abs(qty) // contract.spec.lot_size + 1


def test_a_liquidation_takes_the_position_margin_from_the_wallet() -> None:
    deposit = 10_000_000
    pos = Position(25.0)
    fill(XBTUSDT, pos, 10_000, 50_000.0)  # cost 5e8 USDt, taker fee 375,000
    assert pos.realised_pnl == -375_000
    row = position_row(1, "XBTUSDT", XBTUSDT, pos, 48_100.0, (0, 0, 0, 0), TS)
    # 25x: posInit 4% of 5e8 = 20,000,000 > the 10 USDT deposit; isolated margin is what the
    # position holds, not what the account has: liquidation 50000 * (1 - 0.035) = 48250
    assert row["liquidationPrice"] == 48_250.0 and is_liquidated(pos, 48_100.0)
    _, _, _, _, realised = liquidate(XBTUSDT, pos, 48_100.0)
    assert realised == -row["posMargin"]
    money = margin_row(1, "USDt", deposit, [(XBTUSDT, pos, 48_100.0)], 0, TS)
    wallet = wallet_row(1, "USDt", deposit, pos.realised_pnl, TS)
    assert money["walletBalance"] == wallet["amount"] == deposit - 375_000 - row["posMargin"]
    assert money["unrealisedPnl"] == money["maintMargin"] == 0
    assert money["marginBalance"] == money["walletBalance"]
