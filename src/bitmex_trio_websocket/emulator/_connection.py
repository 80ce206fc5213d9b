"""One emulated BitMEX websocket connection: its tasks, its outgoing queue, its faults.

Theory of operation: the protocol itself (which commands get which replies) is the sans-IO
``Session`` (``_session``); a connection runs the I/O around it, with three kinds of task in its
own nursery:

* the *reader* decodes client frames with ``_protocol.decode_client_frame``, answers text pings at
  once and hands every other command to a *command worker*, which runs them in order: replies can
  then be delayed (the delay-acks fault) while heartbeats are still answered at once;
* the *sender* drains the connection's bounded ``Outbox`` into the websocket, in order, writing
  whatever is queued at once as one batch of frames (see ``_transport``), and fires scripted
  faults after exactly their message count;
* in replay mode, a *replay feed* per session (``_replay_feed``).

The worker executes a session's outputs synchronously, without an ``await``: a subscribe's ack,
its partial (built from the market at that moment) and its registration with the router happen
in one go, and the market task publishes each step's deltas in one go. Trio only switches tasks
at an ``await``, so no delta can fall between a snapshot and the registration (it would be lost)
or be both in the snapshot and queued after it (duplicated).

Live data never blocks the market: frames are queued with ``put_nowait`` and a client that lets
its queue fill up is disconnected with 1008, as a real server sheds a slow consumer, rather than
growing memory without bound. Replay frames, which have no deadline, wait while the queue is
more than half full (``Outbox.put``), so replaying as fast as possible is paced by the client.

Faults act at the right layer: ``drop`` closes the transport under trio-websocket (no close
frame), ``stall`` blocks the transport's ``send_all`` (so even protocol pongs stop), ignoring
``cancelAllAfter`` swallows the command before its session sees it, the rest are frames or close
requests queued in order.

On ``/realtimemd`` the connection carries sessions ("streams", see ``_multiplex``): each is a
``Session`` of its own (own auth, subscriptions and welcome) whose frames are wrapped and queued
on this connection.

Everything the connection needs from its server goes through ``ConnectionHost``, defined here and
implemented by ``_hub.Hub``: the connection never sees the ``Emulator``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Protocol

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .._protocol import (
    PONG,
    CancelAllAfter,
    ClientCommand,
    Ping,
    Subscribe,
    Unrecognized,
    decode_client_frame,
)
from ._faults import FaultKind, ScheduledFault
from ._json import encode_table
from ._multiplex import CLOSE, MULTIPLEX_PATH, OPEN, decode_payload, parse_mux_frame, wrap_prefix
from ._replay_feed import ReplayFeed
from ._session import CloseSession, Session, Subscription, TopicClosed, TopicOpened
from ._texts import MALFORMED_FRAME, SLOW_CLIENT_CODE, SLOW_CLIENT_REASON
from ._transport import CloseRequest, FaultStream, Outbox, encode_text_frames

__all__ = ["ConnectionHost", "EmulatorConnection"]

CLOSE_TIMEOUT: Final = 5.0
COMMAND_BACKLOG: Final = 64  # commands read ahead of their (possibly delayed) replies
# One write carries at most this many frames, and stops growing past this many characters
# (about what replay_server writes at once): enough to amortise the write, small enough that
# the batch in flight, which no longer counts against the queue's bound, stays small.
BATCH_FRAMES: Final = 1024
BATCH_CHARS: Final = 64 * 1024


class ConnectionHost(Protocol):
    """Everything a connection needs from its server, and nothing more."""

    @property
    def ack_delay(self) -> float:
        """Delay of every connection's command replies (the emulator-wide delay-acks fault)."""
        ...

    @property
    def default_symbol(self) -> str: ...

    def now(self) -> float:
        """The wall clock (epoch seconds) for timestamps in replies."""
        ...

    def new_session(self, path: str, account: int | None, api_key: str | None) -> Session: ...

    def new_replay_feed(
        self, send: Callable[[str], None], send_paced: Callable[[str], Awaitable[None]]
    ) -> ReplayFeed | None:
        """A replay feed for one session, or ``None`` when the market is synthetic."""
        ...

    def open_topic(self, sub: Subscription, connection: int, after_messages: int) -> list[str]:
        """The frames a new subscription gets at once (its partial, maybe early deltas)."""
        ...

    def partial_frame(self, sub: Subscription) -> str: ...

    def unknown_row(self, table: str, symbol: str) -> dict[str, Any]: ...

    def route(self, sub: Subscription, deliver: Callable[[str], None]) -> None: ...

    def unroute(self, sub: Subscription) -> None: ...

    def set_dead_mans_switch(self, account: int, timeout_ms: int) -> None: ...

    def log_fault(
        self, kind: FaultKind, connection: int | None, after_messages: int, detail: str = ""
    ) -> None: ...

    def arm_next(self, kind: FaultKind) -> None:
        """Arm a handshake, authentication or subscription fault for the next one."""
        ...


