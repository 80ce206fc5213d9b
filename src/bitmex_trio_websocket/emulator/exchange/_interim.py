"""Interim stand-ins for FILL's ``QueueBook`` and ``Triggers`` (same API), used only until
``_queue``/``_triggers`` land: a queue behind the visible size, trades consuming it, trades
through the price filling everything; triggers by stopPx. Deleted once the real ones exist."""

from __future__ import annotations


class QueueBook:
    def __init__(self) -> None:
        self._orders: dict[str, list[object]] = {}  # id -> [buy, price, qty, ahead, seq]
        self._seq = 0

    def __len__(self) -> int:
        return len(self._orders)

    def add(self, order_id: str, buy: bool, price: float, qty: int, ahead: int) -> None:
        self._seq += 1
        self._orders[order_id] = [buy, price, qty, ahead, self._seq]

    def amend(self, order_id: str, *, qty: int | None = None, price: float | None = None,
              ahead: int | None = None) -> None:  # fmt: skip
        entry = self._orders[order_id]
        if qty is not None:
            entry[2] = qty
        if price is not None:
            entry[1] = price
        if ahead is not None:
            self._seq += 1
            entry[3], entry[4] = ahead, self._seq

    def remove(self, order_id: str) -> None:
        self._orders.pop(order_id, None)

    def on_level(self, side: str, price: float, size: int, ts_key: object
                 ) -> list[tuple[str, int, float]]:  # fmt: skip
        for entry in self._orders.values():
            if (side == "Buy") == entry[0] and entry[1] == price:
                entry[3] = min(int(entry[3]), size)  # type: ignore[call-overload]
        return []

    def on_trade(self, side: str, price: float, qty: int, ts_key: object
                 ) -> list[tuple[str, int, float]]:  # fmt: skip
        fills: list[tuple[str, int, float]] = []
        hit = [
            (order_id, entry) for order_id, entry in self._orders.items()
            if entry[0] != (side == "Buy")
            and (price <= entry[1] if entry[0] else price >= entry[1])  # type: ignore[operator]
        ]  # fmt: skip
        hit.sort(key=lambda item: (item[1][4],))  # type: ignore[arg-type,return-value]
        for order_id, entry in hit:
            left = int(entry[2])  # type: ignore[call-overload]
            if entry[1] != price:
                take = left
            else:
                ahead = int(entry[3])  # type: ignore[call-overload]
                used = min(ahead, qty)
                entry[3] = ahead - used
                take = min(left, qty - used)
                qty -= used
            if take > 0:
                fills.append((order_id, take, float(entry[1])))  # type: ignore[arg-type]
                entry[2] = left - take
                qty -= take if entry[1] == price else 0
        for order_id, _, _ in fills:
            if self._orders[order_id][2] == 0:
                del self._orders[order_id]
        return fills


class Triggers:
    def __init__(self) -> None:
        self._stops: dict[str, tuple[bool, str, float, str]] = {}

    def __len__(self) -> int:
        return len(self._stops)

    def add(self, order_id: str, buy: bool, ord_type: str, stop_px: float, trigger: str) -> None:
        self._stops[order_id] = (buy, ord_type, stop_px, trigger)

    def remove(self, order_id: str) -> None:
        self._stops.pop(order_id, None)

    def amend(self, order_id: str, stop_px: float) -> None:
        buy, ord_type, _, trigger = self._stops[order_id]
        self._stops[order_id] = (buy, ord_type, stop_px, trigger)

    def on_price(self, kind: str, price: float) -> list[str]:
        fired = []
        for order_id, (buy, ord_type, stop_px, trigger) in self._stops.items():
            if trigger != kind:
                continue
            stop = ord_type in ("Stop", "StopLimit")
            if (price >= stop_px) if (buy == stop) else (price <= stop_px):
                fired.append((stop_px, order_id))
        fired.sort()
        for _, order_id in fired:
            del self._stops[order_id]
        return [order_id for _, order_id in fired]
