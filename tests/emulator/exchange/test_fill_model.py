"""The fill model's rules (docs/fill-model.rst, emulator/exchange/_queue.py) on hand-computed
scenarios: one test per rule, the arithmetic in each docstring.

Conventions: ``Buy``/``Sell`` in ``on_level`` name the book side (bids/asks); in ``on_trade`` the
aggressor (a ``Sell`` trade hits bids, so it meets our resting buys). ``ts_key`` is the message's
timestamp; the integers here stand for successive timestamps.
"""

from __future__ import annotations

from bitmex_trio_websocket.emulator.exchange._queue import QueueBook


def book(*orders: tuple[str, bool, float, int, int]) -> QueueBook:
    q = QueueBook()
    for order_id, buy, price, qty, ahead in orders:
        q.add(order_id, buy, price, qty, ahead)
    return q


# ---------------------------------------------------------------- rule 2: joining the queue


def test_an_order_joins_behind_the_visible_size() -> None:
    """A buy of 10 at 100 where the bid level shows 300: ahead = 300; a trade of 299 leaves 1
    ahead and fills nothing; the next trade of 1 fills nothing either (300 - 300 = 0 left)."""
    q = book(("a", True, 100.0, 10, 300))
    assert q.ahead("a") == 300
    assert q.on_trade("Sell", 100.0, 299, 1) == []
    assert q.ahead("a") == 1
    assert q.on_trade("Sell", 100.0, 1, 2) == []
    assert q.ahead("a") == 0
    assert q.qty("a") == 10


def test_size_added_to_the_level_joins_behind_us() -> None:
    """ahead 30; the level grows 30 -> 80 (newcomers queue behind us); a trade of 35 consumes the
    30 ahead and fills 5 of our 10."""
    q = book(("a", True, 100.0, 10, 30))
    assert q.on_level("Buy", 100.0, 80, 1) == []
    assert q.ahead("a") == 30
    assert q.on_trade("Sell", 100.0, 35, 2) == [("a", 5, 100.0)]
    assert q.qty("a") == 5


# ---------------------------------------------------------------- rule 3: trades at the price


def test_trades_consume_ahead_then_fill_partially_across_several_trades() -> None:
    """buy 10 at 100, ahead 30. Trade 25: ahead 30 - 25 = 5, no fill. Trade 12: 5 consumes the
    rest ahead, 12 - 5 = 7 fills (3 left). Trade 2: fills 2 (1 left). Trade 5: fills the last 1,
    the order leaves the book."""
    q = book(("a", True, 100.0, 10, 30))
    assert q.on_trade("Sell", 100.0, 25, 1) == []
    assert q.ahead("a") == 5
    assert q.on_trade("Sell", 100.0, 12, 2) == [("a", 7, 100.0)]
    assert q.on_trade("Sell", 100.0, 2, 3) == [("a", 2, 100.0)]
    assert q.on_trade("Sell", 100.0, 5, 4) == [("a", 1, 100.0)]
    assert len(q) == 0 and "a" not in q


def test_a_sell_order_fills_from_buy_trades() -> None:
    """sell 4 at 101, ahead 3; a buy aggressor's trade of 5 at 101: 3 ahead, 5 - 3 = 2 fill."""
    q = book(("s", False, 101.0, 4, 3))
    assert q.on_trade("Buy", 101.0, 5, 1) == [("s", 2, 101.0)]


def test_trades_on_our_own_side_or_away_from_our_price_fill_nothing() -> None:
    """A buy at 100: a buy aggressor at 100 trades with asks, not with us; a sell at 100.5 does
    not reach 100; neither touches ahead (still 0) and the order keeps its 10."""
    q = book(("a", True, 100.0, 10, 0))
    assert q.on_trade("Buy", 100.0, 50, 1) == []
    assert q.on_trade("Sell", 100.5, 50, 1) == []
    assert q.on_trade("Buy", 99.5, 50, 1) == []
    assert q.qty("a") == 10


def test_a_trade_through_the_price_fills_up_to_its_volume_at_our_price() -> None:
    """buy 10 at 100, ahead 50. A sell prints 4 at 99.5, below our bid: the queue at 100 is gone
    (the seller went past it), so the 4 fill us at OUR price 100 and ahead becomes 0. A second
    print of 20 at 99.5 fills the remaining 6 (20 > 6): 4 + 6 = 10."""
    q = book(("a", True, 100.0, 10, 50))
    assert q.on_trade("Sell", 99.5, 4, 1) == [("a", 4, 100.0)]
    assert q.ahead("a") == 0
    assert q.on_trade("Sell", 99.5, 20, 2) == [("a", 6, 100.0)]
    assert len(q) == 0


