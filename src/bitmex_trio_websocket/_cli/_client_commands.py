"""Client commands of the command line: ``listen``, ``record`` and ``demo``.

Theory of operation: each command registers its arguments in an ``add_*`` function (listed in
``_main._COMMANDS``), checks what it can before connecting (a bad topic, network or half a pair
of credentials: one line on stderr, exit status 2), then runs one ``trio.run`` through
``run_command``. Output goes to stdout one line at a time and is flushed, so the commands compose
with pipes; a reader that goes away (``| head``) ends the command quietly. Credentials come from
flags or ``BITMEX_API_KEY``/``BITMEX_API_SECRET`` and are never printed.

``listen`` and ``record`` take ``--network``: ``mainnet``, ``testnet`` or a ``ws://``/``wss://``
URL. BitMEX closed on 2026-09-23, so the two names no longer reach a market; the emulator's URL
(``bitmex-trio-websocket emulator``) is what still answers. ``demo`` needs no network at all: it
runs the emulator in the same process, connected in memory.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import IO, Any, Final

import orjson
import trio

from .. import _protocol as proto
from .._client import BitMEXWebsocket, open_bitmex_websocket
from .._exceptions import BitMEXError
from .._networks import resolve_network
from ._run import PROG, CommandError, Subparsers, run_command

__all__ = ["add_demo", "add_listen", "add_record"]

KNOWN_TABLES: Final = proto.PUBLIC_TABLES | proto.PRIVATE_TABLES

_NETWORK_HELP: Final = (
    "mainnet, testnet or a ws:// / wss:// URL (default: %(default)s). BitMEX closed on "
    "2026-09-23, so mainnet and testnet no longer serve a market: pass the URL that "
    "'bitmex-trio-websocket emulator' prints"
)


def _topics(texts: list[str]) -> list[tuple[str, str | None]]:
    topics = []
    for text in texts:
        table, symbol = proto.parse_topic(text)
        if table not in KNOWN_TABLES:
            raise CommandError(
                f"unknown table {table!r} (known: {', '.join(sorted(KNOWN_TABLES))})"
            )
        try:
            proto.make_topic(table, symbol)
        except BitMEXError as exc:
            raise CommandError(str(exc)) from None
        topics.append((table, symbol))
    return topics


def _prepare(
    args: argparse.Namespace,
) -> tuple[list[tuple[str, str | None]], str | None, str | None]:
    """Validate what can be checked before connecting; ``CommandError`` otherwise."""
    topics = _topics(args.topics)
    _check_network(args)
    api_key, api_secret = _credentials(args)
    return topics, api_key, api_secret


def _duration(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--network",
        default="mainnet",
        help=_NETWORK_HELP,
    )
    parser.add_argument("--api-key", default=None, help="API key (or env BITMEX_API_KEY)")
    parser.add_argument(
        "--api-secret", default=None, help="API secret (or env BITMEX_API_SECRET; never echoed)"
    )


def _credentials(args: argparse.Namespace) -> tuple[str | None, str | None]:
    key = args.api_key or os.environ.get("BITMEX_API_KEY") or None
    secret = args.api_secret or os.environ.get("BITMEX_API_SECRET") or None
    if (key is None) != (secret is None):
        raise CommandError("give both an API key and an API secret, or neither")
    return key, secret


def _check_network(args: argparse.Namespace) -> None:
    try:
        resolve_network(args.network)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


async def _stop_after(duration: float | None, scope: trio.CancelScope) -> None:
    if duration is not None:
        await trio.sleep(duration)
        scope.cancel()


# --------------------------------------------------------------------------- listen


def add_listen(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "listen", help="print rows of BitMEX tables as JSON, one object per line"
    )
    parser.add_argument("topics", nargs="+", metavar="TABLE[:SYMBOL]")
    _add_connection_arguments(parser)
    parser.add_argument("--duration", type=_duration, default=None, help="stop after S seconds")
    parser.add_argument("--count", type=int, default=None, help="stop after N rows")
    parser.set_defaults(handler=_run_listen)


def _run_listen(args: argparse.Namespace) -> int:
    try:
        topics, api_key, api_secret = _prepare(args)
    except CommandError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    printed = 0

    async def listen() -> None:
        nonlocal printed
        async with open_bitmex_websocket(args.network, api_key, api_secret) as bws:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_after, args.duration, nursery.cancel_scope)

                async def pump(table: str, symbol: str | None) -> None:
                    nonlocal printed
                    async with aclosing(bws.listen(table, symbol)) as rows:
                        async for row in rows:
                            # A partial's rows come without a checkpoint: stop here, not at
                            # the cancel's next checkpoint, thousands of rows later.
                            if args.count is not None and printed >= args.count:
                                return
                            out.write(orjson.dumps(row).decode() + "\n")
                            out.flush()
                            printed += 1
                            if args.count is not None and printed >= args.count:
                                nursery.cancel_scope.cancel()
                                return

                for table, symbol in topics:
                    nursery.start_soon(pump, table, symbol)

    return run_command(listen)


# --------------------------------------------------------------------------- record


def add_record(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "record", help="record a session's frames as JSON Lines (gzip if FILE ends in .gz)"
    )
    parser.add_argument("topics", nargs="+", metavar="TABLE[:SYMBOL]")
    parser.add_argument("--out", required=True, metavar="FILE", help="recording to write")
    _add_connection_arguments(parser)
    parser.add_argument("--duration", type=_duration, default=None, help="stop after S seconds")
    parser.set_defaults(handler=_run_record)


def _open_recording(path: str) -> IO[str]:
    if path.endswith(".gz"):
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def _run_record(args: argparse.Namespace) -> int:
    try:
        topics, api_key, api_secret = _prepare(args)
        sink = _open_recording(args.out)
    except (CommandError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    frames = 0

    def write(direction: str, frame: str) -> None:
        nonlocal frames
        line = {"t": time.time(), "dir": direction, "frame": frame}
        sink.write(orjson.dumps(line).decode() + "\n")
        frames += 1

    async def record() -> None:
        async with open_bitmex_websocket(
            args.network, api_key, api_secret, frame_hook=write
        ) as bws:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_after, args.duration, nursery.cancel_scope)
                for table, symbol in topics:
                    nursery.start_soon(_drain, bws, table, symbol)

    try:
        return run_command(record)
    finally:
        sink.close()
        print(f"{PROG}: wrote {frames} frames to {args.out}", file=sys.stderr)


async def _drain(bws: BitMEXWebsocket, table: str, symbol: str | None) -> None:
    async with aclosing(bws.events(table, symbol)) as events:
        async for _ in events:
            pass


# --------------------------------------------------------------------------- demo


def add_demo(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "demo", help="live order book and trades from an embedded emulator (no network)"
    )
    parser.add_argument("--symbol", default="XBTUSD", help="instrument (default: %(default)s)")
    parser.add_argument("--duration", type=_duration, default=None, help="stop after S seconds")
    parser.add_argument("--depth", type=int, default=10, help="book levels a side (default: 10)")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="market events per second (default: 200)"
    )
    parser.add_argument("--seed", type=int, default=1, help="market seed (default: 1)")
    parser.set_defaults(handler=_run_demo)


class DemoView:
    """What the demo shows, kept from the client's events; rendering is separate."""

    def __init__(self, bws: BitMEXWebsocket, symbol: str, depth: int) -> None:
        self.bws = bws
        self.symbol = symbol
        self.depth = depth
        self.trades: deque[dict[str, Any]] = deque(maxlen=8)
        self.started = trio.current_time()
        self.window: deque[tuple[float, int]] = deque(maxlen=20)

    def rate(self) -> float:
        now, count = trio.current_time(), self.bws.stats.messages
        self.window.append((now, count))
        (then, before) = self.window[0]
        return (count - before) / (now - then) if now > then else 0.0

    def render(self) -> list[str]:
        book = self.bws.storage.book(self.symbol)
        stats = self.bws.stats
        state = "connected" if stats.connected else "reconnecting"
        lines = [
            f"bitmex-trio-websocket demo - {self.symbol} - embedded emulator - {state} - "
            f"{self.rate():,.0f} msg/s - {stats.messages:,} msgs - reconnects {stats.reconnects}",
        ]
        bid, ask = book.best_bid, book.best_ask
        if bid is not None and ask is not None:
            lines.append(f"best bid {bid[0]:,.2f} x {bid[1]:,}   best ask {ask[0]:,.2f} x "
                         f"{ask[1]:,}   spread {ask[0] - bid[0]:,.2f}")  # fmt: skip
        else:
            lines.append("waiting for the order book...")
        lines.append(f"{'bid size':>14} {'bid':>12} | {'ask':<12} {'ask size':<14}")
        bids, asks = book.bids[: self.depth], book.asks[: self.depth]
        for i in range(self.depth):
            left = f"{bids[i][1]:>14,} {bids[i][0]:>12,.2f}" if i < len(bids) else " " * 27
            right = f"{asks[i][0]:<12,.2f} {asks[i][1]:<14,}" if i < len(asks) else ""
            lines.append(f"{left} | {right}")
        lines.append("last trades:")
        for trade in reversed(self.trades):
            lines.append(
                f"  {trade.get('timestamp', '')}  {trade.get('side', ''):<4} "
                f"{trade.get('size', 0):>10,} @ {trade.get('price', 0):,.2f}"
            )
        return lines


