"""Replay fixtures built from the real captures: recordings, Tardis slices, cache folders.

The captures are read in place from ``../shared/captures`` (tests skip when it is absent) and
rewritten here into each source format the replay reads, so every format carries the same real
BitMEX session (cryptofeed's 2021 mainnet capture: ``orderBookL2``, ``quote`` and ``trade``
partials for 10 symbols, then deltas in the pre-2023 format without prices).
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from bitmex_trio_websocket import Storage

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "captures"
CRYPTOFEED = CAPTURES / "cryptofeed_BITMEX.ws.1.0.jsonl"

Frame = tuple[float, str]  # (receive time, server frame text)


def captured_session() -> list[Frame]:
    """The server frames of cryptofeed's capture, with their receive times (skip if absent)."""
    if not CRYPTOFEED.exists():
        pytest.skip("the shared captures are not available")
    frames = []
    for line in CRYPTOFEED.read_bytes().splitlines():
        row = orjson.loads(line)
        if row["dir"] == "server":
            frames.append((float(row["ts"]), row["raw"]))
    return frames


def table_frames(frames: Iterable[Frame]) -> list[Frame]:
    """Only the table messages (no welcome, no acks)."""
    return [(t, text) for t, text in frames if text.startswith('{"table"')]


def stamp(t: float) -> str:
    """Tardis's 28-character receive time: ``2021-07-22T22:36:07.8752670Z``."""
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def stamped_time(t: float) -> float:
    """The time a slice line written by ``stamp`` reads back as (microsecond precision)."""
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.replace(microsecond=0).timestamp() + moment.microsecond / 1e6


def slice_bytes(frames: Iterable[Frame]) -> bytes:
    return b"".join(f"{stamp(t)} {text}\n".encode() for t, text in frames)


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gz":
        return gzip.compress(data)
    if compression == "zst":
        return zstandard.ZstdCompressor().compress(data)
    return data


def write_slices(path: Path, frames: Iterable[Frame], compression: str = "") -> Path:
    path.write_bytes(compress(slice_bytes(frames), compression))
    return path


def recording_bytes(frames: Iterable[Frame], sent: Sequence[str] = ()) -> bytes:
    """The ``record`` command's format, with our own subscribe commands first."""
    rows: list[dict[str, Any]] = [{"t": 0.0, "dir": "send", "frame": text} for text in sent]
    rows += [{"t": t, "dir": "recv", "frame": text} for t, text in frames]
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def filters_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def write_cache_folder(
    root: Path, frames: Sequence[Frame], *, filters: str = "all", compression: str = "gz"
) -> Path:
    """A Tardis client cache for one subscription set: one file per minute of data."""
    folder = root / "feeds" / "bitmex" / filters_hash(filters)
    minutes: dict[str, list[Frame]] = {}
    for t, text in frames:
        minute = datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y/%m/%d/%H/%M")
        minutes.setdefault(minute, []).append((t, text))
    suffix = ".json.gz" if compression == "gz" else ".json.zst" if compression else ".json"
    for minute, chunk in minutes.items():
        path = folder / f"{minute}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_slices(path, chunk, compression)
    return folder


def stretched(frames: Sequence[Frame], factor: float) -> list[Frame]:
    """The same frames with the gaps between them ``factor`` times longer (spans minutes)."""
    start = frames[0][0]
    return [(start + (t - start) * factor, text) for t, text in frames]


def reference_book(
    frames: Iterable[Frame], symbol: str, table: str = "orderBookL2"
) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """An independent recomputation of one book from the messages, with plain dicts: levels by
    id from the symbol's latest partial on (deltas before it ignored, as BitMEX clients must),
    prices kept from the insert when an update carries none. Returns ``(bids, asks)`` as
    ``(price, size)`` lists, bids highest first."""
    levels: dict[Any, dict[str, Any]] | None = None
    for _, text in frames:
        message = orjson.loads(text)
        if not isinstance(message, dict) or message.get("table") != table:
            continue
        rows = [row for row in message["data"] if row.get("symbol") == symbol]
        action = message["action"]
        if action == "partial":
            filt = message.get("filter") or {}
            if filt.get("symbol", symbol) != symbol:
                continue
            levels = {row["id"]: dict(row) for row in rows}
        elif levels is None:
            continue
        elif action == "insert":
            levels.update({row["id"]: dict(row) for row in rows})
        elif action == "update":
            for row in rows:
                levels[row["id"]] = {**levels[row["id"]], **row}
        elif action == "delete":
            for row in rows:
                del levels[row["id"]]
    levels = levels or {}
    bids = sorted(
        ((row["price"], row["size"]) for row in levels.values() if row["side"] == "Buy"),
        reverse=True,
    )
    asks = sorted((row["price"], row["size"]) for row in levels.values() if row["side"] == "Sell")
    return bids, asks


def book_levels(storage: Storage, symbol: str) -> tuple[list[Any], list[Any]]:
    book = storage.book(symbol)
    return [tuple(level) for level in book.bids], [tuple(level) for level in book.asks]


def expected_rows(frames: Iterable[Frame], table: str, symbol: str) -> list[dict[str, Any]]:
    """What ``listen(table, symbol)`` must yield over the whole data, recomputed with plain
    dicts: from the symbol's first partial on, the partial's rows, inserted rows and updated
    rows merged with their stored state (deletes are not yielded)."""
    stored: dict[Any, dict[str, Any]] | None = None
    out: list[dict[str, Any]] = []
    for _, text in frames:
        message = orjson.loads(text)
        if not isinstance(message, dict) or message.get("table") != table:
            continue
        rows = [row for row in message["data"] if row.get("symbol") == symbol]
        keys = ("id", "side") if table.startswith("orderBook") else None
        action = message["action"]
        if action == "partial":
            filt = message.get("filter") or {}
            if filt.get("symbol", symbol) != symbol:
                continue
            stored = {}
            for n, row in enumerate(rows):
                stored[tuple(row[k] for k in keys) if keys else n] = row
            out.extend(rows)
        elif stored is None:
            continue
        elif action == "insert":
            out.extend(rows)
            if keys:
                stored.update({tuple(row[k] for k in keys): row for row in rows})
        elif action == "update" and keys:
            for row in rows:
                key = tuple(row[k] for k in keys)
                stored[key] = {**stored[key], **row}
                out.append(stored[key])
        elif action == "delete" and keys:
            for row in rows:
                stored.pop(tuple(row[k] for k in keys))
    return out
