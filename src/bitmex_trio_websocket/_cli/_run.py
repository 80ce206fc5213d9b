"""What every command shares: the one ``trio.run`` wrapper, the error type, the parser type.

Theory of operation: a command is an async function; ``run_command`` runs it and turns how it
ended into an exit status, so no command writes its own ``try``/``except`` around ``trio.run``:

- it returned: 0;
- Ctrl-C (``KeyboardInterrupt``), anywhere in the exception (nurseries wrap it in exception
  groups on its way out): 0, quietly, since interrupting is how a user stops a command that
  runs until stopped;
- the reader of stdout went away (``BrokenPipeError``, as under ``| head -1``): 0, with stdout
  pointed at ``/dev/null`` so the interpreter's final flush does not complain either;
- errors a user can act on (``CommandError``, any ``BitMEXError``, ``OSError`` such as a taken
  port or a missing file), bare or grouped: one line ``bitmex-trio-websocket: <error>`` on
  stderr per error, status 1;
- anything else is a bug: it propagates with its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Final, TypeAlias

import trio

from .._exceptions import BitMEXError

__all__ = ["PROG", "CommandError", "Subparsers", "run_command"]

PROG: Final = "bitmex-trio-websocket"

#: What each command's ``add_*`` function registers itself with.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(BitMEXError):
    """A one-line error for the user; the command exits non-zero without a traceback."""


_REPORTED: Final = (BitMEXError, OSError)


def run_command(program: Callable[[], Awaitable[object]]) -> int:
    """``trio.run(program)`` with the command line's conventions; returns the exit status."""
    try:
        trio.run(program)
    except BaseException as exc:
        status = _exit_status(exc)
        if status is None:
            raise  # a bug: keep its traceback
        return status
    return 0


def _exit_status(exc: BaseException) -> int | None:
    """The exit status for how a command ended, or ``None`` if the exception is not ours."""
    leaves = list(_leaves(exc))
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        return 0
    if any(isinstance(leaf, BrokenPipeError) for leaf in leaves):
        _silence_stdout()
        leaves = [leaf for leaf in leaves if not isinstance(leaf, BrokenPipeError)]
        if not leaves:
            return 0
    if not all(isinstance(leaf, _REPORTED) for leaf in leaves):
        return None
    for leaf in leaves:
        print(f"{PROG}: {leaf}", file=sys.stderr)
    return 1


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _silence_stdout() -> None:
    # The reader is gone: point stdout at /dev/null so the interpreter's final flush is quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
