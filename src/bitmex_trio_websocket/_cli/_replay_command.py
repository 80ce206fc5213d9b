"""The ``replay`` command: BitMEX's history as JSON rows, Parquet, book snapshots or a plot.

Theory of operation: ``replay SOURCE [TOPIC...]`` reads a recording, Tardis slices (a file or a
cache folder) or a tardis-machine URL. There are two engines, chosen by what is asked for:

* **rows** (the default, and ``--out FILE.parquet`` without ``--book-depth``): the library's own
  ``open_bitmex_replay``, listened to exactly as ``listen`` listens to a live connection, so the
  rows are the ones a program would get (``--speed X`` paces them by the recorded times). Rows go
  to stdout as JSON lines, or to Parquet for one topic (``_export.ParquetRowWriter``, typed by
  the topic's partial when the source has one near its start);
* **data time** (``--book-depth N``, ``--plot FILE.png``): snapshots and plots must see the store
  as it was at given moments of the data, between two messages, so the command drives a
  ``Storage`` itself (``_export.DataTimeScan``) and samples it (``BookSampler``, ``MarketSeries``)
  before each message. Files only: a tardis-machine replay carries no receive times.

Both run through ``run_command``: Ctrl-C stops a long export cleanly (the Parquet file written so
far is finished, status 0), library errors are one line. A missing extra (``parquet``, ``plot``)
is found before reading anything. On a terminal a progress line (messages, data time reached,
rate) is drawn on stderr; never into a pipe or a file.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import aclosing, suppress
from typing import Any, Final, TextIO

import orjson
import trio

from .. import _protocol as proto
from .._exceptions import BitMEXError
from .._export import (
    BookSampler,
    DataTimeScan,
    MarketSeries,
    MissingExtraError,
    ParquetRowWriter,
    Progress,
    render_plot,
    require,
    snapshot_types,
)
from .._storage import Storage
from ._client_commands import _topics
from ._run import PROG, CommandError, Subparsers, run_command

__all__ = ["add_replay"]

BOOK_TABLES: Final = ("orderBookL2", "orderBookL2_25", "orderBook10")
_TYPES_PEEK: Final = 100_000  # frames read at most to find the exported table's partial
_FLUSH_ROWS: Final = 1024  # unpaced rows are written in blocks, not a flush per line


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def add_replay(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "replay",
        help="replay BitMEX history: JSON rows, Parquet, book snapshots or a plot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Replay a recording, Tardis raw slices (a file, .gz or .zst, or a cache folder) or a\n"
            "tardis-machine ws://.../ws-replay URL through the library, and print one JSON row\n"
            "per line like 'listen' (rows end by themselves at the end of the data).\n"
            "\n"
            "  replay day.json.gz orderBookL2:XBTUSD trade:XBTUSD --count 100\n"
            "  replay day.json.gz trade:XBTUSD --out trades.parquet\n"
            "  replay cache/feeds/bitmex/HASH orderBookL2:XBTUSD --book-depth 10 --every 1\n"
            "  replay day.json.gz orderBookL2:XBTUSD --plot xbtusd.png\n"
            "\n"
            "BitMEX closed on 2026-09-23; its history (Tardis.dev) and recordings remain."
        ),
    )
    parser.add_argument("source", metavar="SOURCE", help="recording, slice file, folder or URL")
    parser.add_argument("topics", nargs="*", metavar="TABLE[:SYMBOL]")
    parser.add_argument(
        "--speed",
        type=_positive_float,
        default=None,
        help="pace rows by the recorded times, X times real time (default: as fast as read)",
    )
    parser.add_argument(
        "--count", type=_positive_int, default=None, help="stop after N rows (or snapshots)"
    )
    parser.add_argument(
        "--out",
        metavar="FILE.parquet",
        default=None,
        help="write rows of one topic (or the snapshots) to Parquet (extra 'parquet')",
    )
    parser.add_argument(
        "--book-depth",
        type=_positive_int,
        default=None,
        metavar="N",
        help="write order-book snapshots (top N levels each side) instead of rows",
    )
    parser.add_argument(
        "--every",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="snapshot interval in seconds of data time (default: 1; with --plot: volume bars)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="draw mid price, spread and traded volume over data time (extra 'plot')",
    )
    parser.set_defaults(handler=_run_replay)


def _run_replay(args: argparse.Namespace) -> int:
    try:
        topics = _topics(args.topics)
        data_time = args.book_depth is not None or args.plot is not None
        _check(args, topics, data_time)
    except CommandError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.out is not None:
            require("pyarrow.parquet", extra="parquet", purpose="--out (Parquet)")
        if args.plot is not None:
            require("matplotlib.figure", extra="plot", purpose="--plot")
    except MissingExtraError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    if data_time:
        return _run_data_time(args, topics)
    return _run_rows(args, topics)


def _check(args: argparse.Namespace, topics: list[tuple[str, str | None]], data_time: bool) -> None:
    """What can be refused before reading anything (``CommandError``: status 2)."""
    is_url = args.source.startswith(("ws://", "wss://"))
    if args.every is not None and not data_time:
        raise CommandError("--every goes with --book-depth or --plot")
    if data_time:
        if is_url:
            raise CommandError(
                "--book-depth and --plot read files (a tardis-machine replay carries no "
                "receive times): give a recording or Tardis slices"
            )
        if args.speed is not None:
            raise CommandError("--speed paces printed rows; snapshots and plots run in data time")
        if args.plot is not None and args.out is not None and args.book_depth is None:
            raise CommandError("--plot with --out needs --book-depth (the snapshots to write)")
        if args.book_depth is not None:
            if any(table not in BOOK_TABLES for table, _ in topics):
                raise CommandError(
                    f"--book-depth samples order books: give {', '.join(BOOK_TABLES)} topics"
                )
            if len({table for table, _ in topics}) > 1:
                raise CommandError("--book-depth samples one book table at a time")
    else:
        if not topics:
            raise CommandError("name the topics to replay, e.g. orderBookL2:XBTUSD trade:XBTUSD")
        if args.out is not None and len(topics) != 1:
            raise CommandError("--out writes the rows of one topic: name exactly one")


_PROGRESS_INTERVAL = 0.25  # seconds of wall time between redraws


def _progress() -> Progress | None:
    if not sys.stderr.isatty():
        return None
    return Progress(sys.stderr, now=time.monotonic, interval=_PROGRESS_INTERVAL)


# --------------------------------------------------------------------------- rows


def _run_rows(args: argparse.Namespace, topics: list[tuple[str, str | None]]) -> int:
    from .._replay import open_bitmex_replay

    out = sys.stdout
    paced = args.speed is not None
    writer: ParquetRowWriter | None = None
    written = 0
    last_row: Mapping[str, Any] | None = None

    def to_stdout(row: Mapping[str, Any]) -> None:
        out.write(orjson.dumps(row).decode() + "\n")
        if paced or written % _FLUSH_ROWS == 0:
            out.flush()

    async def replay() -> None:
        nonlocal writer, written, last_row
        if args.out is not None:
            writer = ParquetRowWriter(args.out, types=_declared_types(args.source, topics[0][0]))
        sink: Callable[[Mapping[str, Any]], None] = to_stdout if writer is None else writer.write
        names = [proto.make_topic(table, symbol) for table, symbol in topics]
        progress = _progress()
        async with open_bitmex_replay(args.source, topics=names, speed=args.speed) as bws:
            async with trio.open_nursery() as nursery:
                if progress is not None:
                    nursery.start_soon(_draw_rows_progress, progress, bws, lambda: last_row)

                async def pump(table: str, symbol: str | None) -> None:
                    nonlocal written, last_row
                    async with aclosing(bws.listen(table, symbol)) as rows:
                        async for row in rows:
                            # Rows of one message come without a checkpoint (a partial may
                            # hold thousands), so a cancel alone would not stop them in time.
                            if args.count is not None and written >= args.count:
                                nursery.cancel_scope.cancel()
                                return
                            written += 1
                            last_row = row
                            sink(row)
                            if args.count is not None and written >= args.count:
                                nursery.cancel_scope.cancel()
                                return

                async with trio.open_nursery() as pumps:
                    for table, symbol in topics:
                        pumps.start_soon(pump, table, symbol)
                nursery.cancel_scope.cancel()  # the data ended: stop drawing progress
            if progress is not None:
                progress.close(bws.stats.messages, _data_time(bws, last_row))

    try:
        status = run_command(replay)
    finally:
        if writer is not None:
            writer.close()
            print(f"{PROG}: {writer.summary()}", file=sys.stderr)
        else:
            _flush_quietly(out)
    return status


async def _draw_rows_progress(
    progress: Progress, bws: Any, last_row: Callable[[], Mapping[str, Any] | None]
) -> None:
    while True:
        await trio.sleep(progress.interval)
        progress.update(bws.stats.messages, _data_time(bws, last_row()))


def _data_time(bws: Any, row: Mapping[str, Any] | None) -> float | None:
    """The data time reached: the replay's own (files) or, failing that, the rows' timestamps."""
    reached = getattr(bws.stats, "data_time", None)
    return reached if isinstance(reached, float) else _row_time(row)


def _row_time(row: Mapping[str, Any] | None) -> float | None:
    """Data time as the rows tell it (their BitMEX ``timestamp``), for the progress line."""
    stamp = row.get("timestamp") if row is not None else None
    if not isinstance(stamp, str):
        return None
    try:
        return Storage.parse_timestamp(stamp).timestamp()
    except ValueError:
        return None


def _declared_types(source: str, table: str) -> dict[str, object] | None:
    """The ``types`` of ``table``'s first partial near the start of a file source, if any."""
    if source.startswith(("ws://", "wss://")):
        return None
    from .._replay import iter_frames

    prefix = f'{{"table":"{table}","action":"partial"'
    for seen, frame in enumerate(iter_frames(source)):
        if seen >= _TYPES_PEEK:
            break
        text = frame.text
        if text.startswith(prefix) or (f'"{table}"' in text and '"partial"' in text):
            message = orjson.loads(text)
            if (
                isinstance(message, dict)
                and message.get("table") == table
                and message.get("action") == "partial"
                and isinstance(message.get("types"), dict)
            ):
                return dict(message["types"])
    return None


