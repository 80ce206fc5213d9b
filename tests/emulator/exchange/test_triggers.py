"""Conditional orders (emulator/exchange/_triggers.py): each type and direction, each reference
price, firing order, amend and remove.

BitMEX's rule: a buy Stop/StopLimit fires when the price is at or above stopPx, a sell one at or
below; MarketIfTouched/LimitIfTouched the other way round (a buy fires at or below stopPx).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitmex_trio_websocket.emulator.exchange._errors import OrderRejected
from bitmex_trio_websocket.emulator.exchange._triggers import Triggers, fires

TYPES = ["Stop", "StopLimit", "MarketIfTouched", "LimitIfTouched"]


@pytest.mark.parametrize(
    ("buy", "ord_type", "below", "at", "above"),
    [
        # stopPx 100: does it fire at 99.5, 100, 100.5?
        (True, "Stop", False, True, True),
        (True, "StopLimit", False, True, True),
        (False, "Stop", True, True, False),
        (False, "StopLimit", True, True, False),
        (True, "MarketIfTouched", True, True, False),
        (True, "LimitIfTouched", True, True, False),
        (False, "MarketIfTouched", False, True, True),
        (False, "LimitIfTouched", False, True, True),
    ],
)
@pytest.mark.parametrize("kind", ["MarkPrice", "LastPrice", "IndexPrice"])
def test_each_type_and_direction_on_each_reference_price(
    buy: bool, ord_type: str, below: bool, at: bool, above: bool, kind: str
) -> None:
    for price, expected in ((99.5, below), (100.0, at), (100.5, above)):
        t = Triggers()
        t.add("x", buy, ord_type, 100.0, kind)
        assert fires(buy, ord_type, 100.0, price) is expected
        assert t.on_price(kind, price) == (["x"] if expected else []), (price, kind)
        assert len(t) == (0 if expected else 1)


def test_only_the_chosen_reference_price_triggers() -> None:
    """A buy Stop at 100 on LastPrice ignores a mark and an index of 105."""
    t = Triggers()
    t.add("x", True, "Stop", 100.0, "LastPrice")
    assert t.on_price("MarkPrice", 105.0) == []
    assert t.on_price("IndexPrice", 105.0) == []
    assert t.on_price("LastPrice", 105.0) == ["x"]


def test_a_rise_fires_in_stop_price_order_and_each_once() -> None:
    """Buy Stops at 103, 101, 102 (added in that order) and one at 110. The mark rises to 102.5:
    101 then 102 fire (the order the rise crossed them); 103 and 110 wait. 104: 103. Fired
    orders are gone: 104 again fires nothing."""
    t = Triggers()
    for order_id, px in (("c", 103.0), ("a", 101.0), ("b", 102.0), ("z", 110.0)):
        t.add(order_id, True, "Stop", px, "MarkPrice")
    assert t.on_price("MarkPrice", 100.0) == []
    assert t.on_price("MarkPrice", 102.5) == ["a", "b"]
    assert t.on_price("MarkPrice", 104.0) == ["c"]
    assert t.on_price("MarkPrice", 104.0) == []
    assert len(t) == 1 and "z" in t


def test_a_fall_fires_highest_stop_first_and_ties_in_arrival_order() -> None:
    """Sell Stops at 98, 99, 99 (p then q); the last price falls to 97: 99 (p, q), then 98."""
    t = Triggers()
    t.add("r", False, "Stop", 98.0, "LastPrice")
    t.add("p", False, "Stop", 99.0, "LastPrice")
    t.add("q", False, "StopLimit", 99.0, "LastPrice")
    assert t.on_price("LastPrice", 100.0) == []
    assert t.on_price("LastPrice", 97.0) == ["p", "q", "r"]


def test_both_directions_at_once_follow_the_move() -> None:
    """After a mark of 100: a buy Stop at 95 and a sell Stop at 105 are both already past at a
    mark of 99 (a fall): the falling one (sell Stop 105) first, then the rising one."""
    t = Triggers()
    assert t.on_price("MarkPrice", 100.0) == []
    t.add("up", True, "Stop", 95.0, "MarkPrice")
    t.add("down", False, "Stop", 105.0, "MarkPrice")
    assert t.on_price("MarkPrice", 99.0) == ["down", "up"]


def test_amend_moves_the_stop_price_and_remove_forgets() -> None:
    """A buy Stop at 110 amended to 101 fires at 101.5; a sell MIT at 103 removed never fires."""
    t = Triggers()
    t.add("s", True, "Stop", 110.0, "MarkPrice")
    t.add("m", False, "MarketIfTouched", 103.0, "MarkPrice")
    t.amend("s", 101.0)
    assert t.stop_px("s") == 101.0
    t.remove("m")
    t.remove("unknown")
    assert t.on_price("MarkPrice", 101.5) == ["s"]
    assert t.on_price("MarkPrice", 120.0) == []
    assert len(t) == 0


def test_amend_keeps_the_direction_of_a_falling_trigger() -> None:
    """A sell Stop at 90 amended to 95: fires at 95, not at 96."""
    t = Triggers()
    t.add("s", False, "Stop", 90.0, "IndexPrice")
    t.amend("s", 95.0)
    assert t.on_price("IndexPrice", 96.0) == []
    assert t.on_price("IndexPrice", 95.0) == ["s"]


def test_non_conditional_types_and_unknown_prices_are_refused() -> None:
    t = Triggers()
    with pytest.raises(OrderRejected):
        t.add("x", True, "Limit", 100.0, "MarkPrice")
    with pytest.raises(OrderRejected):
        t.add("x", True, "Stop", 100.0, "FairPrice")
    assert len(t) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from(TYPES), st.integers(90, 110)),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.integers(85, 115), max_size=20),
)
def test_fires_exactly_those_past_their_stop_price(
    stops: list[tuple[bool, str, int]], prices: list[int]
) -> None:
    """Against the rule applied directly: every price fires exactly the waiting orders that
    ``fires`` says, each once, listed in the order the move crossed them."""
    t = Triggers()
    waiting = {}
    for i, (buy, ord_type, px) in enumerate(stops):
        t.add(str(i), buy, ord_type, float(px), "MarkPrice")
        waiting[str(i)] = (buy, ord_type, float(px))
    stops_by_id = dict(waiting)
    for price in prices:
        fired = t.on_price("MarkPrice", float(price))
        expected = {i for i, (b, o, px) in waiting.items() if fires(b, o, px, float(price))}
        assert set(fired) == expected and len(fired) == len(expected)
        for order_id in fired:
            del waiting[order_id]
        assert len(t) == len(waiting)
        # within one direction, in the order the move crossed them: rising ascending,
        # falling descending (a rising trigger is one that a price above its stopPx fires)
        up = [
            px
            for b, o, px in (stops_by_id[order_id] for order_id in fired)
            if fires(b, o, 0.0, 1.0)
        ]
        down = [
            px
            for b, o, px in (stops_by_id[order_id] for order_id in fired)
            if not fires(b, o, 0.0, 1.0)
        ]
        assert up == sorted(up) and down == sorted(down, reverse=True)
