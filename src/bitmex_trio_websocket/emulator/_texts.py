"""BitMEX's reply texts and other fixed values the emulator sends, in one place.

Theory of operation: these strings are what clients match on, so they are copied from BitMEX
captures wherever one exists (protocol reference, section 4.5). Texts marked *unconfirmed* are our
own choice, worded like BitMEX's, for replies no capture shows.
"""

from __future__ import annotations

import datetime
import math
from typing import Final

from .._protocol import PRIVATE_TABLES

__all__ = [
    "ACCOUNT_LOCKED",
    "ACCOUNT_LOCKED_META",
    "ALREADY_AUTHENTICATED",
    "BAD_SYMBOL",
    "DMS_UNAUTHENTICATED",
    "INVALID_TIMEOUT",
    "LAST_WRITABLE_EPOCH",
    "DOCS_SUFFIX",
    "FALLBACK_KEYS",
    "MALFORMED_FRAME",
    "MAX_PENDING",
    "PLATFORM_TABLES",
    "RATE_LIMITED",
    "SLOW_CLIENT_CODE",
    "SLOW_CLIENT_REASON",
    "UNKNOWN_BOOK_ID",
    "UNRECOGNIZED",
    "iso_timestamp",
    "switch_too_long",
]

DOCS_SUFFIX: Final = " Please see the documentation at https://www.bitmex.com/app/wsAPI."
UNRECOGNIZED: Final = (
    "Unrecognized request. See the docs or send 'help' for more details." + DOCS_SUFFIX
)
ACCOUNT_LOCKED: Final = (
    "User requested an account-locked subscription but no authorization was provided."
)
ACCOUNT_LOCKED_META: Final = {
    "notes": "Account-locked tables include the following: " + ",".join(sorted(PRIVATE_TABLES))
}
# BitMEX's text for a symbol it does not list; it does not name the symbol (issue 16's audit).
BAD_SYMBOL: Final = "Unknown or expired symbol."
# In-band limits (protocol reference section 4.5: ccxt's 429 and gobitmex's 503 examples).
RATE_LIMITED: Final = "Rate limit exceeded, retry in {} seconds."
MAX_PENDING: Final = "Max Pending subscription limit reached, please try again later."
# Unconfirmed: no capture shows these replies.
ALREADY_AUTHENTICATED: Final = "This connection is already authenticated."
DMS_UNAUTHENTICATED: Final = "User requested cancelAllAfter but no authorization was provided."
SLOW_CLIENT_CODE: Final = 1008
SLOW_CLIENT_REASON: Final = "Client too slow: outgoing message buffer full"
MALFORMED_FRAME: Final = '{"table":"orderBookL2","action":"update","data":[{"symbol":'
# Platform tables live on /realtimePlatform since 2023 and nowhere else.
PLATFORM_TABLES: Final = frozenset({"announcement", "chat", "publicNotifications"})
# Keys for tables the synthetic market does not serve (empty partials only).
FALLBACK_KEYS: Final[dict[str, list[str]]] = {
    "announcement": ["id"],
    "chat": ["id"],
    "connected": [],
    "publicNotifications": ["id"],
    "settlement": ["timestamp", "symbol"],
    "insurance": ["currency", "timestamp"],
    "affiliate": ["account", "currency"],
    "transact": ["transactID"],
    "privateNotifications": ["id"],
    "account": ["account"],
}
UNKNOWN_BOOK_ID: Final = 987_654_321_987  # an order-book id no client can have


# 10000-01-01T00:00:00Z: the first moment a four-digit ISO year cannot write (a dead man's switch
# armed for longer has no cancelTime to send, and is refused).
LAST_WRITABLE_EPOCH: Final = 253_402_300_800.0
INVALID_TIMEOUT: Final = "Invalid timeout"


def switch_too_long(now: float, timeout_ms: float) -> bool:
    """Whether a switch armed at ``now`` for ``timeout_ms`` would fire past what a timestamp can
    say (compared without dividing, so a huge integer cannot overflow a float)."""
    return timeout_ms >= (LAST_WRITABLE_EPOCH - now) * 1000


def iso_timestamp(epoch: float) -> str:
    """BitMEX's timestamp text: ISO-8601 UTC with milliseconds and ``Z``."""
    whole = math.floor(epoch)
    millis = min(999, round((epoch - whole) * 1000))
    moment = datetime.datetime.fromtimestamp(whole, datetime.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"