def _run_demo(args: argparse.Namespace) -> int:
    from ..emulator import open_emulator

    interactive = sys.stdout.isatty()

    async def demo() -> None:
        async with _demo_session(args, open_emulator) as (bws, view):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_after, args.duration, nursery.cancel_scope)
                nursery.start_soon(_drain, bws, "orderBookL2", args.symbol)
                nursery.start_soon(_collect_trades, bws, view)
                await _show(view, interactive)

    status = run_command(demo)
    if interactive:
        sys.stdout.write("\n")
    return status


@asynccontextmanager
async def _demo_session(
    args: argparse.Namespace, open_emulator: Any
) -> AsyncIterator[tuple[BitMEXWebsocket, DemoView]]:
    async with open_emulator(seed=args.seed, listen=False, rate=args.rate) as emulator:
        if args.symbol not in emulator.market.symbols:
            known = ", ".join(emulator.market.symbols)
            raise CommandError(f"unknown symbol {args.symbol!r} (the emulator has {known})")
        async with open_bitmex_websocket(
            "ws://emulator/realtime", connect=emulator.connect_in_memory
        ) as bws:
            yield bws, DemoView(bws, args.symbol, args.depth)


async def _collect_trades(bws: BitMEXWebsocket, view: DemoView) -> None:
    async with aclosing(bws.listen("trade", view.symbol)) as trades:
        async for trade in trades:
            view.trades.append(trade)


async def _show(view: DemoView, interactive: bool) -> None:
    out = sys.stdout
    while True:
        lines = view.render()
        if interactive:
            # Home the cursor and clear below: the view refreshes in place, no flicker.
            out.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n")
        else:
            best = lines[1]
            out.write(f"{time.strftime('%H:%M:%S')} {lines[0].split(' - ', 3)[-1]} | {best}\n")
        out.flush()
        await trio.sleep(0.25 if interactive else 1.0)
