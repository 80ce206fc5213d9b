"""BitMEX's generic read parameters applied to a list of rows, sans-IO.

Theory of operation: BitMEX's list routes (``GET /order``, ``/execution/tradeHistory``,
``/trade``, ``/funding``, ``/instrument``...) shared one set of parameters, applied here in this
order to rows kept oldest first:

* ``symbol``: rows of that symbol only;
* ``filter``: a JSON object of ``column: value`` (a list value means any of them), plus BitMEX's
  special keys ``open`` (``{"open": true}``: orders not yet terminated, its documented way to
  list open orders), ``ordStatus.isTerminated`` (true/false, what its market maker sent) and
  ``<timestamp column>.date`` (``"2016-12-27"``: rows of that UTC day);
* ``startTime``/``endTime``: rows whose ``timestamp`` is within the bounds (both inclusive);
* ``reverse``: newest first (the default is oldest first, which is why BitMEX clients asking for
  "the latest" sent ``reverse=true``);
* ``start``: skip that many rows, then ``count``: at most that many (default 100; BitMEX refused
  more than 1000 - ccxt #19253 - and a count below 1);
* ``columns``: a JSON array of column names; the table's key columns are always kept (BitMEX:
  "this method will always return item keys").

Timestamps are BitMEX's fixed-width ``YYYY-MM-DDTHH:MM:SS.mmmZ`` text, so bounds are formatted
the same way and compared as strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .._texts import iso_timestamp
from ._errors import VALIDATION_ERROR, RestError

__all__ = ["MAX_COUNT", "QUERY_KINDS", "TERMINATED", "Query"]

MAX_COUNT: Final = 1000
DEFAULT_COUNT: Final = 100
TERMINATED: Final = frozenset({"Filled", "Canceled", "Rejected"})

# The parameter kinds of the generic read (see _params.Spec).
QUERY_KINDS: Final = {
    "symbol": "str", "filter": "json", "columns": "json", "count": "int", "start": "int",
    "reverse": "bool", "startTime": "time", "endTime": "time",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Query:
    """One list request's parameters, validated (see the module docstring)."""

    symbol: str | None = None
    filter: Mapping[str, Any] | None = None
    columns: tuple[str, ...] | None = None
    count: int | None = DEFAULT_COUNT
    start: int = 0
    reverse: bool = False
    start_time: float | None = None
    end_time: float | None = None

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], *, default_count: int | None = DEFAULT_COUNT
    ) -> Query:
        """Validate typed parameters (``_params.typed`` with ``QUERY_KINDS``)."""
        filter_ = params.get("filter")
        if filter_ is not None and not isinstance(filter_, dict):
            raise RestError(400, "Invalid filter", name=VALIDATION_ERROR)
        columns = params.get("columns")
        if columns is not None:
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
                raise RestError(400, "Invalid columns", name=VALIDATION_ERROR)
            columns = tuple(columns)
        count = params.get("count", default_count)
        if count is not None and not 1 <= count <= MAX_COUNT:
            raise RestError(400, f"count must be between 1 and {MAX_COUNT}", name=VALIDATION_ERROR)
        start = params.get("start", 0)
        if start < 0:
            raise RestError(400, "start must be a non-negative integer", name=VALIDATION_ERROR)
        return cls(
            params.get("symbol"), filter_, columns, count, start, params.get("reverse", False),
            params.get("startTime"), params.get("endTime"),
        )  # fmt: skip

    def apply(
        self, rows: Iterable[Mapping[str, Any]], keys: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """The rows this query selects, as new dicts (``keys``: columns always kept)."""
        selected = [row for row in rows if self._matches(row)]
        if self.reverse:
            selected.reverse()
        selected = selected[self.start :]
        if self.count is not None:
            selected = selected[: self.count]
        if self.columns is None:
            return [dict(row) for row in selected]
        wanted = set(self.columns) | set(keys)
        return [{k: v for k, v in row.items() if k in wanted} for row in selected]

    def _matches(self, row: Mapping[str, Any]) -> bool:
        if self.symbol is not None and row.get("symbol") != self.symbol:
            return False
        if self.start_time is not None or self.end_time is not None:
            stamp = row.get("timestamp")
            if not isinstance(stamp, str):
                return False
            if self.start_time is not None and stamp < iso_timestamp(self.start_time):
                return False
            if self.end_time is not None and stamp > iso_timestamp(self.end_time):
                return False
        if self.filter:
            return all(_matches(row, key, value) for key, value in self.filter.items())
        return True


def _matches(row: Mapping[str, Any], key: str, value: Any) -> bool:
    if key == "open":
        return (row.get("ordStatus") not in TERMINATED) == bool(value)
    if key == "ordStatus.isTerminated":
        return (row.get("ordStatus") in TERMINATED) == bool(value)
    if key.endswith(".date") and key[:-5] in row:
        stamp = row.get(key[:-5])
        return isinstance(stamp, str) and stamp[:10] == str(value)
    actual = row.get(key)
    if isinstance(value, list):
        return actual in value
    return bool(actual == value)
