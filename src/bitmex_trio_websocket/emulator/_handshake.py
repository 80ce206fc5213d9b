"""Who may connect and as whom: the emulator's upgrade decisions and API-key checks, sans-IO.

Theory of operation: ``Gatekeeper.admit`` looks at one HTTP upgrade request (its target and
headers) and returns either an ``Admission`` (accept, with the account, URL subscriptions and
welcome details) or a ``Refusal`` (the HTTP status, headers and JSON body to reject with). Checks
run in the order a client would hit them on BitMEX: unknown path (404), scripted refusals (the
``refuse_next_handshakes`` fault), the per-window connection budget (429 with ``Retry-After``),
then credentials (401 with BitMEX's ``{"error": ...}`` body). Every upgrade that gets past the
budget check uses up one connection of the budget, whether its credentials turn out good or not,
as BitMEX counts connection attempts per IP.

``Authenticator.verify`` is shared by the handshake and the ``authKeyExpires`` command: the
signature is ``HMAC_SHA256(secret, "GET/realtime" + expires)`` (``_auth.realtime_signature``),
compared in constant time and case-insensitively (BitMEX accepted upper-case hex in 2020).
Nothing here reads a clock by itself: wall time comes from the injected ``clock`` and the budget
window runs on the ``now`` the caller passes (trio's clock, so it is virtual under autojump).
"""

from __future__ import annotations

import hmac
import math
import urllib.parse
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from .._auth import realtime_signature

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "SERVED_PATHS",
    "Admission",
    "Authenticator",
    "Gatekeeper",
    "Refusal",
]

# The default account's credentials (the market's DEFAULT_ACCOUNT), documented in the README.
DEFAULT_API_KEY: Final = "emulator-api-key"
DEFAULT_API_SECRET: Final = "emulator-api-secret-do-not-use-in-production"

SERVED_PATHS: Final = frozenset({"/realtime", "/realtimePlatform", "/realtimemd"})
AUTH_PARAMS: Final = ("api-key", "api-expires", "api-signature")
INVALID_KEY: Final = "Invalid API Key."
BAD_SIGNATURE: Final = "Signature not valid."


@dataclass(frozen=True, slots=True)
class Admission:
    """Accept the upgrade."""

    path: str
    account: int | None
    api_key: str | None
    subscribe: tuple[str, ...]
    heartbeat: bool
    remaining: int  # the welcome's limit.remaining


