"""Funding of a replayed market: which positions pay, when, at what rate, from the recording.

Theory of operation
-------------------
BitMEX charges funding on every open perpetual position at fixed times (every 8 h: 04:00,
12:00, 20:00 UTC). The synthetic market settles it on its own clock; a replayed market settles
what the recording says, through the same ``Exchange.on_funding`` (an ``execution`` of execType
Funding, then position, margin and wallet). ``FundingSchedule`` says when, per symbol, from one
of two sources:

* ``"funding"`` (the table): each recorded row (``timestamp``, ``symbol``, ``fundingRate``) is
  one settlement, made at the data time the row was received (BitMEX published it at the
  funding time, so a fraction of a second after it). This is a symbol's source as soon as the
  recording has a ``funding`` partial covering it;
* ``"instrument"``: otherwise, the symbol's ``instrument`` row announces, in
  ``fundingTimestamp``/``fundingRate``, the rate to be paid at the next funding time; it is paid
  when data time reaches that time (``next_due`` lets the venue wake its pump then, between
  frames). A later announcement for the same time replaces the rate; one for a later time adds a
  settlement and leaves the earlier one due (the row announcing the next time may be received
  a hair before the funding time, the recorder's clock not being BitMEX's).

Each settlement is keyed by (symbol, funding time in ms) and made once, whichever source or
repeat brings it: a re-partial after a recorder's gap repeats rows (and a row the gap swallowed
is paid when that partial arrives). A funding time at or before the first data time is history,
never paid. An announced settlement whose symbol has a ``funding`` partial by the time it falls
due is left to the table's row.

Neither source: a symbol with no ``funding`` partial and no ``instrument`` row pays no funding;
``check`` names it once, at the first BitMEX funding time the data passes while it is tradable
(the venue logs a warning). A symbol whose ``instrument`` rows carry no ``fundingTimestamp`` (a
dated future) has no funding, and no warning. Sans-IO: every time is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

__all__ = ["FUNDING_INTERVAL", "FundingSchedule", "Settlement", "next_funding_time"]

FUNDING_INTERVAL: Final = 8 * 3600.0  # BitMEX's perpetuals: 04:00, 12:00, 20:00 UTC
_FIRST_OF_DAY: Final = 4 * 3600.0


def next_funding_time(after: float) -> float:
    """BitMEX's first funding time strictly after ``after`` (epoch seconds)."""
    passed = (after - _FIRST_OF_DAY) // FUNDING_INTERVAL
    return _FIRST_OF_DAY + (passed + 1) * FUNDING_INTERVAL


def _epoch_ms(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return round(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return None


def _rate(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


@dataclass(frozen=True, slots=True)
class Settlement:
    """One funding payment to make: ``symbol`` at ``rate`` for funding time ``time``."""

    symbol: str
    rate: float
    time: float  # the funding time (epoch seconds)
    source: str  # "funding" or "instrument"


class FundingSchedule:
    """When a replayed market settles funding (see the module docstring)."""

    def __init__(self, start: float) -> None:
        self._start_ms = round(start * 1000)
        self._settled: set[tuple[str, int]] = set()
        self._announced: dict[tuple[str, int], float] = {}  # (symbol, ms) -> rate
        self._last: dict[str, tuple[Any, int | None]] = {}  # symbol -> (text, ms) last parsed
        self._next_due: float | None = None
        self._next_check = next_funding_time(start)
        self._warned: set[str] = set()
        self.described: set[str] = set()  # symbols with an instrument row
        self.sources: dict[str, str] = {}  # symbol -> the source of its last settlement
        self.unfunded: tuple[str, ...] = ()  # symbols named by ``check``

    @property
    def next_due(self) -> float | None:
        """The earliest announced funding time not yet settled (epoch seconds)."""
        return self._next_due

    def announce(self, symbol: str, row: Mapping[str, Any]) -> None:
        """A (full) ``instrument`` row of ``symbol``: its announced funding time and rate."""
        self.described.add(symbol)
        text = row.get("fundingTimestamp")
        if text is None:
            return
        last = self._last.get(symbol)
        if last is not None and last[0] == text:
            ms = last[1]
        else:
            ms = _epoch_ms(text)
            self._last[symbol] = (text, ms)
        rate = _rate(row.get("fundingRate"))
        if ms is None or rate is None or ms <= self._start_ms:
            return
        key = (symbol, ms)
        if key in self._settled or self._announced.get(key) == rate:
            return
        self._announced[key] = rate
        due = ms / 1000
        if self._next_due is None or due < self._next_due:
            self._next_due = due

    def due(self, now: float, recorded: Callable[[str], bool]) -> list[Settlement]:
        """Announced settlements due at or before ``now``, oldest first, each once; those of a
        symbol whose ``funding`` table is recorded (``recorded``) are left to its rows."""
        limit = round(now * 1000)
        ready = sorted((ms, symbol) for symbol, ms in self._announced if ms <= limit)
        out: list[Settlement] = []
        for ms, symbol in ready:
            rate = self._announced.pop((symbol, ms))
            if recorded(symbol) or (symbol, ms) in self._settled:
                continue
            self._settled.add((symbol, ms))
            self.sources[symbol] = "instrument"
            out.append(Settlement(symbol, rate, ms / 1000, "instrument"))
        self._next_due = min((ms for _, ms in self._announced), default=None)
        if self._next_due is not None:
            self._next_due /= 1000
        return out

    def recorded_rows(self, rows: Iterable[Mapping[str, Any]]) -> list[Settlement]:
        """Settlements of recorded ``funding`` rows not made yet (history ones skipped)."""
        out: list[Settlement] = []
        for row in rows:
            symbol = row.get("symbol")
            ms = _epoch_ms(row.get("timestamp"))
            rate = _rate(row.get("fundingRate"))
            if not isinstance(symbol, str) or ms is None or rate is None or ms <= self._start_ms:
                continue
            if (symbol, ms) in self._settled:
                continue
            self._settled.add((symbol, ms))
            self._announced.pop((symbol, ms), None)
            self.sources[symbol] = "funding"
            out.append(Settlement(symbol, rate, ms / 1000, "funding"))
        return out

    def check(
        self, now: float, tradable: Iterable[str], recorded: Callable[[str], bool]
    ) -> list[str]:
        """Symbols newly found unfunded: at each BitMEX funding time the data passes, the
        tradable symbols with neither source (named once)."""
        if now < self._next_check:
            return []
        self._next_check = next_funding_time(now)
        found = [
            symbol
            for symbol in tradable
            if symbol not in self.described and symbol not in self._warned and not recorded(symbol)
        ]
        if found:
            self._warned.update(found)
            self.unfunded = (*self.unfunded, *found)
        return found