def test_through_whole_fills_every_order_a_trade_passes() -> None:
    """The optimistic choice: a 1-contract print at 99.5 fills the whole 10 at 100."""
    q = QueueBook(through="whole")
    q.add("a", True, 100.0, 10, 50)
    assert q.on_trade("Sell", 99.5, 1, 1) == [("a", 10, 100.0)]


def test_a_through_trade_serves_better_prices_before_the_queue_at_its_price() -> None:
    """buy 5 at 101 (ahead 9), buy 5 at 100 (ahead 2). A sell prints 10 at 100: it passed 101
    first, filling 5 there (ahead at 101 irrelevant); 10 - 5 = 5 remain for the queue at 100:
    2 ahead, then 3 of our 5."""
    q = book(("hi", True, 101.0, 5, 9), ("lo", True, 100.0, 5, 2))
    assert q.on_trade("Sell", 100.0, 10, 1) == [("hi", 5, 101.0), ("lo", 3, 100.0)]
    assert q.ahead("lo") == 0 and q.qty("lo") == 2


# ---------------------------------------------------------------- several orders at one level


def test_own_orders_at_one_level_fill_in_time_priority_with_public_size_between() -> None:
    """A (4) arrives with 10 ahead; 6 more public arrive; B (5) arrives with 16 ahead. The queue:
    10 public, A 4, 6 public, B 5. A trade of 12: 10 public, then A 2 (A ahead 0).
    A trade of 9: A's last 2, then 6 - 0 = 6 public between (7 left -> 1 after), then B 1.
    B's ahead: 16 - 10 - 6 = 0."""
    q = book(("A", True, 100.0, 4, 10), ("B", True, 100.0, 5, 16))
    assert q.on_trade("Sell", 100.0, 12, 1) == [("A", 2, 100.0)]
    assert q.ahead("A") == 0 and q.ahead("B") == 6
    assert q.on_trade("Sell", 100.0, 9, 2) == [("A", 2, 100.0), ("B", 1, 100.0)]
    assert q.ahead("B") == 0 and q.qty("B") == 4


def test_fills_come_best_price_first_then_time() -> None:
    """Buys: a 3 at 101, b 3 at 100, c 3 at 100 (after b), all with nothing ahead. A sell print of
    7 at 99: 101 first (a 3), then 100 in time order (b 3, c 1): 3 + 3 + 1 = 7."""
    q = book(
        ("b", True, 100.0, 3, 0),
        ("a", True, 101.0, 3, 0),
        ("c", True, 100.0, 3, 0),
    )
    assert q.on_trade("Sell", 99.0, 7, 1) == [("a", 3, 101.0), ("b", 3, 100.0), ("c", 1, 100.0)]


def test_sells_fill_lowest_price_first() -> None:
    """Sells at 102 (x) and 101 (y), 2 each, nothing ahead; a buy print of 3 at 103: y (the lower,
    better ask) 2, then x 1."""
    q = book(("x", False, 102.0, 2, 0), ("y", False, 101.0, 2, 0))
    assert q.on_trade("Buy", 103.0, 3, 1) == [("y", 2, 101.0), ("x", 1, 102.0)]


# ---------------------------------------------------------------- rule 4: level decreases


def test_an_unexplained_decrease_is_counted_ahead() -> None:
    """ahead 30 (level 30). At t1 the level drops to 20 with no trade: a cancel, counted in front
    of us: ahead 30 - 10 = 20. At t2 a trade of 25: 20 ahead, 5 fill."""
    q = book(("a", True, 100.0, 10, 30))
    assert q.on_level("Buy", 100.0, 20, 1) == []
    assert q.ahead("a") == 20
    assert q.on_trade("Sell", 100.0, 25, 2) == [("a", 5, 100.0)]


def test_a_decrease_explained_by_a_trade_counts_once_trade_first() -> None:
    """ahead 30 (level 30). t1: trade 10 (ahead 20), then the level's update 30 -> 20: the
    decrease of 10 is that trade, not a cancel: ahead stays 20. t2: trade 25 -> 20 ahead, 5 fill."""
    q = book(("a", True, 100.0, 10, 30))
    assert q.on_trade("Sell", 100.0, 10, 1) == []
    assert q.on_level("Buy", 100.0, 20, 1) == []
    assert q.ahead("a") == 20
    assert q.on_trade("Sell", 100.0, 25, 2) == [("a", 5, 100.0)]


def test_a_decrease_explained_by_a_trade_counts_once_decrease_first() -> None:
    """Same as above with the book update first. t1: level 30 -> 20 (pending, not yet counted),
    trade 10: walks the queue from 30 ahead -> 20, and explains the pending decrease. At t2
    nothing unexplained is left: ahead 20, and the trade of 25 fills 5, as in the other order."""
    q = book(("a", True, 100.0, 10, 30))
    assert q.on_level("Buy", 100.0, 20, 1) == []
    assert q.on_trade("Sell", 100.0, 10, 1) == []
    assert q.ahead("a") == 20
    assert q.on_trade("Sell", 100.0, 25, 2) == [("a", 5, 100.0)]