@dataclass(frozen=True, slots=True)
class Refusal:
    """Reject the upgrade with this HTTP response."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Authenticator:
    """API keys -> ``(secret, account)``; ``fail_next`` forces 401s (the fail-auth fault)."""

    def __init__(
        self,
        accounts: Mapping[str, tuple[str, int]],
        clock: Callable[[], float],
        on_forced_failure: Callable[[], None],
    ) -> None:
        self.accounts = dict(accounts)
        self.fail_next = 0
        self._clock = clock
        self._on_forced_failure = on_forced_failure

    def verify(
        self, api_key: str, expires: int, signature: str, *, check_expiry: bool = True
    ) -> tuple[int | None, str | None]:
        """``(account, None)`` for good credentials, else ``(None, BitMEX's error text)``."""
        if self.fail_next > 0:
            self.fail_next -= 1
            self._on_forced_failure()
            return None, BAD_SIGNATURE
        known = self.accounts.get(api_key)
        if known is None:
            return None, INVALID_KEY
        secret, account = known
        now = self._clock()
        if check_expiry and expires < now:
            # BitMEX's REST text; the websocket's own wording is unconfirmed.
            return None, (
                f"This request has expired - `expires` is in the past. Current time: {int(now)}"
            )
        expected = realtime_signature(secret, expires)
        if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
            return None, BAD_SIGNATURE
        return account, None


def _json(obj: object) -> bytes:
    return orjson.dumps(obj)


def rate_limited(status: int, retry_after: int) -> Refusal:
    """A refusal carrying ``Retry-After`` (header, and ``retryAfter`` in the JSON body).

    For 429 the body mirrors BitMEX's rate-limit error (``meta.retryAfter``) and also has a
    top-level ``retryAfter`` for clients that only look there.
    """
    if status == 429:
        text = f"Rate limit exceeded, retry in {retry_after} seconds."
        body = {"error": text, "meta": {"retryAfter": retry_after}, "retryAfter": retry_after}
    else:
        body = {"error": "Service unavailable, please try again later.", "retryAfter": retry_after}
    headers = ((b"Retry-After", str(retry_after).encode()), (b"Content-Type", b"application/json"))
    return Refusal(status, _json(body), headers)


class Gatekeeper:
    """Upgrade decisions: path, scripted refusals, connection budget, handshake credentials."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        budget: int,
        window: float,
        on_scripted_refusal: Callable[[int], None],
    ) -> None:
        self.authenticator = authenticator
        self.budget = budget
        self.window = window
        self._scripted: deque[tuple[int, int]] = deque()  # (status, retry_after)
        self._on_scripted_refusal = on_scripted_refusal
        self._used = 0
        self._reset_at: float | None = None
        self._down_until = -math.inf  # an exchange deploy: every upgrade refused until then

    def refuse_next(self, n: int, status: int, retry_after: int) -> None:
        self._scripted.extend([(status, retry_after)] * n)

    def refuse_until(self, until: float) -> None:
        """Refuse every upgrade with 503 until trio time ``until`` (BitMEX during a deploy:
        the official node connector treated 502/503 at upgrade as downtime and retried)."""
        self._down_until = max(self._down_until, until)

    def admit(
        self, target: str, headers: Sequence[tuple[bytes, bytes]], now: float
    ) -> Admission | Refusal:
        """Decide the upgrade of ``target`` (path and query) at trio time ``now``."""
        url = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if url.path not in SERVED_PATHS:
            return Refusal(404, _json({"error": "Not Found"}))
        if self._scripted:
            status, retry_after = self._scripted.popleft()
            self._on_scripted_refusal(status)
            return rate_limited(status, retry_after)
        if now < self._down_until:
            return rate_limited(503, max(1, math.ceil(self._down_until - now)))
        if self._reset_at is None or now >= self._reset_at:
            self._used, self._reset_at = 0, now + self.window
        if self._used >= self.budget:
            return rate_limited(429, max(1, math.ceil(self._reset_at - now)))
        self._used += 1
        account, api_key, error = self._credentials(headers, query)
        if error is not None:
            return Refusal(401, _json({"error": error}))
        topics = tuple(t for value in query.get("subscribe", ()) for t in value.split(",") if t)
        heartbeat = query.get("heartbeat", ["false"])[-1].lower() == "true"
        return Admission(url.path, account, api_key, topics, heartbeat, self.budget - self._used)

    def _credentials(
        self, headers: Sequence[tuple[bytes, bytes]], query: Mapping[str, list[str]]
    ) -> tuple[int | None, str | None, str | None]:
        """``(account, api_key, error)`` from the ``api-*`` headers, else the query string."""
        by_name = {name.decode("latin-1").lower(): value for name, value in headers}
        values: dict[str, str] = {}
        if any(name in by_name for name in AUTH_PARAMS):
            values = {n: by_name[n].decode("latin-1") for n in AUTH_PARAMS if n in by_name}
        elif any(name in query for name in AUTH_PARAMS):
            values = {n: query[n][-1] for n in AUTH_PARAMS if n in query}
        if not values:
            return None, None, None
        api_key = values.get("api-key", "")
        try:
            expires = int(values.get("api-expires", ""))
        except ValueError:
            return (
                None,
                None,
                INVALID_KEY if api_key not in self.authenticator.accounts else (BAD_SIGNATURE),
            )
        signature = values.get("api-signature", "")
        account, error = self.authenticator.verify(api_key, expires, signature)
        return account, (api_key if account is not None else None), error
