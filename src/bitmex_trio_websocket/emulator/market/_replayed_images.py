"""The replayed market's partial images: a recorded partial's metadata, and partials as deltas.

Theory of operation: subscribers of a replayed table already hold it, so a recorded partial is
sent as the deltas that turn the image before it into the image after it (``diff_rows``):
deletes of rows gone, updates of rows changed (their keys and the fields that differ; a book
update also carries its price, and an ``orderBook10`` update the whole row, as BitMEX sent
them), inserts of new rows, each grouped per symbol. For books it also lists the levels touched,
which the venue reports to the exchange. ``meta_of`` keeps what a partial says about its table
(keys, types, the pre-2023 ``foreignKeys``/``attributes`` and whether its book rows are of the
pre-2023 form), which later partials of the venue's own repeat. Pure functions, no state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from ..._storage import BOOK_TABLES
from ._schemas import Delta

__all__ = ["Meta", "diff_rows", "meta_of"]

_BOOK10: Final = "orderBook10"


@dataclass(slots=True)
class Meta:
    """A table's partial metadata as recorded (what its partials repeat)."""

    keys: list[str]
    types: dict[str, str]
    foreign_keys: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    legacy_book: bool = False  # pre-2023 book rows: no price on updates and deletes


def _str_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def meta_of(table: str, message: dict[str, Any], data: list[Any], held: Meta | None) -> Meta:
    """A partial's metadata (``held``: the table's previous one)."""
    keys = message.get("keys")
    types = _str_dict(message.get("types"))
    meta = Meta(
        [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else [],
        types,
        _str_dict(message.get("foreignKeys")),
        _str_dict(message.get("attributes")),
    )
    if table in BOOK_TABLES:
        if types:
            meta.legacy_book = "timestamp" not in types
        elif data:
            meta.legacy_book = "timestamp" not in data[0]
        else:
            meta.legacy_book = held.legacy_book if held is not None else False
    return meta


def diff_rows(
    table: str,
    keys: list[str],
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    legacy: bool,
) -> tuple[list[Delta], list[tuple[str, str, float]]]:
    """Deltas turning ``before`` into ``after`` (same keys): deletes, updates, inserts,
    each grouped per symbol in first-seen order; for books also the levels they touch,
    ``(symbol, side, price)`` (a moved level at its old and its new price). ``legacy``: the
    pre-2023 book form (no price on deletes and updates)."""

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row.get(k) for k in keys)

    old = {key(row): row for row in before}
    new = {key(row): row for row in after}
    book = table in BOOK_TABLES
    touched: list[tuple[str, str, float]] = []
    deletes: list[dict[str, Any]] = []
    for k, row in old.items():
        if k not in new:
            if book:
                touched.append((row["symbol"], row["side"], float(row["price"])))
            gone = {name: row.get(name) for name in keys}
            if book and not legacy:
                gone["price"] = row.get("price")
            deletes.append(gone)
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    for k, row in new.items():
        held = old.get(k)
        if held is None:
            inserts.append(row)
            if book:
                touched.append((row["symbol"], row["side"], float(row["price"])))
        elif held != row:
            if book:
                touched.append((row["symbol"], row["side"], float(row["price"])))
                if held.get("price") != row.get("price"):
                    touched.append((row["symbol"], row["side"], float(held["price"])))
            if table == _BOOK10:
                updates.append(row)
                continue
            changed = {name: row.get(name) for name in keys}
            changed.update((n, v) for n, v in row.items() if held.get(n) != v)
            if book and not legacy and "price" in row:
                changed.setdefault("price", row["price"])
            updates.append(changed)
    deltas: list[Delta] = []
    for action, rows in (("delete", deletes), ("update", updates), ("insert", inserts)):
        groups: dict[Any, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(row.get("symbol"), []).append(row)
        for symbol, group in groups.items():
            name = symbol if isinstance(symbol, str) else None
            deltas.append(Delta(table, action, name, group))
    return deltas, touched
