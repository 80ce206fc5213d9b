"""The client: the only module here that does trio I/O.

Theory of operation. ``open_bitmex_websocket`` starts one supervisor task that owns the websocket.
The supervisor runs *sessions*: connect, wait for the welcome, authenticate, resubscribe, then run
the session's tasks (reader, heartbeat, dead man's switch, subscription manager) until the socket
dies. With ``reconnect=True`` it then backs off and starts a new session; with ``reconnect=False``
every listener is failed with ``ConnectionClosed``.

Exactly one task reads the socket (``_websocket``: no transport task of its own, so a 64 KiB
read of a few hundred frames costs one wake-up). It decodes each frame once, applies table data to
``Storage`` and hands every resulting ``Change`` to the listeners registered for
``(table, symbol)`` and for ``(table, None)``, without awaiting unless a listener is full.
Listeners own bounded channels and, once woken, take everything queued without a checkpoint per
item. With the default ``overflow="block"`` a slow listener makes the reader wait, so the socket is
read more slowly and memory stays bounded (TCP pushes back on the server). ``overflow="drop"``
drops instead and counts the loss.

Subscriptions are demand-driven: listeners only add or remove demand for ``(table, symbol)`` and
wake the subscription manager, which turns demand into the set of server topics (a listener for a
whole table covers every ``table:SYMBOL`` listener, so BitMEX never sends a row twice) and sends
the difference. Listener cleanup is therefore synchronous and works on every exit path (break,
aclose, cancellation, garbage collection), and the manager never sends an empty ``args`` list.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import trio
from trio_websocket import CloseReason, ConnectionClosed

from . import _protocol as proto
from ._auth import Credentials, expires_at
from ._events import Disconnected, Event, Reconnected, Resyncing
from ._exceptions import (
    AuthenticationError,
    ConnectionTimeout,
    DeadMansSwitchError,
    RemoteProtocolError,
    SubscriptionError,
    redact_request,
)
from ._listeners import ConnectionStats, Listener, Overflow, Topic, desired_server_topics
from ._storage import ApplyResult, Change, Storage
from ._supervision import (
    RETRYABLE,
    backoff_delay,
    cancellation_only,
    primary_exception,
    retry_after_seconds,
)
from ._websocket import ClientWebSocket, connect_websocket

__all__ = ["NETWORKS", "BitMEXWebsocket", "ConnectionStats", "open_bitmex_websocket"]

logger = logging.getLogger("bitmex_trio_websocket")

NETWORKS = {
    "mainnet": "wss://ws.bitmex.com/realtime",
    "testnet": "wss://ws.testnet.bitmex.com/realtime",
}
# Large multi-symbol partials exceed trio-websocket's 1 MiB default (the 2021 library died on
# them); 64 MiB still bounds memory against a hostile server.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
DEFAULT_BUFFER = 256
DMS_TIMEOUT_MS = 60_000
DMS_REFRESH = 15.0
# At most RESYNC_LIMIT single-topic resyncs per RESYNC_WINDOW seconds, then a full reconnect.
RESYNC_LIMIT = 3
RESYNC_WINDOW = 60.0
# Recordings never hold a signature: the authKeyExpires command is written as this instead.
_REDACTED_AUTH = '{"op":"authKeyExpires","args":"<redacted>"}'
# When the user's code is cancelled we can still send, but no longer read replies.
CANCELLED_CLOSE_GRACE = 0.25
# Consecutive refused re-authentications before giving up (revoked keys stay revoked).
MAX_AUTH_FAILURES = 5

StreamFactory: TypeAlias = Callable[[], Awaitable[trio.abc.Stream]]
# Called with ("recv" | "send", frame text) for every frame; used by ``record``.
FrameHook: TypeAlias = Callable[[str, str], None]


def resolve_network(network: str) -> str:
    """``mainnet``/``testnet`` or a ws:// / wss:// URL -> URL; ``ValueError`` otherwise."""
    if network in NETWORKS:
        return NETWORKS[network]
    if isinstance(network, str) and network.startswith(("ws://", "wss://")):
        return network
    raise ValueError(
        f"network must be 'mainnet', 'testnet' or a ws:// or wss:// URL, not {network!r}"
    )


