"""What an emulator's connections share: routing, topics' data, credentials, timers, fault state.

Theory of operation: a ``Hub`` is the one object a connection talks to; it implements
``_connection.ConnectionHost`` (structurally: this module does not import ``_connection``, so
the emulator's modules form no import cycle). It holds:

* the ``Router`` fanning market deltas out to subscriptions, and the topics' own data: the
  partial of a topic at the moment it is subscribed, the early deltas of the
  deltas-before-partial fault, rows no client can know (the unknown-id fault);
* the ``Authenticator`` and ``Gatekeeper`` (``_handshake``), shared by every handshake and
  session, with the next-connection faults armed on them;
* the dead man's switch, account-wide like BitMEX's: one timer per account, replaced by every
  ``cancelAllAfter``, whether it came over the websocket or as ``POST /order/cancelAllAfter``,
  surviving the connection that armed it. It fires at exactly the trio time ``now + timeout``
  and publishes the cancellations' deltas through the router, so the ``order`` and
  ``execution`` subscribers of that account see them;
* the REST app (``rest``, BitMEX's ``/api/v1``): ``handle_rest`` answers one HTTP request and
  publishes the deltas it caused through the same router at once, in the same synchronous step,
  so a websocket client sees its order's rows in the order the requests were served;
* the fault log and the emulator-wide delay-acks setting.

The market is any ``Venue`` (``market._venue``): the synthetic ``Market`` or a replayed one.

The public ``Emulator`` (``_server``) owns a hub and exposes what users need of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol

import trio

from .._protocol import SYMBOL_TABLES
from ._faults import FaultKind, FaultRecord
from ._handshake import Authenticator, Gatekeeper
from ._http import HttpRequest, HttpResponse
from ._json import dumps, encode_table
from ._limits import DEFAULT_LIMITS, Limits
from ._replay import Recording
from ._replay_feed import ReplayFeed
from ._routing import Deliver, Router
from ._session import Session, Subscription
from ._texts import FALLBACK_KEYS, UNKNOWN_BOOK_ID, iso_timestamp
from .market import PRIVATE_TABLES_SERVED, PUBLIC_TABLES_SERVED, Delta, Market
from .market._venue import Venue

__all__ = ["Hub", "RestAnswer", "RestService"]

BOOK_TABLES: Final = frozenset({"orderBookL2", "orderBookL2_25"})
SERVED: Final = PUBLIC_TABLES_SERVED | PRIVATE_TABLES_SERVED
DMS_TEXT: Final = "Canceled: Cancel from cancelAllAfter"
OVERLOADED: Final = 503


class _VenueSymbols(Collection[str]):
    """A venue's symbols and indices as they are now (a replayed one learns them as it goes)."""

    __slots__ = ("_venue",)

    def __init__(self, venue: Venue) -> None:
        self._venue = venue

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._venue.symbols or symbol in self._venue.indices

    def __iter__(self) -> Iterator[str]:
        yield from self._venue.symbols
        yield from self._venue.indices

    def __len__(self) -> int:
        return len(self._venue.symbols) + len(self._venue.indices)


class RestAnswer(Protocol):
    """What the REST app answers one request with (``rest.RestResult``)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Sequence[tuple[str, str]]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def deltas(self) -> Sequence[Delta]: ...
    @property
    def switch(self) -> tuple[int, int] | None:
        """``(account, timeout_ms)`` when the request was ``POST /order/cancelAllAfter``."""
        ...


class RestService(Protocol):
    """BitMEX's REST API, sans-IO (``rest.RestApp``)."""

    def handle(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        now: float,
        *,
        client: str = ...,
    ) -> RestAnswer: ...

    def overload_next(self, n: int = 1) -> None: ...


