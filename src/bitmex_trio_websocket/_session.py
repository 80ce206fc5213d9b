"""One session: one socket's tasks, from the welcome to the socket's death.

Theory of operation. The supervisor (``_supervisor``) opens a socket and runs a ``Session`` on it
until the socket dies; a session ends by raising: ``_SessionDied`` when its socket is unusable
(always retried), or a typed error, about which ``_retry`` decides. A session reaches what outlives
it (options, store, counters, routes, subscription state) through a ``SessionHost``. Its tasks:

* the reader, the only task reading the socket: one ``receive_messages`` per read (a 64 KiB read
  of hundreds of frames is one wake-up), table data applied to ``Storage`` and the changes
  handed to ``Router.offer_changes`` (awaiting only for a full listener), then two yields so the
  listeners it woke run before its next read; replies go to ``Subscriptions`` or to the task
  waiting in ``_request``. A frame starting ``{"table":"`` goes from orjson straight to
  ``Storage.apply`` (which checks the envelope); any other, or one the store refuses (unchanged),
  takes ``_protocol.decode_server_frame_lean``, so faults are told apart as before. An
  undecodable frame, a message the store rejects or a violation re-fetches the topics concerned
  (``Subscriptions.resync``, within budget);
* the subscription manager, woken by demand changes, sends what ``Subscriptions.plan`` returns;
  one watchdog per subscribe batch fails the listeners of subscribes BitMEX never answered;
* the heartbeat, from the session's first moment: the only task that pings, and the only one
  that declares the socket dead, by the rules of ``_liveness`` (regular pings whatever the feed
  does; an unanswered ping is death within ``heartbeat_timeout`` plus the last round trip, excused
  while a large frame keeps arriving at the minimum rate or the reader waits for a slow
  listener). The session it kills is aborted at once: a peer that does not answer pings will not
  answer a close frame either;
* with a replay server (``replay_server``, tardis-machine's ``/ws-replay``): the reader and
  ``_manage_replay_subscriptions`` only, since it sends no welcome, acks or pongs; how its end
  and its failures are told apart is ``_supervisor``'s;
* the dead man's switch (if asked for): ``cancelAllAfter`` every 15 s on a fixed schedule, each
  reply checked: ``DeadMansSwitchError`` if refused, or if BitMEX answered a ping sent after it
  but never the command. A late reply is still taken; a dead socket is the heartbeat's to find.

Commands whose reply may be late (subscribes, the switch) use the same proof: BitMEX answers in
order, so once a ping sent after a command is answered, no reply to it is coming.

Closing disarms the switch while the reader still runs to read the reply, then sends a close
frame. Recordings (``frame_hook``) never hold a signature (``FrameRecorder``).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeAlias

import orjson
import trio
import trio_websocket
from trio_websocket import CloseReason

from . import _protocol as proto
from ._auth import Credentials, expires_at
from ._events import ApplyResult, Resyncing
from ._exceptions import (
    AuthenticationError,
    ConnectionTimeout,
    DeadMansSwitchError,
    RemoteProtocolError,
    SubscriptionError,
    redact_request,
)
from ._liveness import Liveness, LivenessAction
from ._routing import ConnectionStats, Router
from ._storage import Storage
from ._subscriptions import Failed, Subscriptions, Topic, TopicInput, TopicState, server_topics
from ._websocket import ClientWebSocket

__all__ = ["ClientOptions", "FrameHook", "FrameRecorder", "Session", "SessionHost", "StreamFactory"]

logger = logging.getLogger("bitmex_trio_websocket")

DMS_TIMEOUT_MS = 60_000
DMS_REFRESH = 15.0
DISARM_TIMEOUT = 5.0
# When the user's code is cancelled we can still send, but no longer read replies.
CANCELLED_CLOSE_GRACE = 0.25
# A replay server's subscribe waits this long after the first demand, for listeners started
# together with the first one (tardis-machine counts only subscribes of its first 2 s).
REPLAY_SUBSCRIBE_GRACE = 0.5
# Recordings never hold a signature: the authKeyExpires command is written as this instead.
_REDACTED_AUTH = '{"op":"authKeyExpires","args":"<redacted>"}'
# How BitMEX starts every table message: such a frame, if too small for a density check
# (``_protocol``), is parsed and stored without the general decoder.
_TABLE_FRAME: Final = b'{"table":"'

StreamFactory: TypeAlias = Callable[[], Awaitable[trio.abc.Stream]]
# Called with ("recv" | "send", frame text) for every frame; used by ``record``.
FrameHook: TypeAlias = Callable[[str, str], None]


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
    replay_server: bool = False  # tardis-machine's /ws-replay (see _supervisor)


class _SessionDied(Exception):
    """The current socket is unusable (heartbeat, read error, remote close): reconnect.

    ``unanswered`` marks a death for lack of pongs: before the first session is up, that is a
    ``ConnectionTimeout`` for the user, as a missing welcome or auth reply is.
    """

    def __init__(
        self,
        reason: str,
        close: CloseReason | None = None,
        retry_after: float = 0.0,
        *,
        unanswered: bool = False,
    ):
        super().__init__(reason)
        self.close = close
        self.retry_after = retry_after
        self.unanswered = unanswered


class FrameRecorder:
    """Hands every frame to the user's hook, with signatures redacted."""

    __slots__ = ("hook", "signature")

    def __init__(self, hook: FrameHook) -> None:
        self.hook = hook
        self.signature: str | None = None  # the latest, kept only to redact BitMEX's echo

    def sent(self, frame: str, *, secret: bool) -> None:
        self.hook("send", _REDACTED_AUTH if secret else frame)

    def received(self, frame: str | bytes) -> None:
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        if self.signature is not None and self.signature in text:
            text = text.replace(self.signature, "<redacted>")
        self.hook("recv", text)


