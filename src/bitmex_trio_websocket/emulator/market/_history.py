"""The market's past: ``settlement`` and ``insurance`` rows from before the emulator started.

Theory of operation: a partial of ``settlement`` or ``insurance`` on BitMEX was history, not
today's events: the 2024-05 settlement partial lists delisted contracts settled years apart
(SNTUSDT 2024-05-06, SUSHIUSDT 2021-11-02; ``../shared/captures/roq-bitmex_tests.jsonl``
line 14). ``History`` makes such a past, seeded and without a clock (``start`` is passed in):

* settlements of the quarterly futures of each root the market lists (``XBTZ25``-style
  symbols for XBT, ``ETHUSDZ25``-style for the others), on the last Friday of March, June,
  September and December at 12:00 UTC, for ``QUARTERS`` quarters, at prices that walk back
  from the start price; rows have ``settlementType`` ``Settlement`` and ``settledPrice`` only,
  as in the capture (the option and tax columns are null, hence omitted);
* a daily ``insurance`` row per settlement currency (``XBt``, ``USDt``) at 12:00 UTC for
  ``INSURANCE_DAYS`` days, the fund's balance walking slowly; the market adds one row a day
  (``insurance_due``). BitMEX's insurance times are not in any capture: 12:00 UTC is our choice.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Callable, Sequence
from random import Random
from typing import Any, Final

from ._instruments import InstrumentSpec

__all__ = ["INSURANCE_DAYS", "QUARTERS", "History"]

QUARTERS: Final = 8
INSURANCE_DAYS: Final = 30
_DAY: Final = 86400.0
_MONTH_CODES: Final = {3: "H", 6: "M", 9: "U", 12: "Z"}
_FUNDS: Final = (("XBt", 3_600_000_000_000), ("USDt", 45_000_000_000_000))  # ~36k XBT, 45M USDT


def _last_friday_noon(year: int, month: int) -> float:
    last = calendar.monthrange(year, month)[1]
    day = dt.date(year, month, last)
    day -= dt.timedelta(days=(day.weekday() - 4) % 7)
    return dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp()


class History:
    """Settlement and insurance history before ``start``; see the module docstring."""

    def __init__(
        self, specs: Sequence[InstrumentSpec], start: float, fmt: Callable[[float], str], seed: int
    ) -> None:
        rng = Random(f"history/{seed}")
        self._fmt = fmt
        self.settlements: list[dict[str, Any]] = []
        roots: dict[str, float] = {}
        for spec in specs:
            if spec.kind != "linear":
                roots.setdefault(spec.underlying, spec.start_price)
        quarters: list[float] = []
        moment = dt.datetime.fromtimestamp(start, dt.UTC)
        year, month = moment.year, moment.month - (moment.month - 1) % 3 + 2  # this quarter
        while len(quarters) < QUARTERS:
            when = _last_friday_noon(year, month)
            if when < start:
                quarters.append(when)
            month -= 3
            if month <= 0:
                month, year = month + 12, year - 1
        for root, price in roots.items():
            level = price
            for when in quarters:  # newest first, the price walking back in time
                level *= math.exp(rng.gauss(0.0, 0.12))
                month_code = _MONTH_CODES[dt.datetime.fromtimestamp(when, dt.UTC).month]
                year_code = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%y")
                symbol = f"{root}{'' if root == 'XBT' else 'USD'}{month_code}{year_code}"
                self.settlements.append({
                    "timestamp": fmt(when), "symbol": symbol, "settlementType": "Settlement",
                    "settledPrice": float(round(level, 1 if level > 1000 else 2)),
                })  # fmt: skip
        self.settlements.sort(key=lambda row: (row["timestamp"], row["symbol"]))
        self.insurance: list[dict[str, Any]] = []
        first = (math.floor((start - 12 * 3600) / _DAY)) * _DAY + 12 * 3600  # last noon
        self._balances = {currency: float(balance) for currency, balance in _FUNDS}
        for day in range(INSURANCE_DAYS - 1, -1, -1):
            self._add_insurance(first - day * _DAY, rng)
        self._rng = rng
        self.next_insurance = first + _DAY

    def _add_insurance(self, when: float, rng: Random) -> list[dict[str, Any]]:
        rows = []
        for currency, balance in self._balances.items():
            balance *= 1 + rng.gauss(0.0005, 0.002)
            self._balances[currency] = balance
            row = {"currency": currency, "timestamp": self._fmt(when),
                   "walletBalance": int(balance)}  # fmt: skip
            self.insurance.append(row)
            rows.append(dict(row))
        return rows

    def insurance_due(self, now: float) -> list[dict[str, Any]]:
        """The day's insurance rows once ``now`` reached 12:00 UTC (else none)."""
        rows: list[dict[str, Any]] = []
        while self.next_insurance <= now:
            rows.extend(self._add_insurance(self.next_insurance, self._rng))
            self.next_insurance += _DAY
            if now - self.next_insurance > INSURANCE_DAYS * _DAY:  # a long pause: skip ahead
                self.next_insurance = (math.floor((now - 12 * 3600) / _DAY) + 1) * _DAY + 43200
        return rows

    def settlement_rows(self, symbols: set[str] | None) -> list[dict[str, Any]]:
        return [dict(r) for r in self.settlements if symbols is None or r["symbol"] in symbols]