def test_a_decrease_larger_than_the_trade_counts_the_rest_ahead() -> None:
    """ahead 30. t1: trade 10 and the level 30 -> 15: 10 explained, 5 unexplained: ahead
    30 - 10 - 5 = 15, in either order. t2: trade 20 -> 15 ahead, 5 fill."""
    for events in (
        [("trade", 10), ("level", 15)],
        [("level", 15), ("trade", 10)],
    ):
        q = book(("a", True, 100.0, 10, 30))
        for kind, value in events:
            if kind == "trade":
                assert q.on_trade("Sell", 100.0, value, 1) == []
            else:
                assert q.on_level("Buy", 100.0, value, 1) == []
        assert q.ahead("a") == 15, events
        assert q.on_trade("Sell", 100.0, 20, 2) == [("a", 5, 100.0)]


def test_a_decrease_split_across_timestamps_is_matched_per_timestamp() -> None:
    """ahead 30. t1: trade 10, level 30 -> 20 (explained). t2: level 20 -> 12 with no trade at
    t2: those 8 are a cancel, even though a trade happened at t1: ahead 20 - 8 = 12."""
    q = book(("a", True, 100.0, 10, 30))
    q.on_trade("Sell", 100.0, 10, 1)
    q.on_level("Buy", 100.0, 20, 1)
    q.on_level("Buy", 100.0, 12, 2)
    assert q.ahead("a") == 12


def test_ahead_never_exceeds_the_visible_size() -> None:
    """A (5) with 10 ahead, B (5) with 20 ahead: the queue is 10 public, A, 10 public, B.
    t1: a trade of 15: 10 public, A fills 5, 0 left for the 10 between: B ahead 20 - 10 = 10.
    The level drops 20 -> 5 (the trade's 15, explained). History has no market impact: the 5
    that filled A came out of the public size, so only 5 are visible: B's ahead is capped to 5.
    t2: a trade of 7 -> 5 ahead, B fills 2."""
    q = book(("A", True, 100.0, 5, 10), ("B", True, 100.0, 5, 20))
    assert q.on_trade("Sell", 100.0, 15, 1) == [("A", 5, 100.0)]
    q.on_level("Buy", 100.0, 5, 1)
    assert q.ahead("B") == 5
    assert q.on_trade("Sell", 100.0, 7, 2) == [("B", 2, 100.0)]


def test_a_level_that_disappears_leaves_nothing_ahead() -> None:
    """ahead 40; the level is deleted (size 0) with no trade: everything in front is gone."""
    q = book(("a", True, 100.0, 10, 40))
    q.on_level("Buy", 100.0, 0, 1)
    assert q.ahead("a") == 0
    assert q.on_trade("Sell", 100.0, 3, 2) == [("a", 3, 100.0)]


# ---------------------------------------------------------------- rule 5: crossing levels


def test_an_ask_crossing_a_resting_buy_fills_it_at_the_buys_price() -> None:
    """buy 10 at 100, nothing ahead. An ask level appears at 99.5 with 4: the seller would have
    hit us: 4 fill at 100 (our price, maker). The level repeats 4: already used, no fill. It
    grows to 7: 3 more. It shrinks to 2 (used 7 -> 2) and grows to 9: 7 new, 3 fill (our last)."""
    q = book(("a", True, 100.0, 10, 0))
    assert q.on_level("Sell", 99.5, 4, 1) == [("a", 4, 100.0)]
    assert q.on_level("Sell", 99.5, 4, 2) == []
    assert q.on_level("Sell", 99.5, 7, 3) == [("a", 3, 100.0)]
    assert q.on_level("Sell", 99.5, 2, 4) == []
    assert q.on_level("Sell", 99.5, 9, 5) == [("a", 3, 100.0)]
    assert len(q) == 0


def test_a_crossing_level_at_our_price_walks_the_queue() -> None:
    """buy 10 at 100 with 5 ahead; an ask of 8 at 100: the 5 public bids in front would match
    first, 8 - 5 = 3 fill us."""
    q = book(("a", True, 100.0, 10, 5))
    assert q.on_level("Sell", 100.0, 8, 1) == [("a", 3, 100.0)]
    assert q.ahead("a") == 0


def test_a_bid_crossing_resting_sells() -> None:
    """sells 2 at 101 and 2 at 102; a bid level of 3 appears at 102: lowest ask first: 2 at
    101, 1 at 102."""
    q = book(("x", False, 102.0, 2, 0), ("y", False, 101.0, 2, 0))
    assert q.on_level("Buy", 102.0, 3, 1) == [("y", 2, 101.0), ("x", 1, 102.0)]