class Hub:
    """The shared state of one emulator; see the module docstring."""

    def __init__(
        self,
        *,
        market: Venue | None,
        recording: Recording | None,
        accounts: Mapping[str, tuple[str, int]],
        clock: Callable[[], float],
        speed: float,
        connection_budget: int,
        budget_window: float,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.market = market
        self.limits = limits
        self.recording = recording
        self.clock = clock
        self.speed = speed
        self.router = Router()
        self.rest: RestService | None = None
        self.overloads_armed = 0  # 503s asked of the REST app, not yet served
        self.fault_log: list[FaultRecord] = []
        self.dead_mans_switch_fired: list[tuple[int, float]] = []
        self.ack_delay = 0.0
        self.early = 0  # subscriptions still to get deltas before their partial
        self.nursery: trio.Nursery | None = None  # set while the emulator runs
        self.authenticator = Authenticator(
            accounts, clock, lambda: self.log_fault(FaultKind.FAIL_AUTH, None, 0)
        )
        self.gate = Gatekeeper(
            self.authenticator,
            budget=connection_budget,
            window=budget_window,
            on_scripted_refusal=lambda status: self.log_fault(
                FaultKind.REFUSE_HANDSHAKE, None, 0, str(status)
            ),
        )
        self._first_account = next(iter(accounts.values()))[1]
        self._dms: dict[int, tuple[trio.CancelScope, float]] = {}
        # Serving history, the switch runs on the data's clock: deadlines in data time, fired
        # by the market pump (``fire_due_switches``), which ``switches_changed`` wakes.
        self.data_time_switches = False
        self._dms_data: dict[int, float] = {}
        self.switches_changed = trio.Event()
        self._symbols: Collection[str]
        if recording is not None:
            self._symbols = recording.symbols
        elif isinstance(market, Market):
            self._symbols = frozenset(market.symbols) | frozenset(market.indices)
        else:
            assert market is not None
            self._symbols = _VenueSymbols(market)

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols served now (a replayed venue adds them as its data shows them)."""
        return frozenset(self._symbols)

    # ------------------------------------------------------------------ ConnectionHost

    def now(self) -> float:
        """The emulator's wall clock (epoch seconds), as used in timestamps."""
        return self.clock()

    @property
    def default_symbol(self) -> str:
        if self.market is not None and self.market.symbols:
            return self.market.symbols[0]
        return min(self.symbols) if self.symbols else "XBTUSD"

    def new_session(self, path: str, account: int | None, api_key: str | None) -> Session:
        return Session(
            path=path,
            symbols=self._symbols,
            authenticator=self.authenticator,
            account=account,
            api_key=api_key,
            limits=self.limits,
        )

    def new_replay_feed(
        self, send: Callable[[str], None], send_paced: Callable[[str], Awaitable[None]]
    ) -> ReplayFeed | None:
        """A feed of the recording for one session (``None`` with a synthetic market)."""
        if self.recording is None:
            return None
        return ReplayFeed(self.recording, self.speed, send, send_paced)

    def open_topic(self, sub: Subscription, connection: int, after_messages: int) -> list[str]:
        """The frames a new subscription gets right after its ack: its partial, preceded by
        early deltas when the deltas-before-partial fault is armed."""
        frames = self._early_deltas(sub, connection, after_messages)
        frames.append(self.partial_frame(sub))
        return frames

    def partial_frame(self, sub: Subscription) -> str:
        """The partial of a topic, built from the market at this very moment."""
        table, symbol, account = sub.table, sub.symbol, sub.account
        filt: dict[str, Any] = {} if account is None else {"account": account}
        if symbol is not None:
            filt["symbol"] = symbol
        if table not in SERVED:
            keys = FALLBACK_KEYS.get(table, [])
            message = {"table": table, "action": "partial", "keys": keys, "types": {}}
            return dumps({**message, "filter": filt, "data": []})
        market = self._require_market()
        market.enable_table(table)
        snap = market.snapshot(table, symbol, account)
        partial: dict[str, Any] = {
            "table": table,
            "action": "partial",
            "keys": snap.keys,
            "types": snap.types,
        }
        # Since 2023 a partial has keys, types and filter only (roq-bitmex captures); only the
        # legacy (pre-2023) book form still carries foreignKeys and attributes.
        if snap.foreign_keys:
            partial["foreignKeys"] = snap.foreign_keys
        if snap.attributes:
            partial["attributes"] = snap.attributes
        partial["filter"] = filt
        partial["data"] = snap.rows
        return dumps(partial)

    def unknown_row(self, table: str, symbol: str) -> dict[str, Any]:
        """A row keyed so that no client can have it (for the unknown-id fault)."""
        if table in BOOK_TABLES:
            return {"symbol": symbol, "id": UNKNOWN_BOOK_ID, "side": "Buy", "size": 1, "price": 1.0}
        keys: list[str] = []
        types: Mapping[str, str] = {}
        if self.market is not None and table in SERVED:
            snap = self.market.snapshot(table, symbol, self._first_account)
            keys, types = snap.keys, snap.types
        elif self.recording is not None:
            keys = self.recording.keys_of(table)
        row: dict[str, Any] = {"symbol": symbol} if table in SYMBOL_TABLES else {}
        for key in keys:
            if key == "symbol":
                continue
            kind = types.get(key, "")
            if kind == "guid":
                row[key] = "ffffffff-ffff-ffff-ffff-ffffffffffff"
            elif kind in ("long", "integer"):
                row[key] = UNKNOWN_BOOK_ID
            elif kind == "timestamp":
                row[key] = iso_timestamp(self.clock())
            else:
                row[key] = "unknown"
        return row

    def route(self, sub: Subscription, deliver: Deliver) -> None:
        self.router.add(sub, deliver)

    def unroute(self, sub: Subscription) -> None:
        self.router.remove(sub)

    def set_dead_mans_switch(self, account: int, timeout_ms: int) -> None:
        """(Re)arm or, with 0, disarm the account's switch."""
        if self.data_time_switches:
            self._dms_data.pop(account, None)
            if timeout_ms:
                self._dms_data[account] = self.clock() + timeout_ms / 1000
            self.switches_changed.set()
            self.switches_changed = trio.Event()
            return
        previous = self._dms.pop(account, None)
        if previous is not None:
            previous[0].cancel()
        if timeout_ms == 0:
            return
        deadline = trio.current_time() + timeout_ms / 1000
        scope = trio.CancelScope()
        self._dms[account] = (scope, deadline)
        self.require_nursery().start_soon(self._dead_mans_switch, account, scope, deadline)

    def log_fault(
        self, kind: FaultKind, connection: int | None, after_messages: int, detail: str = ""
    ) -> None:
        self.fault_log.append(
            FaultRecord(kind, connection, after_messages, trio.current_time(), detail)
        )

    def arm_next(self, kind: FaultKind) -> None:
        """Arm a fault for the next handshake, authentication or subscription (a random
        plan picked it on some connection)."""
        if kind is FaultKind.REFUSE_HANDSHAKE:
            self.gate.refuse_next(1, 429, 1)
        elif kind is FaultKind.FAIL_AUTH:
            self.authenticator.fail_next += 1
        elif kind is FaultKind.DELTAS_BEFORE_PARTIAL:
            self.early += 1
        elif kind is FaultKind.REST_OVERLOAD and self.rest is not None:
            self.overload_next(1)

    # ------------------------------------------------------------------ for the emulator

    def publish(self, deltas: Iterable[Delta]) -> None:
        self.router.publish(deltas)

    def handle_rest(self, request: HttpRequest) -> HttpResponse:
        """Answer one ``/api/v1`` request and publish what it changed, in one step."""
        rest = self.rest
        if rest is None:
            body = b'{"error":{"message":"Not Found","name":"HTTPError"}}'
            return HttpResponse(404, [("Content-Type", "application/json")], body)
        answer = rest.handle(
            request.method,
            request.target,
            request.headers,
            request.body,
            self.clock(),
            client=request.client,
        )
        if answer.status == OVERLOADED and self.overloads_armed > 0:
            self.overloads_armed -= 1
            self.log_fault(FaultKind.REST_OVERLOAD, None, 0, f"{request.method} {request.path}")
        self.router.publish(answer.deltas)
        if answer.switch is not None:
            self.set_dead_mans_switch(*answer.switch)
        return HttpResponse(answer.status, answer.headers, answer.body)

    def overload_next(self, n: int) -> None:
        """The next ``n`` REST requests get 503 "overloaded" without reaching the engine."""
        if self.rest is None:
            raise RuntimeError("this emulator serves no REST API")
        self.rest.overload_next(n)
        self.overloads_armed += n

    def dead_mans_switch_deadline(self, account: int) -> float | None:
        """Trio time of the account's switch (data time when serving history)."""
        if self.data_time_switches:
            return self._dms_data.get(account)
        armed = self._dms.get(account)
        return None if armed is None else armed[1]

    def next_switch_due(self) -> float | None:
        """The earliest data-time deadline of an armed switch (serving history)."""
        return min(self._dms_data.values(), default=None)

    def fire_due_switches(self, now: float) -> None:
        """Fire every data-time switch due at data time ``now``, earliest first."""
        due = sorted((deadline, account) for account, deadline in self._dms_data.items())
        for deadline, account in due:
            if deadline > now:
                break
            del self._dms_data[account]
            self.dead_mans_switch_fired.append((account, trio.current_time()))
            self.publish(self._cancel_all(account))

    def require_nursery(self) -> trio.Nursery:
        if self.nursery is None:
            raise RuntimeError("the emulator is not running")
        return self.nursery

    # ------------------------------------------------------------------ internals

    def _require_market(self) -> Venue:
        if self.market is None:
            raise RuntimeError("a replaying emulator has no market")
        return self.market

    async def _dead_mans_switch(
        self, account: int, scope: trio.CancelScope, deadline: float
    ) -> None:
        with scope:
            await trio.sleep_until(deadline)
            del self._dms[account]
            self.dead_mans_switch_fired.append((account, trio.current_time()))
            self.publish(self._cancel_all(account))

    def _cancel_all(self, account: int) -> list[Delta]:
        if self.market is None:
            return []
        _, deltas = self.market.exchange.cancel_all(account, self.clock(), text=DMS_TEXT)
        return deltas

    def _early_deltas(self, sub: Subscription, connection: int, after_messages: int) -> list[str]:
        """Deltas to send before a partial, when ``deltas_before_partial`` is armed."""
        table = sub.table
        if self.early <= 0 or table not in SERVED:
            return []
        self.early -= 1
        market = self._require_market()
        market.enable_table(table)
        snap = market.snapshot(table, sub.symbol, sub.account)
        topic = table if sub.symbol is None else f"{table}:{sub.symbol}"
        self.log_fault(FaultKind.DELTAS_BEFORE_PARTIAL, connection, after_messages, topic)
        action = "update" if snap.keys else "insert"
        return [encode_table(table, action, [row]) for row in snap.rows[:2]]
