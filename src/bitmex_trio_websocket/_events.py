"""Lifecycle events that ``BitMEXWebsocket.events()`` interleaves with table changes.

Table data arrives as ``Change`` (from ``_storage``). These events tell a consumer that there was
a gap: after ``Disconnected`` or ``Resyncing`` the next ``Change`` for the topic is a fresh
``partial`` that replaces everything seen before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["Disconnected", "Event", "Reconnected", "Resyncing"]


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The socket was lost; ``code``/``reason`` are the websocket close code and text."""

    code: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class Reconnected:
    """A new socket is up (welcome received, re-authenticated); partials follow."""

    attempts: int


@dataclass(frozen=True, slots=True)
class Resyncing:
    """A topic is being re-fetched after a consistency problem; its new partial follows."""

    table: str
    symbol: str | None
    reason: str


Event: TypeAlias = Disconnected | Reconnected | Resyncing
