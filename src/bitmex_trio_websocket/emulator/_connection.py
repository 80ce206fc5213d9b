"""One emulated BitMEX websocket connection: commands in, frames out, faults on demand.

Theory of operation: every accepted connection runs three tasks in its own nursery:

* the *reader* decodes client frames with ``_protocol.decode_client_frame`` and answers them;
* the *sender* drains the connection's bounded ``Outbox`` into the websocket, in order, writing
  whatever is queued at once as one batch of frames (see ``_transport``);
* in replay mode, the *replay feeder* merges the recorded frames of the subscribed topics.

Everything that must be atomic with respect to the market happens synchronously, without an
``await``: a subscribe takes the market snapshot, registers the subscription with the router and
queues the ack and the partial in one go, and the market task publishes each step's deltas in one
go. Trio only switches tasks at an ``await``, so no delta can fall between a snapshot and the
registration (it would be lost) or be both in the snapshot and queued after it (duplicated).

Live data never blocks the market: frames are queued with ``put_nowait`` and a client that lets its
queue fill up is disconnected with 1008, as a real server sheds a slow consumer, rather than
growing memory without bound. Replay frames, which have no deadline, are queued with a blocking
``put`` that waits while the queue is more than half full, so replaying as fast as possible is
paced by the client instead of overflowing it.

Commands are read by the reader and executed, in order, by a command worker: replies can then be
delayed (the delay-acks fault) while heartbeats are still answered at once.

Faults act at the right layer: ``drop`` closes the transport under trio-websocket (no close frame),
``stall`` blocks the transport's ``send_all`` (so even protocol pongs stop), the rest are frames or
close requests queued in order.

On ``/realtimemd`` the connection carries sessions ("streams", see ``_multiplex``): each is an
``EmulatorConnection`` without tasks of its own, with its own auth and subscriptions, whose frames
are wrapped and forwarded to the parent's queue.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .._protocol import (
    PONG,
    PRIVATE_TABLES,
    PUBLIC_TABLES,
    SYMBOL_TABLES,
    AuthKeyExpires,
    CancelAllAfter,
    ClientCommand,
    Help,
    Ping,
    Subscribe,
    Unrecognized,
    Unsubscribe,
    decode_client_frame,
    encode_auth_ack,
    encode_cancel_all_after_ack,
    encode_error,
    encode_help,
    encode_subscribe_ack,
    encode_table,
    encode_unsubscribe_ack,
    parse_topic,
)
from ._faults import FaultKind, ScheduledFault
from ._multiplex import CLOSE, MULTIPLEX_PATH, OPEN, decode_payload, parse_mux_frame, wrap_prefix
from ._replay import RecordedFrame
from ._texts import (
    ACCOUNT_LOCKED,
    ACCOUNT_LOCKED_META,
    ALREADY_AUTHENTICATED,
    BAD_SYMBOL,
    DMS_UNAUTHENTICATED,
    DOCS_SUFFIX,
    FALLBACK_KEYS,
    MALFORMED_FRAME,
    PLATFORM_TABLES,
    SLOW_CLIENT_CODE,
    SLOW_CLIENT_REASON,
    UNRECOGNIZED,
)
from ._transport import CloseRequest, FaultStream, Outbox, encode_text_frames

if TYPE_CHECKING:
    from ._server import Emulator

__all__ = ["EmulatorConnection", "Subscription"]

CLOSE_TIMEOUT: Final = 5.0
COMMAND_BACKLOG: Final = 64  # commands read ahead of their (possibly delayed) replies
# One write carries at most this many frames, and stops growing past this many characters
# (about what replay_server writes at once): enough to amortise the write, small enough that
# the batch in flight, which no longer counts against the queue's bound, stays small.
BATCH_FRAMES: Final = 1024
BATCH_CHARS: Final = 64 * 1024


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


@dataclass(frozen=True, slots=True)
class _Action:
    """Work for the command worker: a command's dispatch, or a stream open/close."""

    received_at: float
    delayed: bool  # replies to commands are delayed by the delay-acks fault
    run: Callable[[], None]


