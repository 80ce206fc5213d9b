"""The public ``Emulator``: where it listens, its connections, its market and its faults.

Theory of operation: an ``Emulator`` is made by ``open_emulator`` (``_open``), which runs its
tasks in one nursery: the TCP listener (optional), the market pump (``_pump``), dead man's
switch timers and every connection. A connection arrives either from the listener or from
``connect_in_memory`` (a ``trio.testing`` stream pair, so tests under ``autojump_clock`` need
no socket); both go through ``_serve_stream``, whose first request head (``_http``) says which
protocol it speaks:

* a websocket upgrade: the transport is wrapped in a ``FaultStream`` (for drop/stall faults),
  trio-websocket parses the upgrade, the ``Gatekeeper`` (``_handshake``) decides whether to
  accept it (404, scripted refusal, 429 past the connection budget, 401 for bad credentials)
  and, if so, the websocket goes to an ``EmulatorConnection``, which reaches the server only
  through the ``Hub`` (``_hub``);
* anything else: HTTP/1.1 keep-alive, ``/api/v1`` requests answered by the hub's REST app,
  whose deltas the hub publishes in the same synchronous step.

In replay mode (``replay=``) there is no market: each session replays the recording's frames of
its topics (see ``_replay_feed``).

``Emulator`` is the user's handle: where it listens, the market, the live connections, and the
fault API. Faults that act on one live connection are methods of ``EmulatorConnection``; the ones
here act on the next handshakes, authentications or subscriptions, on every connection, or on a
connection by its index (``schedule_fault``, also before it exists).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Final, cast

import h11
import trio
import trio.testing
import trio_websocket
from trio_websocket import WebSocketConnection, WebSocketRequest

from .._protocol import encode_welcome
from ._connection import EmulatorConnection
from ._faults import (
    RANDOM_FAULT_KINDS,
    FaultKind,
    FaultRecord,
    RandomFaults,
    ScheduledFault,
    normalize_kinds,
)
from ._handshake import Refusal
from ._http import (
    API_PREFIX,
    IDLE_TIMEOUT,
    HttpConnection,
    HttpRequest,
    HttpResponse,
    PrefixedStream,
    peer_address,
    read_first_head,
    wants_websocket,
)
from ._hub import Hub
from ._pump import DataClock, MarketPump
from ._replay import Recording
from ._texts import iso_timestamp
from ._transport import FaultStream
from .market import Delta, Market, Scenario
from .market._venue import Venue
from .rest import RestApp

__all__ = ["APP_NAME", "CONNECT_TIMEOUT", "DISCONNECT_TIMEOUT", "Emulator", "unwrap"]

CONNECT_TIMEOUT: Final = 60.0
DISCONNECT_TIMEOUT: Final = 5.0
APP_NAME: Final = "bitmex-trio-websocket-emulator"


class Emulator:
    """A running local BitMEX realtime server (use ``open_emulator`` to get one).

    ``url`` is the TCP endpoint (when listening; ``host`` and ``port`` apart);
    ``connect_in_memory`` and ``open_memory_websocket`` reach the same server without a socket.
    ``market`` is the synthetic market (place orders through ``place_order`` so that
    subscribers see them), ``recording`` the replayed one, ``connections`` the live connections
    in connect order, ``events`` the market changes made so far and ``still`` an event set once
    ``max_events`` is reached. Faults: the per-connection methods of ``EmulatorConnection``, the
    next-connection methods below, ``fault_log`` and ``fault_counts()``.
    ``dead_mans_switch_fired`` lists ``(account, trio time)`` firings.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        rate: float,
        max_events: int | None,
        max_queued_frames: int,
        keep_alive: float = IDLE_TIMEOUT,
        data_clock: DataClock | None = None,
    ) -> None:
        self.host: str | None = None
        self.port: int | None = None
        self.connections: list[EmulatorConnection] = []
        self.rest_connections: list[HttpConnection] = []
        self._next_http_index = 0
        self._idle_timeout = keep_alive
        self._hub = hub
        self.pump = MarketPump(hub, rate=rate, max_events=max_events, data_clock=data_clock)
        self._max_queued_frames = max_queued_frames
        self._nursery: trio.Nursery | None = None
        self._by_index: dict[int, EmulatorConnection] = {}
        self._next_index = 0
        self._accepted = trio.Event()
        self._scheduled: dict[int, list[ScheduledFault]] = {}
        self._random: RandomFaults | None = None

    # ------------------------------------------------------------------ where and what

    @property
    def market(self) -> Market:
        """The synthetic market (``RuntimeError`` when serving history, which has none)."""
        market = self._hub.market
        if not isinstance(market, Market):
            raise RuntimeError("this emulator serves history: it has no synthetic market")
        return market

    @property
    def venue(self) -> Venue:
        """The market orders trade against: the synthetic ``Market`` or a replayed one
        (``RuntimeError`` with per-session replay, ``replay=``, which has none)."""
        venue = self._hub.market
        if venue is None:
            raise RuntimeError("a per-session replay has no market to trade against")
        return venue

    @property
    def rest_app(self) -> RestApp:
        """The REST API's application (per-account limits: ``rest_app.set_limits``);
        ``RuntimeError`` with a per-session replay, which serves no REST API."""
        rest = self._hub.rest
        if not isinstance(rest, RestApp):
            raise RuntimeError("a per-session replay serves no REST API")
        return rest

    @property
    def recording(self) -> Recording | None:
        """The recording being replayed (``None`` with a synthetic market)."""
        return self._hub.recording

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols served (subscribing to another is refused, as by BitMEX)."""
        return self._hub.symbols

    @property
    def default_symbol(self) -> str:
        return self._hub.default_symbol

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/realtime`` (``RuntimeError`` when opened with ``listen=False``)."""
        return f"ws://{self._authority()}/realtime"

    @property
    def rest_url(self) -> str:
        """``http://HOST:PORT/api/v1``, BitMEX's REST API on the same port as ``url``: a BitMEX
        REST client's base URL (``RuntimeError`` when opened with ``listen=False``)."""
        return f"http://{self._authority()}{API_PREFIX}"

    def _authority(self) -> str:
        if self.host is None or self.port is None:
            raise RuntimeError("this emulator does not listen on TCP (listen=False)")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def now(self) -> float:
        """The emulator's wall clock (epoch seconds), as used in timestamps."""
        return self._hub.now()

    # ------------------------------------------------------------------ connecting

    async def connect_rest_in_memory(self) -> trio.abc.Stream:
        """The client end of an in-memory stream to this emulator, for HTTP/1.1 requests to
        ``/api/v1`` (keep-alive: many requests per stream). The same port serves websocket
        upgrades too: this is ``connect_in_memory`` under a name that says what it is for."""
        return await self.connect_in_memory()

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
            raise unwrap(group) from None
        finally:  # also when the handshake was rejected
            await trio.aclose_forcefully(stream)

    async def wait_connection(self, index: int) -> EmulatorConnection:
        """The connection with this index (0 = first accepted), once it has been accepted."""
        while self._next_index <= index:
            await self._accepted.wait()
        return self._by_index[index]

    # ------------------------------------------------------------------ the market

    async def deploy(self, *, down_for: float = 0.0) -> None:
        """An exchange deploy: every live connection is closed with 1000 "Bye" (what BitMEX
        sent when it restarted its feed handlers, protocol reference section 13), and for
        ``down_for`` seconds every new upgrade is refused with 503 and ``Retry-After``, so
        clients reconnect in a storm once it is back. Returns when the connections are gone."""
        hub = self._hub
        if down_for > 0:
            hub.gate.refuse_until(trio.current_time() + down_for)
        live = list(self.connections)
        for connection in live:
            connection.close_nowait(1000, "Bye")
        for connection in live:
            await connection.finished.wait()

    @property
    def events(self) -> int:
        """The market changes made so far (steps of the market)."""
        return self.pump.events

    @property
    def still(self) -> trio.Event:
        """Set once the market has made its ``max_events`` changes (or its data has ended)."""
        return self.pump.still

    def stop_market(self) -> None:
        """Make the market stand still from now on, as if ``max_events`` had been reached."""
        self.pump.stop()

    async def wait_still(self) -> None:
        """Wait until the market has made its ``max_events`` changes (forever if unlimited)."""
        await self.still.wait()

    def publish(self, deltas: Iterable[Delta]) -> None:
        """Send market deltas made outside the market task to their subscribers."""
        self._hub.publish(deltas)

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
        at once), on the synthetic market or on history (at the data's time); its deltas go to
        the subscribers. Returns its ``orderID``. ``RuntimeError`` with a per-session replay
        (``replay=``), which has no market to trade against."""
        venue = self.venue
        if isinstance(venue, Market):
            order_id, deltas = venue.place_order(
                account, symbol, side, qty, price, self.now(), cl_ord_id=cl_ord_id
            )
        else:
            params = {"symbol": symbol, "side": side, "orderQty": qty, "price": price,
                      "ordType": "Limit", "clOrdID": cl_ord_id or None}  # fmt: skip
            row, deltas = venue.exchange.place_order(account, params, self.now())
            order_id = row["orderID"]
        self.publish(deltas)
        return order_id

    def cancel_order(self, account: int, order_id: str) -> None:
        """Cancel one open order of ``account`` as if over REST (any venue, as ``place_order``)."""
        deltas = self.venue.exchange.cancel_orders(account, [order_id], [], self.now())[1]
        self.publish(deltas)

    def dead_mans_switch_deadline(self, account: int) -> float | None:
        """Trio time at which the account's dead man's switch fires, ``None`` if disarmed."""
        return self._hub.dead_mans_switch_deadline(account)

    @property
    def dead_mans_switch_fired(self) -> list[tuple[int, float]]:
        """``(account, trio time)`` of every firing so far."""
        return self._hub.dead_mans_switch_fired

    # ------------------------------------------------------------------ faults

    def overload_next_requests(self, n: int = 1) -> None:
        """Answer the next ``n`` REST requests with 503 "The system is currently overloaded."
        before they reach the engine (BitMEX's load shedding: nothing was done, safe to retry);
        each 503 served is logged as ``REST_OVERLOAD``."""
        self._hub.overload_next(n)

    def drop_rest_connections(self) -> int:
        """Close every open REST keep-alive connection under its client, idle or in the middle
        of a request (no response, no ``Connection: close``); each logged as ``REST_DROP``.
        Returns how many were dropped."""
        live = list(self.rest_connections)
        for http in live:
            detail = "idle" if http.idle else "request in flight"
            self._hub.log_fault(FaultKind.REST_DROP, None, http.requests, f"#{http.index} {detail}")
            http.drop()
        return len(live)

    @property
    def fault_log(self) -> list[FaultRecord]:
        """Every fault that took effect, in order."""
        return self._hub.fault_log

    def fault_counts(self) -> Counter[FaultKind]:
        """How many faults of each kind took effect so far."""
        return Counter(record.kind for record in self._hub.fault_log)

    def refuse_next_handshakes(
        self, n: int = 1, *, status: int = 429, retry_after: int = 1
    ) -> None:
        """Refuse the next ``n`` upgrades with ``status`` (429: ``Retry-After`` and JSON body)."""
        self._hub.gate.refuse_next(n, status, retry_after)

    def fail_next_auth(self, n: int = 1) -> None:
        """Fail the next ``n`` authentications (handshake or command) with 401."""
        self._hub.authenticator.fail_next += n

    def deltas_before_partial(self, n: int = 1) -> None:
        """The next ``n`` subscriptions get deltas of their topic before their partial.

        The early deltas restate rows that are in the partial (an ``update`` per row for keyed
        tables, an ``insert`` for keyless ones), so a client that applies them instead of dropping
        them fails visibly: unknown-key updates, or duplicated rows.
        """
        self._hub.early += n

    def delay_acks(self, seconds: float) -> None:
        """Delay replies to every connection's commands by ``seconds`` (0 to stop)."""
        if seconds > 0:
            self._hub.log_fault(FaultKind.DELAY_ACKS, None, 0, f"{seconds}s")
        self._hub.ack_delay = max(0.0, seconds)

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

        ``kinds`` defaults to ``RANDOM_FAULT_KINDS`` (every kind but ``IGNORE_CANCEL_ALL_AFTER``,
        which a correct client answers by failing, not by healing). Count what was injected
        with ``fault_counts()``; the plan of connection *n* depends only on ``seed`` and *n*.
        """
        chosen = normalize_kinds(kinds) if kinds is not None else RANDOM_FAULT_KINDS
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

    # ------------------------------------------------------------------ internals

    def _require_nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("the emulator is not running")
        return self._nursery

    def _start(self, nursery: trio.Nursery | None) -> None:
        self._nursery = self._hub.nursery = nursery

    async def _run_byes(self, mean_interval: float, seed: int) -> None:
        """Spontaneous 1000 "Bye" closes, a market event: at seeded exponential intervals of
        mean ``mean_interval`` seconds, every connection is closed as in a deploy."""
        rng = random.Random(f"bye/{seed}")
        while True:
            await trio.sleep(rng.expovariate(1.0 / mean_interval))
            for connection in list(self.connections):
                connection.close_nowait(1000, "Bye")

    async def _run_deploys(self, scenario: Scenario) -> None:
        """The exchange_deploy scenario: 1000 "Bye" to everyone and a 503 window, repeated."""
        assert scenario.deploy_after is not None
        await trio.sleep(scenario.deploy_after)
        while True:
            await self.deploy(down_for=scenario.deploy_down)
            if scenario.deploy_every is None:
                return
            await trio.sleep(scenario.deploy_every)

    async def _serve_tcp(
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
        """One accepted connection: its first request head says websocket or plain HTTP."""
        first: tuple[h11.Connection, h11.Request | None, bytes] | None = None
        try:
            with trio.move_on_after(CONNECT_TIMEOUT):
                first = await read_first_head(transport)
        finally:
            if first is None:  # cancelled, or no head in time
                await trio.aclose_forcefully(transport)
        if first is None:
            return
        conn, head, read = first
        if head is not None and wants_websocket(head.target, head.headers):
            await self._serve_websocket(PrefixedStream(transport, read))
        else:
            await self._serve_http(transport, conn, head)

    async def _serve_http(
        self, transport: trio.abc.Stream, conn: h11.Connection, head: h11.Request | None
    ) -> None:
        index = self._next_http_index
        self._next_http_index += 1
        http = HttpConnection(
            transport,
            conn,
            self._handle_rest,
            index=index,
            idle_timeout=self._idle_timeout,
            client=peer_address(transport),
        )
        self.rest_connections.append(http)
        try:
            await http.serve(head)
        finally:
            self.rest_connections.remove(http)

    def _handle_rest(self, request: HttpRequest) -> HttpResponse:
        # Synchronous from the app's answer to the publication of its deltas: the websocket
        # rows of one request go out before anything a later request or market step makes.
        return self._hub.handle_rest(request)

    async def _serve_websocket(self, transport: trio.abc.Stream) -> None:
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
        hub = self._hub
        decision = hub.gate.admit(request.path, request.headers, trio.current_time())
        if isinstance(decision, Refusal):
            await request.reject(
                decision.status, extra_headers=list(decision.headers), body=decision.body
            )
            return
        ws = await request.accept()

        def welcome() -> str:
            return encode_welcome(
                iso_timestamp(hub.clock()),
                limit_remaining=decision.remaining,
                heartbeat_enabled=decision.heartbeat,
                app_name=APP_NAME,
            )

        index = self._next_index
        self._next_index += 1
        connection = EmulatorConnection(
            hub,
            index,
            stream,
            path=decision.path,
            account=decision.account,
            api_key=decision.api_key,
            max_queued_frames=self._max_queued_frames,
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
            # No await between the connection's end and here: it leaves the list as it finishes.
            self.connections.remove(connection)
            with trio.move_on_after(DISCONNECT_TIMEOUT):
                await ws.aclose()


def unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The lone exception of a (nested) group, else the group itself."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
