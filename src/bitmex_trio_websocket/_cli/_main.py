"""Command line: ``bitmex-trio-websocket COMMAND ...`` (also ``python -m bitmex_trio_websocket``).

Theory of operation: ``main(argv)`` builds one argparse parser with a sub-parser per command and
calls the chosen command's handler, which returns the exit status. Each command lives in one
``add_<command>`` function that registers its arguments and sets ``handler``: the client
commands (``listen``, ``record``, ``demo``) in ``_client_commands``, the ``emulator`` command in
``_emulator_command``, ``replay`` (history: rows, Parquet, snapshots, plots) in
``_replay_command``. Adding a command means writing one such function and listing it in
``_COMMANDS``. Handlers check what can be checked before connecting (exit status 2 with a
one-line error), then run one ``trio.run`` through ``_run.run_command``, which treats Ctrl-C as a
normal way to stop (status 0, no traceback) and prints the library's errors as one line
(status 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final

from .._storage._core import CORE
from .._version import __version__
from ._backtest_command import add_backtest
from ._client_commands import add_demo, add_listen, add_record
from ._emulator_command import add_emulator
from ._replay_command import add_replay
from ._run import PROG, Subparsers

__all__ = ["build_parser", "main", "main_entry"]

_COMMANDS: Final[tuple[Callable[[Subparsers], None], ...]] = (
    add_emulator,
    add_listen,
    add_record,
    add_demo,
    add_replay,
    add_backtest,
)

_EPILOG: Final = (
    "BitMEX closed on 2026-09-23: its mainnet and testnet servers no longer serve a market.\n"
    "What remains is its history and this project's emulator: 'replay' reads recordings,\n"
    "Tardis slices and tardis-machine; 'emulator' serves them (or a synthetic market) to any\n"
    "BitMEX client; start with 'demo'."
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line's parser, one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="BitMEX realtime websocket client tools and local emulator.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}\nstore core: {CORE}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return handler(args)


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
