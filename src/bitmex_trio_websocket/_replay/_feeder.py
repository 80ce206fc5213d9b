"""The replay of files: frames from ``_sources`` through the store to the listeners, in order.

Theory of operation
-------------------
``ReplayFeeder`` is the ``Driver`` of a ``BitMEXReplay`` whose source is on disk (the live
connection's driver is the supervisor): one task, ``run``, reads frames and does what the live
session's reader does with received frames: decode, ``Storage.apply``, ``Router.offer_changes``
(awaiting only for a full listener: lossless backpressure). There is no socket and no server, so
subscriptions take effect at once: demand (``Subscriptions``, fed by listeners and by ``topics``)
becomes *active* as soon as it is planned, a topic left by its last listener is forgotten (its
slice cleared) as live, and a topic joined mid-replay starts at its next partial.

When it starts. The feeder waits until someone wants the data: the first listener's first
iteration, or ``wait_finished``. It then lets every task that is ready run once more
(``GRACE_CHECKPOINTS``) before the first frame, so listeners started together (in one nursery,
before any other await) all see the replay from its first frame, partials included. Once started
it runs to the end of the data, skipping the frames nobody wants.

Skipping before decoding. A frame whose text starts ``{"table":"NAME"`` (how BitMEX writes every
table message) is skipped unread when nobody wants ``NAME``. Frames of wanted tables are decoded;
when only some symbols of a table are wanted, other symbols' rows are cut out (a whole-table
partial becomes one partial per wanted symbol, as BitMEX sends for ``table:SYMBOL``).

The hot path. Frames come in batches (``_sources.FrameBatch``: a block of the file's lines) and
go through ``_run``, one plain loop over up to ``CHECKPOINT_EVERY`` frames (``_fastpath``,
compiled with the store where the compiled core was built): a frame of a wanted table (one
``startswith`` against every wanted table's prefix) is given to orjson as the bytes read, applied,
and its changes offered to the listeners; nothing is awaited, no object is made per frame, the
clock is read once per run and the counters are added up once per run. The loop stops at
the first frame that needs more: its changes wait for a full listener (the feeder awaits
``Router.route_rest``, then goes on), or it is anything else (not table data, not written as
BitMEX writes it, malformed, a partial cut to some symbols), which ``_general`` handles one frame
at a time, as every frame was handled before. Demand is re-planned only between runs: listeners
come and go only while the feeder awaits. Every counter in ``stats`` is as of the last frame
read whenever another task can look at it.

Pacing. ``speed=None``: as fast as the listeners take rows, with a checkpoint every
``CHECKPOINT_EVERY`` frames so other tasks (and cancellation) are never starved. ``speed=X``:
frame ``i`` is handed on at ``start + (t_i - t_0) / X`` of trio's clock (``t`` the recorded
receive time), so under ``trio.testing.MockClock(autojump_threshold=0)`` the replay runs in data
time. Files are read on trio's thread on purpose: a worker thread would let the mock clock jump
while the feeder waits for it.

The end, and bad data. At the end of the data every listener is finished (its iteration ends once
drained) and ``storage`` keeps the state as of the last frame. A frame that is not BitMEX data, or
a table message the store rejects (the store is left unchanged), ends the replay with a
``ReplaySourceError`` naming its file and line, raised in every listener and by
``wait_finished``. Frames that are BitMEX replies rather than data (welcome, acks, errors, pongs)
are counted in ``stats.ignored``. A gap in the recording (a Tardis disconnect marker, a second
welcome in a recording) is what a reconnect is live: every slice is cleared until its next
partial, and ``events()`` listeners get ``Disconnected`` then ``Reconnected``. Violations (deltas
for unknown rows, crossed books) cannot be repaired by a resync here: they are counted in
``stats.violations`` and the next partial heals the slice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import trio

from .. import _protocol as proto
from .._events import ApplyResult, Disconnected, Reconnected
from .._exceptions import RemoteProtocolError, ReplaySourceError
from .._routing import ConnectionStats, Listener, Router
from .._storage import Storage
from .._storage._core import core_module
from .._subscriptions import Subscriptions, Topic, server_topics
from . import _fastpath
from ._sources import FrameBatch, Gap, ReplaySource, iter_batches

__all__ = ["CHECKPOINT_EVERY", "GRACE_CHECKPOINTS", "ReplayFeeder", "ReplayStats"]

logger = logging.getLogger("bitmex_trio_websocket")

# Checkpoints between the first listener and the first frame: tasks started together with it
# register their listeners in the meantime.
GRACE_CHECKPOINTS: Final = 3
CHECKPOINT_EVERY: Final = 256
_TABLE_PREFIX: Final = _fastpath.TABLE_PREFIX
# A message whose changes wait for a full listener, and where (for ``Router.route_rest``).
_Stuck: TypeAlias = tuple[ApplyResult, tuple[int, list[Listener]]]
_GAP: Final = "gap in the recorded data (the recorder's connection dropped)"
# The hot loop of the active core (compiled with the store where built: see _storage/_core).
_compiled_fastpath = core_module("_fastpath")
FrameRunner: type[_fastpath.FrameRunner] = (
    _fastpath.FrameRunner if _compiled_fastpath is None else _compiled_fastpath.FrameRunner
)


@dataclass(slots=True)
class ReplayStats(ConnectionStats):
    """``ConnectionStats`` of a replay, plus what only a replay has.

    ``messages`` counts every frame read, ``skipped`` those of tables nobody wanted (never
    decoded), ``ignored`` replies that are not table data, ``gaps`` disconnects of the recorder,
    and ``data_time`` is the receive time (epoch seconds) of the last frame read.
    """

    skipped: int = 0
    ignored: int = 0
    gaps: int = 0
    data_time: float | None = None


class ReplayFeeder:
    """Feeds a replay from files (see the module docstring)."""

    def __init__(
        self,
        source: ReplaySource,
        *,
        topics: tuple[Topic, ...] | None,
        speed: float | None,
        storage: Storage,
        stats: ReplayStats,
        router: Router,
        subscriptions: Subscriptions,
    ) -> None:
        self.closed: BaseException | None = None
        self.finished = False
        self._source = source
        self._topics = topics
        self._speed = speed
        self._storage = storage
        self._stats = stats
        self._router = router
        self._subs = subscriptions
        self._wanted: dict[str, frozenset[str] | None] = {}
        self._runner = FrameRunner(storage.apply, router, stats, self._log_violations, _rejected)
        self._origin: tuple[float, float] | None = None  # (trio time, data time) of frame 1
        self._welcomed = False
        self._replan = True
        self._began = False  # the first frame was read: later subscriptions wait for a partial
        self._start = trio.Event()
        self._done = trio.Event()
        self.reported = False  # the error was raised to someone (a listener, wait_finished)

    # ------------------------------------------------------------------ the Driver protocol

    def check_listener(self, table: str, symbol: str | None) -> None:
        topics = self._topics
        if (
            topics is None
            or (table, None) in topics
            or (symbol is not None and (table, symbol) in topics)
        ):
            return
        names = ", ".join(proto.make_topic(*topic) for topic in topics)
        raise ValueError(f"{proto.make_topic(table, symbol)!r} is not replayed: topics are {names}")

    def demand_changed(self) -> None:
        self._replan = True
        if self._subs.demanded():
            self._start.set()

    # ------------------------------------------------------------------ control

    async def wait_finished(self) -> None:
        """Start the replay if nothing did, and wait for its end (its error, if it failed)."""
        self._start.set()
        await self._done.wait()
        if self.closed is not None and not self.finished:
            self.reported = True
            raise self.closed

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self._start.wait()
        for _ in range(GRACE_CHECKPOINTS):
            await trio.lowlevel.checkpoint()
        try:
            # Closed here, not when the generator is collected: its open file goes with the run.
            with closing(iter_batches(self._source, disconnects=True)) as batches:
                await self._feed(batches)
        except ReplaySourceError as error:
            self.closed = error
            self.reported = bool(self._router.routes)
            self._router.fail_all(error)
            self._subs.discard_demand()
        else:
            self.finished = True
            self._router.finish_all()
        finally:
            self._stats.connected = False
            self._done.set()

    # ------------------------------------------------------------------ demand

    def _plan(self) -> None:
        """Bring the active topics in line with demand: no server, so at once."""
        self._replan = False
        plan = self._subs.plan()
        for topic in plan.unsubscribe:
            self._subs.unsubscribed(topic)
        for table, symbol in plan.reset:
            self._storage.reset(table, symbol)  # left: forgotten, as live
        for topic in plan.subscribe:
            self._subs.subscribed(topic)
            if self._began:
                # Joined mid-replay: its slice starts afresh at its next partial.
                self._storage.reset(*proto.parse_topic(topic))
        wanted: dict[str, set[str] | None] = {}
        for server_topic in server_topics(self._subs.demanded()):
            table, symbol = proto.parse_topic(server_topic)
            symbols = wanted.setdefault(table, set())
            if symbol is None:
                wanted[table] = None
            elif symbols is not None:
                symbols.add(symbol)
        self._wanted = {t: None if s is None else frozenset(s) for t, s in wanted.items()}
        self._runner.plan(self._wanted)

    # ------------------------------------------------------------------ the hot path

    async def _feed(self, batches: Iterator[FrameBatch | Gap]) -> None:
        self._stats.connected = True
        speed = self._speed
        for batch in batches:
            if type(batch) is Gap:
                await self._marker(batch)
                continue
            assert type(batch) is FrameBatch
            index, end = 0, len(batch)
            while index < end:
                if self._replan:
                    self._plan()
                self._began = True
                if speed is None:
                    stop = min(end, index + CHECKPOINT_EVERY)
                else:
                    stop = await self._pace(batch, index, end, speed)
                index, stuck = self._run(batch, index, stop)
                if stuck is not None:
                    result, where = stuck
                    await self._router.route_rest(result.table, result.changes, where)
                    self._log_violations(result, batch, index - 1)
                elif index < stop:
                    await self._general(batch, index)  # a frame off the fast path
                    index += 1
                elif speed is None:
                    await trio.lowlevel.checkpoint()  # fair, and cancellable, per batch

    async def _pace(self, batch: FrameBatch, index: int, end: int, speed: float) -> int:
        """Wait until frame ``index`` is due; the end of the frames due with it."""
        origin = self._origin
        received_at = batch.time_of(index)
        if origin is None:
            origin = self._origin = (trio.current_time(), received_at)
        due = origin[0] + max(0.0, received_at - origin[1]) / speed
        if due > trio.current_time():
            await trio.sleep_until(due)
        stop = index + 1
        if self._replan:
            return stop  # demand changed while it waited: this frame as planned, then replan
        now = trio.current_time()
        limit = min(end, index + CHECKPOINT_EVERY)
        while stop < limit:
            due = origin[0] + max(0.0, batch.time_of(stop) - origin[1]) / speed
            if due > now:
                break
            stop += 1
        return stop

    def _run(self, batch: FrameBatch, start: int, stop: int) -> tuple[int, _Stuck | None]:
        """Frames ``start`` to ``stop`` of ``batch``, without a coroutine, an await or a frame
        object per frame, up to the first frame that needs more: a full listener (returned
        with the index after it: the caller awaits ``route_rest``), or anything off the common
        path (returned at its index, not yet read: the caller hands it to ``_general``). The
        loop is ``_fastpath.FrameRunner.run``, compiled with the store where it was built."""
        runner = self._runner
        try:
            return runner.run(batch, start, stop)
        finally:
            if runner.decoded:  # the clock is read here, once a run: the loop is sans-IO
                self._stats.last_message_at = trio.current_time()

    async def _general(self, batch: FrameBatch, index: int) -> None:
        """One frame the fast path left: not a table message, not written as BitMEX writes
        them, malformed, or cut to the wanted symbols."""
        stats = self._stats
        text = batch.text_of(index)
        stats.messages += 1
        stats.bytes += len(text)
        stats.data_time = batch.time_of(index)
        wanted = self._wanted
        if text.startswith(_TABLE_PREFIX):
            end = text.find('"', 10)
            if text[10:end] not in wanted:
                stats.skipped += 1
                return
        try:
            event = proto.decode_server_frame_lean(text)
        except RemoteProtocolError as exc:
            raise _bad(batch, index, f"not BitMEX data ({exc})") from None
        if type(event) is not dict:
            stats.ignored += 1
            if isinstance(event, proto.Welcome):
                if self._welcomed:
                    await self._gap()  # a recording that holds a reconnect
                self._welcomed = True
            return
        table = event["table"]
        if table not in wanted:
            stats.skipped += 1
            return
        stats.last_message_at = trio.current_time()
        symbols = wanted[table]
        messages = [event] if symbols is None else _narrowed(event, symbols)
        if not messages:
            stats.skipped += 1
        for message in messages:
            try:
                result = self._storage.apply(message)
            except RemoteProtocolError as exc:
                raise _bad(batch, index, f"a table message the store rejects ({exc})") from None
            if result.dropped:
                stats.dropped_before_partial += result.dropped
            if result.changes:
                stuck = self._router.offer_changes(result.table, result.changes, 0)
                if stuck is not None:
                    await self._router.route_rest(result.table, result.changes, stuck)
            self._log_violations(result, batch, index)

    async def _marker(self, gap: Gap) -> None:
        """A recorder's disconnect, counted and paced as a frame."""
        if self._replan:
            self._plan()
        self._began = True
        speed = self._speed
        if speed is not None:
            if self._origin is None:
                self._origin = (trio.current_time(), gap.received_at)
            due = self._origin[0] + max(0.0, gap.received_at - self._origin[1]) / speed
            if due > trio.current_time():
                await trio.sleep_until(due)
        self._stats.messages += 1
        self._stats.data_time = gap.received_at
        await self._gap()

    def _log_violations(self, result: ApplyResult, batch: FrameBatch, index: int) -> None:
        if result.violations:
            self._stats.violations += len(result.violations)
            for violation in result.violations:
                logger.info(
                    "%s:%d: consistency violation: %s",
                    batch.origin,
                    batch.line_of(index),
                    violation,
                )

    async def _gap(self) -> None:
        self._stats.gaps += 1
        for table, symbol in self._subs.demanded():
            self._storage.reset(table, symbol)
        await self._router.broadcast(Disconnected(1006, _GAP))
        await self._router.broadcast(Reconnected(1))


