"""Where resting orders stand in their level's queue, and when the market fills them; sans-IO.

Theory of operation: account orders are never in the public book, so a resting order's place is
modelled, not seen. ``QueueBook`` (one per symbol) keeps each resting order's leaves quantity and
``ahead``, the public size in front of it at its price, and turns what the venue reports into
maker fills ``(order_id, qty, price)``. The rules (docs/fill-model.rst writes them out):

* An order joins the back of its level: ``ahead`` is the visible size when it arrives. Among our
  own orders at one price, time priority: the queue reads ``ahead_1`` public, order 1, the public
  that arrived between 1 and 2 (``ahead_2 - ahead_1``), order 2, ... so the ``ahead`` values of a
  level's orders never decrease along the queue, and one trade's volume is never counted twice.
* A public trade at the price walks that queue from the front: public size first, then our
  orders. A trade printing *through* the price (a sell below a resting buy) means the queue there
  is gone: its volume fills our orders at better prices first, best price first, each at its own
  price, and those orders' ``ahead`` becomes 0. Fills never exceed the trade's volume (see
  ``through`` for the other choice).
* A decrease of the level's visible size that no trade at that price explains is counted as
  happening ahead of us (the conservative reading: a cancel behind us would not help us). Trades
  and decreases carry the message's timestamp as ``ts_key``; within one ``ts_key`` a level
  accumulates its decreases ``D`` and trade volume ``Q``, and when the level next sees another
  key the unexplained part ``max(0, D - Q)`` comes off ``ahead``, which is then capped at the
  visible size. Applying decreases late is what makes the result the same whichever of a trade
  and its book update arrives first, and however a trade's volume is split into messages:
  decreases never fill anything by themselves, so only trades need ``ahead`` up to date, and a
  trade at the same key must not see the decrease it explains. A source keyed by receive time
  (a trade and its book update in frames milliseconds apart) can widen one key to a ``window``.
* The opposite side crossing a resting order (a new ask at or below a resting buy) is a trade
  that did not happen: the newcomer would have hit us. Its visible size is walked like a trade by
  that side at that price (queue at the price, through the better ones), at our prices. What a
  crossing level has already been used for is remembered until that level shrinks, so a level
  that history keeps unchanged (no market impact) fills us once, not at every update.

Cost: ``on_level``/``on_trade`` return at once unless the price is one of our levels or crosses
our best order (two dict look-ups and two comparisons); the market calls them on most steps.
Fully filled orders leave the book by themselves; ``remove`` of an unknown id does nothing.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Final, Literal

__all__ = ["QueueBook"]

Fill = tuple[str, int, float]  # (order_id, qty, price)

_NO_KEY: Final = object()  # a level that has seen no market event yet


class _Resting:
    __slots__ = ("ahead", "buy", "order_id", "price", "qty")

    def __init__(self, order_id: str, buy: bool, price: float, qty: int, ahead: int) -> None:
        self.order_id = order_id
        self.buy = buy
        self.price = price
        self.qty = qty  # leaves quantity
        self.ahead = ahead  # public size in front of this order at its price


class _Level:
    """Our orders at one (side, price), in time priority, and the level's pending events."""

    __slots__ = ("dec", "key", "orders", "size", "trd")

    def __init__(self, size: int) -> None:
        self.orders: list[_Resting] = []
        self.size = size  # visible size as last reported
        self.key: object = _NO_KEY  # ts_key of the pending events
        self.dec = 0  # decreases of the visible size under ``key``
        self.trd = 0  # public trade volume at this price under ``key``

    def settle(self, key: object, window: float) -> None:
        """Apply the pending decreases if ``key`` starts a new timestamp at this level (with a
        ``window``: a numeric key more than ``window`` after the pending events' first key)."""
        if key == self.key:
            return
        start = self.key
        if (
            window
            and isinstance(key, float | int)
            and isinstance(start, float | int)
            and 0 <= key - start <= window
        ):
            return
        self.flush()
        self.trd = 0  # a trade explains decreases of its own timestamp only
        self.key = key

    def flush(self) -> None:
        unexplained = self.dec - self.trd
        size = self.size
        if unexplained > 0:
            for order in self.orders:
                order.ahead = min(max(0, order.ahead - unexplained), size)
        else:
            for order in self.orders:
                if order.ahead > size:
                    order.ahead = size
        # trade volume not yet matched by a decrease may still explain one at this key
        self.trd = max(0, -unexplained)
        self.dec = 0


