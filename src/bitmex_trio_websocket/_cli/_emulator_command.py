"""The ``emulator`` command: serve BitMEX's realtime protocol and REST API on a local port.

Theory of operation: ``add_emulator`` registers the arguments; ``_run_emulator`` opens the
emulator (``open_emulator``) with them, prints the websocket URL it serves as the first line on
stdout and the REST API's base URL as the second, flushed at once (scripts and tests read them
to learn the port), and waits for SIGTERM; Ctrl-C
arrives as ``KeyboardInterrupt`` and ends it the same way, through ``run_command``. Either way
the exit status is 0. The emulator is imported only when this command runs, so the client
commands do not load the market model.

With BitMEX closed (2026-09-23) the emulator and recordings are what still speak its realtime
protocol; this command is how a program that is not written in Python reaches them.
"""

from __future__ import annotations

import argparse
import signal
import sys

import trio

from ._run import Subparsers, run_command

__all__ = ["add_emulator"]


# The names of emulator.SCENARIOS, here so that --help does not import the emulator (a test
# checks they agree).
SCENARIO_NAMES = (
    "quiet",
    "trending",
    "flash_crash",
    "funding_flip",
    "thin_book",
    "exchange_deploy",
)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be a non-negative integer")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be a non-negative number")
    return value


def _account(text: str) -> tuple[str, str, int]:
    """``KEY:SECRET:NUMBER`` (the key may not contain ``:``)."""
    key, sep, rest = text.partition(":")
    secret, sep2, number = rest.rpartition(":")
    if not (sep and sep2 and key and secret and number.isdigit()):
        raise argparse.ArgumentTypeError("expected KEY:SECRET:NUMBER, e.g. k2:s2:2")
    return key, secret, int(number)


def _rest_limits(text: str) -> object:
    """``PER_MINUTE:ORDERS_PER_SECOND`` or ``off`` (a RestLimits; imported only when used)."""
    from ..emulator.rest import RestLimits

    if text == "off":
        return RestLimits(per_minute=10**9, anonymous_per_minute=10**9, orders_per_second=10**9)
    per_minute, sep, per_second = text.partition(":")
    if not (sep and per_minute.isdigit() and per_second.isdigit()):
        raise argparse.ArgumentTypeError("expected PER_MINUTE:ORDERS_PER_SECOND or off")
    if int(per_minute) < 1 or int(per_second) < 1:
        raise argparse.ArgumentTypeError("limits must be at least 1")
    return RestLimits(per_minute=int(per_minute), orders_per_second=int(per_second))


