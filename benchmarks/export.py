"""Export rates: rows to Parquet, and the replay command's exports end to end.

Theory of operation: the seeded benchmark stream (``gen_stream``: order-book deltas, trades,
instruments) is applied to a ``Storage`` once, outside the clock, to get the rows ``listen`` would
hand out (partial rows, inserts, updates merged with their stored row). Then, interleaved run by
run:

* ``ParquetRowWriter``: the order-book rows, and the trade rows, written to a zstd Parquet file
  (typed by the partial's declared types), ``close`` included: **rows per second**;
* ``replay --out`` end to end: the ``replay`` command reading the stream's recording through
  ``open_bitmex_replay`` and writing ``orderBookL2`` rows to Parquet: rows per second;
* ``replay --book-depth 10 --every 1``: the data-time engine (``DataTimeScan``, ``Storage``,
  ``BookSampler``) writing snapshots to Parquet: **frames** per second read.

Rates are wall-clock medians of ``--runs`` runs (the ``Result.rates`` column holds rows/s or
frames/s as each path's name says).

    python -m benchmarks.export --messages 200000 --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from bitmex_trio_websocket import Storage
from bitmex_trio_websocket._cli import main as cli
from bitmex_trio_websocket._export import ParquetRowWriter

from ._common import Result, add_common_arguments, emit, load_frames
from .gen_stream import stream_path

__all__ = ["main", "measure", "rows_of"]


def rows_of(frames: Sequence[str], table: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows ``listen(table)`` yields over ``frames``, and the table's declared types."""
    storage = Storage()
    rows: list[dict[str, Any]] = []
    types: dict[str, Any] = {}
    for text in frames:
        message = orjson.loads(text)
        if message.get("table") != table:
            continue
        if message.get("action") == "partial" and isinstance(message.get("types"), dict):
            types = message["types"]
        result = storage.apply(message)
        if result.action != "delete":
            for change in result.changes:
                rows.extend(change.rows)
    return rows, types


def _writer_path(rows: list[dict[str, Any]], types: dict[str, Any], out: Path) -> Callable[[], int]:
    def run() -> int:
        with ParquetRowWriter(out, types=types) as writer:
            for row in rows:
                writer.write(row)
        return len(rows)

    return run


def _cli_path(args: list[str], count: Callable[[], int]) -> Callable[[], int]:
    def run() -> int:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            status = cli(args)
        if status != 0:
            raise RuntimeError(f"replay {args} exited {status}")
        return count()

    return run


def measure(stream: Path, frames: Sequence[str], runs: int) -> list[Result]:
    book_rows, book_types = rows_of(frames, "orderBookL2")
    trade_rows, trade_types = rows_of(frames, "trade")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        rows_file, snapshots_file = out / "rows.parquet", out / "book.parquet"
        paths: dict[str, Callable[[], int]] = {
            "ParquetRowWriter: orderBookL2 rows (rows/s)": _writer_path(
                book_rows, book_types, out / "book-rows.parquet"
            ),
            "ParquetRowWriter: trade rows (rows/s)": _writer_path(
                trade_rows, trade_types, out / "trades.parquet"
            ),
            "replay --out: orderBookL2 rows (rows/s)": _cli_path(
                ["replay", str(stream), "orderBookL2", "--out", str(rows_file)],
                lambda: len(book_rows),
            ),
            "replay --book-depth 10 --every 1 (frames/s)": _cli_path(
                [
                    "replay",
                    str(stream),
                    "orderBookL2",
                    "--book-depth",
                    "10",
                    "--every",
                    "1",
                    "--out",
                    str(snapshots_file),
                ],
                lambda: len(frames),
            ),
        }
        results = {name: Result(name, [], len(frames)) for name in paths}
        for _ in range(runs):
            for name, path in paths.items():  # interleaved, so drift hits every path alike
                gc.collect()
                start = time.perf_counter()
                done = path()
                results[name].rates.append(done / (time.perf_counter() - start))
        results["ParquetRowWriter: orderBookL2 rows (rows/s)"].extra["rows"] = len(book_rows)
        results["ParquetRowWriter: trade rows (rows/s)"].extra["rows"] = len(trade_rows)
        results["replay --out: orderBookL2 rows (rows/s)"].extra["file_MiB"] = round(
            rows_file.stat().st_size / 2**20, 2
        )
        results["replay --book-depth 10 --every 1 (frames/s)"].extra["file_MiB"] = round(
            snapshots_file.stat().st_size / 2**20, 2
        )
    return list(results.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export", description=__doc__)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    stream = Path(args.stream or stream_path(args.messages, args.seed))
    frames = load_frames(stream)
    emit(measure(stream, frames, args.runs), args.json, "Export (Parquet; extra 'parquet')")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
