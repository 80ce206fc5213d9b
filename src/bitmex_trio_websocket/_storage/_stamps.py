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

These are the pure-Python versions (``datetime`` does the calendar, worked out once per minute
of stamps: the module's only state is that cache); the compiled core uses the C versions of
``_compiled._slots`` (``_slots.c``: the same rules, its own calendar arithmetic), and
``tests/storage/test_stamps.py`` checks that the two agree. Nothing here reads a clock.
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
# "YYYY-MM-DDTHH:MM" in ASCII digits only (``re.ASCII``: ``\d`` alone takes any Unicode digit).
_MINUTE: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)", re.ASCII)

# Consecutive stamps mostly fall in the same minute, so each direction keeps its last minute
# (text and ms, rebound as one tuple): the calendar is worked out only when the minute changes.
_parsed: tuple[str, int] = ("", -1)
_shown: tuple[int, str] = (-1, "")
# The rest of a stamp after its minute, as text and back: ":SS." and "mmmZ" (about 100 KB).
_SECOND_TEXT: Final = [f":{n:02d}." for n in range(60)]
_MILLIS_TEXT: Final = [f"{n:03d}Z" for n in range(1000)]
_SECOND: Final = {text: n * 1000 for n, text in enumerate(_SECOND_TEXT)}
_MILLIS: Final = {text: n for n, text in enumerate(_MILLIS_TEXT)}


def _minute_ms(prefix: str) -> int:
    """Milliseconds of a canonical "YYYY-MM-DDTHH:MM", or -1."""
    match = _MINUTE.fullmatch(prefix)
    if match is None:
        return -1
    year, month, day, hours, minutes = map(int, match.groups())
    if year < 1970 or hours > 23 or minutes > 59:
        return -1
    try:
        days = date(year, month, day).toordinal() - _EPOCH
    except ValueError:  # no such date (month 13, February 30...)
        return -1
    return ((days * 24 + hours) * 60 + minutes) * 60_000


def stamp_ms(text: str) -> int:
    """Milliseconds since the epoch of a canonical stamp; -1 for any other text."""
    global _parsed
    if len(text) != 24:
        return -1
    # The tables hold only ASCII digits (str.isdigit would take "\u0663", superscripts...).
    second = _SECOND.get(text[16:20], -1)
    millis = _MILLIS.get(text[20:], -1)
    if second < 0 or millis < 0:
        return -1
    prefix = text[:16]
    last, base = _parsed
    if prefix != last:
        base = _minute_ms(prefix)
        if base < 0:
            return -1
        _parsed = (prefix, base)
    return base + second + millis


def stamp_text(ms: int) -> str:
    """The canonical stamp of ``ms`` milliseconds since the epoch (0 to ``MAX_MS``)."""
    global _shown
    if not 0 <= ms <= MAX_MS:
        raise ValueError(f"{ms} ms is outside the stamps of years 1970 to 9999")
    minute, rest = divmod(ms, 60_000)
    last, prefix = _shown
    if minute != last:
        days, minutes = divmod(minute, 1440)
        day = date.fromordinal(days + _EPOCH)
        hours, minutes = divmod(minutes, 60)
        prefix = f"{day.year:04d}-{day.month:02d}-{day.day:02d}T{hours:02d}:{minutes:02d}"
        _shown = (minute, prefix)
    second, millis = divmod(rest, 1000)
    return f"{prefix}{_SECOND_TEXT[second]}{_MILLIS_TEXT[millis]}"
