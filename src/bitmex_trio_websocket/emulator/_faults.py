"""Fault injection vocabulary for the emulator: kinds, the fault log, and seeded plans.

Theory of operation: every fault the emulator injects, whether a test asked for it explicitly or a
seeded random plan picked it, is one ``FaultKind`` and is written to the emulator's fault log as a
``FaultRecord`` at the moment it takes effect. Tests (and ``stress/chaos.py``) count faults by
kind from that log instead of guessing from the client's side.

Faults are scripted per connection and deterministic: a ``ScheduledFault`` fires on the connection
with a given index (0 = the first accepted connection) right after that connection has sent a
given number of messages. ``RandomFaults`` turns a seed into such a script lazily, one private
``random.Random`` per connection index, so the plan of connection *n* depends only on the seed and
*n*, never on how tasks happened to interleave. Random plans draw from ``RANDOM_FAULT_KINDS``:
the faults a self-healing client must survive (an ignored ``cancelAllAfter`` is not one: the
right answer to it is an error).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "CONNECTION_FAULTS",
    "HANDSHAKE_FAULTS",
    "RANDOM_FAULT_KINDS",
    "FaultKind",
    "FaultRecord",
    "RandomFaults",
    "ScheduledFault",
]


class FaultKind(enum.StrEnum):
    """What the emulator can do wrong on purpose."""

    DROP = "drop"
    """Close the transport abruptly, without a websocket close frame (client sees 1006)."""
    CLOSE = "close"
    """Close with 1000 "Bye" (the maintenance-style clean close)."""
    GOING_AWAY = "going_away"
    """Close with 1001 "Going away"."""
    STALL = "stall"
    """Stop sending anything, pongs included, but keep the socket open."""
    DELTAS_BEFORE_PARTIAL = "deltas_before_partial"
    """Send table deltas of a topic before its partial (clients must drop them)."""
    UNKNOWN_ID_UPDATE = "unknown_id_update"
    """Send an ``update`` for a row the client cannot have (unknown order-book id)."""
    MALFORMED_FRAME = "malformed_frame"
    """Send a text frame that is not valid JSON."""
    REFUSE_HANDSHAKE = "refuse_handshake"
    """Refuse the next websocket upgrade (HTTP 429 with ``Retry-After`` by default)."""
    FAIL_AUTH = "fail_auth"
    """Fail the next authentication (handshake or ``authKeyExpires``) with 401."""
    DELAY_ACKS = "delay_acks"
    """Delay replies to commands."""
    IGNORE_CANCEL_ALL_AFTER = "ignore_cancel_all_after"
    """Swallow ``cancelAllAfter`` commands: no reply at all, and the dead man's switch is not
    armed, re-armed or disarmed (logged once per command swallowed). Not a network fault: a
    client must treat the silence as a failed arming, so random plans do not pick it."""
    REST_OVERLOAD = "rest_overload"
    """Answer a REST request with 503 "The system is currently overloaded." before it reaches
    the engine (``Emulator.overload_next_requests``); logged as each 503 is served."""
    REST_DROP = "rest_drop"
    """Close a REST keep-alive connection under its client, idle or with a request in flight
    (``Emulator.drop_rest_connections``); logged per connection dropped."""


# Kinds that act on one live connection (each has an ``EmulatorConnection`` method) ...
CONNECTION_FAULTS = frozenset(
    {
        FaultKind.DROP,
        FaultKind.CLOSE,
        FaultKind.GOING_AWAY,
        FaultKind.STALL,
        FaultKind.UNKNOWN_ID_UPDATE,
        FaultKind.MALFORMED_FRAME,
        FaultKind.DELAY_ACKS,
        FaultKind.IGNORE_CANCEL_ALL_AFTER,
    }
)
# ... and kinds armed on the emulator for the next handshake, authentication or subscription.
HANDSHAKE_FAULTS = frozenset(
    {FaultKind.REFUSE_HANDSHAKE, FaultKind.FAIL_AUTH, FaultKind.DELTAS_BEFORE_PARTIAL}
)
# What random plans pick from, in a fixed order (random.choice over a frozenset would depend on
# hashing; a kind added here changes every seeded plan): every kind a self-healing client must
# survive, so not IGNORE_CANCEL_ALL_AFTER, whose right answer is an error.
RANDOM_FAULT_KINDS: tuple[FaultKind, ...] = (
    FaultKind.DROP,
    FaultKind.CLOSE,
    FaultKind.GOING_AWAY,
    FaultKind.STALL,
    FaultKind.DELTAS_BEFORE_PARTIAL,
    FaultKind.UNKNOWN_ID_UPDATE,
    FaultKind.MALFORMED_FRAME,
    FaultKind.REFUSE_HANDSHAKE,
    FaultKind.FAIL_AUTH,
    FaultKind.DELAY_ACKS,
)


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One injected fault, as written to ``Emulator.fault_log``.

    ``connection`` is the index of the connection it hit (``None`` for faults that hit a
    handshake before any connection existed), ``after_messages`` how many messages that
    connection had sent when it took effect, ``time`` the trio clock at that moment.
    """

    kind: FaultKind
    connection: int | None
    after_messages: int
    time: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ScheduledFault:
    """Fire ``kind`` on connection ``connection`` once it has sent ``after_messages`` messages."""

    kind: FaultKind
    connection: int
    after_messages: int
    seconds: float = 2.0  # for DELAY_ACKS: how long replies are delayed


@dataclass(frozen=True, slots=True)
class RandomFaults:
    """A seeded fault plan: on every connection, one fault per ``every_messages`` messages.

    Handshake faults (``REFUSE_HANDSHAKE``, ``FAIL_AUTH``) are armed for the next connection
    attempt when picked; connection-ending faults (drop, close, stall) end that connection's plan.
    """

    seed: int
    every_messages: int = 300
    kinds: tuple[FaultKind, ...] = RANDOM_FAULT_KINDS

    def __post_init__(self) -> None:
        if self.every_messages < 1:
            raise ValueError("every_messages must be at least 1")
        if not self.kinds:
            raise ValueError("kinds must not be empty")

    def plan(self, connection: int) -> Iterator[ScheduledFault]:
        """The (endless) fault script of connection number ``connection``."""
        rng = random.Random(f"{self.seed}:{connection}")
        after = 0
        while True:
            after += self.every_messages
            kind = self.kinds[rng.randrange(len(self.kinds))]
            yield ScheduledFault(kind, connection, after, seconds=round(rng.uniform(0.5, 3.0), 3))


def normalize_kinds(kinds: Iterable[FaultKind | str]) -> tuple[FaultKind, ...]:
    """``kinds`` as ``FaultKind`` values, de-duplicated, order kept (``ValueError`` if unknown)."""
    out: dict[FaultKind, None] = {}
    for kind in kinds:
        out[FaultKind(kind)] = None
    return tuple(out)
