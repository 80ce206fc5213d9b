"""The REST API's refusals before a request reaches the exchange, in BitMEX's shape.

Theory of operation: routing, authentication, parameter decoding and the rate limiter raise a
``RestError``; ``RestApp`` writes it as BitMEX did, ``{"error": {"message": ..., "name": ...}}``
with the HTTP ``status`` (and any extra ``headers``, e.g. ``Retry-After``). Refusals of the
exchange itself (``emulator.exchange.ExchangeError``) carry the same three fields and are
written the same way. ::

    BitMEXError
    └── RestError      status, name, message, headers: a refusal by the REST layer

The texts BitMEX used are collected here so that tests and docs name one source.
"""

from __future__ import annotations

from typing import Final

from ..._exceptions import BitMEXError

__all__ = [
    "AUTHORIZATION_REQUIRED",
    "HTTP_ERROR",
    "INVALID_KEY",
    "NOT_FOUND",
    "OVERLOADED",
    "RATE_LIMIT_ERROR",
    "SIGNATURE_NOT_VALID",
    "VALIDATION_ERROR",
    "RestError",
    "expired_text",
    "nonce_text",
    "rate_limited_text",
    "required_text",
]

HTTP_ERROR: Final = "HTTPError"
VALIDATION_ERROR: Final = "ValidationError"
RATE_LIMIT_ERROR: Final = "RateLimitError"

# 401 on a private route without credentials (api-connectors issues #237 and #339).
AUTHORIZATION_REQUIRED: Final = "Authorization Required"
# 401 for an unknown key (api-connectors #214, ccxt #2096) and a bad HMAC (api-connectors #420).
INVALID_KEY: Final = "Invalid API Key."
SIGNATURE_NOT_VALID: Final = "Signature not valid."
# 404 for an unknown route (krijnsent/crypto_vba's recorded replies).
NOT_FOUND: Final = "Not Found"
# 503 load shedding (api-connectors #440, ccxt #6491; BitMEX's notice of 9 Nov 2017).
OVERLOADED: Final = "The system is currently overloaded. Please try again later."


def expired_text(now: float) -> str:
    """400 when ``api-expires`` is in the past (sample-market-maker #49, ccxt #6178)."""
    return f"This request has expired - `expires` is in the past. Current time: {int(now)}"


def nonce_text(nonce: int, last: int) -> str:
    """400 for a legacy ``api-nonce`` not above the key's last one (ccxt #147, #368)."""
    return f"Nonce is not increasing. This nonce: {nonce}, last nonce: {last}"


def rate_limited_text(retry_after: int) -> str:
    """429 from the request limiter (BitMEX/easy-data-scripts #18)."""
    return f"Rate limit exceeded, retry in {retry_after} seconds."


def required_text(name: str) -> str:
    """400 for a missing required parameter (krijnsent/crypto_vba: ``GET /orderBook/L2``)."""
    return f"'{name}' is a required arg."


class RestError(BitMEXError):
    """A request the REST layer refused: HTTP ``status``, BitMEX's error ``name`` and
    ``message``, and extra response ``headers`` (``Retry-After`` on a 429)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        name: str = HTTP_ERROR,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.name = name
        self.headers = headers

    def __str__(self) -> str:
        return self.message