class SessionHost(Protocol):
    """What a session reaches of its supervisor: everything that outlives one socket."""

    opts: ClientOptions
    storage: Storage
    stats: ConnectionStats
    router: Router
    subscriptions: Subscriptions
    recorder: FrameRecorder | None
    credentials: Credentials | None
    clock_offset: float


# ---------------------------------------------------------------------- one session


class Session:
    """One connected socket's tasks (see the module docstring)."""

    def __init__(self, ws: ClientWebSocket, supervisor: SessionHost) -> None:
        self.abort_close = False  # a silent peer will not answer a close frame
        self._ws = ws
        self._supervisor = supervisor
        self._opts = supervisor.opts
        self._storage = supervisor.storage
        self._stats = supervisor.stats
        self._router = supervisor.router
        self._subs = supervisor.subscriptions
        self._recorder = supervisor.recorder
        self._replan = trio.Event()  # demand changed: the manager has work
        self._liveness = Liveness(
            trio.current_time(),
            interval=self._opts.heartbeat_interval,
            timeout=self._opts.heartbeat_timeout,
        )
        self._liveness_changed = trio.Event()  # set by pongs and the end of backpressure
        self._pong_arrived = trio.Event()  # set (and replaced) by each pong
        self._reply_waiters: dict[str, trio.MemorySendChannel[proto.ServerEvent]] = {}

    def demand_changed(self) -> None:
        self._replan.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Authenticate and arm the switch (then report started), and run until the end."""
        # Nothing survives a reconnect: until its new partial, a slice must not take deltas.
        for table, symbol in self._subs.reset():
            self._storage.reset(table, symbol)
        self._replan.set()
        self._router.on_wait = self._reader_waits
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader)
                if self._opts.replay_server:
                    # No text pings (unanswered there); its websocket pings are answered below us.
                    nursery.start_soon(self._manage_replay_subscriptions)
                    task_status.started()
                    return
                nursery.start_soon(self._heartbeat)  # auth and arming need a live socket too
                if self._supervisor.credentials is not None:
                    await self._authenticate(self._supervisor.credentials)
                if self._opts.dead_mans_switch:
                    await nursery.start(self._dead_mans_switch)
                nursery.start_soon(self._manage_subscriptions, nursery)
                task_status.started()
        finally:
            self._router.on_wait = None

    async def close(self, *, graceful: bool) -> None:
        """Disarm the dead man's switch, then close the socket.

        Graceful: while the reader still runs, waiting for each reply. When the caller is being
        cancelled the reader is already gone, so the frames are only sent, briefly.
        """
        if self._opts.dead_mans_switch:
            if graceful:
                try:
                    await self._call_cancel_all_after(0, DISARM_TIMEOUT, patient=False)
                except (_SessionDied, DeadMansSwitchError) as exc:
                    logger.warning("could not disarm the dead man's switch: %s", exc)
            else:
                with trio.move_on_after(CANCELLED_CLOSE_GRACE), suppress(_SessionDied):
                    await self._send(proto.encode_cancel_all_after(0))
        with trio.move_on_after(self._opts.timeout if graceful else CANCELLED_CLOSE_GRACE):
            await self._ws.aclose(1000, "client closed")

    # ------------------------------------------------------------------ reader

    async def _reader(self) -> None:
        ws = self._ws
        stats = self._stats
        recorder = self._recorder
        loads = orjson.loads
        apply = self._storage.apply
        offer_changes = self._router.offer_changes
        data_received = self._liveness.data_received
        seen = ws.bytes_received
        while True:
            try:
                frames = await ws.receive_messages()
            except trio_websocket.ConnectionClosed as exc:
                raise _SessionDied("connection closed", exc.reason) from None
            # One read carries many frames: the clock is read once per read.
            now = trio.current_time()
            total = ws.bytes_received
            if data_received(now, total - seen, len(frames)):
                self._liveness_changed.set()  # a drain ended: the heartbeat's deadline moved up
            seen = total
            if not frames:
                continue
            stats.last_message_at = now
            offered = False
            for frame in frames:
                if recorder is not None:
                    recorder.received(frame)
                stats.messages += 1
                stats.bytes += len(frame)
                # Whatever the store refuses (unchanged) is read again by _decode_and_apply.
                result: ApplyResult | None = None
                if frame.startswith(_TABLE_FRAME) and len(frame) <= proto.DENSITY_CHECK_BYTES:
                    try:
                        result = apply(loads(frame))
                    except (orjson.JSONDecodeError, RemoteProtocolError):
                        result = None  # a fault: the general path below names it
                if result is None and (result := await self._decode_and_apply(frame)) is None:
                    continue
                if result.dropped:
                    stats.dropped_before_partial += result.dropped
                if result.changes:
                    offered = True
                    stuck = offer_changes(result.table, result.changes, 0)
                    if stuck is not None:
                        await self._router.route_rest(result.table, result.changes, stuck)
                if result.violations:
                    stats.violations += len(result.violations)
                    for violation in result.violations:
                        logger.warning("consistency violation: %s", violation)
                    slices = {(v.table, v.symbol) for v in result.violations}
                    await self._resync(slices, "violation")
            if offered:
                await _after_woken_tasks()

    async def _decode_and_apply(self, frame: bytes) -> ApplyResult | None:
        """A frame off the fast path: table data (the store's result), a reply (handled), or a
        fault (counted, its topics re-fetched); ``None`` but for table data."""
        stats = self._stats
        try:
            event = proto.decode_server_frame_lean(frame)
        except RemoteProtocolError as exc:
            # It may have been a delta of any topic: re-fetch them all rather than drift.
            stats.protocol_errors += 1
            logger.warning("undecodable frame, resyncing every topic: %s", exc)
            await self._resync(self._subs.demanded(), "undecodable frame")
            return None
        if type(event) is not dict:
            self._handle_reply(event)  # type: ignore[arg-type]
            return None
        try:
            return self._storage.apply(event)
        except RemoteProtocolError as exc:
            # Rejected whole, storage unchanged; the slice may now miss a delta.
            stats.protocol_errors += 1
            logger.warning("rejected table message: %s", exc)
            await self._resync(self._subs.demanded(event["table"]), "bad message")
            return None

    def _handle_reply(self, event: proto.ServerEvent) -> None:
        if isinstance(event, proto.Pong):
            self._liveness.pong_received(trio.current_time())
            self._liveness_changed.set()
            self._pong_arrived.set()
            self._pong_arrived = trio.Event()
        elif isinstance(event, proto.SubscribeAck):
            self._subs.subscribed(event.topic)
        elif isinstance(event, proto.UnsubscribeAck):
            if self._subs.unsubscribed(event.topic):
                self._replan.set()  # it may be wanted again
        elif isinstance(event, proto.ErrorReply):
            self._handle_error(event)
        elif isinstance(event, proto.AuthAck):
            self._hand_reply("authKeyExpires", event)
        elif isinstance(event, proto.CancelAllAfterAck):
            self._hand_reply("cancelAllAfter", event)

    def _hand_reply(self, op: str, event: proto.ServerEvent) -> None:
        # One reply per request: a duplicated or unsolicited one finds no waiter.
        waiter = self._reply_waiters.pop(op, None)
        if waiter is not None:
            waiter.send_nowait(event)

    def _handle_error(self, event: proto.ErrorReply) -> None:
        op = event.op
        if op in ("authKeyExpires", "authKey", "cancelAllAfter"):
            waiter_op = "cancelAllAfter" if op == "cancelAllAfter" else "authKeyExpires"
            if waiter_op in self._reply_waiters:
                self._hand_reply(waiter_op, event)
                return
        elif op in ("subscribe", "unsubscribe"):
            topics = _request_topics(event.request)
            for failed in self._subs.refused(topics, event.error, unsubscribe=op == "unsubscribe"):
                error = SubscriptionError(
                    event.status, event.error, meta=event.meta, request=event.request
                )
                self._fail(failed, error)
            return
        if event.status == 429:
            logger.warning("rate limited by BitMEX: %s", event.error)
        logger.warning(
            "unattributed error reply: %s %s (request %s)",
            event.status,
            event.error,
            redact_request(event.request),
        )

    def _fail(self, failed: Failed, error: BaseException) -> None:
        for demand_topic in failed.demand:
            self._router.fail(demand_topic, error)

    async def _resync(self, slices: Iterable[Topic], reason: str) -> None:
        """Re-fetch the server topics serving ``slices``; the manager re-subscribes each once
        its unsubscribe is acknowledged."""
        if self._opts.replay_server:
            return  # a replay cannot be re-fetched: counted; the data's next partial heals
        resync = self._subs.resync(slices, trio.current_time())
        if resync.fatal is not None:
            # A topic that keeps breaking points at the connection, not the topic.
            raise _SessionDied(resync.fatal)
        for server_topic in resync.unsubscribe:
            self._stats.resyncs += 1
            table, symbol = proto.parse_topic(server_topic)
            logger.warning("resyncing %s after %s", server_topic, reason)
            await self._router.broadcast(Resyncing(table, symbol, reason))
            self._storage.reset(table, symbol)
            for frame in proto.encode_unsubscribe([server_topic]):
                await self._send(frame)

    # ------------------------------------------------------------------ subscriptions

    async def _manage_subscriptions(self, nursery: trio.Nursery) -> None:
        while True:
            await self._replan.wait()
            self._replan = trio.Event()
            plan = self._subs.plan()
            for table, symbol in plan.reset:
                self._storage.reset(table, symbol)  # stale rows are worse than no rows
            for frame in proto.encode_unsubscribe(plan.unsubscribe):
                await self._send(frame)
            for frame in proto.encode_subscribe(plan.subscribe):
                await self._send(frame)
            if plan.subscribe:
                nursery.start_soon(self._expire_unacknowledged, plan.batch, self._pings_so_far())

    async def _manage_replay_subscriptions(self) -> None:
        """A replay server (tardis-machine): one subscribe with every topic, sent a moment after
        the first demand and inside its 2 s window; no acks (topics are active at once), no
        unsubscribes (it ignores them: left topics keep flowing into the store). A topic asked
        for after that subscribe is refused to its listeners: a second subscribe would make the
        server close the whole replay."""
        subs = self._subs
        while not subs.demanded():
            self._replan = trio.Event()
            await self._replan.wait()
        await trio.sleep(REPLAY_SUBSCRIBE_GRACE)  # listeners started together join this one
        plan = subs.plan()
        await self._send(orjson.dumps({"op": "subscribe", "args": list(plan.subscribe)}).decode())
        for topic in plan.subscribe:
            subs.subscribed(topic)
        served = set(plan.subscribe)
        while True:
            self._replan = trio.Event()
            await self._replan.wait()
            for topic in server_topics(subs.demanded()):
                if subs.state(topic) is TopicState.ACTIVE:
                    continue
                subs.process(topic, TopicInput.WANT)
                if topic in served or proto.parse_topic(topic)[0] in served:
                    subs.subscribed(topic)  # still served: its rows keep coming
                    continue
                message = (
                    f"{topic} was asked for after the replay's subscribe: a replay server takes "
                    "subscriptions only in the first 2 s of a connection (start every listener "
                    "together, or pass topics=...)"
                )
                error = SubscriptionError(
                    None, message, request={"op": "subscribe", "args": [topic]}
                )
                for failed in subs.refused([topic], message, unsubscribe=False):
                    self._fail(failed, error)

    async def _expire_unacknowledged(self, batch: int, pings: int) -> None:
        """Fail the listeners of subscriptions BitMEX never answered (heartbeats alone would
        keep such a listener waiting forever)."""
        timeout = self._opts.timeout
        await trio.sleep(timeout)
        if self._subs.unanswered(batch):
            # Late is not lost: only once a ping sent after the subscribe is answered is no ack
            # coming. A socket that answers nothing is the heartbeat's to kill.
            await self._answered_after(pings)
        for failed in self._subs.expire(batch):
            error = ConnectionTimeout(
                f"BitMEX did not acknowledge the subscription to {failed.topic} "
                f"within {timeout:g} s"
            )
            self._fail(failed, error)

    # ------------------------------------------------------------------ liveness

    async def _heartbeat(self) -> None:
        live = self._liveness
        while True:
            # A fresh event before reading the deadline: a pong after this is never missed.
            changed = self._liveness_changed = trio.Event()
            action, at = live.due()
            now = trio.current_time()
            if now < at:
                with trio.move_on_at(at):
                    await changed.wait()
                continue
            if action is LivenessAction.PING:
                live.ping_sent(now)
                await self._send(proto.PING)
                continue
            self.abort_close = True
            assert live.ping_sent_at is not None
            logger.warning(
                "no pong for %.2f s: allowance %.2f s (the last round trip included), %.2f s of "
                "it excused",
                now - live.ping_sent_at,
                live.allowance,
                live.excused,
            )
            raise _SessionDied(
                f"no answer to a ping for {now - live.ping_sent_at:g} s",
                CloseReason(1006, "heartbeat timeout"),
                unanswered=True,
            )

    def _reader_waits(self, waiting: bool) -> None:
        if waiting:
            self._liveness.blocked(trio.current_time())
        else:
            self._liveness.unblocked(trio.current_time())
            self._liveness_changed.set()

    def _pings_so_far(self) -> int:
        return self._liveness.pings_sent

    async def _answered_after(self, pings: int) -> None:
        """Return once a ping sent after the first ``pings`` has been answered."""
        while self._liveness.pings_answered <= pings:
            await self._pong_arrived.wait()

    async def _dead_mans_switch(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # Refresh on a fixed schedule (not sleep-after-ack) so the timer never drifts late.
        next_at = trio.current_time()
        await self._call_cancel_all_after(DMS_TIMEOUT_MS, self._opts.timeout, patient=True)
        task_status.started()
        while True:
            next_at += DMS_REFRESH
            await trio.sleep_until(next_at)
            await self._call_cancel_all_after(DMS_TIMEOUT_MS, self._opts.timeout, patient=True)

    async def _call_cancel_all_after(self, timeout_ms: int, wait: float, *, patient: bool) -> None:
        frame = proto.encode_cancel_all_after(timeout_ms)
        try:
            reply = await self._request("cancelAllAfter", frame, wait, patient=patient)
        except ConnectionTimeout:
            if not patient:
                raise DeadMansSwitchError(f"no reply to cancelAllAfter within {wait:g} s") from None
            # BitMEX heard the command (it answered a later ping) and did not arm: the switch is
            # broken, not the socket.
            raise DeadMansSwitchError(
                f"cancelAllAfter was not acknowledged within {wait:g} s "
                "although BitMEX answered a later ping"
            ) from None
        if isinstance(reply, proto.ErrorReply):
            raise DeadMansSwitchError(f"cancelAllAfter refused: {reply.status} {reply.error}")

    # ------------------------------------------------------------------ commands

    async def _send(self, frame: str, *, secret: bool = False) -> None:
        try:
            await self._ws.send_message(frame)
        except trio_websocket.ConnectionClosed as exc:
            raise _SessionDied("send failed", exc.reason) from None
        if self._recorder is not None:
            self._recorder.sent(frame, secret=secret)

    async def _request(
        self, op: str, frame: str, timeout: float, *, secret: bool = False, patient: bool = False
    ) -> proto.ServerEvent:
        """Send a command and wait for the reply echoing ``op``.

        ``ConnectionTimeout`` after ``timeout``; with ``patient``, only once a ping sent after the
        command has been answered (late is not lost; a dead socket is the heartbeat's to find).
        """
        send, receive = trio.open_memory_channel[proto.ServerEvent](1)
        self._reply_waiters[op] = send
        pings = self._pings_so_far()
        try:
            await self._send(frame, secret=secret)
            with trio.move_on_after(timeout):
                return await receive.receive()
            if patient:
                await self._answered_after(pings)
                # In-order replies: had there been one, it is already here.
                with suppress(trio.WouldBlock):
                    return receive.receive_nowait()
            raise ConnectionTimeout(f"no reply to {op} within {timeout} s")
        finally:
            if self._reply_waiters.get(op) is send:
                del self._reply_waiters[op]

    async def _authenticate(self, credentials: Credentials) -> None:
        expires = expires_at(time.time(), clock_offset=self._supervisor.clock_offset)
        args = credentials.auth_args(expires)
        signature = str(args[2])
        if self._recorder is not None:
            self._recorder.signature = signature
        frame = proto.encode_auth_key_expires(str(args[0]), expires, signature)
        reply = await self._request("authKeyExpires", frame, self._opts.timeout, secret=True)
        if isinstance(reply, proto.ErrorReply):
            raise AuthenticationError(
                reply.status, reply.error, meta=reply.meta, request=reply.request
            )


async def _after_woken_tasks() -> None:
    """Return once every task woken so far (the listeners just handed changes) has had a turn.

    Trio runs, in each pass, only the tasks that were runnable when the pass began: a listener
    woken in this pass runs in the next. One yield puts the reader in that next pass too, in an
    order trio chooses at random; two put it after. So the next read (on a drained socket, a
    failed ``recv`` and an ``epoll`` registration, the costliest step of the reader's turn) waits
    for the listeners instead of running before them: p99 latency at 5,000 frames/s ~198 ->
    ~183 us (docs/performance.rst, "Latency"). Neither yield is a cancellation point: the read
    that follows is.
    """
    await trio.lowlevel.cancel_shielded_checkpoint()
    await trio.lowlevel.cancel_shielded_checkpoint()


def _request_topics(request: Any) -> list[str]:
    """The topics a subscribe/unsubscribe echoed in an error reply named (hostile-safe)."""
    args = request.get("args") if isinstance(request, dict) else None
    if isinstance(args, str):
        return [args]
    return [t for t in args if isinstance(t, str)] if isinstance(args, list) else []
