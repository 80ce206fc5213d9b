"""Seeded benchmark stream from the emulator's market model, written in the recording format.

Theory of operation: a ``Market(seed=...)`` makes events; every public delta of the chosen tables
becomes one frame, after the partials a subscriber would get first (``orderBookL2`` one partial
per symbol, as BitMEX sends for ``orderBookL2:SYMBOL`` and as the 2021 library requires; the
other tables one whole-table partial). Partials count towards the ``--messages`` total. Times
advance by ``1 / rate`` per market event, so ``--speed 1`` replays at about ``rate`` events per
second. The same seed and length always give the same bytes. Restricted to the three
benchmark tables the stream is ~95% ``orderBookL2`` messages, ~1.4 rows a frame (the market is
calibrated to BitMEX's captures since issue 16: 1.3 rows per book message).

    python -m benchmarks.gen_stream --messages 200000 --seed 1 --out stream.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bitmex_trio_websocket.emulator import Market

from ._common import BENCH_TABLES, cache_dir

__all__ = ["generate", "main", "mix", "stream_path", "write_recording"]

START = 1_735_689_600.0


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _partial(market: Market, table: str, symbol: str | None) -> str:
    snap = market.snapshot(table, symbol)
    return _dumps(
        {
            "table": table,
            "action": "partial",
            "keys": snap.keys,
            "types": snap.types,
            # pre-2023 metadata (empty): the 2021 library reads "attributes" from every partial
            "foreignKeys": snap.foreign_keys,
            "attributes": snap.attributes,
            "filter": snap.filter,
            "data": snap.rows,
        }
    )


def generate(
    messages: int, seed: int = 1, tables: Sequence[str] = BENCH_TABLES, rate: float = 5000.0
) -> list[tuple[float, str]]:
    """``messages`` frames ``(t, text)``: partials first, then the market's deltas."""
    market = Market(seed=seed, start_time=START)
    wanted = frozenset(tables)
    out: list[tuple[float, str]] = []
    for table in tables:
        if table == "orderBookL2":
            out.extend((START, _partial(market, table, s)) for s in market.symbols)
        else:
            out.append((START, _partial(market, table, None)))
    step = 1.0 / rate
    event = 0
    while len(out) < messages:
        event += 1
        now = START + event * step
        for delta in market.step(now):
            if delta.account is None and delta.table in wanted and len(out) < messages:
                message = {"table": delta.table, "action": delta.action, "data": delta.rows}
                out.append((now, _dumps(message)))
    return out[:messages]


def write_recording(path: str | os.PathLike[str], frames: Sequence[tuple[float, str]]) -> None:
    """JSON Lines ``{"t", "dir": "recv", "frame"}``; gzip when the name ends in ``.gz``."""
    lines = b"".join(
        orjson.dumps({"t": t, "dir": "recv", "frame": text}) + b"\n" for t, text in frames
    )
    tmp = Path(f"{os.fspath(path)}.tmp")
    if os.fspath(path).endswith(".gz"):
        with gzip.open(tmp, "wb", compresslevel=3) as out:
            out.write(lines)
    else:
        tmp.write_bytes(lines)
    tmp.replace(path)


def stream_path(messages: int, seed: int = 1) -> Path:
    """The cached recording for ``(messages, seed)``, generated on first use."""
    path = cache_dir() / f"stream-{messages}-seed{seed}.jsonl.gz"
    if not path.exists():
        write_recording(path, generate(messages, seed))
    return path


def mix(frames: Sequence[str]) -> dict[str, Any]:
    """Share of frames per table and action, and rows per frame."""
    tables: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    rows = 0
    for text in frames:
        message = orjson.loads(text)
        tables[message["table"]] += 1
        actions[message["action"]] += 1
        rows += len(message["data"])
    n = max(1, len(frames))
    book_deltas = sum(
        1 for text in frames if text.startswith('{"table":"orderBookL2","action":"') and
        '"action":"partial"' not in text[:60]
    )  # fmt: skip
    return {
        "frames": len(frames),
        "tables": {k: round(v / n, 4) for k, v in tables.most_common()},
        "actions": {k: round(v / n, 4) for k, v in actions.most_common()},
        "book_delta_share": round(book_deltas / n, 4),
        "rows_per_frame": round(rows / n, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gen_stream", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=5000.0, help="market events per second")
    parser.add_argument("--tables", default=",".join(BENCH_TABLES), help="comma-separated")
    parser.add_argument("--out", default=None, help="file (.jsonl or .jsonl.gz); default: cache")
    args = parser.parse_args(argv)
    tables = [t for t in args.tables.split(",") if t]
    frames = generate(args.messages, args.seed, tables, args.rate)
    default = tables == list(BENCH_TABLES) and args.rate == 5000.0
    out = args.out or cache_dir() / f"stream-{args.messages}-seed{args.seed}.jsonl.gz"
    if args.out or not default or not Path(out).exists():
        if not args.out and not default:
            out = cache_dir() / f"stream-{args.messages}-seed{args.seed}-custom.jsonl.gz"
        write_recording(out, frames)
    print(out)
    print(orjson.dumps(mix([text for _, text in frames])).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