def _flush_quietly(out: TextIO) -> None:
    with suppress(BrokenPipeError, ValueError):
        out.flush()


# --------------------------------------------------------------------------- data time


def _run_data_time(args: argparse.Namespace, topics: list[tuple[str, str | None]]) -> int:
    book_table = next((t for t, _ in topics if t in BOOK_TABLES), None)
    if book_table is None:
        book_table = "quote" if any(t == "quote" for t, _ in topics) else "orderBookL2"
    symbols = [s for t, s in topics if t == book_table and s is not None]
    every_symbol = any(t == book_table and s is None for t, s in topics) or not symbols
    tables = {book_table} | ({"trade"} if args.plot is not None else set())
    out = sys.stdout
    writer: ParquetRowWriter | None = None
    series: MarketSeries | None = None
    written = 0

    async def replay() -> None:
        nonlocal writer, series, written
        storage = Storage()
        scan = DataTimeScan(args.source, tables=tables)
        sampler: BookSampler | None = None
        if args.book_depth is not None:
            sampler = BookSampler(
                storage,
                depth=args.book_depth,
                every=args.every or 1.0,
                table=book_table,
                symbols=None if every_symbol else symbols,
            )
            if args.out is not None:
                writer = ParquetRowWriter(args.out, types=snapshot_types(args.book_depth))
        if args.plot is not None:
            series = MarketSeries(symbol=symbols[0] if symbols else None, book_table=book_table)
        progress = _progress()

        def emit(rows: list[dict[str, Any]]) -> bool:
            """Write snapshot rows; ``False`` once ``--count`` is reached."""
            nonlocal written
            for row in rows:
                if writer is not None:
                    writer.write(row)
                else:
                    out.write(orjson.dumps(row).decode() + "\n")
                written += 1
                if args.count is not None and written >= args.count:
                    return False
            return True

        going = True
        for t, message in scan.messages_of():
            if sampler is not None and not emit(sampler.advance(t)):
                going = False
                break
            result = scan.apply(storage, message)
            if sampler is not None:
                sampler.note(result, t)
            if series is not None:
                series.note(result, t, storage)
            if progress is not None and scan.messages % 256 == 0:
                progress.update(scan.messages, scan.data_time, scan.fraction)
        if going and sampler is not None:
            emit(sampler.finish())
        if progress is not None:
            progress.close(scan.messages, scan.data_time)

    try:
        status = run_command(replay)
    finally:
        if writer is not None:
            writer.close()
            print(f"{PROG}: {writer.summary()}", file=sys.stderr)
        else:
            _flush_quietly(out)
    if status == 0 and series is not None:
        try:
            bucket = render_plot(series, args.plot, bucket=args.every)
        except (BitMEXError, OSError) as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
        chosen = series.chosen()
        symbol = chosen[0] if chosen else "?"
        print(f"{PROG}: drew {symbol} to {args.plot} (volume per {bucket:g} s)", file=sys.stderr)
    return status
