"""The supervisor: opens sockets and runs sessions one after another (the reconnect loop).

Theory of operation. ``Supervisor.run`` is the connection's one long-lived task. It opens a socket
(``open_socket``: TCP, TLS or the user's stream, the upgrade, BitMEX's welcome, each within
``timeout``), runs a ``Session`` on it until the socket dies, then backs off and starts again.
With ``reconnect=False``, or once the user has left, it fails every listener, present and future,
with ``ConnectionClosed`` instead. Which failures are retried, and how long to wait, is
``_retry``'s policy; a session's own end is ``_SessionDied`` (always retried once the first
session is up). The supervisor owns what outlives a socket (options, store, counters, routes,
subscription state, the clock offset learned from the welcome): sessions reach it as their
``SessionHost``.

A replay server (``replay_server``: tardis-machine's ``/ws-replay``) is never reconnected to: every
connection replays its window from the start, so a reconnect would deliver every row again. Its
close 1000 (``WS replay finished``) is the end of the data: every listener ends normally
(``finish``). A 1011 close is ``ReplayRefused`` (no subscription in its 2 s window, or a table it
cannot replay), anything else ``ReplayInterrupted``: raised in every listener and by the block.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from urllib.parse import urlsplit

import trio
import trio_websocket
from trio_websocket import CloseReason

from . import _protocol as proto
from ._auth import Credentials
from ._events import Disconnected, Reconnected
from ._exceptions import (
    AuthenticationError,
    ConnectionClosed,
    ConnectionTimeout,
    ExchangeClosedError,
    RemoteProtocolError,
    ReplayInterrupted,
    ReplayRefused,
)
from ._networks import CLOSED_NOTICE, is_closed_exchange
from ._retry import backoff_delay, collapse, retry_after_seconds, should_retry, stops
from ._routing import ConnectionStats, Router
from ._session import (
    CANCELLED_CLOSE_GRACE,
    ClientOptions,
    FrameRecorder,
    Session,
    _SessionDied,
)
from ._storage import Storage
from ._subscriptions import Subscriptions
from ._tls import open_tls_stream
from ._websocket import ClientWebSocket, connect_websocket

__all__ = ["Supervisor", "open_socket"]

logger = logging.getLogger("bitmex_trio_websocket")


async def open_socket(
    url: str, opts: ClientOptions, recorder: FrameRecorder | None
) -> tuple[ClientWebSocket, proto.Welcome | None]:
    """Connect, upgrade and wait for BitMEX's welcome, each within ``opts.timeout`` (a replay
    server sends no welcome: ``None``)."""
    parts = urlsplit(url)
    resource = (parts.path or "/realtime") + (f"?{parts.query}" if parts.query else "")
    with trio.move_on_after(opts.timeout) as scope:
        stream = await _open_stream(url, opts)
        try:
            ws = await connect_websocket(
                stream, parts.netloc, resource, max_message_size=opts.max_message_size
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    if scope.cancelled_caught:
        raise ConnectionTimeout(f"could not connect within {opts.timeout} s")
    if opts.replay_server:
        return ws, None
    try:
        with trio.move_on_after(opts.timeout):
            frame = await ws.get_message()
            if recorder is not None:
                recorder.received(frame)
            welcome = proto.decode_server_frame(frame)
            if not isinstance(welcome, proto.Welcome):
                raise RemoteProtocolError("expected the welcome message first", frame)
            return ws, welcome
        raise ConnectionTimeout(f"no welcome message within {opts.timeout} s")
    except BaseException:
        # A peer that never sent the welcome will not answer a close frame either.
        with trio.CancelScope(shield=True), trio.move_on_after(CANCELLED_CLOSE_GRACE):
            await ws.aclose()
        raise


async def _open_stream(url: str, opts: ClientOptions) -> trio.abc.Stream:
    if opts.connect is not None:
        return await opts.connect()
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "ws":
        return await trio.open_tcp_stream(host, parts.port or 80)
    return await open_tls_stream(host, parts.port or 443, opts.ssl_context)


class Supervisor:
    """Runs sessions one after another: the reconnect loop (see the module docstring)."""

    def __init__(
        self,
        url: str,
        credentials: Credentials | None,
        opts: ClientOptions,
        storage: Storage,
        stats: ConnectionStats,
        router: Router,
        subscriptions: Subscriptions,
    ) -> None:
        self.url = url
        self.credentials = credentials
        self.opts = opts
        self.storage = storage
        self.stats = stats
        self.router = router
        self.subscriptions = subscriptions
        self.recorder = None if opts.frame_hook is None else FrameRecorder(opts.frame_hook)
        self.clock_offset = 0.0  # server clock - ours, from the welcome (auth expiry)
        self.session: Session | None = None
        self.closed: BaseException | None = None  # what listeners raise, once closed for good
        self.finished = False  # a replay server's data ended: new listeners end at once
        self._ended = trio.Event()  # finished or closed for good
        self._closing = False
        self._random = random.Random()

    def check_listener(self, table: str, symbol: str | None) -> None:
        if table in proto.PRIVATE_TABLES and self.credentials is None:
            raise ValueError(f"{table!r} is a private table: pass api_key and api_secret")

    def demand_changed(self) -> None:
        # Between sessions nobody is told: a new session plans from the whole demand.
        if self.session is not None:
            self.session.demand_changed()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect (reporting started after the first session is up), then reconnect."""
        stats = self.stats
        attempt = auth_failures = 0
        started = False
        while True:
            retry_after = 0.0
            close: CloseReason | None = None
            try:
                ws, welcome = await open_socket(self.url, self.opts, self.recorder)
                if welcome is not None:
                    self._learn_clock_offset(welcome)
                session = self.session = Session(ws, self)
                try:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(session.run)
                        stats.connected = True
                        stats.connects += 1
                        if started:
                            stats.reconnects += 1
                            await self.router.broadcast(Reconnected(attempt))
                        else:
                            started = True
                            task_status.started()
                        attempt = auth_failures = 0
                finally:
                    stats.connected = False
                    self.session = None
                    grace = 0 if session.abort_close else self.opts.timeout
                    with trio.CancelScope(shield=True), trio.move_on_after(grace):
                        await ws.aclose()
            except BaseException as exc:
                error = collapse(exc)
                if stops(error):
                    raise error from error.__cause__  # being shut down: the rest is moot
                if self.opts.replay_server and started and not self._closing:
                    self._end_replay(error)  # never a reconnect: it would replay the window again
                    return
                if isinstance(error, _SessionDied):
                    if error.unanswered and not started:
                        raise ConnectionTimeout(f"BitMEX stopped answering: {error}") from None
                    close, retry_after = error.close, error.retry_after
                elif not should_retry(error, started=started, auth_failures=auth_failures):
                    if self._reached_closed_exchange(error, started=started):
                        raise ExchangeClosedError(f"{CLOSED_NOTICE} ({error})") from error
                    raise error from error.__cause__
                else:
                    auth_failures += isinstance(error, AuthenticationError)
                    retry_after = retry_after_seconds(error)
                    close = CloseReason(1006, str(error))
            if self._closing or not self.opts.reconnect:
                self.shutdown(ConnectionClosed(close))
                return
            await self.router.broadcast(
                Disconnected(close.code if close else 1006, close.reason if close else None)
            )
            delay = backoff_delay(
                attempt, retry_after, self.opts.backoff_initial, self.opts.backoff_max, self._random
            )
            attempt += 1
            logger.warning("connection lost (%s); reconnecting in %.2f s", close, delay)
            await trio.sleep(delay)

    def _end_replay(self, error: BaseException) -> None:
        """A replay server's connection ended: the end of its data, or a typed error."""
        close = error.close if isinstance(error, _SessionDied) else None
        if close is not None and close.code == 1000:
            self.finish()  # "WS replay finished": every listener ends normally
            return
        if close is not None and close.code == 1011:
            failure: ConnectionClosed = ReplayRefused(close, _refusal(close.reason or ""))
        else:
            if close is None:
                close = CloseReason(1006, str(error) or type(error).__name__)
            failure = ReplayInterrupted(close, self.stats.messages)
        self.shutdown(failure)
        raise failure

    def _reached_closed_exchange(self, error: BaseException, *, started: bool) -> bool:
        # Only our own attempt to reach BitMEX's hosts: a user's ``connect`` goes elsewhere.
        return (
            not started
            and self.opts.connect is None
            and is_closed_exchange(self.url)
            and isinstance(
                error, OSError | ConnectionTimeout | trio_websocket.HandshakeError | ssl.SSLError
            )
        )

    def _learn_clock_offset(self, welcome: proto.Welcome) -> None:
        if welcome.timestamp is not None:
            try:
                server_now = Storage.parse_timestamp(welcome.timestamp).timestamp()
            except ValueError:
                return
            self.clock_offset = server_now - time.time()

    def shutdown(self, error: BaseException) -> None:
        """Closed for good: every listener, present and future, raises ``error``."""
        self.closed = error
        self.router.fail_all(error)
        self.subscriptions.discard_demand()
        self._ended.set()

    def finish(self) -> None:
        """A replay server's data ended: every listener ends normally, new ones at once."""
        self.finished = True
        self.router.finish_all()
        self.subscriptions.discard_demand()
        self._ended.set()

    async def wait_finished(self) -> None:
        """Return once a replay server's data ended; raise what closed the connection first."""
        await self._ended.wait()
        if not self.finished and self.closed is not None:
            raise self.closed

    async def close(self, *, graceful: bool) -> None:
        """The user's exit: no reconnect after this; disarm and close the current socket."""
        self._closing = True
        if self.session is not None:
            await self.session.close(graceful=graceful)


def _refusal(reason: str) -> str:
    """Why tardis-machine closed with 1011, and what to do about it."""
    if reason.startswith("Error: No subscriptions received"):
        return (
            "the replay server received no subscription in the first 2 s of the connection "
            "(tardis-machine starts the replay then): start the listeners, or pass topics=..., "
            f"as soon as the connection is open ({reason})"
        )
    if "filters[].channel" in reason:
        return (
            "the replay server cannot replay a table asked for: private tables (order, position, "
            f"...) and unknown names have no public history ({reason})"
        )
    return f"the replay server refused the replay: {reason}"