@dataclass(eq=False, slots=True)
class Subscription:
    """One active topic of one connection (identity-hashed: the router keys sets by it)."""

    connection: EmulatorConnection
    topic: str
    table: str
    symbol: str | None
    account: int | None
    active: bool = True

    def route_key(self) -> tuple[str, str | None, int | None]:
        return (self.table, self.symbol, self.account)


@dataclass(slots=True)
class _ReplayState:
    heap: list[tuple[int, int, RecordedFrame, Iterator[RecordedFrame], Subscription]] = field(
        default_factory=list
    )
    wakeup: trio.Event = field(default_factory=trio.Event)
    sequence: int = 0
    origin: tuple[float, float] | None = None  # (trio time, recorded t) of the first frame


class EmulatorConnection:
    """A live emulated connection, as seen from the server (``Emulator.connections``).

    ``index`` counts accepted connections from 0; ``path`` is the endpoint; ``account`` and
    ``api_key`` are set once authenticated; ``messages_sent`` counts frames written;
    ``close_reason`` is ``(code, reason)`` once the server closed it with a close frame;
    ``finished`` is set when it has ended. Fault methods act on this connection only; see the
    emulator for next-connection faults.
    """

    def __init__(
        self,
        emulator: Emulator,
        index: int,
        stream: FaultStream,
        *,
        path: str,
        account: int | None,
        api_key: str | None,
        max_queued_frames: int,
        script: Sequence[ScheduledFault] = (),
    ) -> None:
        self.emulator = emulator
        self.index = index
        self.path = path
        self.account = account
        self.api_key = api_key
        self.messages_sent = 0
        self.close_reason: tuple[int, str] | None = None
        self._stream = stream
        self._outbox = Outbox(max_queued_frames)
        self._subs: dict[tuple[str, str | None], Subscription] = {}
        self._script: deque[ScheduledFault] = deque(
            sorted(script, key=lambda fault: fault.after_messages)
        )
        self._plan: Iterator[ScheduledFault] | None = None
        self._upcoming: ScheduledFault | None = None
        self._ack_delay = 0.0
        self._replay: _ReplayState | None = None
        self._nursery: trio.Nursery | None = None
        self._welcome: Callable[[], str] = lambda: ""
        # /realtimemd: sessions by stream id; a session forwards its frames to its parent.
        self._substreams: dict[str, EmulatorConnection] = {}
        self._parent: EmulatorConnection | None = None
        self._prefix = ""
        self._closed = False
        self._replay_scope: trio.CancelScope | None = None
        self.finished = trio.Event()

    def __repr__(self) -> str:
        return f"<EmulatorConnection #{self.index} {self.path} account={self.account}>"

    # ------------------------------------------------------------------ public view and faults

    @property
    def topics(self) -> tuple[str, ...]:
        """Subscribed topics, in subscription order."""
        return tuple(sub.topic for sub in self._subs.values())

    @property
    def queued(self) -> int:
        """Frames waiting to be sent."""
        return len(self._outbox)

    @property
    def stalled(self) -> bool:
        return self._stream.stalled

    async def drop(self) -> None:
        """Close the transport abruptly: no close frame; the client sees an abnormal closure."""
        self._log(FaultKind.DROP)
        await self._stream.aclose()
        await self.finished.wait()

    async def close(self, code: int = 1000, reason: str = "Bye") -> None:
        """Close with a websocket close frame after the frames already queued."""
        self._log(FaultKind.GOING_AWAY if code == 1001 else FaultKind.CLOSE, f"{code} {reason}")
        self._outbox.put_nowait(CloseRequest(code, reason), force=True)
        await self.finished.wait()

    def stall(self) -> None:
        """Stop sending anything (pongs included) while keeping the socket open."""
        if not self._stream.stalled:
            self._log(FaultKind.STALL)
        self._stream.stall()

    def unstall(self) -> None:
        self._stream.unstall()

    def send_raw(self, text: str) -> None:
        """Queue an arbitrary text frame (after what is already queued)."""
        self._queue(text)

    def send_malformed_frame(self, text: str = MALFORMED_FRAME) -> None:
        """Queue a text frame that is not valid JSON."""
        self._log(FaultKind.MALFORMED_FRAME)
        self._queue(text)

    def send_unknown_id_update(self, table: str = "orderBookL2", symbol: str | None = None) -> None:
        """Queue an ``update`` for a row the client cannot know (an unused order-book id)."""
        symbol = symbol or self.emulator.default_symbol
        self._log(FaultKind.UNKNOWN_ID_UPDATE, f"{table}:{symbol}")
        self._queue(encode_table(table, "update", [self.emulator.unknown_row(table, symbol)]))

    def send_partials(self, topic: str | None = None) -> None:
        """Send a fresh partial of ``topic`` (default: of every subscribed topic), as BitMEX
        does when it resets a slice; clients must replace, not merge. Synthetic market only."""
        for sub in list(self._subs.values()):
            if topic is None or sub.topic == topic:
                self._queue(self.emulator.partial_frame(sub.table, sub.symbol, sub.account))

    def delay_acks(self, seconds: float) -> None:
        """Delay every later command reply of this connection by ``seconds`` (0 to stop)."""
        if seconds > 0:
            self._log(FaultKind.DELAY_ACKS, f"{seconds}s")
        self._ack_delay = max(0.0, seconds)

    def schedule(self, fault: ScheduledFault) -> None:
        """Fire ``fault`` once this connection has sent ``fault.after_messages`` messages."""
        self._script.append(fault)
        self._script = deque(sorted(self._script, key=lambda f: f.after_messages))

    def follow_plan(self, plan: Iterator[ScheduledFault] | None) -> None:
        """Fire faults from a plan (ordered by ``after_messages``) as messages go out;
        ``None`` ends the current plan."""
        self._plan = plan
        self._upcoming = None if plan is None else next(plan, None)

    # ------------------------------------------------------------------ running

    async def run(
        self, ws: WebSocketConnection, welcome: Callable[[], str], subscribe: list[str]
    ) -> None:
        self._welcome = welcome
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._sender, ws)
                if self.path != MULTIPLEX_PATH:  # there, each stream gets its own welcome
                    self._start_replay_feeder()
                    self._queue(welcome())
                if subscribe and self.path != MULTIPLEX_PATH:
                    # URL subscriptions are answered exactly like a subscribe command.
                    self._dispatch(
                        Subscribe(tuple(subscribe), {"op": "subscribe", "args": subscribe})
                    )
                await self._reader(ws)
                nursery.cancel_scope.cancel()
        finally:
            self._outbox.close()
            self._teardown()
            self.emulator.forget(self)
            self.finished.set()

    def _teardown(self) -> None:
        """Forget every subscription (and stream) of this session; nothing more is sent."""
        self._closed = True
        for sub in self._subs.values():
            sub.active = False
            self.emulator.router.remove(sub)
        self._subs.clear()
        if self._replay_scope is not None:
            self._replay_scope.cancel()
        for child in self._substreams.values():
            child._teardown()
        self._substreams.clear()

    def _start_replay_feeder(self) -> None:
        if self.emulator.recording is None:
            return
        nursery = self._root()._nursery
        assert nursery is not None
        self._replay = _ReplayState()
        self._replay_scope = trio.CancelScope()
        nursery.start_soon(self._replay_feeder, self._replay_scope)

    def _root(self) -> EmulatorConnection:
        return self if self._parent is None else self._parent

    async def _reader(self, ws: WebSocketConnection) -> None:
        # Commands go through a worker so that a delayed reply (the delay-acks fault) does not
        # hold up reading: text pings keep being answered at once, in order with the data.
        send_action, receive_actions = trio.open_memory_channel[_Action](COMMAND_BACKLOG)
        async with trio.open_nursery() as nursery, send_action:
            nursery.start_soon(self._command_worker, receive_actions)
            while True:
                try:
                    message = await ws.get_message()
                except ConnectionClosed:
                    nursery.cancel_scope.cancel()
                    return
                now = trio.current_time()
                frame = parse_mux_frame(message) if self.path == MULTIPLEX_PATH else None
                if frame is None:
                    command = decode_client_frame(message)
                    if self.path == MULTIPLEX_PATH and not isinstance(command, Ping):
                        command = Unrecognized({}, "not a multiplex frame")
                    target = self
                elif frame.kind == OPEN:
                    opener = self._opener(frame.stream_id, frame.name)
                    await send_action.send(_Action(now, False, opener))
                    continue
                elif frame.kind == CLOSE:
                    closer = self._closer(frame.stream_id)
                    await send_action.send(_Action(now, False, closer))
                    continue
                else:
                    child = self._substreams.get(frame.stream_id)
                    if child is None:  # a message for a stream that is not open: ignored
                        continue
                    command, target = decode_payload(frame.payload), child
                if isinstance(command, Ping):
                    target._queue(PONG)  # never delayed: heartbeats are not commands
                else:
                    await send_action.send(_Action(now, True, target._dispatcher(command)))

    def _dispatcher(self, command: ClientCommand) -> Callable[[], None]:
        return lambda: self._dispatch(command)

    def _opener(self, stream_id: str, name: str) -> Callable[[], None]:
        def open_stream() -> None:
            if stream_id in self._substreams:
                return
            child = EmulatorConnection(
                self.emulator,
                self.index,
                self._stream,
                path="/realtime",
                account=None,
                api_key=None,
                max_queued_frames=1,
            )
            child._parent, child._prefix = self, wrap_prefix(stream_id, name)
            self._substreams[stream_id] = child
            child._start_replay_feeder()
            child._queue(self._welcome())

        return open_stream

    def _closer(self, stream_id: str) -> Callable[[], None]:
        def close_stream() -> None:
            child = self._substreams.pop(stream_id, None)
            if child is not None:
                child._teardown()

        return close_stream

    async def _command_worker(self, actions: trio.MemoryReceiveChannel[_Action]) -> None:
        async with actions:
            async for action in actions:
                delay = max(self._ack_delay, self.emulator.ack_delay)
                if action.delayed and delay > 0:
                    await trio.sleep_until(action.received_at + delay)
                action.run()

    async def _sender(self, ws: WebSocketConnection) -> None:
        # Everything queued goes out in one write (see _transport): one syscall and a few task
        # switches per batch instead of per frame. A batch never runs past the next scripted
        # fault, so faults still fire after exactly their message count.
        while True:
            try:
                await self._outbox.wait()
            except trio.EndOfChannel:
                return
            # The limit is read after waking: a fault scheduled while we waited counts.
            batch = self._outbox.take(self._batch_limit(), BATCH_CHARS)
            if isinstance(batch, CloseRequest):
                await self._close_ws(ws, batch.code, batch.reason)
                return
            if ws.closed is not None:  # the close handshake began: send_message would refuse
                return
            try:
                await self._stream.send_all(encode_text_frames(batch))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # Hang up so that trio-websocket's reader, hence ours, ends too (1006), as it
                # did when its own send failed.
                await trio.aclose_forcefully(self._stream)
                return
            self.messages_sent += len(batch)
            while (fault := self._take_due()) is not None:
                if await self._fire(ws, fault):
                    return

    def _batch_limit(self) -> int:
        """How many frames the next write may carry: up to the next scripted fault."""
        limit = BATCH_FRAMES
        for fault in (self._script[0] if self._script else None, self._upcoming):
            if fault is not None:
                limit = min(limit, max(1, fault.after_messages - self.messages_sent))
        return limit

    async def _close_ws(self, ws: WebSocketConnection, code: int, reason: str) -> None:
        self.close_reason = (code, reason)
        with trio.move_on_after(CLOSE_TIMEOUT) as scope:
            await ws.aclose(code, reason)
        if scope.cancelled_caught:  # the client never answered (or we are stalled): hang up
            await self._stream.aclose()

    def _take_due(self) -> ScheduledFault | None:
        if self._script and self._script[0].after_messages <= self.messages_sent:
            return self._script.popleft()
        upcoming = self._upcoming
        if upcoming is not None and upcoming.after_messages <= self.messages_sent:
            assert self._plan is not None
            self._upcoming = next(self._plan, None)
            return upcoming
        return None

    async def _fire(self, ws: WebSocketConnection, fault: ScheduledFault) -> bool:
        """Apply a scripted fault; ``True`` when it ended the connection."""
        kind = fault.kind
        if kind is FaultKind.DROP:
            self._log(kind)
            await self._stream.aclose()
            return True
        if kind in (FaultKind.CLOSE, FaultKind.GOING_AWAY):
            code, reason = (1000, "Bye") if kind is FaultKind.CLOSE else (1001, "Going away")
            self._log(kind, f"{code} {reason}")
            await self._close_ws(ws, code, reason)
            return True
        if kind is FaultKind.STALL:
            self.stall()
        elif kind is FaultKind.MALFORMED_FRAME:
            self.send_malformed_frame()
        elif kind is FaultKind.UNKNOWN_ID_UPDATE:
            self.send_unknown_id_update()
        elif kind is FaultKind.DELAY_ACKS:
            self.delay_acks(fault.seconds)
        elif kind is FaultKind.REFUSE_HANDSHAKE:
            self.emulator.refuse_next_handshakes(1)
        elif kind is FaultKind.FAIL_AUTH:
            self.emulator.fail_next_auth(1)
        elif kind is FaultKind.DELTAS_BEFORE_PARTIAL:
            self.emulator.deltas_before_partial(1)
        return False

    def _log(self, kind: FaultKind, detail: str = "") -> None:
        self.emulator.log_fault(kind, self.index, self.messages_sent, detail)

    # ------------------------------------------------------------------ outgoing

    def _queue(self, frame: str) -> None:
        if self._parent is not None:
            if not self._closed:
                payload = '"pong"' if frame == PONG else frame
                self._parent._queue(f"{self._prefix}{payload}]")
            return
        if not self._outbox.put_nowait(frame):
            self._overflow()

    async def _queue_paced(self, frame: str) -> None:
        """Queue a replay frame, waiting while the queue is more than half full."""
        if self._parent is not None:
            await self._parent._queue_paced(f"{self._prefix}{frame}]")
        else:
            await self._outbox.put(frame)

    def deliver(self, frame: str) -> None:
        """Called by the router for every delta of a subscribed topic (never blocks)."""
        self._queue(frame)

    def _overflow(self) -> None:
        # Shed the slow consumer: forget its subscriptions (no more fan-out work), drop what is
        # queued, and close. If even the close frame cannot be written, _close_ws hangs up.
        self._teardown()
        self._outbox.close(CloseRequest(SLOW_CLIENT_CODE, SLOW_CLIENT_REASON))

    # ------------------------------------------------------------------ commands

    def _dispatch(self, command: ClientCommand) -> None:
        if self._closed:  # a stream closed (or a connection shed) while the command waited
            return
        if isinstance(command, Subscribe):
            for topic in command.topics:
                self._subscribe(topic, command.request)
        elif isinstance(command, Unsubscribe):
            for topic in command.topics:
                self._unsubscribe(topic, command.request)
        elif isinstance(command, AuthKeyExpires):
            self._authenticate(command)
        elif isinstance(command, CancelAllAfter):
            self._cancel_all_after(command)
        elif isinstance(command, Help):
            self._queue(encode_help())
        elif isinstance(command, Unrecognized):
            self._queue(encode_error(400, UNRECOGNIZED, request=command.request))
        else:  # Ping is answered by the reader before any delay
            self._queue(PONG)

    def _error(self, status: int, text: str, request: Any, meta: Any = None) -> None:
        self._queue(encode_error(status, text, meta=meta, request=request))

    def _table_allowed(self, table: str) -> bool:
        if self.path == "/realtimePlatform":
            return table in PLATFORM_TABLES
        return table not in PLATFORM_TABLES and (table in PUBLIC_TABLES or table in PRIVATE_TABLES)

    def _subscribe(self, topic: str, request: Any) -> None:
        table, symbol = parse_topic(topic)
        if not self._table_allowed(table):
            return self._error(400, f"Unknown table: {table}", request)
        if symbol is not None and table not in SYMBOL_TABLES:
            return self._error(400, f"Unknown table: {topic}", request)
        private = table in PRIVATE_TABLES
        if private and self.account is None:
            return self._error(401, ACCOUNT_LOCKED, request, ACCOUNT_LOCKED_META)
        if symbol is not None and symbol not in self.emulator.symbols:
            return self._error(400, BAD_SYMBOL.format(symbol), request)
        if (table, symbol) in self._subs:
            message = f"You are already subscribed to this topic:{topic}." + DOCS_SUFFIX
            return self._error(400, message, request)
        sub = Subscription(self, topic, table, symbol, self.account if private else None)
        self._subs[(table, symbol)] = sub
        self._queue(encode_subscribe_ack(topic, request))
        if self._replay is not None:
            self._start_replay(sub)
            return None
        # Synchronous from here on: snapshot, registration and partial are one atomic step.
        for frame in self.emulator.early_deltas(self, table, symbol, sub.account):
            self._queue(frame)
        self._queue(self.emulator.partial_frame(table, symbol, sub.account))
        self.emulator.router.add(sub)
        return None

    def _unsubscribe(self, topic: str, request: Any) -> None:
        table, symbol = parse_topic(topic)
        if table not in PUBLIC_TABLES and table not in PRIVATE_TABLES:
            return self._error(400, f"Unknown table: {table}", request)
        sub = self._subs.pop((table, symbol), None)
        if sub is not None:
            sub.active = False
            self.emulator.router.remove(sub)
        # BitMEX (reportedly) acknowledges unsubscribing from a topic that was never subscribed.
        self._queue(encode_unsubscribe_ack(topic, request))
        return None

    def _authenticate(self, command: AuthKeyExpires) -> None:
        if self.account is not None:
            return self._error(400, ALREADY_AUTHENTICATED, command.request)
        account, error = self.emulator.verify_credentials(
            command.api_key, command.expires, command.signature, check_expiry=not command.legacy
        )
        if account is None:
            return self._error(401, error or "Signature not valid.", command.request)
        self.account, self.api_key = account, command.api_key
        self._queue(encode_auth_ack(command.request))
        return None

    def _cancel_all_after(self, command: CancelAllAfter) -> None:
        if self.account is None:
            return self._error(401, DMS_UNAUTHENTICATED, command.request)
        now, cancel_time = self.emulator.arm_dead_mans_switch(self.account, command.timeout_ms)
        self._queue(encode_cancel_all_after_ack(now, cancel_time, command.request))
        return None

    # ------------------------------------------------------------------ replay

    def _start_replay(self, sub: Subscription) -> None:
        recording = self.emulator.recording
        assert recording is not None and self._replay is not None
        if not recording.has_partial(sub.table, sub.symbol):
            # Nothing recorded for this topic: an empty partial, so the client is not left waiting.
            filt: dict[str, Any] = {} if sub.account is None else {"account": sub.account}
            if sub.symbol is not None:
                filt["symbol"] = sub.symbol
            keys = recording.keys_of(sub.table) or FALLBACK_KEYS.get(sub.table, [])
            message = {"table": sub.table, "action": "partial", "keys": keys}
            self._queue(_dumps({**message, "types": {}, "filter": filt, "data": []}))
            return
        frames = recording.topic_frames(sub.table, sub.symbol)
        first = next(frames, None)
        if first is not None:
            self._replay.sequence += 1
            item = (first.index, self._replay.sequence, first, frames, sub)
            heapq.heappush(self._replay.heap, item)
            self._replay.wakeup.set()

    async def _replay_feeder(self, scope: trio.CancelScope) -> None:
        state = self._replay
        assert state is not None
        speed = self.emulator.speed
        with scope:
            while True:
                if not state.heap:
                    state.wakeup = trio.Event()
                    await state.wakeup.wait()
                    continue
                _, sequence, frame, frames, sub = heapq.heappop(state.heap)
                if not sub.active:
                    continue
                if speed > 0:
                    if state.origin is None:
                        state.origin = (trio.current_time(), frame.t)
                    start, t0 = state.origin
                    due = start + max(0.0, frame.t - t0) / speed
                    if due > trio.current_time():  # a frame already due goes at once (no yield)
                        await trio.sleep_until(due)
                if not sub.active:  # unsubscribed while we waited
                    continue
                await self._queue_paced(frame.text)
                following = next(frames, None)
                if following is not None and sub.active:
                    heapq.heappush(state.heap, (following.index, sequence, following, frames, sub))