def add_emulator(commands: Subparsers) -> None:
    from ..emulator import DEFAULT_ACCOUNT, DEFAULT_API_KEY, DEFAULT_API_SECRET

    parser = commands.add_parser(
        "emulator",
        help="run a local BitMEX emulator (realtime websocket and REST API)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Serve BitMEX's realtime websocket API and its REST API (/api/v1: orders,\n"
            "positions, executions, wallet...) on one local port, from a deterministic\n"
            "synthetic market or from history, which orders trade against (paper trading).\n"
            "The first line on stdout is the websocket URL (ws://HOST:PORT/realtime), the\n"
            "second the REST API's base URL (http://HOST:PORT/api/v1): give that to an\n"
            "existing BitMEX REST client instead of https://www.bitmex.com/api/v1.\n"
            "Runs until interrupted (Ctrl-C).\n"
            "\n"
            "BitMEX closed on 2026-09-23: this emulator and recordings are what still speak\n"
            "its realtime protocol."
        ),
        epilog=(
            f"default account {DEFAULT_ACCOUNT}:\n"
            f"  API key     {DEFAULT_API_KEY}\n"
            f"  API secret  {DEFAULT_API_SECRET}\n"
            "These are the emulator's public test credentials; never use them elsewhere.\n"
            "They sign websocket authentication and REST requests (api-key, api-expires,\n"
            "api-signature) exactly as on BitMEX. More accounts: --account KEY:SECRET:NUMBER."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)s)")
    parser.add_argument(
        "--port", type=_non_negative_int, default=0, help="TCP port; 0 picks a free one (default)"
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
        type=_non_negative_int,
        default=None,
        help="stop the market after N changes (state converges); default: never",
    )
    parser.add_argument(
        "--replay",
        metavar="SOURCE",
        help=(
            "serve history instead: a recording, a Tardis slice file or a folder of slices;"
            " by default as the market orders trade against (see --replay-mode)"
        ),
    )
    parser.add_argument(
        "--replay-mode",
        choices=("market", "session"),
        default="market",
        help=(
            "market: one shared market in the data's time that orders trade against"
            " (default); session: each connection gets the recording from its start, as"
            " recorded, and nothing can be traded"
        ),
    )
    parser.add_argument(
        "--speed",
        type=_non_negative_float,
        default=0.0,
        help=(
            "replay speed, times real time; 0 (default) = as fast as possible"
            " (market mode) or as fast as the client reads (session mode)"
        ),
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
        "--account",
        type=_account,
        action="append",
        default=[],
        metavar="KEY:SECRET:NUMBER",
        help="another account with its own API key (repeatable); accounts never see each other",
    )
    parser.add_argument(
        "--rest-limits",
        type=_rest_limits,
        default=None,
        metavar="PER_MINUTE:ORDERS_PER_SECOND",
        help="REST request limits per account (default: BitMEX's 120:10); 'off' lifts them",
    )
    parser.add_argument(
        "--scenario",
        metavar="NAME",
        default=None,
        help=f"a named market regime: {', '.join(SCENARIO_NAMES)} (default: none)",
    )
    parser.add_argument(
        "--bye-every",
        type=_non_negative_float,
        default=None,
        metavar="SECONDS",
        help="close every connection with 1000 Bye at random intervals of this mean (default: off)",
    )
    parser.add_argument(
        "--legacy-book",
        action="store_true",
        help="emit the 2019-2021 order book format (no price on update/delete)",
    )
    parser.set_defaults(handler=_run_emulator)


def _run_emulator(args: argparse.Namespace) -> int:
    from ..emulator import DEFAULT_ACCOUNT, SCENARIOS, open_emulator

    if args.scenario is not None and args.scenario not in SCENARIOS:
        known = ", ".join(SCENARIOS)
        print(f"error: unknown scenario {args.scenario!r} (known: {known})", file=sys.stderr)
        return 2
    symbols = [s for s in args.symbols.split(",") if s] if args.symbols else None
    accounts = {args.api_key: (args.api_secret, DEFAULT_ACCOUNT)}
    numbers = {DEFAULT_ACCOUNT}
    for key, secret, number in args.account:
        if key in accounts or number in numbers:
            print(f"error: --account {key}:...:{number}: key or number used twice", file=sys.stderr)
            return 2
        accounts[key] = (secret, number)
        numbers.add(number)
    session = args.replay_mode == "session"

    async def serve() -> None:
        async with open_emulator(
            seed=args.seed,
            symbols=symbols,
            host=args.host,
            port=args.port,
            rate=args.rate,
            max_events=args.max_events,
            replay=args.replay if session else None,
            history=args.replay if not session else None,
            speed=args.speed,
            accounts=accounts,
            legacy_book=args.legacy_book,
            scenario=args.scenario,
            bye_every=args.bye_every or None,
            **({"rest_limits": args.rest_limits} if args.rest_limits is not None else {}),
        ) as emulator:
            print(emulator.url, flush=True)
            print(emulator.rest_url, flush=True)
            await _wait_for_termination()

    return run_command(serve)


async def _wait_for_termination() -> None:
    """Return on SIGTERM (Ctrl-C arrives as ``KeyboardInterrupt``, handled by ``run_command``)."""
    if not hasattr(signal, "SIGTERM") or sys.platform == "win32":
        await trio.sleep_forever()
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            return
