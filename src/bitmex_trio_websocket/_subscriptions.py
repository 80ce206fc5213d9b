"""Subscriptions, sans-IO: what listeners want -> which BitMEX topics to (un)subscribe, and when.

Theory of operation. Listeners add and remove *demand* for ``(table, symbol)`` slices (``want``,
``unwant``). ``server_topics`` turns demand into BitMEX topics so that a whole-table listener
covers every ``table:SYMBOL`` listener of that table and BitMEX never sends a row twice. Each
server topic of the current session is in one ``TopicState``, and every change of state goes
through ``Subscriptions.process`` and the one ``TRANSITIONS`` table below (the style of h11's
``_state.py``)::

    IDLE ──WANT──> PENDING ──SUBSCRIBED, ALREADY_SUBSCRIBED──> ACTIVE
     ^  ^             │  └──SUBSCRIBE_REFUSED, EXPIRED──> IDLE     │
     │  │             └──UNWANT──> LEAVING <──UNWANT, RESYNC───────┘
     │  └──UNSUBSCRIBED, UNSUBSCRIBE_REFUSED── LEAVING
     └──RESET── every state (a new socket: BitMEX remembers nothing)

Inputs come from two sides. Local inputs (WANT, UNWANT, EXPIRED, RESYNC, RESET) are this client's
own decisions: one the table does not list for the topic's state is a bug here and raises
``LocalProtocolError``. Server inputs (acks and error replies) are untrusted, so every state lists
them: a late, duplicated or unsolicited reply leaves the state as it was.

The driver (``_session``) calls the methods below and carries out what they return, as plain data:
frames to send (``Plan``, ``Resync``), demand to fail with an error (``Failed``), slices of the
store to clear, and whether the session must die (a spent resync budget). Nothing here does I/O or
reads a clock; resync times are passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from . import _protocol as proto
from ._exceptions import LocalProtocolError

__all__ = [
    "ALREADY_SUBSCRIBED",
    "RESYNC_LIMIT",
    "RESYNC_WINDOW",
    "SERVER_INPUTS",
    "TRANSITIONS",
    "Failed",
    "Plan",
    "Resync",
    "Subscriptions",
    "Topic",
    "TopicInput",
    "TopicState",
    "server_topics",
]

Topic: TypeAlias = tuple[str, "str | None"]
"""A slice of demand: ``(table, symbol)``, ``symbol=None`` for the whole table."""

# At most RESYNC_LIMIT resyncs of one topic per RESYNC_WINDOW seconds; one more means the
# connection, not the topic, is broken, and the session must die (a full reconnect follows).
RESYNC_LIMIT = 3
RESYNC_WINDOW = 60.0
# BitMEX's error text for a subscribe of a topic it already serves: the subscription exists.
ALREADY_SUBSCRIBED = "You are already subscribed"


class TopicState(Enum):
    """Where one server topic stands in the current session."""

    IDLE = "idle"  # not subscribed (absent from the state table)
    PENDING = "pending"  # subscribe sent, not answered yet
    ACTIVE = "active"  # acknowledged: its rows flow
    LEAVING = "leaving"  # unsubscribe sent; subscribed again only after its answer


class TopicInput(Enum):
    """What can happen to a server topic (local decisions and server replies)."""

    WANT = "want"  # local: demand needs the topic; a subscribe is sent
    UNWANT = "unwant"  # local: demand no longer needs it; an unsubscribe is sent
    EXPIRED = "expire"  # local: never acknowledged although a later ping was answered
    RESYNC = "resync"  # local: re-fetch its partial (unsubscribe, then subscribe again)
    RESET = "reset"  # local: the session ended
    SUBSCRIBED = "subscribe ack"  # server
    ALREADY_SUBSCRIBED = "already subscribed"  # server: a benign error reply
    SUBSCRIBE_REFUSED = "subscribe refusal"  # server
    UNSUBSCRIBED = "unsubscribe ack"  # server
    UNSUBSCRIBE_REFUSED = "unsubscribe refusal"  # server


IDLE = TopicState.IDLE
PENDING = TopicState.PENDING
ACTIVE = TopicState.ACTIVE
LEAVING = TopicState.LEAVING
_I = TopicInput
SERVER_INPUTS = (
    _I.SUBSCRIBED,
    _I.ALREADY_SUBSCRIBED,
    _I.SUBSCRIBE_REFUSED,
    _I.UNSUBSCRIBED,
    _I.UNSUBSCRIBE_REFUSED,
)


def _row(state: TopicState, moves: dict[TopicInput, TopicState]) -> dict[TopicInput, TopicState]:
    # Every server input is legal in every state; unless ``moves`` says otherwise it changes
    # nothing. Every state can be reset.
    return {**dict.fromkeys(SERVER_INPUTS, state), **moves, _I.RESET: IDLE}


TRANSITIONS: dict[TopicState, dict[TopicInput, TopicState]] = {
    IDLE: _row(IDLE, {_I.WANT: PENDING}),
    PENDING: _row(
        PENDING,
        {
            _I.SUBSCRIBED: ACTIVE,
            _I.ALREADY_SUBSCRIBED: ACTIVE,
            _I.SUBSCRIBE_REFUSED: IDLE,
            _I.EXPIRED: IDLE,
            # Left before its ack: the late ack is ignored, the unsubscribe ack ends it.
            _I.UNWANT: LEAVING,
        },
    ),
    ACTIVE: _row(ACTIVE, {_I.UNWANT: LEAVING, _I.RESYNC: LEAVING}),
    LEAVING: _row(LEAVING, {_I.UNSUBSCRIBED: IDLE, _I.UNSUBSCRIBE_REFUSED: IDLE}),
}
"""state -> input -> next state. A missing entry is an illegal (local) input."""


def server_topics(demand: Iterable[Topic]) -> dict[str, list[Topic]]:
    """Server topic -> the demand topics it serves (in demand order)."""
    demand = list(demand)
    wide = {table for table, symbol in demand if symbol is None}
    topics: dict[str, list[Topic]] = {}
    for table, symbol in demand:
        server_topic = table if table in wide else proto.make_topic(table, symbol)
        topics.setdefault(server_topic, []).append((table, symbol))
    return topics


@dataclass(frozen=True, slots=True)
class Plan:
    """Frames owed after a demand change: unsubscribes first, then subscribes.

    ``batch`` names the subscribes for ``expire`` (0 when there are none)."""

    unsubscribe: tuple[str, ...]
    subscribe: tuple[str, ...]
    batch: int

    @property
    def reset(self) -> list[Topic]:
        """Slices to clear: rows no longer kept current are worse than none."""
        return [proto.parse_topic(topic) for topic in self.unsubscribe]


@dataclass(frozen=True, slots=True)
class Resync:
    """Topics to re-fetch (clear, unsubscribe; the plan subscribes again after the ack), or
    ``fatal``: why the session must die instead (nothing changed)."""

    unsubscribe: tuple[str, ...]
    fatal: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """A server topic that is not coming, and the demand (listeners) it leaves unserved."""

    topic: str
    demand: tuple[Topic, ...]


class Subscriptions:
    """Demand and the per-topic state of one connection (see the module docstring)."""

    __slots__ = ("_batch", "_batches", "_demand", "_resync_times", "_states")

    def __init__(self) -> None:
        self._demand: Counter[Topic] = Counter()
        self._states: dict[str, TopicState] = {}  # IDLE topics are absent
        self._batches: dict[str, int] = {}  # PENDING topic -> its subscribe's batch
        self._batch = 0
        # Kept across sessions: a topic that keeps breaking after reconnects gets no fresh budget.
        self._resync_times: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ the table

    def state(self, topic: str) -> TopicState:
        return self._states.get(topic, IDLE)

    def process(self, topic: str, event: TopicInput) -> TopicState:
        """Apply one input to one topic through ``TRANSITIONS``; returns the new state."""
        state = self._states.get(topic, IDLE)
        try:
            new = TRANSITIONS[state][event]
        except KeyError:
            raise LocalProtocolError(
                f"cannot {event.value} {topic!r} while it is {state.value}"
            ) from None
        if new is IDLE:
            self._states.pop(topic, None)
        else:
            self._states[topic] = new  # an existing key keeps its place: sends stay ordered
        if new is not PENDING:
            self._batches.pop(topic, None)
        return new

    # ------------------------------------------------------------------ demand

    def want(self, topic: Topic) -> None:
        """One more listener of ``topic`` (call ``plan`` to learn what to send)."""
        self._demand[topic] += 1

    def unwant(self, topic: Topic) -> None:
        """One listener of ``topic`` fewer."""
        count = self._demand.get(topic, 0)
        if count <= 0:
            raise LocalProtocolError(f"no listener of {topic!r} to remove")
        if count == 1:
            del self._demand[topic]
        else:
            self._demand[topic] = count - 1

    def demanded(self, table: str | None = None) -> set[Topic]:
        """Every demanded slice (of ``table``, if given)."""
        return {topic for topic in self._demand if table is None or topic[0] == table}

    def discard_demand(self) -> None:
        """The connection is closed for good: its listeners are gone."""
        self._demand.clear()

    def covers(self, topic: Topic) -> bool:
        """Whether an acknowledged server topic already serves ``topic`` (a late joiner then
        gets the stored rows, since no partial is coming)."""
        table, symbol = topic
        if self._states.get(table) is ACTIVE:
            return True
        return symbol is not None and self._states.get(f"{table}:{symbol}") is ACTIVE

    def plan(self) -> Plan:
        """Bring server topics in line with demand: WANT the missing, UNWANT the unneeded."""
        desired = server_topics(self._demand)
        leave = [t for t, s in self._states.items() if t not in desired and s is not LEAVING]
        # A topic still being left is subscribed again only after its unsubscribe's answer.
        join = [t for t in desired if t not in self._states]
        for topic in leave:
            self.process(topic, _I.UNWANT)
        batch = 0
        if join:
            self._batch += 1
            batch = self._batch
            for topic in join:
                self.process(topic, _I.WANT)
                self._batches[topic] = batch
        return Plan(tuple(leave), tuple(join), batch)

    # ------------------------------------------------------------------ server replies

    def subscribed(self, topic: str) -> None:
        self.process(topic, _I.SUBSCRIBED)

    def unsubscribed(self, topic: str) -> bool:
        """An unsubscribe ack. True when it ended a LEAVING topic: plan again (it may be wanted
        again, e.g. after a resync)."""
        was = self.state(topic)
        return self.process(topic, _I.UNSUBSCRIBED) is not was

    def refused(self, topics: Iterable[str], error: str, *, unsubscribe: bool) -> list[Failed]:
        """An error reply to a subscribe (or unsubscribe) whose request named ``topics``.

        "You are already subscribed" is benign: the subscription exists. Otherwise the topics the
        error text names (all of them if it names none) are refused; a refused subscribe fails
        its demand.
        """
        topics = list(topics)
        if error.startswith(ALREADY_SUBSCRIBED):
            for topic in topics:
                self.process(topic, _I.ALREADY_SUBSCRIBED)
            return []
        named = [topic for topic in topics if topic in error]
        event = _I.UNSUBSCRIBE_REFUSED if unsubscribe else _I.SUBSCRIBE_REFUSED
        failed = []
        for topic in named or topics:
            was = self.state(topic)
            if self.process(topic, event) is not was and event is _I.SUBSCRIBE_REFUSED:
                failed.append(self._fail(topic))
        return failed

    # ------------------------------------------------------------------ local decisions

    def unanswered(self, batch: int) -> list[str]:
        """Topics of subscribe ``batch`` still waiting for their answer."""
        return [topic for topic, b in self._batches.items() if b == batch]

    def expire(self, batch: int) -> list[Failed]:
        """Give up on the unanswered subscribes of ``batch`` (the driver first made sure, with a
        ping, that BitMEX handled them: it answers commands in order)."""
        failed = []
        for topic in self.unanswered(batch):
            self.process(topic, _I.EXPIRED)
            failed.append(self._fail(topic))
        return failed

    def resync(self, demand: Iterable[Topic], now: float) -> Resync:
        """Re-fetch the ACTIVE server topics serving ``demand`` (a ``(table, None)`` entry means
        every topic of that table), within each topic's budget; ``now`` in seconds."""
        wanted = set(demand)
        chosen = [
            server_topic
            for server_topic, served in server_topics(self._demand).items()
            if self._states.get(server_topic) is ACTIVE
            and any(t in wanted or (t[0], None) in wanted for t in served)
        ]
        recent = {
            topic: [t for t in self._resync_times.get(topic, ()) if now - t < RESYNC_WINDOW]
            for topic in chosen
        }
        for topic, times in recent.items():
            if len(times) >= RESYNC_LIMIT:
                return Resync((), f"{topic} needed {len(times)} resyncs in a row")
        for topic, times in recent.items():
            self._resync_times[topic] = [*times, now]
            self.process(topic, _I.RESYNC)
        return Resync(tuple(chosen))

    def reset(self) -> list[Topic]:
        """A new socket: BitMEX remembers no subscription. Returns every demanded slice, to be
        cleared: until its new partial, a slice must not take deltas."""
        for topic in list(self._states):
            self.process(topic, _I.RESET)
        return list(self._demand)

    def _fail(self, topic: str) -> Failed:
        served = tuple(server_topics(self._demand).get(topic, ()))
        for demand_topic in served:
            del self._demand[demand_topic]
        return Failed(topic, served)
