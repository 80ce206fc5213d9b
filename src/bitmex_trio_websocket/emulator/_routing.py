"""Fan-out of market deltas to subscriptions, by ``(table, symbol, account)``.

Theory of operation: subscriptions are indexed by their route key; ``symbol=None`` means "every
symbol of the table" and ``account`` is set only for private tables. A delta costs one lookup for
its own symbol plus one for the table's all-symbols subscribers (never a scan of every
subscription) and is encoded once, however many connections receive it. Buckets are dicts used as
insertion-ordered sets, so fan-out order is subscription order: deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._protocol import PRIVATE_TABLES, SYMBOL_TABLES, encode_table
from ._connection import Subscription
from .market import Delta

__all__ = ["Router"]


class Router:
    """Subscriptions indexed by ``(table, symbol, account)``; ``symbol=None`` = all symbols."""

    def __init__(self) -> None:
        # Dicts as insertion-ordered sets: fan-out order is connection order, deterministic.
        self._subs: dict[tuple[str, str | None, int | None], dict[Subscription, None]] = {}

    def add(self, sub: Subscription) -> None:
        self._subs.setdefault(sub.route_key(), {})[sub] = None

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
                targets = list(self._subs.get((delta.table, symbol, account), ()))
                if symbol is not None:
                    targets.extend(self._subs.get((delta.table, None, account), ()))
                if not targets:
                    continue
                frame = encode_table(delta.table, delta.action, rows)
                for sub in targets:  # a copy: delivering may shed a slow connection
                    if sub.active:
                        sub.connection.deliver(frame)

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