@dataclass(frozen=True, slots=True)
class _Action:
    """Work for the command worker: a command's execution, or a stream open/close."""

    received_at: float
    delayed: bool  # replies to commands are delayed by the delay-acks fault
    run: Callable[[], None]


class _Endpoint:
    """A session and the way its frames reach the socket: as they are, or wrapped for a
    ``/realtimemd`` stream (``prefix``, then the frame, then ``]``)."""

    __slots__ = ("feed", "prefix", "send", "send_paced", "session")

    def __init__(
        self,
        session: Session,
        queue: Callable[[str], None],
        queue_paced: Callable[[str], Awaitable[None]],
        prefix: str = "",
    ) -> None:
        self.session = session
        self.prefix = prefix
        self.feed: ReplayFeed | None = None
        self.send: Callable[[str], None] = queue
        self.send_paced: Callable[[str], Awaitable[None]] = queue_paced
        if prefix:

            def send(frame: str) -> None:
                if not session.closed:
                    payload = '"pong"' if frame == PONG else frame
                    queue(f"{prefix}{payload}]")

            async def send_paced(frame: str) -> None:
                await queue_paced(f"{prefix}{frame}]")

            self.send, self.send_paced = send, send_paced


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
        host: ConnectionHost,
        index: int,
        stream: FaultStream,
        *,
        path: str,
        account: int | None,
        api_key: str | None,
        max_queued_frames: int,
        script: Sequence[ScheduledFault] = (),
    ) -> None:
        self.index = index
        self.path = path
        self.messages_sent = 0
        self.close_reason: tuple[int, str] | None = None
        self.finished = trio.Event()
        self._host = host
        self._stream = stream
        self._outbox = Outbox(max_queued_frames)
        self._script: deque[ScheduledFault] = deque(
            sorted(script, key=lambda fault: fault.after_messages)
        )
        self._plan: Iterator[ScheduledFault] | None = None
        self._upcoming: ScheduledFault | None = None
        self._ack_delay = 0.0
        self._ignore_cancel_all_after = False
        self._nursery: trio.Nursery | None = None
        self._welcome: Callable[[], str] = lambda: ""
        session = host.new_session(path, account, api_key)
        self._main = _Endpoint(session, self._queue, self._outbox.put)
        self._streams: dict[str, _Endpoint] = {}  # /realtimemd sessions by stream id

    def __repr__(self) -> str:
        return f"<EmulatorConnection #{self.index} {self.path} account={self.account}>"

    # ------------------------------------------------------------------ public view and faults

    @property
    def account(self) -> int | None:
        """The account this connection is authenticated as (``None`` if it is not)."""
        return self._main.session.account

    @property
    def api_key(self) -> str | None:
        return self._main.session.api_key

    @property
    def topics(self) -> tuple[str, ...]:
        """Subscribed topics, in subscription order."""
        return self._main.session.topics

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

    def close_nowait(self, code: int = 1000, reason: str = "Bye") -> None:
        """``close`` without waiting for the connection to end."""
        self._log(FaultKind.GOING_AWAY if code == 1001 else FaultKind.CLOSE, f"{code} {reason}")
        self._outbox.put_nowait(CloseRequest(code, reason), force=True)

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
        symbol = symbol or self._host.default_symbol
        self._log(FaultKind.UNKNOWN_ID_UPDATE, f"{table}:{symbol}")
        self._queue(encode_table(table, "update", [self._host.unknown_row(table, symbol)]))

    def send_partials(self, topic: str | None = None) -> None:
        """Send a fresh partial of ``topic`` (default: of every subscribed topic), as BitMEX
        does when it resets a slice; clients must replace, not merge. Synthetic market only."""
        for sub in self._main.session.subscriptions:
            if topic is None or sub.topic == topic:
                self._queue(self._host.partial_frame(sub))

    def delay_acks(self, seconds: float) -> None:
        """Delay every later command reply of this connection by ``seconds`` (0 to stop)."""
        if seconds > 0:
            self._log(FaultKind.DELAY_ACKS, f"{seconds}s")
        self._ack_delay = max(0.0, seconds)

    def ignore_cancel_all_after(self, ignore: bool = True) -> None:
        """From now on (until called with ``False``), swallow every ``cancelAllAfter`` this
        connection receives: no reply at all, and the dead man's switch is not (re)armed or
        disarmed. Each command swallowed is logged as ``IGNORE_CANCEL_ALL_AFTER``."""
        self._ignore_cancel_all_after = ignore

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
        """Serve the accepted websocket ``ws`` until either side closes it (called by the
        server). ``welcome`` makes the welcome frame; ``subscribe`` are the URL's topics."""
        self._welcome = welcome
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._sender, ws)
                if self.path != MULTIPLEX_PATH:  # there, each stream gets its own welcome
                    self._start_feed(self._main)
                    self._queue(welcome())
                    if subscribe:
                        # URL subscriptions are answered exactly like a subscribe command.
                        request = {"op": "subscribe", "args": subscribe}
                        self._execute(self._main, Subscribe(tuple(subscribe), request))
                await self._reader(ws)
                nursery.cancel_scope.cancel()
        finally:
            self._outbox.close()
            self._teardown()
            self.finished.set()

    def _teardown(self) -> None:
        """End every session of this connection; nothing more is sent."""
        self._end(self._main)
        for endpoint in self._streams.values():
            self._end(endpoint)
        self._streams.clear()

    def _end(self, endpoint: _Endpoint) -> None:
        for sub in endpoint.session.close():
            self._host.unroute(sub)
        if endpoint.feed is not None:
            endpoint.feed.stop()

    def _start_feed(self, endpoint: _Endpoint) -> None:
        feed = self._host.new_replay_feed(endpoint.send, endpoint.send_paced)
        if feed is not None:
            assert self._nursery is not None
            endpoint.feed = feed
            self._nursery.start_soon(feed.run)

    async def _reader(self, ws: WebSocketConnection) -> None:
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
                    target = self._main
                elif frame.kind == OPEN:
                    opener = partial(self._open_stream, frame.stream_id, frame.name)
                    await send_action.send(_Action(now, False, opener))
                    continue
                elif frame.kind == CLOSE:
                    closer = partial(self._close_stream, frame.stream_id)
                    await send_action.send(_Action(now, False, closer))
                    continue
                else:
                    stream = self._streams.get(frame.stream_id)
                    if stream is None:  # a message for a stream that is not open: ignored
                        continue
                    command, target = decode_payload(frame.payload), stream
                if isinstance(command, Ping):
                    target.send(PONG)  # never delayed: heartbeats are not commands
                else:
                    await send_action.send(
                        _Action(now, True, partial(self._execute, target, command))
                    )

    async def _command_worker(self, actions: trio.MemoryReceiveChannel[_Action]) -> None:
        async with actions:
            async for action in actions:
                delay = max(self._ack_delay, self._host.ack_delay)
                if action.delayed and delay > 0:
                    await trio.sleep_until(action.received_at + delay)
                action.run()

    def _open_stream(self, stream_id: str, name: str) -> None:
        if stream_id in self._streams:
            return
        session = self._host.new_session("/realtime", None, None)
        endpoint = _Endpoint(session, self._queue, self._outbox.put, wrap_prefix(stream_id, name))
        self._streams[stream_id] = endpoint
        self._start_feed(endpoint)
        endpoint.send(self._welcome())

    def _close_stream(self, stream_id: str) -> None:
        endpoint = self._streams.pop(stream_id, None)
        if endpoint is not None:
            self._end(endpoint)

    def _close_stream_of(self, endpoint: _Endpoint) -> None:
        for stream_id, candidate in list(self._streams.items()):
            if candidate is endpoint:
                self._close_stream(stream_id)

    def _execute(self, endpoint: _Endpoint, command: ClientCommand) -> None:
        """Run one command of ``endpoint``'s session and carry out what it asks, at once."""
        session = endpoint.session
        if session.closed:  # a stream closed (or a connection shed) while the command waited
            return
        if self._ignore_cancel_all_after and isinstance(command, CancelAllAfter):
            self._log(FaultKind.IGNORE_CANCEL_ALL_AFTER, f"cancelAllAfter {command.timeout_ms}")
            return
        for output in session.handle(command, self._host.now()):
            if isinstance(output, str):
                endpoint.send(output)
            elif isinstance(output, TopicOpened):
                self._open_topic(endpoint, output.subscription)
            elif isinstance(output, TopicClosed):
                self._host.unroute(output.subscription)
            elif isinstance(output, CloseSession):
                if endpoint is self._main:
                    self._teardown()
                    self._outbox.put_nowait(CloseRequest(output.code, output.reason), force=True)
                else:  # one stream of /realtimemd: only that stream ends
                    self._close_stream_of(endpoint)
                return
            else:
                self._host.set_dead_mans_switch(output.account, output.timeout_ms)

    def _open_topic(self, endpoint: _Endpoint, sub: Subscription) -> None:
        if endpoint.feed is not None:
            endpoint.feed.start(sub)
            return
        # Synchronous from here on: snapshot, partial and registration are one atomic step.
        for frame in self._host.open_topic(sub, self.index, self.messages_sent):
            endpoint.send(frame)
        self._host.route(sub, endpoint.send)

    # ------------------------------------------------------------------ sending and faults

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
        elif kind is FaultKind.IGNORE_CANCEL_ALL_AFTER:
            self.ignore_cancel_all_after()
        else:  # a handshake, authentication or subscription fault: armed for the next one
            self._host.arm_next(kind)
        return False

    def _log(self, kind: FaultKind, detail: str = "") -> None:
        self._host.log_fault(kind, self.index, self.messages_sent, detail)

    def _queue(self, frame: str) -> None:
        if not self._outbox.put_nowait(frame):
            self._overflow()

    def _overflow(self) -> None:
        # Shed the slow consumer: forget its subscriptions (no more fan-out work), drop what is
        # queued, and close. If even the close frame cannot be written, _close_ws hangs up.
        self._teardown()
        self._outbox.close(CloseRequest(SLOW_CLIENT_CODE, SLOW_CLIENT_REASON))
