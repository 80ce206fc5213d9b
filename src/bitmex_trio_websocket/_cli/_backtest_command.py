"""The ``backtest`` command: run a strategy over history (or the synthetic market) in data time.

Theory of operation: ``add_backtest`` registers the arguments; ``_run_backtest`` checks them
(exit status 2: a bad time, a strategy that cannot be imported or is not an async function, an
option that does not fit the source), checks the ``plot`` extra before running when ``--plot``
asks for it, then calls ``backtest.run_backtest`` (which runs its own ``trio.run`` under
``MockClock``) with a progress line on stderr when stderr is a terminal. It prints the report's
summary as JSON on stdout and writes ``--report`` (the report's JSON) and ``--plot`` (its
picture). An exception raised by the strategy is the user's bug: its traceback is printed (with
the note saying the data time it was raised at) and the status is 1; the library's errors are
one line, status 1; Ctrl-C stops the run with status 0 and no report. The backtest package is
imported only when this command runs, so ``--help`` stays fast.

``STRATEGY`` is ``module:function`` (the module imported from the current directory first, as
``python -m`` does) or ``path/to/file.py:function``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from .._exceptions import BitMEXError
from ._run import PROG, CommandError, Subparsers

__all__ = ["add_backtest", "load_strategy", "parse_time"]

_PROGRESS_INTERVAL = 0.25  # seconds of wall time between redraws


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def parse_time(text: str) -> float:
    """Epoch seconds from ``text``: a number (epoch seconds) or an ISO 8601 date or time (UTC
    unless it names its offset): ``2025-01-01``, ``2025-01-01T12:30``, ``...Z``."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"not a time: {text!r}")
        return value
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601 such as 2025-01-01T12:00:00Z, or epoch seconds)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def add_backtest(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "backtest",
        help="run a strategy (async def strategy(bws, rest)) over history in data time",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run STRATEGY, an 'async def strategy(bws, rest)' written against the live API,\n"
            "over SOURCE in data time (trio's MockClock: a day of data in the time its\n"
            "messages take), against the emulator's paper exchange, and print the report's\n"
            "summary as JSON. SOURCE is a recording, Tardis slices (a file or a folder), or\n"
            "'synthetic' or a scenario name for the seeded synthetic market.\n"
            "\n"
            "  backtest day.json.gz examples.momentum:strategy --report report.json\n"
            "  backtest day.json.gz bot.py:strategy --from 2025-01-01T12:00 --to 2025-01-01T13:00\n"
            "  backtest synthetic examples.market_maker:strategy --duration 600 --plot mm.png\n"
            "\n"
            "BitMEX closed on 2026-09-23; its history (Tardis.dev) and recordings remain."
        ),
    )
    parser.add_argument(
        "source", metavar="SOURCE", help="recording, slice file or folder; or 'synthetic'"
    )
    parser.add_argument(
        "strategy", metavar="STRATEGY", help="module:function or path/to/file.py:function"
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=parse_time,
        default=None,
        metavar="T",
        help="start at this data time (ISO 8601 or epoch seconds; history: the market "
        "steps through the data before it)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        type=parse_time,
        default=None,
        metavar="T",
        help="end at this data time (default: the end of the data)",
    )
    parser.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="end after this many seconds of data time (synthetic default: 3600)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seeds the market and the exchange (default 1)"
    )
    parser.add_argument(
        "--symbol",
        default=None,
        help="the symbol the report's series and picture follow (default: the first filled)",
    )
    parser.add_argument(
        "--report", metavar="FILE.json", default=None, help="write the whole report as JSON"
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="draw price with the fills, position and equity (extra 'plot')",
    )
    parser.set_defaults(handler=_run_backtest)


def load_strategy(spec: str) -> Callable[..., Any]:
    """The async function ``spec`` names (``CommandError`` saying what is wrong otherwise)."""
    module_name, sep, function = spec.rpartition(":")
    if not sep or not module_name or not function.isidentifier():
        raise CommandError(f"STRATEGY must be module:function or file.py:function, not {spec!r}")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            name = "_backtest_strategy_" + os.path.splitext(os.path.basename(module_name))[0]
            location = importlib.util.spec_from_file_location(name, module_name)
            if location is None or location.loader is None:
                raise CommandError(f"cannot load {module_name!r} as a Python file")
            module = importlib.util.module_from_spec(location)
            sys.modules[name] = module
            location.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # as `python -m` finds the user's modules
            module = importlib.import_module(module_name)
    except CommandError:
        raise
    except (ImportError, OSError) as exc:
        raise CommandError(f"cannot import the strategy's module {module_name!r}: {exc}") from exc
    found = getattr(module, function, None)
    if found is None:
        raise CommandError(f"{module_name!r} has no {function!r}")
    if not inspect.iscoroutinefunction(found):
        raise CommandError(f"{spec} is not an async function (async def strategy(bws, rest))")
    return found  # type: ignore[no-any-return]


def _check(args: argparse.Namespace, synthetic: bool) -> None:
    """What can be refused before running (``CommandError``: status 2)."""
    if args.end is not None and args.duration is not None:
        raise CommandError("--to and --duration both end the run: give one")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise CommandError("--to must be after --from")
    if not synthetic and not os.path.exists(args.source):
        raise CommandError(f"no such file or folder: {args.source!r}")


def _run_backtest(args: argparse.Namespace) -> int:
    from ..backtest._runner import is_synthetic

    try:
        _check(args, is_synthetic(args.source))
        strategy = load_strategy(args.strategy)
    except CommandError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    return _run(args, strategy)


def _run(args: argparse.Namespace, strategy: Callable[..., Any]) -> int:
    from .._export._errors import MissingExtraError, require
    from ..backtest import run_backtest
    from ..backtest._progress import ProgressLine

    try:
        if args.plot is not None:
            require("matplotlib.figure", extra="plot", purpose="--plot")
    except MissingExtraError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    progress = None
    if sys.stderr.isatty():
        progress = ProgressLine(sys.stderr, now=time.monotonic, interval=_PROGRESS_INTERVAL)
    try:
        report = run_backtest(
            strategy, args.source, start=args.start, end=args.end, duration=args.duration,
            seed=args.seed, symbol=args.symbol, progress=progress,
        )  # fmt: skip
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        if not _from_the_strategy(exc) and isinstance(exc, BitMEXError | OSError):
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
        traceback.print_exception(exc)
        return 1
    finally:
        if progress is not None:
            progress.close()
    try:
        if args.report is not None:
            with open(args.report, "wb") as out:
                out.write(report.to_json(indent=True))
        if args.plot is not None:
            report.plot(args.plot)
    except (BitMEXError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(report.summary(), option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
    return 0


def _from_the_strategy(exc: BaseException) -> bool:
    return any("backtest's strategy" in note for note in getattr(exc, "__notes__", ()))
