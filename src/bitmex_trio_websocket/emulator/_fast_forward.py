"""Fast-forward: the market pump moves trio's ``MockClock`` itself, as its autojump would.

Theory of operation: under ``MockClock(autojump_threshold=0)`` (``autojump_clock`` in tests, every
backtest) trio jumps the clock to the next deadline once every task is blocked. A pump that
sleeps until each frame's time (history at ``speed`` > 0, or the synthetic market's next step
at ``rate``) pays for that per frame: a cancel scope, its deadline, a
``Cancelled`` raised and caught, and two turns of trio's run loop. ``FastForward`` gets the
same result for less: the pump waits in ``wait_all_tasks_blocked`` (``settle``: woken, without
an exception, in the very turn in which trio would otherwise autojump) and then, if nothing else
could run before its frame, jumps the clock to the frame's time itself and steps (``jump_to``).

"Nothing else could run" is autojump's own condition, checked from inside the run:

* no other task is runnable, and none was woken with the pump: an instrument (``_Activity``)
  counts the other tasks made runnable and notes the count at each I/O poll; the pump was
  alone if no other task was woken between the poll of the turn that woke it and its step
  (trio wakes every ``wait_all_tasks_blocked`` caller of the same cushion in one turn: a
  backtest's sampler, a test, expect to run before the clock moves, so they must not be
  there). Trio's own statistics cannot tell: the batch being run is not in its run queue;
* no I/O was ready: the turn that woke the pump polled and found none;
* no deadline comes first: ``seconds_to_next_deadline`` (the pump holds none while it waits) is
  at least the jump; a tie is fine (trio runs the tasks it wakes together in either order).

After a step that woke nobody (nothing happened since the pump was found alone) the pump may
jump again without settling: everyone is still blocked as they were, and no
``wait_all_tasks_blocked`` caller can have appeared. It settles at least every ``MAX_SKIPS``
frames anyway, so I/O is polled and the pump checkpoints. The jump is computed as autojump
computes it (``deadline - current_time()``), so trio's clock reads the very same floats as with
a sleep, and a backtest's report is the same bytes.

When the condition fails (another deadline first, another task to run) the pump sleeps as
before, with one cancel scope for that frame. A clock that is not an autojumping ``MockClock``
(real time, ``rate`` > 0, a threshold > 0) gets no fast-forward. One difference remains: a
``wait_all_tasks_blocked`` caller with a cushion above 0 no longer runs before the clock jumps
to the pump's next frame (the pump's cushion-0 wait is served first); nothing here uses one.
"""

from __future__ import annotations

from typing import Final

import trio
import trio.testing

__all__ = ["FastForward"]


MAX_SKIPS: Final = 64  # frames jumped to without settling, at most, between two settles


class _Activity(trio.abc.Instrument):
    """Counts the tasks other than the pump made runnable; notes the count at each poll.

    A task runs only once scheduled, so a count unchanged since the pump was found alone means
    nobody has run since; and the tasks woken in the pump's turn are scheduled after its poll
    (``after_io_wait``), whether trio runs them before or after the pump.
    """

    def __init__(self, pump: trio.lowlevel.Task) -> None:
        self.pump = pump
        self.others = 0
        self.at_poll = 0

    def after_io_wait(self, timeout: float) -> None:
        self.at_poll = self.others

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        if task is not self.pump:
            self.others += 1


class FastForward:
    """Jumps an autojumping ``MockClock`` for the pump (see the module docstring).

    ``FastForward.of_current_clock()`` inside the run (``None`` for any other clock); use it as
    a context manager, from the pump's task, around the pump's loop (it adds the instrument).
    """

    def __init__(self, clock: trio.testing.MockClock) -> None:
        self._clock = clock
        self._activity: _Activity | None = None
        self._alone = False  # the pump was woken alone and nothing has happened since
        self._mark = 0  # the activity count when the pump was found alone
        self._skips = 0

    @classmethod
    def of_current_clock(cls) -> FastForward | None:
        clock = trio.lowlevel.current_clock()
        if isinstance(clock, trio.testing.MockClock):
            return cls(clock)
        return None

    def __enter__(self) -> FastForward:
        self._activity = _Activity(trio.lowlevel.current_task())
        trio.lowlevel.add_instrument(self._activity)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._activity is not None:
            trio.lowlevel.remove_instrument(self._activity)
            self._activity = None

    def _usable(self) -> bool:
        clock = self._clock
        return self._activity is not None and clock.autojump_threshold == 0 and clock.rate == 0

    async def settle(self) -> None:
        """Return once every other task is blocked, as trio finds before an autojump (at once
        if nothing has happened since the pump last found that; see the module docstring)."""
        activity = self._activity
        if (
            activity is not None
            and self._alone
            and activity.others == self._mark
            and self._skips < MAX_SKIPS
        ):
            self._skips += 1
            return
        self._alone = False
        await trio.testing.wait_all_tasks_blocked()
        if activity is not None and activity.others == activity.at_poll:
            self._alone, self._mark, self._skips = True, activity.others, 0

    def jump_to(self, wake: float) -> bool:
        """Right after ``settle``: move the clock to trio time ``wake`` if autojump would have
        (``True``: the clock reads ``wake`` or later); ``False``: sleep instead."""
        if not (self._alone and self._usable()):
            self._alone = False
            return False
        clock = self._clock
        stats = trio.lowlevel.current_statistics()
        while True:
            jump = wake - clock.current_time()
            if jump <= 0:
                return True
            if stats.tasks_runnable or stats.seconds_to_next_deadline < jump:
                self._alone = False  # another task's deadline comes first: let trio wake it
                return False
            clock.jump(jump)
            if wake - clock.current_time() <= 0:
                return True
            stats = trio.lowlevel.current_statistics()

    async def reach(self, wake: float, changed: trio.Event | None = None) -> bool:
        """``settle``, then ``jump_to(wake)``: ``True`` once the clock reads ``wake`` (or
        ``changed`` was set while settling: the caller plans again), ``False``: sleep until
        ``wake`` instead (``trio.current_time()`` is then still before it)."""
        await self.settle()
        if changed is not None and changed.is_set():
            return True
        return self.jump_to(wake)
