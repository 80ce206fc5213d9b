"""Command line: ``bitmex-trio-websocket COMMAND ...`` (also ``python -m bitmex_trio_websocket``).

Theory of operation: ``main(argv)`` builds one argparse parser with a sub-parser per command and
calls the chosen command's handler, which returns the exit status. Each command lives in one
``_add_<command>`` function that registers its arguments and sets ``handler``; adding a command
(``listen``, ``record``, ``demo``) means writing one such function and listing it in
``_COMMANDS``. Handlers run their own ``trio.run`` and treat Ctrl-C (and SIGTERM) as a normal way
to stop: exit status 0 and no traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from .._version import __version__
from ._client_commands import add_demo, add_listen, add_record

__all__ = ["main", "main_entry"]

PROG: Final = "bitmex-trio-websocket"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be a non-negative integer")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be a non-negative number")
    return value


# --------------------------------------------------------------------------- emulator


def _add_emulator(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..emulator import DEFAULT_ACCOUNT, DEFAULT_API_KEY, DEFAULT_API_SECRET

    parser = commands.add_parser(
        "emulator",
        help="run a local BitMEX realtime emulator",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Serve BitMEX's realtime websocket API locally, from a deterministic synthetic\n"
            "market or a recording. The first line on stdout is the URL it serves.\n"
            "Runs until interrupted (Ctrl-C)."
        ),
        epilog=(
            f"default account {DEFAULT_ACCOUNT}:\n"
            f"  API key     {DEFAULT_API_KEY}\n"
            f"  API secret  {DEFAULT_API_SECRET}\n"
            "These are the emulator's public test credentials; never use them elsewhere."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    parser.add_argument(
        "--port", type=_positive_int, default=0, help="TCP port; 0 picks a free one (default)"
    )
    parser.add_argument("--seed", type=int, default=1, help="market seed (default: %(default)s)")
    parser.add_argument(
        "--symbols", default=None, help="comma-separated instruments (default: the model's set)"
    )
    parser.add_argument(
        "--rate",
        type=_non_negative_float,
        default=50.0,
        help="market events per second; 0 = as fast as possible (default: %(default)s)",
    )
    parser.add_argument(
        "--max-events",
        type=_positive_int,
        default=None,
        help="stop the market after N changes (state converges); default: never",
    )
    parser.add_argument("--replay", metavar="FILE", help="serve this recording (JSON Lines)")
    parser.add_argument(
        "--speed",
        type=_non_negative_float,
        default=0.0,
        help="replay speed, times real time; 0 = as fast as the client reads (default)",
    )
    parser.add_argument(
        "--api-key", default=DEFAULT_API_KEY, help=f"API key (default: {DEFAULT_API_KEY})"
    )
    parser.add_argument(
        "--api-secret",
        default=DEFAULT_API_SECRET,
        help=f"API secret (default: {DEFAULT_API_SECRET})",
    )
    parser.add_argument(
        "--legacy-book",
        action="store_true",
        help="emit the 2019-2021 order book format (no price on update/delete)",
    )
    parser.set_defaults(handler=_run_emulator)


def _run_emulator(args: argparse.Namespace) -> int:
    from ..emulator import DEFAULT_ACCOUNT, open_emulator

    symbols = [s for s in args.symbols.split(",") if s] if args.symbols else None

    async def serve() -> None:
        async with open_emulator(
            seed=args.seed,
            symbols=symbols,
            host=args.host,
            port=args.port,
            rate=args.rate,
            max_events=args.max_events,
            replay=args.replay,
            speed=args.speed,
            accounts={args.api_key: (args.api_secret, DEFAULT_ACCOUNT)},
            legacy_book=args.legacy_book,
        ) as emulator:
            print(emulator.url, flush=True)
            await _wait_for_termination()

    return _run(serve)


# --------------------------------------------------------------------------- plumbing


async def _wait_for_termination() -> None:
    """Return on SIGTERM (Ctrl-C arrives as KeyboardInterrupt, handled in ``_run``)."""
    if not hasattr(signal, "SIGTERM") or sys.platform == "win32":
        await trio.sleep_forever()
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            return


def _run(program: Callable[[], Awaitable[object]]) -> int:
    try:
        trio.run(program)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:  # e.g. the port is taken, or the replay file is missing
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except BaseExceptionGroup as group:
        # Ctrl-C can surface wrapped by the nurseries it travelled through.
        if group.split(KeyboardInterrupt)[1] is None:
            return 0
        raise
    return 0


_COMMANDS: Final[
    tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...]
] = (_add_emulator, add_listen, add_record, add_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="BitMEX realtime websocket client tools and local emulator."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
