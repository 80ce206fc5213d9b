"""BitMEX API-key signing, pure and clock-free.

Theory of operation: BitMEX authenticates a realtime connection with
``HMAC_SHA256(secret, verb + path + str(expires) + body)`` in lower-case hex, where ``expires`` is
a UNIX time in whole seconds after which the signature is void. The realtime form always signs
``GET/realtime`` with an empty body, even on ``/realtimemd`` and even when the URL has a query.

Nothing here reads a clock: callers pass ``now`` (their own clock, seconds) and a ``clock_offset``
(server time minus local time, learned from the welcome's ``timestamp``), so a machine whose clock
is off by more than the expiry window can still authenticate.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_EXPIRY_SECONDS",
    "REALTIME_PATH",
    "Credentials",
    "expires_at",
    "realtime_signature",
    "rest_signature",
    "signature",
]

REALTIME_PATH = "/realtime"
# Short enough that a leaked signature is useless within seconds, long enough for a slow network.
DEFAULT_EXPIRY_SECONDS = 10.0


def signature(secret: str, verb: str, path: str, expires: int, body: str = "") -> str:
    """Hex HMAC-SHA256 of ``verb + path + expires + body`` keyed by ``secret``."""
    message = f"{verb}{path}{expires}{body}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def rest_signature(
    secret: str, verb: str, target: str, expires: int | str, body: bytes | str = b""
) -> str:
    """The ``api-signature`` of one REST request: ``target`` is the path with its query string
    exactly as sent (``/api/v1/order?symbol=XBTUSD``) and ``body`` the raw body bytes as sent
    (empty for a GET). ``expires`` is ``api-expires`` (or the legacy ``api-nonce``)."""
    raw = body.encode() if isinstance(body, str) else body
    message = f"{verb}{target}{expires}".encode() + raw
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def realtime_signature(secret: str, expires: int) -> str:
    """The signature BitMEX expects for ``authKeyExpires`` and the handshake headers."""
    return signature(secret, "GET", REALTIME_PATH, expires)


def expires_at(
    now: float, *, clock_offset: float = 0.0, expiry: float = DEFAULT_EXPIRY_SECONDS
) -> int:
    """``expires`` for a request made at local time ``now``, in server seconds (rounded up)."""
    if expiry <= 0:
        raise ValueError("expiry must be positive")
    return math.ceil(now + clock_offset + expiry)


@dataclass(frozen=True, slots=True)
class Credentials:
    """An API key and secret. The secret never appears in ``repr`` or ``str``."""

    api_key: str
    api_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_secret:
            raise ValueError("api_key and api_secret must both be non-empty")

    def sign(self, expires: int) -> str:
        return realtime_signature(self.api_secret, expires)

    def auth_args(self, expires: int) -> list[str | int]:
        """The ``args`` of an ``authKeyExpires`` command (expires is a JSON number)."""
        return [self.api_key, expires, self.sign(expires)]
