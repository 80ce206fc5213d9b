"""Who sent a REST request: BitMEX's API-key check, sans-IO.

Theory of operation: BitMEX read three headers, ``api-key``, ``api-expires`` and
``api-signature``, where the signature is ``hex(HMAC_SHA256(secret, verb + target + expires +
body))`` over the request target (path and query string) and the body exactly as sent
(``_auth.rest_signature``). Credentials in the query string were not read on REST (a user who
sent them there got ``Authorization Required``, api-connectors #80). ``RestAuthenticator.check``
returns the account, ``None`` for an anonymous request, or raises ``RestError``, checking in the
order BitMEX's replies imply:

1. no ``api-key`` header: anonymous (public routes answer, private ones 401
   ``Authorization Required``, decided by the caller);
2. unknown key: 401 ``Invalid API Key.``;
3. ``api-expires`` before ``now``: 400 ``This request has expired - `expires` is in the past.
   Current time: N`` (BitMEX answered this one with 400 Bad Request, not 401);
4. legacy ``api-nonce`` instead of ``api-expires`` (accepted until BitMEX removed it on
   8 February 2024; ``accept_nonce=False`` refuses it like today's BitMEX): it must be above the
   key's last nonce, else 400 ``Nonce is not increasing. This nonce: N, last nonce: M``;
5. a signature that does not match (or neither ``api-expires`` nor an accepted ``api-nonce``):
   401 ``Signature not valid.``

The hex digest is compared in constant time and case-insensitively. Keys map to
``(secret, account)`` through a live mapping (the emulator's ``Authenticator.accounts``), so keys
added later are seen at once. A nonce is recorded only once its signature checked out.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from ..._auth import rest_signature
from ._errors import (
    INVALID_KEY,
    SIGNATURE_NOT_VALID,
    VALIDATION_ERROR,
    RestError,
    expired_text,
    nonce_text,
)

__all__ = ["RestAuthenticator"]


class RestAuthenticator:
    """API keys -> accounts for REST requests (see the module docstring for the checks)."""

    def __init__(
        self, accounts: Mapping[str, tuple[str, int]], *, accept_nonce: bool = True
    ) -> None:
        self._accounts = accounts
        self.accept_nonce = accept_nonce
        self._nonces: dict[str, int] = {}

    def check(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, now: float
    ) -> int | None:
        """The account of a request (``None``: anonymous); ``headers`` have lower-case names."""
        api_key = headers.get("api-key")
        if api_key is None:
            return None
        known = self._accounts.get(api_key)
        if known is None:
            raise RestError(401, INVALID_KEY)
        secret, account = known
        signature = headers.get("api-signature", "")
        nonce: int | None = None
        # The signature covers the header's text as sent (``expires`` as the client wrote it).
        signed = headers.get("api-expires")
        if signed is not None:
            if _number(signed, "api-expires") < now:
                raise RestError(400, expired_text(now))
        elif self.accept_nonce and "api-nonce" in headers:
            signed = headers["api-nonce"]
            try:
                nonce = int(signed.strip())
            except ValueError:
                raise RestError(400, "Invalid api-nonce header", name=VALIDATION_ERROR) from None
        else:
            raise RestError(401, SIGNATURE_NOT_VALID)
        expected = rest_signature(secret, method, target, signed, body)
        if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
            raise RestError(401, SIGNATURE_NOT_VALID)
        if nonce is not None:
            last = self._nonces.get(api_key)
            if last is not None and nonce <= last:
                raise RestError(400, nonce_text(nonce, last))
            self._nonces[api_key] = nonce
        return account


def _number(text: str, header: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise RestError(400, f"Invalid {header} header", name=VALIDATION_ERROR)
    return value
