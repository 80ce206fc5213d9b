"""Stop and if-touched orders waiting for their trigger price; sans-IO.

Theory of operation: BitMEX's conditional orders (``Stop``, ``StopLimit``, ``MarketIfTouched``,
``LimitIfTouched``) wait, out of the book, until a reference price reaches their ``stopPx``. The
reference is chosen by ``execInst``: ``MarkPrice`` (BitMEX's default), ``LastPrice`` or
``IndexPrice``. A stop guards against a move *through* its price (a buy Stop fires when the price
is at or above ``stopPx``, a sell Stop at or below); an if-touched order waits for a move *to*
its price, the other way round (a buy MarketIfTouched fires at or below ``stopPx``, a sell one at
or above). So every trigger is either "rising" (fires when price >= stopPx: buy Stop/StopLimit,
sell MIT/LIT) or "falling" (fires when price <= stopPx: sell Stop/StopLimit, buy MIT/LIT).

``Triggers`` (one per symbol) keeps, per reference price and direction, the waiting orders sorted
by ``(stopPx, arrival)``. A new price fires a prefix of each list, so ``on_price`` costs two
comparisons when nothing fires (the venue calls it for every mark, last and index price). Fired
orders leave; the caller turns them into Market or Limit orders arriving at that moment. Orders
fired together come in the order the move crossed them: a rise fires rising triggers lowest
stopPx first, a fall fires falling triggers highest first; when one price fires both kinds
(possible only just after an add or amend), the ones of the direction the price moved go first.
"""

from __future__ import annotations

from bisect import insort
from typing import Final

from ._errors import OrderRejected

__all__ = ["KINDS", "STOP_TYPES", "TOUCHED_TYPES", "Triggers", "fires"]

KINDS: Final = ("MarkPrice", "LastPrice", "IndexPrice")
STOP_TYPES: Final = frozenset({"Stop", "StopLimit"})
TOUCHED_TYPES: Final = frozenset({"MarketIfTouched", "LimitIfTouched"})


def _rising(buy: bool, ord_type: str) -> bool:
    """Whether the order fires when the price is at or above its stopPx."""
    if ord_type in STOP_TYPES:
        return buy
    if ord_type in TOUCHED_TYPES:
        return not buy
    raise OrderRejected("Invalid ordType")  # the engine validates first; a bug otherwise


def fires(buy: bool, ord_type: str, stop_px: float, price: float) -> bool:
    """Whether a ``buy``/sell order of ``ord_type`` with ``stop_px`` triggers at ``price``."""
    return price >= stop_px if _rising(buy, ord_type) else price <= stop_px


class _Waiting:
    """One reference price's waiting orders. ``rising`` holds ``(stopPx, seq, id)`` ascending
    (fire from the front); ``falling`` holds ``(-stopPx, seq, id)`` ascending, so its front is
    the highest stopPx (fires first on a fall)."""

    __slots__ = ("falling", "last", "rising")

    def __init__(self) -> None:
        self.rising: list[tuple[float, int, str]] = []
        self.falling: list[tuple[float, int, str]] = []
        self.last: float | None = None


class Triggers:
    """Conditional orders of one symbol, keyed by orderID; see the module docstring."""

    __slots__ = ("_by_kind", "_entries", "_seq")

    def __init__(self) -> None:
        self._by_kind = {kind: _Waiting() for kind in KINDS}
        # order_id -> (kind, rising, sort entry)
        self._entries: dict[str, tuple[str, bool, tuple[float, int, str]]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._entries

    def add(self, order_id: str, buy: bool, ord_type: str, stop_px: float, trigger: str) -> None:
        """``order_id`` waits for the ``trigger`` price (``MarkPrice``, ``LastPrice`` or
        ``IndexPrice``) to reach ``stop_px``. An order already past its stopPx fires at the next
        ``on_price`` of its kind (BitMEX triggered such orders at once)."""
        if trigger not in self._by_kind:
            raise OrderRejected("Invalid execInst")
        self.remove(order_id)
        rising = _rising(buy, ord_type)
        self._seq += 1
        entry = (stop_px if rising else -stop_px, self._seq, order_id)
        self._entries[order_id] = (trigger, rising, entry)
        waiting = self._by_kind[trigger]
        insort(waiting.rising if rising else waiting.falling, entry)

    def amend(self, order_id: str, stop_px: float) -> None:
        """A new ``stop_px``; the order keeps its trigger price and direction."""
        trigger, rising, entry = self._entries[order_id]
        waiting = self._by_kind[trigger]
        side = waiting.rising if rising else waiting.falling
        side.remove(entry)
        new = (stop_px if rising else -stop_px, entry[1], order_id)
        self._entries[order_id] = (trigger, rising, new)
        insort(side, new)

    def remove(self, order_id: str) -> None:
        """``order_id`` no longer waits (canceled, or fired); unknown ids are ignored."""
        found = self._entries.pop(order_id, None)
        if found is not None:
            trigger, rising, entry = found
            waiting = self._by_kind[trigger]
            (waiting.rising if rising else waiting.falling).remove(entry)

    def stop_px(self, order_id: str) -> float:
        """The stopPx ``order_id`` waits for."""
        _, rising, entry = self._entries[order_id]
        return entry[0] if rising else -entry[0]

    def on_price(self, kind: str, price: float) -> list[str]:
        """The ``kind`` reference price is now ``price``: the orderIDs that fire, in the order
        the move crossed their stopPx. They leave the list."""
        waiting = self._by_kind[kind]
        last, waiting.last = waiting.last, price
        rising, falling = waiting.rising, waiting.falling
        up = rising and rising[0][0] <= price
        down = falling and -falling[0][0] >= price
        if not up and not down:
            return []
        fired_up: list[str] = []
        if up:
            n = 0
            while n < len(rising) and rising[n][0] <= price:
                n += 1
            fired_up = [entry[2] for entry in rising[:n]]
            del rising[:n]
        fired_down: list[str] = []
        if down:
            n = 0
            while n < len(falling) and -falling[n][0] >= price:
                n += 1
            fired_down = [entry[2] for entry in falling[:n]]
            del falling[:n]
        for order_id in fired_up:
            del self._entries[order_id]
        for order_id in fired_down:
            del self._entries[order_id]
        if last is not None and price < last:
            return fired_down + fired_up
        return fired_up + fired_down
