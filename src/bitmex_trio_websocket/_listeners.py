"""Listener queues, connection counters, and the demand -> server topic plan.

Theory of operation: a listener is a bounded trio memory channel plus what it needs to be failed
or dropped into; the reader task is its only producer. Demand is counted per ``(table, symbol)``;
``desired_server_topics`` turns it into BitMEX topics so that a whole-table listener covers every
``table:SYMBOL`` listener of that table and BitMEX never sends a row twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import trio

from . import _protocol as proto
from ._events import Event
from ._storage import Change

__all__ = ["ConnectionStats", "Listener", "Overflow", "Topic", "desired_server_topics"]

Overflow: TypeAlias = Literal["block", "drop"]
Topic: TypeAlias = tuple[str, "str | None"]


@dataclass(slots=True)
class ConnectionStats:
    """Counters a user can read at any time (``bws.stats``)."""

    connects: int = 0
    reconnects: int = 0
    resyncs: int = 0
    messages: int = 0
    bytes: int = 0
    protocol_errors: int = 0
    violations: int = 0
    dropped_before_partial: int = 0
    last_message_at: float | None = None  # trio.current_time() of the last frame
    connected: bool = False

    def last_message_age(self) -> float | None:
        return None if self.last_message_at is None else trio.current_time() - self.last_message_at


class Listener:
    """One consumer: a bounded channel plus the bookkeeping to fail or drop into it."""

    __slots__ = ("dropped", "error", "overflow", "receive", "send", "topic", "want_lifecycle")

    def __init__(self, topic: Topic, buffer: int, overflow: Overflow, want_lifecycle: bool) -> None:
        self.topic = topic
        self.send, self.receive = trio.open_memory_channel[Change | Event](buffer)
        self.overflow = overflow
        self.want_lifecycle = want_lifecycle
        self.error: BaseException | None = None
        self.dropped = 0

    def fail(self, error: BaseException) -> None:
        # Buffered items are still delivered; the error is raised once they are drained.
        if self.error is None:
            self.error = error
        self.send.close()

    @property
    def queued(self) -> int:
        return self.send.statistics().current_buffer_used


def desired_server_topics(demand: Iterable[Topic]) -> dict[str, list[Topic]]:
    """Server topic -> the demand topics it serves."""
    demand = list(demand)
    wide = {table for table, symbol in demand if symbol is None}
    desired: dict[str, list[Topic]] = {}
    for table, symbol in demand:
        server_topic = table if table in wide else proto.make_topic(table, symbol)
        desired.setdefault(server_topic, []).append((table, symbol))
    return desired
