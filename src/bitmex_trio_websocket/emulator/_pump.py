"""The market pump: the one task that moves an emulator's market, and the data clock of history.

Theory of operation: a ``MarketPump`` is started once per emulator (``open_emulator``) and steps
whatever market the hub holds; everything a step makes goes to the hub's ``Router`` in the same
synchronous step as the step itself (no await in between), so a step and its fan-out are one
atomic unit with respect to subscribes (see ``_connection``).

* The synthetic ``Market`` is stepped at ``rate`` events per second, on an absolute schedule
  (``trio.sleep_until``), so pacing does not drift and is exact virtual time under
  ``autojump_clock``; ``rate`` 0 or infinite: as fast as possible.
* History (``history=``, a ``ReplayedMarket``) is stepped in data time: the emulator's clock is
  a ``DataClock`` that runs ``speed`` times trio's clock from where the data started (``speed``
  0: the time of the last frame stepped, the market running as fast as possible). Each step
  takes every frame recorded at or before its target, the next frame's time or the next
  dead man's switch deadline (switches serving history run on the data's clock and are fired
  here, ``Hub.fire_due_switches``); a switch (re)armed meanwhile makes the pump plan again.

Under an autojumping ``MockClock`` both move trio's clock to their next step themselves when
nothing else could run first, instead of sleeping (``_fast_forward``: the same times, fewer
turns of trio's run loop). Either way the pump stops after ``max_events`` steps (``stop``
makes that now) and sets ``still``; history also sets ``still`` when its data ends, and at
``speed`` > 0 the pump then keeps firing switches as time runs on. A per-session replay
(``replay=``) has no market: the pump has nothing to do and ``still`` is set from the start.
"""

from __future__ import annotations

import contextlib
import math
from typing import Protocol

import trio

from ._fast_forward import FastForward
from ._hub import Hub
from .market import Market
from .market._venue import Venue

__all__ = ["DataClock", "History", "MarketPump"]


class History(Venue, Protocol):
    """A venue whose market is history (``ReplayedMarket``): it says when its next frame is."""

    now: float  # the data time stepped to

    def next_time(self) -> float | None: ...

    def close(self) -> None: ...


class DataClock:
    """The emulator's clock when serving history: the data's time.

    At ``speed`` > 0 it runs ``speed`` times trio's clock from where the data started (so a
    REST request between two frames is stamped between them); at ``speed`` 0 it is the time
    of the last frame stepped (the market runs as fast as possible and time jumps with it).
    """

    def __init__(self, venue: History, speed: float) -> None:
        self.venue = venue
        self.speed = speed
        self.data_origin = venue.now
        self.trio_origin = trio.current_time()

    def __call__(self) -> float:
        if self.speed <= 0:
            return self.venue.now
        elapsed = trio.current_time() - self.trio_origin
        return max(self.venue.now, self.data_origin + elapsed * self.speed)

    def trio_time(self, data_time: float) -> float:
        """The trio time at which the clock reads ``data_time`` (``speed`` > 0)."""
        return self.trio_origin + (data_time - self.data_origin) / self.speed


class MarketPump:
    """Steps the hub's market (see the module docstring); ``events`` counts the steps."""

    def __init__(
        self,
        hub: Hub,
        *,
        rate: float,
        max_events: int | None,
        data_clock: DataClock | None = None,
    ) -> None:
        self.events = 0
        self.still = trio.Event()
        self.max_events = max_events
        self.data_clock = data_clock
        self._hub = hub
        self._rate = rate
        self._scope = trio.CancelScope()
        if hub.market is None:
            self.still.set()

    def stop(self) -> None:
        """Stand still from now on, as if ``max_events`` had been reached."""
        self.max_events = self.events
        self._scope.cancel()
        market = self._hub.market
        if isinstance(market, Market):
            # The second's quotes it was still gathering go out now, as a market reaching
            # max_events sends them: a new subscriber's partial would hold them otherwise.
            self._hub.router.publish(market.stand_still())

    async def run(self) -> None:
        if self.data_clock is not None:
            await self._run_history(self.data_clock)
            return
        market = self._hub.market
        if not isinstance(market, Market):
            return
        hub = self._hub
        interval = 1.0 / self._rate if 0 < self._rate < math.inf else 0.0
        deadline = trio.current_time()
        forward = FastForward.of_current_clock() if interval else None
        with self._scope, forward or contextlib.nullcontext():
            while self.max_events is None or self.events < self.max_events:
                if interval:
                    deadline += interval
                    if forward is None or not await forward.reach(deadline):
                        await trio.sleep_until(deadline)
                else:
                    await trio.lowlevel.checkpoint()
                # No await from here to the end of the loop body: the step and its fan-out are
                # one atomic unit with respect to subscribes (see _connection).
                deltas = market.step(hub.clock())
                self.events += 1
                hub.router.publish(deltas)
        self.still.set()

    async def _run_history(self, clock: DataClock) -> None:
        """Step the replayed market in data time (see ``DataClock``), firing the dead man's
        switches of the data's clock on the way; at ``speed`` 0 it ends with the data, else
        time runs on for the switches."""
        forward = FastForward.of_current_clock() if clock.speed > 0 else None
        if forward is None:
            await self._step_history(clock, None)
            return
        with forward:
            await self._step_history(clock, forward)

    async def _step_history(self, clock: DataClock, forward: FastForward | None) -> None:
        hub, venue, speed = self._hub, clock.venue, clock.speed
        with self._scope:
            while self.max_events is None or self.events < self.max_events:
                frame, due = venue.next_time(), hub.next_switch_due()
                if frame is None:
                    self.still.set()  # the data has ended (time has not, at speed > 0)
                    if speed <= 0:
                        break
                    if due is None:
                        await hub.switches_changed.wait()
                        continue
                target = min(t for t in (frame, due) if t is not None)
                if speed <= 0:
                    await trio.lowlevel.checkpoint()
                elif not await _until(clock.trio_time(target), hub.switches_changed, forward):
                    continue  # a switch was (re)armed meanwhile: plan again
                # No await from here on (see run).
                deltas = venue.step(target)
                if frame is not None and frame <= target:
                    self.events += 1
                hub.router.publish(deltas)
                hub.fire_due_switches(target)
        self.still.set()


async def _until(wake: float, changed: trio.Event, forward: FastForward | None) -> bool:
    """Wait until trio time ``wake``; ``False`` if ``changed`` was set first. A frame already
    due costs one checkpoint; under an autojumping ``MockClock`` the clock is jumped to it
    when nothing else could run first (``FastForward``), else a sleep waits for it."""
    if trio.current_time() >= wake:
        await trio.lowlevel.checkpoint()
        return True
    if forward is not None and await forward.reach(wake, changed):
        return not changed.is_set()
    with trio.move_on_at(wake):
        await changed.wait()
        return False
    return True
