"""Fan-out of market deltas to subscriptions, by ``(table, symbol, account)``.

Theory of operation: subscriptions are indexed by their route key; ``symbol=None`` means "every
symbol of the table" and ``account`` is set only for private tables. Each subscription is
registered with the function that delivers a frame to its session (the connection's outbox, or
a ``/realtimemd`` stream's wrapper), so the router knows nothing about connections. A delta
costs one lookup for its own symbol plus one for the table's all-symbols subscribers (never a
scan of every subscription) and is encoded once, however many sessions receive it. Buckets are
insertion-ordered dicts, so fan-out order is subscription order: deterministic. A session
subscribed to both ``trade`` and ``trade:XBTUSD`` gets each delta once, not once per topic
(deliveries are de-duplicated by the session's deliver function).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .._protocol import PRIVATE_TABLES, SYMBOL_TABLES
from ._json import encode_table
from ._session import Subscription
from .market import Delta

__all__ = ["Deliver", "Router"]

Deliver = Callable[[str], None]  # queue one frame for a session; never blocks
_NOBODY: dict[Subscription, Deliver] = {}  # read-only: the bucket of a key nobody routes


class Router:
    """Subscriptions indexed by ``(table, symbol, account)``; ``symbol=None`` = all symbols."""

    def __init__(self) -> None:
        self._subs: dict[tuple[str, str | None, int | None], dict[Subscription, Deliver]] = {}

    def add(self, sub: Subscription, deliver: Deliver) -> None:
        self._subs.setdefault(sub.route_key(), {})[sub] = deliver

    def remove(self, sub: Subscription) -> None:
        key = sub.route_key()
        bucket = self._subs.get(key)
        if bucket is not None:
            bucket.pop(sub, None)
            if not bucket:
                del self._subs[key]

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._subs.values())

    def publish(self, deltas: Iterable[Delta]) -> None:
        for delta in deltas:
            account = delta.account if delta.table in PRIVATE_TABLES else None
            for symbol, rows in self._split(delta):
                targets = list(self._subs.get((delta.table, symbol, account), _NOBODY).items())
                overlap = bool(targets)
                if symbol is not None:
                    everything = self._subs.get((delta.table, None, account), _NOBODY)
                    targets.extend(everything.items())
                    overlap = overlap and bool(everything)
                if not targets:
                    continue
                frame = encode_table(delta.table, delta.action, rows)
                if overlap:  # a session with both topics must get the delta once
                    seen: set[Deliver] = set()
                    unique: list[tuple[Subscription, Deliver]] = []
                    for sub, deliver in targets:
                        if sub.active and deliver not in seen:
                            seen.add(deliver)
                            unique.append((sub, deliver))
                    targets = unique
                for sub, deliver in targets:  # a copy: delivering may shed a slow connection
                    if sub.active:
                        deliver(frame)

    @staticmethod
    def _split(delta: Delta) -> list[tuple[str | None, list[dict[str, Any]]]]:
        if delta.symbol is not None or delta.table not in SYMBOL_TABLES:
            return [(delta.symbol, delta.rows)]
        # A symbol-scoped delta without a symbol: BitMEX messages concern one symbol, so split.
        groups: dict[str | None, list[dict[str, Any]]] = {}
        for row in delta.rows:
            symbol = row.get("symbol")
            groups.setdefault(symbol if isinstance(symbol, str) else None, []).append(row)
        return list(groups.items())
