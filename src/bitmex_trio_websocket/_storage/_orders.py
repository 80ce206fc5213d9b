"""Closed orders leave the ``order`` table: the eviction rule and its bookkeeping.

Theory of operation
-------------------
BitMEX never deletes an order from the ``order`` table: a filled, canceled or rejected order stays
for as long as the subscription lives, so a long-running bot's table would grow without end. As
in the 2021 library, the store drops a closed order some time after it closed, by server time:

* **Server time** (``now``) is the newest ``timestamp`` of the order rows applied so far (every row
  an ``ApplyResult`` hands out: partial rows, inserted rows, merged updates, deleted rows). A row
  without a parsable timestamp does not move it. No local clock is ever read.
* **Close time.** An order is *closed* while its row's ``ordStatus`` is one of
  ``CLOSED_ORDER_STATUSES`` (a string; any other value, a list included, means open). Its close
  time is the ``timestamp`` of the first row, since the order entered the table or was last open,
  that shows it closed; without a parsable timestamp, the server time known at the end of that
  message, or (if none is known yet) at the end of the first message that brings one.
* **Eviction.** At the end of each applied ``order`` message, every closed order whose close time
  is ``ttl`` seconds or more before ``now`` leaves the table. It is not reported as a change: this
  is housekeeping, not something BitMEX said.
* A row handed out open, a delete, and a partial or reset that removes rows forget those orders'
  close times (``forget``/``clear``), so a close time always belongs to a row in the table.

Close times wait in a heap (oldest first); entries made stale by ``forget`` are skipped when they
reach its top and compacted away when they outnumber the live ones.

It cannot fail: keys are tuples the store has already validated, the status is compared only if it
is a string, and a malformed timestamp is treated as absent. So it runs after the message has been
applied without breaking the promise that ``apply`` either raises before changing anything or
succeeds. Sans-IO: no trio, no clock.
"""

from __future__ import annotations

import datetime
import heapq
import re
import reprlib
from collections.abc import Iterable, MutableMapping
from typing import Any, Final

from .._events import Change

__all__ = ["CLOSED_ORDER_STATUSES", "ClosedOrders", "parse_timestamp"]

CLOSED_ORDER_STATUSES: Final = frozenset({"Filled", "Canceled", "Rejected"})
_NEVER: Final = -float("inf")
_REPR: Final = reprlib.Repr()  # for error text about any value, of any depth or size
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 60, 60
_TIMESTAMP: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,6}))?(?:Z|\+00:00)"
)


def parse_timestamp(text: str) -> datetime.datetime:
    """Parse a BitMEX timestamp (``2020-10-12T16:46:20.255Z``) into an aware UTC datetime."""
    match = _TIMESTAMP.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a BitMEX timestamp: {_REPR.repr(text)}")
    year, month, day, hour, minute, second = (int(f) for f in match.groups()[:6])
    micros = int((match[7] or "").ljust(6, "0"))
    return datetime.datetime(year, month, day, hour, minute, second, micros, datetime.UTC)


def _seconds(stamp: Any) -> float | None:
    """Server time of a row's ``timestamp`` (epoch seconds), ``None`` if absent or malformed."""
    if type(stamp) is not str:
        return None
    try:
        return parse_timestamp(stamp).timestamp()
    except ValueError:  # well-formed but impossible, e.g. month 13
        return None


def is_closed(row: Any) -> bool:
    status = row.get("ordStatus")
    return type(status) is str and status in CLOSED_ORDER_STATUSES


class ClosedOrders:
    """Close times of the closed orders in one ``order`` table, and their eviction."""

    __slots__ = ("_heap", "_seq", "_undated", "closed", "now", "ttl")

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.now = _NEVER  # server time: the newest order row timestamp seen
        self.closed: dict[tuple[Any, ...], int] = {}  # key -> sequence number of its heap entry
        self._heap: list[tuple[float, int, tuple[Any, ...]]] = []  # (close time, seq, key)
        self._undated: dict[tuple[Any, ...], int] = {}  # closed while no server time was known
        self._seq = 0

    def forget(self, keys: Iterable[tuple[Any, ...]]) -> None:
        """These orders left the table (or are open): drop their close times."""
        closed, undated = self.closed, self._undated
        for key in keys:
            closed.pop(key, None)
            undated.pop(key, None)

    def clear(self) -> None:
        self.closed.clear()
        self._undated.clear()
        self._heap.clear()

    def _close(self, key: tuple[Any, ...], at: float | None) -> None:
        if key in self.closed or key in self._undated:
            return  # still closed: the first close time stands
        self._seq += 1
        if at is None:
            self._undated[key] = self._seq
        else:
            self.closed[key] = self._seq
            heapq.heappush(self._heap, (at, self._seq, key))

    def note(self, changes: Iterable[Change], keys: list[str]) -> None:
        """Take the rows an applied ``order`` message handed out (``ApplyResult.changes``)."""
        now = self.now
        for change in changes:
            delete = change.action == "delete"
            for row in change.rows:
                key = tuple([row.get(k) for k in keys])  # as validated when it was stored
                if delete:
                    self.forget((key,))
                    continue
                at = _seconds(row.get("timestamp"))
                if at is not None and at > now:
                    now = at
                if is_closed(row):
                    self._close(key, at)
                else:
                    self.forget((key,))
        self.now = now
        if self._undated and now != _NEVER:
            undated, self._undated = self._undated, {}
            for key in undated:
                self._close(key, now)

    def expire(self, store: MutableMapping[tuple[Any, ...], Any]) -> None:
        """Remove from ``store`` every closed order whose close time is ``ttl`` before ``now``."""
        heap, closed = self._heap, self.closed
        horizon = self.now - self.ttl
        while heap and heap[0][0] <= horizon:
            _, seq, key = heapq.heappop(heap)
            if closed.get(key) != seq:
                continue  # forgotten, or closed again later: a stale entry
            del closed[key]
            row = store.get(key)
            if row is not None and is_closed(row):
                del store[key]
        if len(heap) > 2 * len(closed) + 64:  # mostly stale entries: rebuild
            self._heap = [entry for entry in heap if closed.get(entry[2]) == entry[1]]
            heapq.heapify(self._heap)
