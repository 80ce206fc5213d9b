"""The emulator server: handshake, market pump, fan-out, dead man's switch, next-connection faults.

Theory of operation: ``open_emulator`` opens one nursery that owns everything: the TCP listener
(optional), the market task, dead man's switch timers and every connection. A connection arrives
either from the listener or from ``connect_in_memory`` (a ``trio.testing`` stream pair, so tests
under ``autojump_clock`` need no socket); both go through ``_serve_stream``, which wraps the
transport in a ``FaultStream`` (for drop/stall faults), lets trio-websocket parse the HTTP
upgrade, asks the ``Gatekeeper`` (``_handshake``) whether to accept it (404, scripted refusal,
429 past the connection budget, 401 for bad credentials) and, if so, hands the websocket to an
``EmulatorConnection``.

The market task calls ``Market.step`` at ``rate`` events per second (``trio.sleep_until`` on an
absolute schedule, so pacing does not drift and is exact virtual time under ``autojump_clock``)
until ``max_events``, then the market stays still. Each step's deltas go, in the same synchronous
step, to the ``Router`` (``_routing``), which hands them to the subscribed connections' queues.

The dead man's switch is account-wide, like BitMEX's: one timer per account, replaced by every
``cancelAllAfter``, surviving the connection that armed it. It fires at exactly the trio time
``now + timeout`` and publishes ``Market.cancel_all``'s deltas through the router, so the
``order`` and ``execution`` subscribers of that account see the cancellations.

In replay mode there is no market: each connection replays the recording's frames of its topics
(see ``_replay`` and ``EmulatorConnection``).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, cast

import orjson
import trio
import trio.testing
import trio_websocket
from trio_websocket import WebSocketConnection, WebSocketRequest

from .._protocol import SYMBOL_TABLES, encode_table, encode_welcome
from ._connection import EmulatorConnection
from ._faults import FaultKind, FaultRecord, RandomFaults, ScheduledFault, normalize_kinds
from ._handshake import DEFAULT_API_KEY, DEFAULT_API_SECRET, Authenticator, Gatekeeper, Refusal
from ._replay import Recording, load_recording
from ._routing import Router
from ._texts import FALLBACK_KEYS, UNKNOWN_BOOK_ID, iso_timestamp
from ._transport import FaultStream
from .market import (
    DEFAULT_ACCOUNT,
    PRIVATE_TABLES_SERVED,
    PUBLIC_TABLES_SERVED,
    Delta,
    Market,
)

__all__ = ["Emulator", "open_emulator"]

CONNECT_TIMEOUT: Final = 60.0
DISCONNECT_TIMEOUT: Final = 5.0
BOOK_TABLES: Final = frozenset({"orderBookL2", "orderBookL2_25"})
APP_NAME: Final = "bitmex-trio-websocket-emulator"


def _text(obj: Any) -> str:
    return orjson.dumps(obj).decode()


class Emulator:
    """A running local BitMEX realtime server (use ``open_emulator`` to get one).

    ``url`` is the TCP endpoint (when listening); ``connect_in_memory`` and
    ``open_memory_websocket`` reach the same server without a socket. ``market`` is the
    synthetic market (place orders through ``place_order`` so that subscribers see them),
    ``connections`` the live connections in connect order, ``events`` the market changes made so
    far and ``still`` an event set once ``max_events`` is reached. Faults: the per-connection
    methods of ``EmulatorConnection``, the next-connection methods below, ``fault_log`` and
    ``fault_counts()``. ``dead_mans_switch_fired`` lists ``(account, trio time)`` firings.
    """

    def __init__(
        self,
        *,
        market: Market | None,
        recording: Recording | None,
        accounts: Mapping[str, tuple[str, int]],
        connection_budget: int,
        budget_window: float,
        clock: Callable[[], float],
        rate: float,
        max_events: int | None,
        speed: float,
        max_queued_frames: int,
    ) -> None:
        self._market = market
        self.recording = recording
        self.accounts: dict[str, tuple[str, int]] = dict(accounts)
        self.connection_budget = connection_budget
        self.budget_window = budget_window
        self.clock = clock
        self.rate = rate
        self.max_events = max_events
        self.speed = speed
        self.max_queued_frames = max_queued_frames
        self.router = Router()
        self.host: str | None = None
        self.port: int | None = None
        self.connections: list[EmulatorConnection] = []
        self.events = 0
        self.still = trio.Event()
        self.fault_log: list[FaultRecord] = []
        self.dead_mans_switch_fired: list[tuple[int, float]] = []
        self.ack_delay = 0.0
        self._nursery: trio.Nursery | None = None
        self._by_index: dict[int, EmulatorConnection] = {}
        self._next_index = 0
        self._accepted = trio.Event()
        self._auth = Authenticator(
            accounts, clock, lambda: self.log_fault(FaultKind.FAIL_AUTH, None, 0)
        )
        self._gate = Gatekeeper(
            self._auth,
            budget=connection_budget,
            window=budget_window,
            on_scripted_refusal=lambda status: self.log_fault(
                FaultKind.REFUSE_HANDSHAKE, None, 0, str(status)
            ),
        )
        self._early = 0
        self._scheduled: dict[int, list[ScheduledFault]] = {}
        self._random: RandomFaults | None = None
        self._dms: dict[int, tuple[trio.CancelScope, float]] = {}
        self._market_scope = trio.CancelScope()
        if market is None:
            self.still.set()
        if recording is not None:
            self.symbols: frozenset[str] = recording.symbols
        else:
            assert market is not None
            self.symbols = frozenset(market.symbols)

    # ------------------------------------------------------------------ public surface

    @property
    def market(self) -> Market:
        """The synthetic market (``RuntimeError`` in replay mode, which has none)."""
        if self._market is None:
            raise RuntimeError("a replaying emulator has no market")
        return self._market

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/realtime`` (``RuntimeError`` when opened with ``listen=False``)."""
        if self.host is None or self.port is None:
            raise RuntimeError("this emulator does not listen on TCP (listen=False)")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/realtime"

    @property
    def default_symbol(self) -> str:
        if self._market is not None and self._market.symbols:
            return self._market.symbols[0]
        return min(self.symbols) if self.symbols else "XBTUSD"

    def now(self) -> float:
        """The emulator's wall clock (epoch seconds), as used in timestamps."""
        return self.clock()

    async def connect_in_memory(self, resource: str = "/realtime") -> trio.abc.Stream:
        """The client end of an in-memory stream served by this emulator.

        Wrap it with ``trio_websocket.wrap_client_stream(nursery, stream, host, resource)`` (or
        use ``open_memory_websocket``). The endpoint served is the one the client's handshake
        asks for; ``resource`` is accepted for symmetry with that call and not used here.
        """
        del resource
        client, server = trio.testing.memory_stream_pair()
        self._require_nursery().start_soon(self._serve_stream, server)
        await trio.lowlevel.checkpoint()
        return client

    @asynccontextmanager
    async def open_memory_websocket(
        self,
        resource: str = "/realtime",
        *,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> AsyncIterator[WebSocketConnection]:
        """A client ``WebSocketConnection`` to this emulator over an in-memory stream.

        Raises ``trio_websocket.ConnectionRejected`` if the handshake is refused.
        """
        stream = await self.connect_in_memory()
        try:
            async with trio.open_nursery() as nursery:
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    # trio-websocket annotates a socket stream but needs only trio.abc.Stream.
                    cast("trio.SocketStream", stream),
                    "emulator",
                    resource,
                    extra_headers=extra_headers,
                )
                try:
                    yield ws
                finally:
                    with trio.move_on_after(DISCONNECT_TIMEOUT) as scope:
                        scope.shield = True
                        await ws.aclose()
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
        finally:  # also when the handshake was rejected
            await trio.aclose_forcefully(stream)

    async def wait_connection(self, index: int) -> EmulatorConnection:
        """The connection with this index (0 = first accepted), once it has been accepted."""
        while self._next_index <= index:
            await self._accepted.wait()
        return self._by_index[index]

    def stop_market(self) -> None:
        """Make the market stand still from now on, as if ``max_events`` had been reached."""
        self.max_events = self.events
        self._market_scope.cancel()

    async def wait_still(self) -> None:
        """Wait until the market has made its ``max_events`` changes (forever if unlimited)."""
        await self.still.wait()

    def forget(self, connection: EmulatorConnection) -> None:
        """Called by a connection when it ends: it is no longer live."""
        if connection in self.connections:
            self.connections.remove(connection)

    def publish(self, deltas: Iterable[Delta]) -> None:
        """Send market deltas made outside the market task to their subscribers."""
        self.router.publish(deltas)

    def place_order(
        self,
        account: int,
        symbol: str,
        side: str,
        qty: int,
        price: float,
        *,
        cl_ord_id: str = "",
    ) -> str:
        """Place a limit order for ``account`` as if over REST (one that crosses the book fills
        at once); its deltas go to the subscribers. Returns its ``orderID``."""
        order_id, deltas = self.market.place_order(
            account, symbol, side, qty, price, self.now(), cl_ord_id=cl_ord_id
        )
        self.publish(deltas)
        return order_id

    def cancel_order(self, account: int, order_id: str) -> None:
        """Cancel one open order of ``account`` as if over REST."""
        self.publish(self.market.cancel_order(account, order_id, self.now()))

    def dead_mans_switch_deadline(self, account: int) -> float | None:
        """Trio time at which the account's dead man's switch fires, ``None`` if disarmed."""
        armed = self._dms.get(account)
        return None if armed is None else armed[1]

    # ------------------------------------------------------------------ faults

    def refuse_next_handshakes(
        self, n: int = 1, *, status: int = 429, retry_after: int = 1
    ) -> None:
        """Refuse the next ``n`` upgrades with ``status`` (429: ``Retry-After`` and JSON body)."""
        self._gate.refuse_next(n, status, retry_after)

    def fail_next_auth(self, n: int = 1) -> None:
        """Fail the next ``n`` authentications (handshake or command) with 401."""
        self._auth.fail_next += n

    def deltas_before_partial(self, n: int = 1) -> None:
        """The next ``n`` subscriptions get deltas of their topic before their partial.

        The early deltas restate rows that are in the partial (an ``update`` per row for keyed
        tables, an ``insert`` for keyless ones), so a client that applies them instead of dropping
        them fails visibly: unknown-key updates, or duplicated rows.
        """
        self._early += n

    def delay_acks(self, seconds: float) -> None:
        """Delay replies to every connection's commands by ``seconds`` (0 to stop)."""
        if seconds > 0:
            self.log_fault(FaultKind.DELAY_ACKS, None, 0, f"{seconds}s")
        self.ack_delay = max(0.0, seconds)

    def schedule_fault(
        self,
        kind: FaultKind | str,
        *,
        connection: int,
        after_messages: int = 0,
        seconds: float = 2.0,
    ) -> None:
        """Fire ``kind`` on connection number ``connection`` after it sent ``after_messages``.

        Works for connections not accepted yet; ``after_messages=0`` fires after its first
        message (the welcome).
        """
        fault = ScheduledFault(FaultKind(kind), connection, after_messages, seconds)
        live = self._by_index.get(connection)
        if live is not None:
            live.schedule(fault)
        else:
            self._scheduled.setdefault(connection, []).append(fault)

    def inject_random_faults(
        self,
        seed: int,
        *,
        every_messages: int = 300,
        kinds: Iterable[FaultKind | str] | None = None,
    ) -> RandomFaults:
        """From now on, every new connection follows a seeded random fault plan.

        Count what was injected with ``fault_counts()``; the plan of connection *n* depends only
        on ``seed`` and *n*.
        """
        chosen = normalize_kinds(kinds) if kinds is not None else tuple(FaultKind)
        self._random = RandomFaults(seed, every_messages, chosen)
        return self._random

    def stop_random_faults(self) -> None:
        """End random fault injection, on live connections too.

        Faults already armed for the next handshake, authentication or subscription, and faults
        already in effect (a stall, delayed acks), stay as they are.
        """
        self._random = None
        for connection in self.connections:
            connection.follow_plan(None)

    def fault_counts(self) -> Counter[FaultKind]:
        """How many faults of each kind took effect so far."""
        return Counter(record.kind for record in self.fault_log)

    def log_fault(
        self, kind: FaultKind, connection: int | None, after_messages: int, detail: str = ""
    ) -> None:
        self.fault_log.append(
            FaultRecord(kind, connection, after_messages, trio.current_time(), detail)
        )

    # ------------------------------------------------------------------ used by connections

    def verify_credentials(
        self, api_key: str, expires: int, signature: str, *, check_expiry: bool = True
    ) -> tuple[int | None, str | None]:
        """``(account, None)`` for good credentials, ``(None, BitMEX's error text)`` otherwise."""
        return self._auth.verify(api_key, expires, signature, check_expiry=check_expiry)

    def arm_dead_mans_switch(self, account: int, timeout_ms: int) -> tuple[str, str | int]:
        """(Re)arm or, with 0, disarm the account's switch; ``(now, cancelTime)`` for the ack."""
        now = self.clock()
        previous = self._dms.pop(account, None)
        if previous is not None:
            previous[0].cancel()
        if timeout_ms == 0:
            return iso_timestamp(now), 0
        deadline = trio.current_time() + timeout_ms / 1000
        scope = trio.CancelScope()
        self._dms[account] = (scope, deadline)
        self._require_nursery().start_soon(self._dead_mans_switch, account, scope, deadline)
        return iso_timestamp(now), iso_timestamp(now + timeout_ms / 1000)

    async def _dead_mans_switch(
        self, account: int, scope: trio.CancelScope, deadline: float
    ) -> None:
        with scope:
            await trio.sleep_until(deadline)
            del self._dms[account]
            self.dead_mans_switch_fired.append((account, trio.current_time()))
            if self._market is not None:
                self.publish(self._market.cancel_all(account, self.now()))

    def partial_frame(self, table: str, symbol: str | None, account: int | None) -> str:
        """The partial of a topic, built from the market at this very moment."""
        filt: dict[str, Any] = {} if account is None else {"account": account}
        if symbol is not None:
            filt["symbol"] = symbol
        if table not in PUBLIC_TABLES_SERVED and table not in PRIVATE_TABLES_SERVED:
            keys = FALLBACK_KEYS.get(table, [])
            message = {"table": table, "action": "partial", "keys": keys, "types": {}}
            return _text({**message, "filter": filt, "data": []})
        market = self.market
        market.enable_table(table)
        snap = market.snapshot(table, symbol, account)
        partial: dict[str, Any] = {
            "table": table,
            "action": "partial",
            "keys": snap.keys,
            "types": snap.types,
        }
        if snap.foreign_keys:
            partial["foreignKeys"] = snap.foreign_keys
        if snap.attributes:
            partial["attributes"] = snap.attributes
        partial["filter"] = filt
        partial["data"] = snap.rows
        return _text(partial)

    def early_deltas(
        self, connection: EmulatorConnection, table: str, symbol: str | None, account: int | None
    ) -> list[str]:
        """Deltas to send before a partial, when ``deltas_before_partial`` is armed."""
        if self._early <= 0 or (
            table not in PUBLIC_TABLES_SERVED and table not in PRIVATE_TABLES_SERVED
        ):
            return []
        self._early -= 1
        market = self.market
        market.enable_table(table)
        snap = market.snapshot(table, symbol, account)
        rows = snap.rows[:2]
        topic = table if symbol is None else f"{table}:{symbol}"
        self.log_fault(
            FaultKind.DELTAS_BEFORE_PARTIAL, connection.index, connection.messages_sent, topic
        )
        action = "update" if snap.keys else "insert"
        return [encode_table(table, action, [row]) for row in rows]

    def unknown_row(self, table: str, symbol: str) -> dict[str, Any]:
        """A row keyed so that no client can have it (for the unknown-id fault)."""
        if table in BOOK_TABLES:
            return {"symbol": symbol, "id": UNKNOWN_BOOK_ID, "side": "Buy", "size": 1, "price": 1.0}
        keys: list[str] = []
        types: Mapping[str, str] = {}
        if self._market is not None and table in PUBLIC_TABLES_SERVED | PRIVATE_TABLES_SERVED:
            snap = self._market.snapshot(table, symbol, next(iter(self.accounts.values()))[1])
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

    # ------------------------------------------------------------------ internals

    def _require_nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("the emulator is not running")
        return self._nursery

    async def run_market(self) -> None:
        market = self._market
        if market is None:
            return
        interval = 1.0 / self.rate if 0 < self.rate < math.inf else 0.0
        deadline = trio.current_time()
        with self._market_scope:
            while self.max_events is None or self.events < self.max_events:
                if interval:
                    deadline += interval
                    await trio.sleep_until(deadline)
                else:
                    await trio.lowlevel.checkpoint()
                # No await from here to the end of the loop body: the step and its fan-out are
                # one atomic unit with respect to subscribes (see _connection).
                deltas = market.step(self.clock())
                self.events += 1
                self.router.publish(deltas)
        self.still.set()

    async def serve_tcp(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.host = host
        self.port = int(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._serve_stream, listeners, task_status=task_status)

    async def _serve_stream(self, transport: trio.abc.Stream) -> None:
        stream = FaultStream(transport)
        try:
            async with trio.open_nursery() as nursery:
                request: WebSocketRequest | None = None
                with trio.move_on_after(CONNECT_TIMEOUT):  # only the upgrade is time-limited
                    request = await trio_websocket.wrap_server_stream(nursery, stream)
                if request is not None:
                    await self._handle(request, stream)
                nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle(self, request: WebSocketRequest, stream: FaultStream) -> None:
        decision = self._gate.admit(request.path, request.headers, trio.current_time())
        if isinstance(decision, Refusal):
            await request.reject(
                decision.status, extra_headers=list(decision.headers), body=decision.body
            )
            return
        ws = await request.accept()

        def welcome() -> str:
            return encode_welcome(
                iso_timestamp(self.clock()),
                limit_remaining=decision.remaining,
                heartbeat_enabled=decision.heartbeat,
                app_name=APP_NAME,
            )

        index = self._next_index
        self._next_index += 1
        connection = EmulatorConnection(
            self,
            index,
            stream,
            path=decision.path,
            account=decision.account,
            api_key=decision.api_key,
            max_queued_frames=self.max_queued_frames,
            script=self._scheduled.pop(index, ()),
        )
        if self._random is not None:
            connection.follow_plan(self._random.plan(index))
        self._by_index[index] = connection
        self.connections.append(connection)
        self._accepted.set()
        self._accepted = trio.Event()
        try:
            await connection.run(ws, welcome, list(decision.subscribe))
        finally:
            with trio.move_on_after(DISCONNECT_TIMEOUT):
                await ws.aclose()


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The lone exception of a (nested) group, else the group itself."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def open_emulator(
    *,
    seed: int = 1,
    symbols: Iterable[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    listen: bool = True,
    rate: float = 50.0,
    max_events: int | None = None,
    replay: str | os.PathLike[str] | None = None,
    speed: float = 0.0,
    accounts: Mapping[str, tuple[str, int]] | None = None,
    connection_budget: int = 720,
    budget_window: float = 3600.0,
    clock: Callable[[], float] | None = None,
    legacy_book: bool = False,
    max_queued_frames: int = 10_000,
) -> AsyncIterator[Emulator]:
    """Run a local BitMEX realtime emulator for the duration of the ``async with`` block.

    ``seed``/``symbols``/``legacy_book`` configure the synthetic market, which makes ``rate``
    changes per second (``0`` or ``inf``: as fast as possible) until ``max_events``, then stays
    still. ``replay`` serves a recording instead, at ``speed`` times real time (``0``: as fast as
    the client reads). ``accounts`` maps API keys to ``(secret, account number)``; by default the
    one default account (``DEFAULT_API_KEY`` / ``DEFAULT_API_SECRET``). ``clock`` is the wall clock
    used for timestamps (default ``time.time``); timers run on trio's clock. With ``listen=False``
    no TCP port is opened and only the in-memory variant is available.
    """
    if max_events is not None and max_events < 0:
        raise ValueError("max_events must be non-negative")
    if connection_budget < 0 or max_queued_frames < 1:
        raise ValueError("connection_budget must be >= 0 and max_queued_frames >= 1")
    if speed < 0 or rate < 0:
        raise ValueError("speed and rate must be non-negative")
    account_map = (
        dict(accounts) if accounts else {DEFAULT_API_KEY: (DEFAULT_API_SECRET, DEFAULT_ACCOUNT)}
    )
    recording = load_recording(replay) if replay is not None else None
    market = None
    if recording is None:
        market = Market(
            seed=seed,
            symbols=list(symbols) if symbols is not None else None,
            legacy_book=legacy_book,
        )
        for _, account in account_map.values():
            if account != DEFAULT_ACCOUNT:
                market.add_account(account)
    emulator = Emulator(
        market=market,
        recording=recording,
        accounts=account_map,
        connection_budget=connection_budget,
        budget_window=budget_window,
        clock=clock or time.time,
        rate=rate,
        max_events=max_events,
        speed=speed,
        max_queued_frames=max_queued_frames,
    )
    try:
        async with trio.open_nursery() as nursery:
            emulator._nursery = nursery
            if listen:
                await nursery.start(emulator.serve_tcp, host, port)
            nursery.start_soon(emulator.run_market)
            try:
                yield emulator
            finally:
                emulator._nursery = None
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Let callers catch their own exceptions from the body as usual.
        raise _unwrap(group) from None
