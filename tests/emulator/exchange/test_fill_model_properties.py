"""Properties of the fill model (emulator/exchange/_queue.py) on generated markets.

A scenario is a few resting orders on a small price grid and a stream of level updates and
trades under non-decreasing timestamps. Whatever the stream:

* an order never fills more than its quantity, always at its own price, and only from trades at
  or through its price (a sell aggressor at or below a buy's price);
* one trade never fills more than its volume, one crossing level never more than its size;
* the result (fills per order, what is left, the queue ahead) does not depend on how a trade's
  volume is split into messages with one timestamp, nor on whether a trade or the book update it
  explains comes first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from bitmex_trio_websocket.emulator.exchange._queue import QueueBook

PRICES = [99.0, 99.5, 100.0, 100.5, 101.0]


@dataclass(frozen=True)
class Order:
    order_id: str
    buy: bool
    price: float
    qty: int
    ahead: int


@dataclass(frozen=True)
class Event:
    kind: str  # "level" or "trade"
    side: str
    price: float
    size: int  # level size, or trade volume
    ts: int


orders_st = st.lists(
    st.builds(
        lambda i, buy, price, qty, ahead: Order(f"o{i}", buy, price, qty, ahead),
        st.integers(0, 10**6),
        st.booleans(),
        st.sampled_from(PRICES),
        st.integers(1, 30),
        st.integers(0, 40),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda o: o.order_id,
)

events_st = st.lists(
    st.tuples(
        st.sampled_from(["level", "trade"]),
        st.sampled_from(["Buy", "Sell"]),
        st.sampled_from(PRICES),
        st.integers(0, 40),
        st.integers(0, 2),  # timestamp step: 0 keeps the timestamp
    ),
    max_size=30,
).map(
    lambda raw: [
        Event(kind, side, price, size if kind == "level" else max(1, size), ts)
        for (kind, side, price, size, _), ts in zip(
            raw, _running([step for *_, step in raw]), strict=True
        )
    ]
)


def _running(steps: list[int]) -> list[int]:
    total, out = 0, []
    for step in steps:
        total += step
        out.append(total)
    return out


def run(
    orders: list[Order], events: list[Event]
) -> tuple[Counter[str], dict[str, tuple[int, int]], list[list[tuple[str, int, float]]]]:
    q = QueueBook()
    for o in orders:
        q.add(o.order_id, o.buy, o.price, o.qty, o.ahead)
    filled: Counter[str] = Counter()
    per_event = []
    for e in events:
        if e.kind == "level":
            fills = q.on_level(e.side, e.price, e.size, e.ts)
        else:
            fills = q.on_trade(e.side, e.price, e.size, e.ts)
        per_event.append(fills)
        for order_id, qty, _ in fills:
            filled[order_id] += qty
    left = {o.order_id: (q.qty(o.order_id), q.ahead(o.order_id)) for o in orders if o.order_id in q}
    return filled, left, per_event


@settings(max_examples=300, deadline=None)
@given(orders_st, events_st)
def test_fills_stay_within_orders_and_volumes(orders: list[Order], events: list[Event]) -> None:
    by_id = {o.order_id: o for o in orders}
    filled, left, per_event = run(orders, events)
    for order_id, total in filled.items():
        o = by_id[order_id]
        assert total <= o.qty
        assert total + left.get(order_id, (0, 0))[0] == o.qty
    for e, fills in zip(events, per_event, strict=True):
        assert sum(qty for _, qty, _ in fills) <= e.size
        for order_id, qty, price in fills:
            o = by_id[order_id]
            assert qty > 0 and price == o.price
            # a trade by a seller (or an ask level) meets buys at or above its price
            assert o.buy == (e.side == "Sell")
            assert (e.price <= o.price) if o.buy else (e.price >= o.price)
    for qty, ahead in left.values():
        assert qty > 0 and ahead >= 0


@settings(max_examples=300, deadline=None)
@given(orders_st, events_st, st.data())
def test_splitting_a_trade_into_messages_changes_nothing(
    orders: list[Order], events: list[Event], data: st.DataObject
) -> None:
    trades = [i for i, e in enumerate(events) if e.kind == "trade"]
    if not trades:
        return
    i = data.draw(st.sampled_from(trades))
    e = events[i]
    cuts = sorted(data.draw(st.lists(st.integers(1, e.size - 1), max_size=4)) if e.size > 1 else [])
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, e.size], strict=True) if b > a]
    split = [
        *events[:i],
        *(Event(e.kind, e.side, e.price, p, e.ts) for p in parts),
        *events[i + 1 :],
    ]
    whole_filled, whole_left, _ = run(orders, events)
    split_filled, split_left, _ = run(orders, split)
    assert split_filled == whole_filled
    assert split_left == whole_left


@settings(max_examples=300, deadline=None)
@given(orders_st, events_st, st.data())
def test_a_trade_and_its_book_update_commute_within_a_timestamp(
    orders: list[Order], events: list[Event], data: st.DataObject
) -> None:
    """Insert a trade and a level update of the level it hits, at one timestamp, both orders."""
    at = data.draw(st.integers(0, len(events)))
    ts = events[at - 1].ts if at else 0  # keeps the timestamps non-decreasing
    aggressor = data.draw(st.sampled_from(["Buy", "Sell"]))
    price = data.draw(st.sampled_from(PRICES))
    qty = data.draw(st.integers(1, 40))
    size = data.draw(st.integers(0, 40))
    level_side = "Buy" if aggressor == "Sell" else "Sell"  # a seller hits bids
    trade = Event("trade", aggressor, price, qty, ts)
    level = Event("level", level_side, price, size, ts)
    first = [*events[:at], trade, level, *events[at:]]
    second = [*events[:at], level, trade, *events[at:]]
    a_filled, a_left, _ = run(orders, first)
    b_filled, b_left, _ = run(orders, second)
    assert a_filled == b_filled
    assert a_left == b_left