def test_levels_that_do_not_cross_fill_nothing() -> None:
    """buy at 100, sell at 105: an ask at 100.5 and a bid at 104.5 cross neither."""
    q = book(("b", True, 100.0, 10, 0), ("s", False, 105.0, 10, 0))
    assert q.on_level("Sell", 100.5, 50, 1) == []
    assert q.on_level("Buy", 104.5, 50, 1) == []
    assert q.qty("b") == 10 and q.qty("s") == 10


# ---------------------------------------------------------------- amend and remove


def test_amending_quantity_down_keeps_the_place() -> None:
    """A (10, ahead 5), B (10, ahead 5). A down to 4: still first. Trade 7: 5 public, A 2."""
    q = book(("A", True, 100.0, 10, 5), ("B", True, 100.0, 10, 5))
    q.amend("A", qty=4)
    assert q.ahead("A") == 5 and q.qty("A") == 4
    assert q.on_trade("Sell", 100.0, 7, 1) == [("A", 2, 100.0)]


def test_amending_quantity_up_goes_to_the_back() -> None:
    """A (10, ahead 5), B (10, ahead 5). A up to 12 with the level now 5: A goes behind B.
    Trade 7: 5 public, then B (now first) 2."""
    q = book(("A", True, 100.0, 10, 5), ("B", True, 100.0, 10, 5))
    q.amend("A", qty=12, ahead=5)
    assert q.on_trade("Sell", 100.0, 7, 1) == [("B", 2, 100.0)]
    assert q.qty("A") == 12


def test_amending_quantity_up_without_ahead_uses_the_last_reported_size() -> None:
    """ahead 5 at arrival, the level grows to 40: A up from 10 to 11 goes behind all 40."""
    q = book(("A", True, 100.0, 10, 5))
    q.on_level("Buy", 100.0, 40, 1)
    q.amend("A", qty=11)
    assert q.ahead("A") == 40


def test_amending_the_price_moves_to_the_back_of_the_new_level() -> None:
    """A buy of 10 at 100 (ahead 0) moves to 99.5 where 20 rest: ahead 20. A trade at 100 no longer
    concerns it; a trade of 25 at 99.5: 20 ahead, 5 fill at 99.5."""
    q = book(("a", True, 100.0, 10, 0))
    q.amend("a", price=99.5, ahead=20)
    assert q.on_trade("Sell", 100.0, 50, 1) == []
    assert q.on_trade("Sell", 99.5, 25, 2) == [("a", 5, 99.5)]


def test_amending_to_zero_and_removing_leave_the_book() -> None:
    q = book(("a", True, 100.0, 10, 0), ("b", False, 101.0, 10, 0))
    q.amend("a", qty=0)
    q.remove("b")
    q.remove("never-there")
    assert len(q) == 0
    assert q.on_trade("Sell", 99.0, 50, 1) == []
    assert q.on_level("Sell", 90.0, 50, 1) == []


def test_a_filled_order_leaves_and_a_second_at_its_level_keeps_its_place() -> None:
    """A (2, ahead 0), B (5, ahead 3): trade 4: A 2, then 2 of the 3 public: B ahead 1. A gone."""
    q = book(("A", True, 100.0, 2, 0), ("B", True, 100.0, 5, 3))
    assert q.on_trade("Sell", 100.0, 4, 1) == [("A", 2, 100.0)]
    assert "A" not in q and q.ahead("B") == 1


def test_receive_times_a_few_milliseconds_apart_reconcile_within_a_window() -> None:
    """History keyed by receive time: the trade of 10 arrives at 1.000 s, the book update it
    caused (30 -> 20) at 1.004 s. Exact keys: two timestamps, the decrease is unexplained at
    1.004 and counted again: 30 - 10 - 10 = 10 ahead. A 0.01 s window: one period, 20 ahead.
    An update 0.5 s later is outside the window: a cancel, 20 - 5 = 15."""
    exact = book(("a", True, 100.0, 10, 30))
    exact.on_trade("Sell", 100.0, 10, 1.000)
    exact.on_level("Buy", 100.0, 20, 1.004)
    assert exact.ahead("a") == 10
    windowed = QueueBook(window=0.01)
    windowed.add("a", True, 100.0, 10, 30)
    windowed.on_trade("Sell", 100.0, 10, 1.000)
    windowed.on_level("Buy", 100.0, 20, 1.004)
    assert windowed.ahead("a") == 20
    windowed.on_level("Buy", 100.0, 15, 1.5)
    assert windowed.ahead("a") == 15