def _bad(batch: FrameBatch, index: int, what: str) -> ReplaySourceError:
    return ReplaySourceError(what, path=batch.origin, line=batch.line_of(index))


def _rejected(batch: FrameBatch, index: int, exc: RemoteProtocolError) -> ReplaySourceError:
    """The error for a frame the store refused: not BitMEX data if the decoder refuses it too
    (as ``_general`` would have said, which decodes before it applies)."""
    try:
        proto.decode_server_frame_lean(batch.text_of(index))
    except RemoteProtocolError as bad:
        return _bad(batch, index, f"not BitMEX data ({bad})")
    return _bad(batch, index, f"a table message the store rejects ({exc})")


def _symbol(row: Any) -> Any:
    return row.get("symbol") if type(row) is dict else None


def _narrowed(message: dict[str, Any], symbols: frozenset[str]) -> list[dict[str, Any]]:
    """``message`` cut down to ``symbols`` (see the module docstring)."""
    data = message["data"]
    if message["action"] == "partial":
        filt = message.get("filter")
        named = filt.get("symbol") if isinstance(filt, dict) else None
        if isinstance(named, str):
            return [message] if named in symbols else []
        base = filt if isinstance(filt, dict) else {}
        return [
            {
                **message,
                "filter": {**base, "symbol": symbol},
                "data": [row for row in data if _symbol(row) == symbol],
            }
            for symbol in sorted(symbols)
        ]
    rows = [row for row in data if _symbol(row) in symbols]
    if len(rows) == len(data):
        return [message] if rows else []
    return [{**message, "data": rows}] if rows else []