class QueueBook:
    """Resting orders of one symbol, keyed by orderID; see the module docstring.

    ``through`` chooses what a trade printing through an order's price fills: ``"volume"``
    (default) up to that trade's volume, ``"whole"`` every order it passes in full (optimistic:
    the aggressor's size at better prices is not seen in the trade).

    ``window`` (seconds, numeric ``ts_key`` only) widens "one timestamp" to events within
    ``window`` of the first: for a source whose keys are receive times, where a trade and the
    book update it caused come in separate frames a few milliseconds apart."""

    __slots__ = (
        "_ask_prices",
        "_asks",
        "_bid_prices",
        "_bids",
        "_cross",
        "_orders",
        "_whole",
        "_window",
    )

    def __init__(
        self, *, through: Literal["volume", "whole"] = "volume", window: float = 0.0
    ) -> None:
        self._orders: dict[str, _Resting] = {}
        self._bids: dict[float, _Level] = {}
        self._asks: dict[float, _Level] = {}
        self._bid_prices: list[float] = []  # ascending: best bid last
        self._ask_prices: list[float] = []  # ascending: best ask first
        # size of an opposite level already matched against us: (level is a bid, price) -> qty
        self._cross: dict[tuple[bool, float], int] = {}
        self._whole = through == "whole"
        self._window = window

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def qty(self, order_id: str) -> int:
        """The leaves quantity the book holds for ``order_id``."""
        return self._orders[order_id].qty

    def ahead(self, order_id: str) -> int:
        """Public size in front of ``order_id`` now, pending decreases included."""
        order = self._orders[order_id]
        level = (self._bids if order.buy else self._asks)[order.price]
        unexplained = max(0, level.dec - level.trd)
        return min(max(0, order.ahead - unexplained), level.size)

    # ------------------------------------------------------------------ our orders

    def add(self, order_id: str, buy: bool, price: float, qty: int, ahead: int) -> None:
        """``order_id`` rests with ``qty`` at ``price`` behind ``ahead``, the visible size of its
        level now (``Liquidity.level_size``), and behind our orders already there."""
        if qty <= 0:
            return
        self.remove(order_id)
        order = _Resting(order_id, buy, price, qty, max(0, ahead))
        self._orders[order_id] = order
        self._join(order)

    def amend(
        self,
        order_id: str,
        *,
        qty: int | None = None,
        price: float | None = None,
        ahead: int | None = None,
    ) -> None:
        """New leaves ``qty`` and/or ``price``. Less quantity keeps the place; more quantity or
        another price goes to the back, behind ``ahead`` (the visible size at the order's price
        now; when not given, the size last reported there). 0 leaves the book."""
        order = self._orders[order_id]
        new_qty = order.qty if qty is None else qty
        new_price = order.price if price is None else price
        if new_qty <= 0:
            self.remove(order_id)
            return
        if new_price == order.price and new_qty <= order.qty:
            order.qty = new_qty
            return
        if ahead is None:
            level = (self._bids if order.buy else self._asks).get(new_price)
            ahead = 0 if level is None else level.size
        self._leave(order)
        order.qty, order.price, order.ahead = new_qty, new_price, max(0, ahead)
        self._join(order)

    def remove(self, order_id: str) -> None:
        """``order_id`` no longer rests (canceled, triggered elsewhere, filled); unknown: no-op."""
        order = self._orders.pop(order_id, None)
        if order is not None:
            self._leave(order)

    def _join(self, order: _Resting) -> None:
        levels = self._bids if order.buy else self._asks
        level = levels.get(order.price)
        if level is None:
            level = levels[order.price] = _Level(order.ahead)
            insort(self._bid_prices if order.buy else self._ask_prices, order.price)
        else:
            # a fresh reading of the visible size: the pending events so far are applied to
            # the orders already there (they cannot concern the newcomer), then the cap
            level.flush()
            level.size = order.ahead
            for other in level.orders:
                if other.ahead > order.ahead:
                    other.ahead = order.ahead
        level.orders.append(order)

    def _leave(self, order: _Resting) -> None:
        levels = self._bids if order.buy else self._asks
        level = levels[order.price]
        level.orders.remove(order)
        if not level.orders:
            del levels[order.price]
            prices = self._bid_prices if order.buy else self._ask_prices
            del prices[bisect_left(prices, order.price)]
            if not levels and not (self._asks if order.buy else self._bids):
                self._cross.clear()  # nothing rests: no crossing level can concern us

    # ------------------------------------------------------------------ market events

    def on_level(self, side: str, price: float, size: int, ts_key: object) -> list[Fill]:
        """The visible size at (``side``, ``price``) is now ``size``; ``ts_key`` is the
        message's timestamp. Returns the fills of orders this level crosses (rule 5)."""
        if not self._orders:
            return []
        bid = side == "Buy"
        level = (self._bids if bid else self._asks).get(price)
        if level is not None:
            level.settle(ts_key, self._window)
            if size < level.size:
                level.dec += level.size - size
            level.size = size
        # does this level cross our orders on the other side?
        if bid:
            if not self._ask_prices or price < self._ask_prices[0]:
                if self._cross:
                    self._cross.pop((bid, price), None)
                return []
        elif not self._bid_prices or price > self._bid_prices[-1]:
            if self._cross:
                self._cross.pop((bid, price), None)
            return []
        key = (bid, price)
        used = min(self._cross.get(key, 0), size)
        if size <= used:
            if size:
                self._cross[key] = used
            else:
                self._cross.pop(key, None)
            return []
        fills: list[Fill] = []
        consumed = self._sweep(bid, price, size - used, ts_key, fills)
        self._cross[key] = used + consumed
        return fills

    def on_trade(self, side: str, price: float, qty: int, ts_key: object) -> list[Fill]:
        """A public trade of ``qty`` at ``price``; ``side`` is the aggressor's. Returns the
        fills, best price first, then time priority."""
        if not self._orders or qty <= 0:
            return []
        # the aggressor's side decides which of our orders it meets: a seller meets our bids
        if side == "Buy":
            if not self._ask_prices or price < self._ask_prices[0]:
                return []
            level = self._asks.get(price)
        else:
            if not self._bid_prices or price > self._bid_prices[-1]:
                return []
            level = self._bids.get(price)
        if level is not None:
            level.settle(ts_key, self._window)
            level.trd += qty
        fills: list[Fill] = []
        self._sweep(side == "Buy", price, qty, ts_key, fills)
        return fills

    def _sweep(
        self, aggressor_buys: bool, price: float, qty: int, ts_key: object, fills: list[Fill]
    ) -> int:
        """``qty`` from an aggressor reaching ``price`` meets our orders on the other side:
        first those at better prices (through), then the queue at ``price``. Returns how much
        of ``qty`` was used (our fills plus public size consumed in front of us)."""
        left = qty
        if aggressor_buys:  # our asks below the price, lowest first
            prices, levels = self._ask_prices, self._asks
            through = prices[: bisect_left(prices, price)]
        else:  # our bids above the price, highest first
            prices, levels = self._bid_prices, self._bids
            through = prices[bisect_right(prices, price) :][::-1]
        done: list[_Resting] = []
        for p in through:
            for order in levels[p].orders:
                order.ahead = 0
                if left or self._whole:
                    take = order.qty if self._whole else min(left, order.qty)
                    left = max(0, left - take)
                    order.qty -= take
                    fills.append((order.order_id, take, p))
                    if not order.qty:
                        done.append(order)
        level = levels.get(price)
        if level is not None and left:
            level.settle(ts_key, self._window)
            left = self._walk(level, price, left, fills, done)
        for order in done:
            self.remove(order.order_id)
        return qty - left

    @staticmethod
    def _walk(
        level: _Level, price: float, qty: int, fills: list[Fill], done: list[_Resting]
    ) -> int:
        """``qty`` traded at the level's price walks its queue from the front: the public size
        ahead of each order, then the order. Returns what is left of ``qty``."""
        left = qty
        consumed = 0  # public size consumed so far
        before = 0  # ahead of the previous order, as it was
        for order in level.orders:
            gap = order.ahead - before
            before = order.ahead
            if left and gap > 0:
                take = min(left, gap)
                left -= take
                consumed += take
            order.ahead = max(0, order.ahead - consumed)
            if left:
                take = min(left, order.qty)
                left -= take
                order.qty -= take
                fills.append((order.order_id, take, price))
                if not order.qty:
                    done.append(order)
        return left
