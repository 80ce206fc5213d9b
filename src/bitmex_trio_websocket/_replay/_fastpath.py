"""The replay feeder's hot loop, compiled with the store where it can be (sans-IO).

Theory of operation
-------------------
``FrameRunner.run`` is the plain loop of ``_feeder.ReplayFeeder._run`` (the module docstring of
``_feeder`` says what it does, frame by frame): frames ``start`` to ``stop`` of a
``_sources.FrameBatch`` are tested against the wanted tables' prefixes, decoded, cut to the wanted
symbols, applied to the store and their changes handed to the listeners, up to the first frame
that needs more (a full listener, or a frame for ``_general``). Nothing here awaits, imports trio
or reads a clock: the feeder reads trio's clock after each run when ``decoded`` says a frame was
decoded (``stats.last_message_at``), so every counter is as of the last frame read whatever the
run returned or raised.

One source, two copies. This module is plain typed Python: the build compiles a copy of it with
mypyc into ``_compiled`` with the store (``_storage/_core``), and the feeder takes that copy while
the compiled core is active. Compiled, the loop's indexes and counters are machine integers and it
runs without the interpreter's dispatch; the objects it touches (the batch, the store's results,
the router's listeners, the stats) stay interpreted objects, reached as ``Any`` by name, exactly as
the pure copy reaches them. What the loop cannot do alone (log a violation, build the error for a
frame the store rejects) it asks of the feeder through the two callables it was built with.

Demand changes only between runs (listeners come and go only while the feeder awaits):
``plan`` takes the wanted tables, and ``run`` reads ``Router.direct`` afresh at each run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from .._exceptions import RemoteProtocolError
from .._protocol import DENSITY_CHECK_BYTES

__all__ = ["TABLE_PREFIX", "FrameRunner"]

TABLE_PREFIX: Final = '{"table":"'
_TABLE_PREFIX_BYTES: Final = TABLE_PREFIX.encode()
_OFF_PATH: Final = frozenset[str]()  # not None: a table the fast path leaves to _general
_NOBODY: Final = object()  # in no ``Router.direct``: a table nobody listens to
_DELTAS: Final = frozenset({"insert", "update", "delete"})


class FrameRunner:
    """Runs a batch's frames through the store to the listeners (see the module docstring).

    ``apply`` is ``Storage.apply``; ``router`` the ``Router`` (its ``direct`` and
    ``offer_changes``); ``stats`` the ``ReplayStats`` it counts into; ``violations(result, batch,
    index)`` logs and counts a result's violations; ``rejected(batch, index, exc)`` is the error
    to raise for a frame the store refused with ``exc``.
    """

    def __init__(
        self,
        apply: Callable[[Any], Any],
        router: Any,
        stats: Any,
        violations: Callable[[Any, Any, int], None],
        rejected: Callable[[Any, int, RemoteProtocolError], BaseException],
    ) -> None:
        self.apply = apply
        self.router = router
        self.stats = stats
        self.violations = violations
        self.rejected = rejected
        self.wanted: dict[str, frozenset[str] | None] = {}
        # '{"table":"NAME"' of every wanted table, as text and as bytes: one startswith call.
        self.prefixes: tuple[str, ...] = ()
        self.prefixes_bytes: tuple[bytes, ...] = ()
        self.decoded = False  # the last run decoded a frame (the feeder then reads its clock)

    def plan(self, wanted: dict[str, frozenset[str] | None]) -> None:
        """The tables wanted from now on, each with its wanted symbols (``None``: all)."""
        self.wanted = wanted
        self.prefixes = tuple(f'{TABLE_PREFIX}{table}"' for table in wanted)
        self.prefixes_bytes = tuple(prefix.encode() for prefix in self.prefixes)

    def run(self, batch: Any, start: int, stop: int) -> tuple[int, Any]:
        """Frames ``start`` to ``stop`` of ``batch`` up to the first that needs more: a full
        listener (returned with the index after it and ``(result, where)`` for
        ``Router.route_rest``), or anything off the common path (returned at its index, not yet
        read, with ``None``: the feeder's ``_general`` reads it)."""
        payloads: list[Any] = batch.payloads
        offset: int = batch.offset
        plain = batch.times is None  # payloads are bytes (plain slice lines)
        wanted = self.wanted
        prefixes: Any = self.prefixes_bytes if plain else self.prefixes
        table_prefix: Any = _TABLE_PREFIX_BYTES if plain else TABLE_PREFIX
        apply = self.apply
        router = self.router
        direct: dict[str, Any] = router.direct  # a new dict whenever listeners change
        limit: int = DENSITY_CHECK_BYTES
        stats = self.stats
        loads = orjson.loads
        skipped = 0
        decoded = False
        self.decoded = False
        index = start
        try:
            while index < stop:
                payload: Any = payloads[index]
                if not payload.startswith(prefixes, offset):
                    if payload.startswith(table_prefix, offset):
                        skipped += 1  # a table nobody wants: never decoded
                        index += 1
                        continue
                    return index, None
                text: Any = payload[offset:] if offset else payload
                if len(text) > limit:
                    return index, None
                try:
                    message: dict[str, Any] = loads(text)  # a dict: the text starts '{'
                    symbols = wanted.get(message["table"], _OFF_PATH)
                    if symbols is not None:
                        # Cut to the wanted symbols (as the feeder's _narrowed does for a delta).
                        action = message.get("action")
                        data = message.get("data")
                        if (
                            symbols is _OFF_PATH  # a repeated "table" key
                            or type(action) is not str
                            or action not in _DELTAS
                            or type(data) is not list
                        ):
                            return index, None
                        rows = [r for r in data if type(r) is dict and r.get("symbol") in symbols]
                        if len(rows) != len(data):
                            if not rows:
                                index += 1
                                decoded = True
                                skipped += 1
                                continue
                            message = {**message, "data": rows}
                except (orjson.JSONDecodeError, TypeError, KeyError):
                    return index, None  # _general says what is wrong with it
                index += 1
                decoded = True
                try:
                    result: Any = apply(message)  # validates the rest (action, data) first
                except RemoteProtocolError as exc:
                    error = self.rejected(batch, index - 1, exc)
                    error.__cause__ = None  # what ``from None`` does: compiled, mypyc ignores it
                    raise error from None
                if result.dropped:
                    stats.dropped_before_partial += result.dropped
                changes = result.changes
                if changes:
                    route: Any = direct.get(result.table, _NOBODY)
                    if route is _NOBODY:
                        pass  # kept in the store only (``topics``)
                    elif (
                        route is not None
                        and len(items := route.items) + len(changes) <= route.capacity
                    ):
                        # Router.offer_changes for the table's one whole-table listener with
                        # room for them all, inlined: the usual case, with no call per frame.
                        items.extend(changes)
                        if route.receiver is not None:
                            route.wake()  # once per batch: it sleeps until the next checkpoint
                    else:
                        stuck = router.offer_changes(result.table, changes, 0)
                        if stuck is not None:
                            return index, (result, stuck)
                if result.violations:
                    self.violations(result, batch, index - 1)
            return index, None
        finally:
            # The counters, as of the last frame read (a frame that raised included).
            if index > start:
                size = 0
                for at in range(start, index):
                    size += len(payloads[at])
                stats.messages += index - start
                stats.bytes += size - offset * (index - start)
                stats.data_time = batch.time_of(index - 1)
                stats.skipped += skipped
                self.decoded = decoded