class _SessionDied(Exception):
    """Internal: the current socket is unusable (heartbeat, read error, remote close)."""

    def __init__(self, reason: str, close: CloseReason | None = None, retry_after: float = 0.0):
        super().__init__(reason)
        self.close = close
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """The keyword options of ``open_bitmex_websocket``, validated."""

    dead_mans_switch: bool
    reconnect: bool
    ssl_context: ssl.SSLContext | None
    connect: StreamFactory | None
    timeout: float
    heartbeat_interval: float
    heartbeat_timeout: float
    max_message_size: int
    buffer: int
    backoff_initial: float
    backoff_max: float
    frame_hook: FrameHook | None


class BitMEXWebsocket:
    """A live, self-healing view of BitMEX. Create it with ``open_bitmex_websocket``."""

    def __init__(
        self, url: str, credentials: Credentials | None, options: ClientOptions, storage: Storage
    ) -> None:
        self.url = url
        self.storage = storage
        self.stats = ConnectionStats()
        self._credentials = credentials
        self._opts = options
        self._ws: ClientWebSocket | None = None
        self._clock_offset = 0.0
        self._routes: dict[Topic, list[Listener]] = {}
        self._demand: Counter[Topic] = Counter()
        # Server-side state of the current session: topic -> "pending" | "active" | "leaving".
        self._server: dict[str, str] = {}
        self._demand_changed = trio.Event()
        self._reply_waiters: dict[str, trio.MemorySendChannel[proto.ServerEvent]] = {}
        self._delivering = False
        self._activity = trio.Event()
        self._pong_arrived = trio.Event()  # set (and replaced) by each pong
        self._abort_close = False
        self._closing = False
        self._pending_tokens: dict[str, object] = {}
        self._signature: str | None = None  # the latest, kept only to redact recordings
        self._resync_times: dict[str, list[float]] = {}
        self._closed: BaseException | None = None
        self._random = random.Random()

    # ------------------------------------------------------------------ public API

    @property
    def authenticated(self) -> bool:
        return self._credentials is not None

    async def listen(
        self,
        table: str,
        symbol: str | None = None,
        *,
        buffer: int | None = None,
        overflow: Overflow = "block",
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Rows of ``table`` (optionally one ``symbol``): partial rows, inserts, merged updates.

        Each row is a snapshot that later messages never change; treat it as read-only (the
        same dict may be shared with storage and with other listeners).
        """
        listener = self._add_listener(table, symbol, buffer, overflow, lifecycle=False)
        receive_nowait = listener.receive.receive_nowait
        try:
            while True:
                item = await self._next(listener)
                # Once awake, hand over everything already queued without a checkpoint per
                # item: one wake-up per read of the socket instead of one per change (the
                # queue is bounded, so this never runs long).
                while True:
                    if type(item) is Change and item.action != "delete":
                        for row in item.rows:
                            yield row
                    try:
                        item = receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
        finally:
            self._remove_listener(listener)

    async def events(
        self,
        table: str,
        symbol: str | None = None,
        *,
        buffer: int | None = None,
        overflow: Overflow = "block",
    ) -> AsyncGenerator[Change | Event, None]:
        """Typed changes (``Change`` with action, table, symbol, rows) and lifecycle events."""
        listener = self._add_listener(table, symbol, buffer, overflow, lifecycle=True)
        receive_nowait = listener.receive.receive_nowait
        try:
            while True:
                yield await self._next(listener)
                while True:  # drain what is queued, as listen() does
                    try:
                        item = receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    yield item
        finally:
            self._remove_listener(listener)

    def listener_stats(self) -> list[tuple[str, int, int]]:
        """``(topic, queued items, dropped items)`` for every live listener."""
        return [
            (proto.make_topic(*listener.topic), listener.queued, listener.dropped)
            for listeners in self._routes.values()
            for listener in listeners
        ]

    # ------------------------------------------------------------------ listeners

    def _add_listener(
        self,
        table: str,
        symbol: str | None,
        buffer: int | None,
        overflow: Overflow,
        *,
        lifecycle: bool,
    ) -> Listener:
        proto.make_topic(table, symbol)  # validates names before anything is registered
        if table in proto.PRIVATE_TABLES and self._credentials is None:
            raise ValueError(f"{table!r} is a private table: pass api_key and api_secret")
        if overflow not in ("block", "drop"):
            raise ValueError("overflow must be 'block' or 'drop'")
        if self._closed is not None:
            raise self._closed
        topic: Topic = (table, symbol)
        listener = Listener(
            topic, self._opts.buffer if buffer is None else buffer, overflow, lifecycle
        )
        # Registration and the late-joiner snapshot happen without a checkpoint in between, so
        # the reader cannot slip a change in between the snapshot and the live stream.
        if self._covering_topic_active(topic) and self.storage.has_partial(table, symbol):
            rows = tuple(self.storage.rows(table, symbol))
            listener.send.send_nowait(Change(table, "partial", symbol, rows))
        self._routes.setdefault(topic, []).append(listener)
        self._demand[topic] += 1
        self._demand_changed.set()
        return listener

    def _remove_listener(self, listener: Listener) -> None:
        listeners = self._routes.get(listener.topic)
        if listeners is not None and listener in listeners:
            listeners.remove(listener)
            if not listeners:
                del self._routes[listener.topic]
            self._demand[listener.topic] -= 1
            if self._demand[listener.topic] <= 0:
                del self._demand[listener.topic]
            self._demand_changed.set()
        listener.send.close()
        listener.receive.close()

    async def _next(self, listener: Listener) -> Change | Event:
        try:
            return await listener.receive.receive()
        except trio.EndOfChannel:
            if listener.error is not None:
                raise listener.error from None
            raise RuntimeError("listener channel closed without an error") from None

    def _fail_topic(self, topic: Topic, error: BaseException) -> None:
        for listener in self._routes.pop(topic, []):
            listener.fail(error)
        self._demand.pop(topic, None)

    def _covering_topic_active(self, topic: Topic) -> bool:
        table, symbol = topic
        if self._server.get(table) == "active":
            return True
        return symbol is not None and self._server.get(f"{table}:{symbol}") == "active"

    def _desired_topics(self) -> dict[str, list[Topic]]:
        return desired_server_topics(self._demand)

    # ------------------------------------------------------------------ routing (reader task)

    async def _deliver(self, listeners: list[Listener], item: Change | Event) -> None:
        """``_offer``, waiting for each full ``block`` listener in turn."""
        remaining = list(listeners)  # listeners may leave while we wait
        while (blocked := self._offer(remaining, item)) >= 0:
            self._delivering = True  # the heartbeat must not mistake backpressure for silence
            try:
                await remaining[blocked].send.send(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self._delivering = False
            remaining = remaining[blocked + 1 :]

    def _offer(self, listeners: list[Listener], item: Change | Event) -> int:
        """Deliver without waiting. Returns the index of the first listener that must be
        waited for (full, ``block``), else -1."""
        for index, listener in enumerate(listeners):
            try:
                listener.send.send_nowait(item)
            except trio.WouldBlock:
                if listener.overflow != "drop":
                    return index
                listener.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        return -1

    def _offer_changes(
        self, table: str, changes: tuple[Change, ...], start: int
    ) -> tuple[int, list[Listener]] | None:
        """Offer ``changes[start:]`` to their listeners without waiting (the hot path: no
        coroutine per frame). On the first full ``block`` listener, stops and returns the
        change's index and the listeners still owed it, in order; ``_route_rest`` waits."""
        routes = self._routes
        wide = routes.get((table, None))
        offer = self._offer
        for index in range(start, len(changes)):
            change = changes[index]
            if change.symbol is not None:
                narrow = routes.get((table, change.symbol))
                if narrow and (blocked := offer(narrow, change)) >= 0:
                    return index, [*narrow[blocked:], *(wide or ())]
            if wide and (blocked := offer(wide, change)) >= 0:
                return index, wide[blocked:]
        return None

    async def _route_rest(
        self, table: str, changes: tuple[Change, ...], stuck: tuple[int, list[Listener]]
    ) -> None:
        # Order per listener is kept: nothing after the stuck change is offered until every
        # listener owed it has it.
        while True:
            index, owed = stuck
            await self._deliver(owed, changes[index])
            resumed = self._offer_changes(table, changes, index + 1)
            if resumed is None:
                return
            stuck = resumed

    async def _handle_violations(self, result: ApplyResult) -> None:
        self.stats.violations += len(result.violations)
        for violation in result.violations:
            logger.warning("consistency violation: %s", violation)
        await self._resync({(v.table, v.symbol) for v in result.violations}, "violation")

    async def _broadcast_lifecycle(self, event: Event) -> None:
        for listeners in tuple(self._routes.values()):
            wanted = [listener for listener in listeners if listener.want_lifecycle]
            if wanted:
                await self._deliver(wanted, event)

    # ------------------------------------------------------------------ session plumbing

    async def _send(self, frame: str, *, secret: bool = False) -> None:
        if self._ws is None:
            raise _SessionDied("not connected")
        try:
            await self._ws.send_message(frame)
        except ConnectionClosed as exc:
            raise _SessionDied("send failed", exc.reason) from None
        if self._opts.frame_hook is not None:
            self._opts.frame_hook("send", _REDACTED_AUTH if secret else frame)

    def _record_received(self, frame: str | bytes) -> None:
        assert self._opts.frame_hook is not None
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        # BitMEX echoes the auth command, signature included, in its reply.
        if self._signature is not None and self._signature in text:
            text = text.replace(self._signature, "<redacted>")
        self._opts.frame_hook("recv", text)

    async def _request(
        self, op: str, frame: str, timeout: float, *, secret: bool = False
    ) -> proto.ServerEvent:
        """Send a command and wait for the reply echoing ``op`` (auth and cancelAllAfter)."""
        send, receive = trio.open_memory_channel[proto.ServerEvent](1)
        self._reply_waiters[op] = send
        try:
            await self._send(frame, secret=secret)
            with trio.move_on_after(timeout):
                return await receive.receive()
            raise ConnectionTimeout(f"no reply to {op} within {timeout} s")
        finally:
            if self._reply_waiters.get(op) is send:
                del self._reply_waiters[op]

    async def _open_stream(self) -> trio.abc.Stream:
        if self._opts.connect is not None:
            return await self._opts.connect()
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.scheme == "ws":
            return await trio.open_tcp_stream(host, parts.port or 80)
        context = self._opts.ssl_context or ssl.create_default_context()
        stream = await trio.open_ssl_over_tcp_stream(
            host, parts.port or 443, ssl_context=context, https_compatible=True
        )
        # trio handshakes lazily; doing it here turns a bad certificate into a clear error
        # instead of a websocket handshake that never completes.
        try:
            await stream.do_handshake()
        except BaseException as exc:
            await trio.aclose_forcefully(stream)
            if isinstance(exc, trio.BrokenResourceError) and isinstance(
                exc.__cause__, ssl.SSLError
            ):
                raise exc.__cause__ from None
            raise
        return stream

    async def _open_socket(self) -> ClientWebSocket:
        parts = urlsplit(self.url)
        resource = parts.path or "/realtime"
        if parts.query:
            resource = f"{resource}?{parts.query}"
        stream = await self._open_stream()
        try:
            return await connect_websocket(
                stream, parts.netloc, resource, max_message_size=self._opts.max_message_size
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    async def _handshake(self, ws: ClientWebSocket) -> proto.Welcome:
        with trio.move_on_after(self._opts.timeout):
            frame = await ws.get_message()
            if self._opts.frame_hook is not None:
                self._record_received(frame)
            event = proto.decode_server_frame(frame)
            if not isinstance(event, proto.Welcome):
                raise RemoteProtocolError("expected the welcome message first", frame)
            return event
        raise ConnectionTimeout(f"no welcome message within {self._opts.timeout} s")

    def _learn_clock_offset(self, welcome: proto.Welcome) -> None:
        if welcome.timestamp is not None:
            try:
                server_now = Storage.parse_timestamp(welcome.timestamp).timestamp()
            except ValueError:
                return
            self._clock_offset = server_now - time.time()

    async def _authenticate(self) -> None:
        assert self._credentials is not None
        expires = expires_at(time.time(), clock_offset=self._clock_offset)
        args = self._credentials.auth_args(expires)
        self._signature = str(args[2])
        frame = proto.encode_auth_key_expires(str(args[0]), expires, self._signature)
        reply = await self._request("authKeyExpires", frame, self._opts.timeout, secret=True)
        if isinstance(reply, proto.ErrorReply):
            raise AuthenticationError(
                reply.status, reply.error, meta=reply.meta, request=reply.request
            )

    async def _run_session(self, ws: ClientWebSocket, task_status: Any) -> None:
        """Reader, heartbeat, DMS and subscription manager of one connected socket."""
        self._server = {}
        # Nothing survives a reconnect: until its new partial, a slice must not take deltas.
        for table, symbol in list(self._demand):
            self.storage.reset(table, symbol)
        self._demand_changed.set()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reader, ws)
            if self._credentials is not None:
                await self._authenticate()
            if self._opts.dead_mans_switch:
                await nursery.start(self._dms_loop)
            nursery.start_soon(self._subscription_manager, nursery)
            nursery.start_soon(self._heartbeat, ws)
            task_status.started()

    async def _reader(self, ws: ClientWebSocket) -> None:
        stats = self.stats
        decode = proto.decode_server_frame_lean
        apply = self.storage.apply
        while True:
            try:
                frames = await ws.receive_messages()
            except ConnectionClosed as exc:
                raise _SessionDied("connection closed", exc.reason) from None
            if not frames:
                continue  # part of a frame is no sign of life: a trickle must not fool us
            # One read carries many frames: the clock is read once per read.
            stats.last_message_at = trio.current_time()
            self._activity.set()
            for frame in frames:
                if self._opts.frame_hook is not None:
                    self._record_received(frame)
                stats.messages += 1
                stats.bytes += len(frame)
                try:
                    event = decode(frame)
                except RemoteProtocolError as exc:
                    # It may have been a delta of any topic: re-fetch them all rather than drift.
                    stats.protocol_errors += 1
                    logger.warning("undecodable frame, resyncing every topic: %s", exc)
                    await self._resync(set(self._demand), "undecodable frame")
                    continue
                if type(event) is not dict:
                    await self._handle_reply(event)  # type: ignore[arg-type]
                    continue
                try:
                    result = apply(event)
                except RemoteProtocolError as exc:
                    # Rejected whole, storage unchanged; the slice may now miss a delta.
                    stats.protocol_errors += 1
                    logger.warning("rejected table message: %s", exc)
                    table = event["table"]
                    await self._resync({t for t in self._demand if t[0] == table}, "bad message")
                    continue
                if result.dropped:
                    stats.dropped_before_partial += result.dropped
                if result.changes:
                    stuck = self._offer_changes(result.table, result.changes, 0)
                    if stuck is not None:
                        await self._route_rest(result.table, result.changes, stuck)
                if result.violations:
                    await self._handle_violations(result)

    async def _handle_reply(self, event: proto.ServerEvent) -> None:
        if isinstance(event, proto.Pong):
            self._pong_arrived.set()
            self._pong_arrived = trio.Event()
        elif isinstance(event, proto.SubscribeAck):
            if self._server.get(event.topic) == "pending":
                self._server[event.topic] = "active"
        elif isinstance(event, proto.UnsubscribeAck):
            if self._server.get(event.topic) == "leaving":
                del self._server[event.topic]
                self._demand_changed.set()  # it may be wanted again
        elif isinstance(event, proto.ErrorReply):
            await self._handle_error(event)
        elif isinstance(event, proto.AuthAck | proto.CancelAllAfterAck):
            op = (
                "cancelAllAfter" if isinstance(event, proto.CancelAllAfterAck) else "authKeyExpires"
            )
            waiter = self._reply_waiters.get(op)
            if waiter is not None:
                waiter.send_nowait(event)

    async def _handle_error(self, event: proto.ErrorReply) -> None:
        op = event.op
        if op in ("authKeyExpires", "authKey", "cancelAllAfter"):
            waiter = self._reply_waiters.get("authKeyExpires" if op != "cancelAllAfter" else op)
            if waiter is not None:
                waiter.send_nowait(event)
                return
        elif op in ("subscribe", "unsubscribe"):
            request = event.request if isinstance(event.request, dict) else {}
            args = request.get("args")
            if isinstance(args, str):
                topics = [args]
            else:  # a hostile reply may put anything here
                topics = [t for t in args if isinstance(t, str)] if isinstance(args, list) else []
            if event.error.startswith("You are already subscribed"):
                for topic in topics:  # benign: the subscription exists
                    if self._server.get(topic) == "pending":
                        self._server[topic] = "active"
                return
            named = [t for t in topics if t in event.error]
            for topic in named or topics:
                await self._subscription_failed(op, topic, event)
            return
        if event.status == 429:
            logger.warning("rate limited by BitMEX: %s", event.error)
        logger.warning(
            "unattributed error reply: %s %s (request %s)",
            event.status,
            event.error,
            redact_request(event.request),
        )

    async def _subscription_failed(self, op: str, topic: str, event: proto.ErrorReply) -> None:
        state = self._server.get(topic)
        if op == "unsubscribe":
            if state == "leaving":
                del self._server[topic]
            return
        if state != "pending":
            return
        del self._server[topic]
        error = SubscriptionError(event.status, event.error, meta=event.meta, request=event.request)
        for demand_topic in self._desired_topics().get(topic, []):
            self._fail_topic(demand_topic, error)

    async def _subscription_manager(self, nursery: trio.Nursery) -> None:
        while True:
            await self._demand_changed.wait()
            self._demand_changed = trio.Event()
            desired = self._desired_topics()
            leaving = [t for t, s in self._server.items() if t not in desired and s != "leaving"]
            # A topic still being left is subscribed again only after its unsubscribe ack.
            joining = [t for t in desired if t not in self._server]
            for topic in leaving:
                self._server[topic] = "leaving"
                table, symbol = proto.parse_topic(topic)
                self.storage.reset(table, symbol)  # stale rows are worse than no rows
            for frame in proto.encode_unsubscribe(leaving):
                await self._send(frame)
            token = object()
            for topic in joining:
                self._server[topic] = "pending"
                self._pending_tokens[topic] = token
            for frame in proto.encode_subscribe(joining):
                await self._send(frame)
            if joining:
                nursery.start_soon(self._expire_unacknowledged, joining, token)

    async def _expire_unacknowledged(self, topics: list[str], token: object) -> None:
        """Fail the listeners of subscriptions BitMEX never answered (heartbeats alone would
        keep such a listener waiting forever)."""

        def unanswered() -> list[str]:
            return [
                t
                for t in topics
                if self._server.get(t) == "pending" and self._pending_tokens.get(t) is token
            ]

        await trio.sleep(self._opts.timeout)
        while unanswered():
            # BitMEX answers commands in order: a pong to a ping sent now proves the subscribe
            # was handled and no ack is coming. No pong means a silent socket, which is the
            # heartbeat's business (it reconnects and resubscribes): "talking lately" is not
            # enough, since a server may fall silent just after its last frame.
            pong = self._pong_arrived
            await self._send(proto.PING)
            with trio.move_on_after(self._opts.timeout):
                await pong.wait()
                break
        for topic in unanswered():
            del self._server[topic]
            error = ConnectionTimeout(
                f"BitMEX did not acknowledge the subscription to {topic} "
                f"within {self._opts.timeout:g} s"
            )
            for demand_topic in self._desired_topics().get(topic, []):
                self._fail_topic(demand_topic, error)

    async def _resync(self, topics: set[Topic], reason: str) -> None:
        """Re-fetch the partials of the server topics covering ``topics``."""
        desired = self._desired_topics()
        server_topics = {s for s, served in desired.items() for t in served if t in topics}
        server_topics |= {
            s for s, served in desired.items() for t in served if (t[0], None) in topics
        }
        now = trio.current_time()
        for server_topic in server_topics:
            if self._server.get(server_topic) != "active":
                continue
            recent = [
                t for t in self._resync_times.get(server_topic, []) if now - t < RESYNC_WINDOW
            ]
            if len(recent) >= RESYNC_LIMIT:
                # A topic that keeps breaking points at the connection, not the topic.
                raise _SessionDied(f"{server_topic} needed {len(recent)} resyncs in a row")
            self._resync_times[server_topic] = [*recent, now]
            self.stats.resyncs += 1
            table, symbol = proto.parse_topic(server_topic)
            logger.warning("resyncing %s after %s", server_topic, reason)
            await self._broadcast_lifecycle(Resyncing(table, symbol, reason))
            self.storage.reset(table, symbol)
            self._server[server_topic] = "leaving"
            for frame in proto.encode_unsubscribe([server_topic]):
                await self._send(frame)
        # The manager re-subscribes once each unsubscribe ack arrives.

    async def _dms_loop(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        # Refresh on a fixed schedule (not sleep-after-ack) so the timer never drifts late.
        first = True
        next_at = trio.current_time()
        while True:
            reply = await self._request(
                "cancelAllAfter", proto.encode_cancel_all_after(DMS_TIMEOUT_MS), self._opts.timeout
            )
            if isinstance(reply, proto.ErrorReply):
                raise DeadMansSwitchError(f"cancelAllAfter refused: {reply.status} {reply.error}")
            if first:
                task_status.started()
                first = False
            next_at += DMS_REFRESH
            await trio.sleep_until(next_at)

    async def _disarm_dms(self) -> None:
        try:
            reply = await self._request("cancelAllAfter", proto.encode_cancel_all_after(0), 5.0)
        except (_SessionDied, ConnectionTimeout) as exc:
            logger.warning("could not disarm the dead man's switch: %s", exc)
            return
        if isinstance(reply, proto.ErrorReply):
            logger.warning("disarming the dead man's switch failed: %s", reply.error)

    async def _heartbeat(self, ws: ClientWebSocket) -> None:
        stats = self.stats
        started_at = trio.current_time()
        while True:
            last = started_at if stats.last_message_at is None else stats.last_message_at
            if self._delivering:
                last = trio.current_time()
            idle_until = last + self._opts.heartbeat_interval
            if trio.current_time() < idle_until:
                await trio.sleep_until(idle_until)
                continue
            self._activity = trio.Event()
            await self._send(proto.PING)
            with trio.move_on_after(self._opts.heartbeat_timeout):
                await self._activity.wait()
                continue
            if self._delivering:
                continue  # the reader is blocked on a slow listener: backpressure, not silence
            self._abort_close = True
            raise _SessionDied(
                f"no frame for {self._opts.heartbeat_interval + self._opts.heartbeat_timeout:g} s",
                CloseReason(1006, "heartbeat timeout"),
            )

    # ------------------------------------------------------------------ supervisor

    async def _connect_once(self) -> tuple[ClientWebSocket, proto.Welcome]:
        with trio.move_on_after(self._opts.timeout) as scope:
            ws = await self._open_socket()
        if scope.cancelled_caught:
            raise ConnectionTimeout(f"could not connect within {self._opts.timeout} s")
        try:
            welcome = await self._handshake(ws)
        except BaseException:
            # A peer that never sent the welcome will not answer a close frame either.
            with trio.CancelScope(shield=True), trio.move_on_after(CANCELLED_CLOSE_GRACE):
                await ws.aclose()
            raise
        return ws, welcome

    async def _supervise(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        attempt = 0
        auth_failures = 0
        started = False
        while True:
            retry_after = 0.0
            close: CloseReason | None = None
            try:
                ws, welcome = await self._connect_once()
                self._ws = ws
                self._abort_close = False
                self._learn_clock_offset(welcome)
                try:
                    async with trio.open_nursery() as session:
                        await session.start(self._run_session, ws)
                        self.stats.connected = True
                        self.stats.connects += 1
                        if started:
                            self.stats.reconnects += 1
                            await self._broadcast_lifecycle(Reconnected(attempt))
                        else:
                            started = True
                            task_status.started()
                        attempt = auth_failures = 0
                finally:
                    self.stats.connected = False
                    self._ws = None
                    # A silent peer will not answer a close frame: don't wait for it.
                    grace = 0 if self._abort_close else self._opts.timeout
                    with trio.CancelScope(shield=True), trio.move_on_after(grace):
                        await ws.aclose()
            except BaseException as exc:
                cancelled = cancellation_only(exc)
                if cancelled is not None:
                    # Being shut down: whatever else the dying session raised is moot.
                    raise cancelled from None
                error = primary_exception(exc)
                if isinstance(error, _SessionDied):
                    close, retry_after = error.close, error.retry_after
                elif not started or not isinstance(error, RETRYABLE):
                    raise error from None
                elif (
                    isinstance(error, AuthenticationError)
                    and auth_failures + 1 >= MAX_AUTH_FAILURES
                ):
                    raise error from None  # revoked keys: retrying forever helps nobody
                else:
                    auth_failures += isinstance(error, AuthenticationError)
                    retry_after = retry_after_seconds(error)
                    close = CloseReason(1006, str(error))
            if self._closing or not self._opts.reconnect:
                self._shutdown_listeners(ConnectionClosed(close))
                return
            await self._broadcast_lifecycle(
                Disconnected(close.code if close else 1006, close.reason if close else None)
            )
            delay = backoff_delay(
                attempt,
                retry_after,
                self._opts.backoff_initial,
                self._opts.backoff_max,
                self._random,
            )
            attempt += 1
            logger.warning("connection lost (%s); reconnecting in %.2f s", close, delay)
            await trio.sleep(delay)

    def _shutdown_listeners(self, error: BaseException) -> None:
        self._closed = error
        for topic in list(self._routes):
            self._fail_topic(topic, error)

    async def _close(self, *, graceful: bool) -> None:
        """Disarm the dead man's switch, then close the socket.

        Graceful: while the reader still runs, waiting for each reply. When the caller is being
        cancelled the reader is already gone, so the frames are only sent, briefly.
        """
        self._closing = True
        ws = self._ws
        if ws is None:
            return
        if self._opts.dead_mans_switch:
            if graceful:
                await self._disarm_dms()
            else:
                with trio.move_on_after(CANCELLED_CLOSE_GRACE):
                    await self._send(proto.encode_cancel_all_after(0))
        with trio.move_on_after(self._opts.timeout if graceful else CANCELLED_CLOSE_GRACE):
            await ws.aclose(1000, "client closed")


@asynccontextmanager
async def open_bitmex_websocket(
    network: str,
    api_key: str | None = None,
    api_secret: str | None = None,
    *,
    dead_mans_switch: bool = False,
    reconnect: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    connect: StreamFactory | None = None,
    timeout: float = 10.0,
    heartbeat_interval: float = 5.0,
    heartbeat_timeout: float = 5.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    buffer: int = DEFAULT_BUFFER,
    backoff_initial: float = 1.0,
    backoff_max: float = 60.0,
    storage: Storage | None = None,
    frame_hook: FrameHook | None = None,
) -> AsyncIterator[BitMEXWebsocket]:
    """Connect to BitMEX (``"mainnet"``, ``"testnet"`` or a ws/wss URL) and yield the client.

    Returns once the welcome has arrived and, with credentials, authentication succeeded (and
    the dead man's switch is armed when asked for). ``connect`` replaces TCP with any stream
    (tests run the emulator in memory this way). On exit the dead man's switch is disarmed and
    the socket closed with a close frame.
    """
    url = resolve_network(network)
    if (api_key is None) != (api_secret is None):
        raise ValueError("pass both api_key and api_secret, or neither")
    credentials = Credentials(api_key, api_secret) if api_key and api_secret else None
    if dead_mans_switch and credentials is None:
        raise ValueError("the dead man's switch needs api_key and api_secret")
    for name, value in (
        ("timeout", timeout),
        ("heartbeat_interval", heartbeat_interval),
        ("heartbeat_timeout", heartbeat_timeout),
    ):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive number of seconds")
    options = ClientOptions(
        dead_mans_switch, reconnect, ssl_context, connect, timeout, heartbeat_interval,
        heartbeat_timeout, max_message_size, buffer, backoff_initial, backoff_max, frame_hook,
    )  # fmt: skip
    bws = BitMEXWebsocket(url, credentials, options, Storage() if storage is None else storage)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(bws._supervise)
            try:
                yield bws
            finally:
                graceful = trio.current_effective_deadline() != -math.inf
                with trio.CancelScope(shield=True):
                    await bws._close(graceful=graceful)
                bws._shutdown_listeners(ConnectionClosed(CloseReason(1000, "client closed")))
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Users catch AuthenticationError, not a group around it (as trio-websocket does).
        error = primary_exception(group)
        if error is group:
            raise
        raise error from None
