"""BitMEX timestamps as milliseconds since the epoch, and back, for compact book levels.

Theory of operation
-------------------
Every stored order-book level keeps a ``timestamp`` and a ``transactTime``. As text each is a
73-byte string; as milliseconds it is a machine word inside the level record (the compiled core
stores ``int`` attributes unboxed). The store may only convert a stamp it can give back exactly,
so a stamp is converted only when it is *canonical*: exactly ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (24
ASCII characters, a real calendar date in the years 1970 to 9999, hours below 24, minutes and
seconds below 60), which is what BitMEX sends. For such text ``stamp_text(stamp_ms(text)) ==
text``; anything else (another length, other digits, an offset, a leap second, microseconds, a
lowercase ``z``...) gives -1, and the store keeps that value as sent.

These are the pure-Python versions (``datetime`` does the calendar); the compiled core uses the
C versions of ``_compiled._slots`` (``_slots.c``: the same rules, its own calendar arithmetic),
and ``tests/storage/test_stamps.py`` checks that the two agree. Nothing here reads a clock.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

__all__ = ["MAX_MS", "stamp_ms", "stamp_text"]

_EPOCH: Final = date(1970, 1, 1).toordinal()
_DAY: Final = 86_400_000
# The last canonical stamp, 9999-12-31T23:59:59.999Z.
MAX_MS: Final = (date(9999, 12, 31).toordinal() - _EPOCH + 1) * _DAY - 1
# ASCII digits only (``re.ASCII``: ``\d`` alone would take any Unicode digit).
_CANONICAL: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d\d\d)Z", re.ASCII)


def stamp_ms(text: str) -> int:
    """Milliseconds since the epoch of a canonical stamp; -1 for any other text."""
    if len(text) != 24:
        return -1
    match = _CANONICAL.fullmatch(text)
    if match is None:
        return -1
    year, month, day, hours, minutes, seconds, millis = map(int, match.groups())
    if year < 1970 or hours > 23 or minutes > 59 or seconds > 59:
        return -1
    try:
        days = date(year, month, day).toordinal() - _EPOCH
    except ValueError:  # no such date (month 13, February 30...)
        return -1
    return ((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1000 + millis


def stamp_text(ms: int) -> str:
    """The canonical stamp of ``ms`` milliseconds since the epoch (0 to ``MAX_MS``)."""
    if not 0 <= ms <= MAX_MS:
        raise ValueError(f"{ms} ms is outside the stamps of years 1970 to 9999")
    days, ms = divmod(ms, _DAY)
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    day = date.fromordinal(days + _EPOCH)
    return (
        f"{day.year:04d}-{day.month:02d}-{day.day:02d}"
        f"T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"
    )
