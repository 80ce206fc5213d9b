"""Shared plumbing of the benchmarks: streams on disk, timing, results, websocket frame bytes.

Theory of operation: every benchmark module measures one or more *paths* over the same seeded
stream (see ``gen_stream``), runs each path ``--runs`` times and reports the median rate plus the
process's peak resident memory. With ``--json`` a module prints one JSON object per path on
stdout (``run_all`` starts each module in its own process and reads these, so peak memory is
per module and no module warms another's caches); otherwise it prints a table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from bitmex_trio_websocket._websocket import OP_TEXT, encode_frame

__all__ = [
    "BENCH_TABLES",
    "Result",
    "add_common_arguments",
    "cache_dir",
    "emit",
    "load_frames",
    "peak_rss_mib",
    "print_table",
    "text_frame",
]

# The three topics the benchmarks listen to; the stream holds exactly these tables.
BENCH_TABLES: Final = ("orderBookL2", "trade", "instrument")


@dataclass
class Result:
    """One measured path: its rate in every run and what the run was about."""

    path: str
    rates: list[float]  # messages (frames) per second, one per run
    messages: int  # frames per run
    peak_rss_mib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 1024 / 1024


def cache_dir() -> Path:
    """Where generated streams are kept between runs (``BENCH_CACHE`` overrides)."""
    path = Path(os.environ.get("BENCH_CACHE", Path(tempfile.gettempdir()) / "bitmex-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_frames(path: str | os.PathLike[str]) -> list[str]:
    """The received frames of a recording (JSON Lines, gzip if the name ends in ``.gz``)."""
    opener: Any = gzip.open if os.fspath(path).endswith(".gz") else open
    frames: list[str] = []
    with opener(path, "rb") as lines:
        for line in lines:
            if line.strip():
                row = orjson.loads(line)
                if row.get("dir") == "recv" and isinstance(row.get("frame"), str):
                    frames.append(row["frame"])
    return frames


def text_frame(text: str | bytes) -> bytes:
    """One unmasked (server to client) websocket text frame carrying ``text``."""
    return encode_frame(OP_TEXT, text.encode() if isinstance(text, str) else text, None)


def add_common_arguments(parser: argparse.ArgumentParser, *, runs: int = 3) -> None:
    parser.add_argument("--messages", type=int, default=200_000, help="stream length (frames)")
    parser.add_argument("--seed", type=int, default=1, help="market seed")
    parser.add_argument("--runs", type=int, default=runs, help="runs per path (median reported)")
    parser.add_argument("--stream", default=None, help="use this recording instead of generating")
    parser.add_argument("--json", action="store_true", help="one JSON object per path on stdout")


def emit(results: Iterable[Result], as_json: bool, title: str) -> None:
    results = list(results)
    rss = peak_rss_mib()
    for result in results:
        result.peak_rss_mib = result.peak_rss_mib or rss
    if as_json:
        for result in results:
            print(json.dumps({**asdict(result), "median": result.median}), flush=True)
    else:
        print_table(title, results)


def print_table(title: str, results: Sequence[Result]) -> None:
    print(f"\n{title}")
    header = f"{'path':<52} {'median msg/s':>13} {'runs (msg/s)':>32} {'peak RSS':>10}"
    print(header)
    print("-" * len(header))
    for r in results:
        runs = ", ".join(f"{rate:,.0f}" for rate in r.rates)
        print(f"{r.path:<52} {r.median:>13,.0f} {runs:>32} {r.peak_rss_mib:>7.0f} MiB")
        for key, value in r.extra.items():
            print(f"    {key}: {value}")
