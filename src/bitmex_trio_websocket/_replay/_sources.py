"""Replay sources: recordings and Tardis raw slices on disk -> server frames in time order.

Theory of operation
-------------------
``iter_frames(source)`` yields one ``ReplayFrame`` per server-to-client frame: its receive time,
its text exactly as received, and where it came from (file and 1-based line). It reads files and
nothing else: no clock, no trio, no decoding of the frames themselves (the replay decides which
frames it needs before paying for JSON).

A source is a file, a folder, or a list of these:

* a **recording** (JSON Lines, ``{"t": ..., "dir": "recv"|"send", "frame": "..."}``, what the
  ``record`` command writes): only received rows are frames. The capture shape of other projects'
  test data (``"ts"``, ``"dir": "server"``, ``"raw"`` or ``"msg"``) is read too;
* a **Tardis raw slice** file: ``<timestamp> <message>`` lines, the timestamp Tardis's time of
  receipt (``2021-07-01T00:00:40.1234567Z``, 28 characters), the message BitMEX's text unchanged;
* a **folder** of slices, replayed in time order: a tardis-dev, tardis-client or tardis-node cache
  folder for one subscription set (``feeds/bitmex/<sha256>/YYYY/MM/DD/HH/MM.json.gz``, ordered by
  the path's date) or any folder of slice files (ordered by each file's first timestamp). A
  folder holding several subscription sets is refused: their data overlaps in time;
* a **list** of the above, replayed in the order given.

Formats are told by content, never by name: a file starting with the gzip or zstd magic number is
decompressed (zstd through the ``zstandard`` package: Python 3.11 has no zstd), and its first
non-empty line says whether it is a recording (a JSON object) or slices (a timestamp).

Bad input is a ``ReplaySourceError`` naming the file and line: an unknown format, a truncated or
corrupt compressed stream, a malformed line, a file that starts before the previous file ended.
Rows of a recording that are not received frames (``send``, ``connect``) and empty lines are
skipped; in Tardis slices an empty line marks a disconnect of Tardis's recorder (``disconnects``).
A cache holding one minute both as ``.json.zst`` and ``.json.gz`` is read from the zstd file.
Within one file, times are taken as recorded (pacing never waits for an earlier time).
"""

from __future__ import annotations

import datetime
import gzip
import os
import re
import zlib
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import orjson

from .._events import fast_constructor
from .._exceptions import ReplaySourceError

__all__ = [
    "RECORDING",
    "SLICES",
    "ReplayFrame",
    "ReplaySource",
    "detect_format",
    "iter_frames",
    "source_files",
]

ReplaySource: TypeAlias = "str | os.PathLike[str] | Sequence[str | os.PathLike[str]]"

RECORDING: Final = "recording"
SLICES: Final = "slices"

_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_CHUNK: Final = 1 << 20
# Tardis writes 7 fractional digits; any count (or none) is read, the "Z" is required.
_STAMP: Final = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")
# <anything>/<64 hex: the subscription set>/YYYY/MM/DD/HH/MM[.size-N].json[.gz|.zst]
_CACHE_PATH: Final = re.compile(
    r"(?:^|.*/)([0-9a-f]{64})/(\d{4})/(\d\d)/(\d\d)/(\d\d)/(\d\d)((?:\.size-\d+)?)"
    r"\.json(\.gz|\.zst)?$"
)
_RECEIVED: Final = frozenset({"recv", "server"})


@dataclass(frozen=True, slots=True)
class ReplayFrame:
    """One server-to-client frame of a replay source."""

    received_at: float  # seconds since the Unix epoch (a recording's "t", a slice line's stamp)
    text: str  # the server frame's text exactly as received
    origin: str  # the file it came from
    line: int  # 1-based line number in that file


_new_frame: Final = fast_constructor(ReplayFrame)


def iter_frames(source: ReplaySource, *, disconnects: bool = False) -> Iterator[ReplayFrame]:
    """Server-to-client frames of ``source`` in time order (see the module docstring).

    ``ReplaySourceError`` for anything that cannot be read; files are opened one at a time, as
    the iteration reaches them. With ``disconnects``, a recorder's disconnect (an empty line in
    Tardis slices: its connection to BitMEX dropped, so what follows starts afresh) is yielded
    too, as a frame with empty ``text`` and the time of the frame before it.
    """
    previous: ReplayFrame | None = None
    for path in source_files(source):
        first = True
        for frame in _file_frames(path, disconnects):
            if not frame.text:
                if previous is not None and previous.text:  # one marker per gap
                    previous = _new_frame(previous.received_at, "", frame.origin, frame.line)
                    yield previous
                continue
            if first:
                first = False
                if previous is not None and frame.received_at < previous.received_at:
                    raise ReplaySourceError(
                        f"time goes backwards between files: this file starts at "
                        f"{frame.received_at:.7f}, before {previous.origin}:{previous.line} "
                        f"({previous.received_at:.7f}); give files in time order",
                        path=frame.origin,
                        line=frame.line,
                    )
            previous = frame
            yield frame


# ---------------------------------------------------------------------- files and folders


def source_files(source: ReplaySource) -> list[str]:
    """The files of ``source`` in replay order (folders expanded)."""
    if isinstance(source, str | os.PathLike):
        items: list[str | os.PathLike[str]] = [source]
    else:
        items = list(source)
        if not items:
            raise ReplaySourceError("an empty list of replay sources")
    files: list[str] = []
    for item in items:
        if not isinstance(item, str | os.PathLike):
            raise ReplaySourceError(f"a replay source must be a path, not {type(item).__name__}")
        path = os.fspath(item)
        if os.path.isdir(path):
            files.extend(_folder_files(path))
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ReplaySourceError("no such file or folder", path=path)
    return files


def _folder_files(folder: str) -> list[str]:
    found = sorted(
        str(p)
        for p in Path(folder).rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not found:
        raise ReplaySourceError("the folder holds no files", path=folder)
    cached: dict[tuple[str, ...], str] = {}
    sets: set[str] = set()
    others: list[str] = []
    for name in found:
        match = _CACHE_PATH.match(Path(name).as_posix())
        if match is None:
            others.append(name)
            continue
        sets.add(match[1])
        slice_key = match.groups()[1:7]
        # The clients fetch a slice as zstd or gzip; with both cached, one is the other's copy.
        if slice_key not in cached or match[8] == ".zst":
            cached[slice_key] = name
    if len(sets) > 1:
        raise ReplaySourceError(
            f"the folder holds {len(sets)} Tardis subscription sets, whose data overlaps in time: "
            "pass the folder of one of them (feeds/bitmex/<hash>)",
            path=folder,
        )
    if cached and others:
        raise ReplaySourceError(
            f"the folder mixes a Tardis cache with other files (e.g. {others[0]})", path=folder
        )
    if cached:
        return [name for _, name in sorted(cached.items())]
    # Any folder of slice files: ordered by each file's first timestamp, then by name.
    return [name for _, name in sorted((_first_time(name), name) for name in others)]


def _first_time(path: str) -> float:
    with closing(_file_frames(path, False)) as frames:
        for frame in frames:
            return frame.received_at
    return float("-inf")  # an empty file goes first; it yields nothing


# ---------------------------------------------------------------------- one file


def detect_format(first_line: bytes) -> str | None:
    """``RECORDING``, ``SLICES`` or ``None`` for the first non-empty line of a file."""
    if first_line.startswith(b"{"):
        return RECORDING
    if _STAMP.match(first_line) is not None:
        return SLICES
    return None


def _file_frames(path: str, disconnects: bool = False) -> Generator[ReplayFrame, None, None]:
    parse = None
    for number, line in _numbered_lines(path):
        if not line:
            if disconnects and parse is _slice_frame:
                yield _new_frame(0.0, "", path, number)
            continue
        if parse is None:
            kind = detect_format(line)
            if kind is None:
                raise ReplaySourceError(
                    'unknown format: neither a recording (JSON Lines with "dir") nor Tardis '
                    f'slices ("<timestamp> <message>" lines); the line starts {line[:40]!r}',
                    path=path,
                    line=number,
                )
            parse = _recording_frame if kind == RECORDING else _slice_frame
        frame = parse(path, number, line)
        if frame is not None:
            yield frame


def _numbered_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """``(line number, line without its end)`` of a plain, gzip or zstd file."""
    number = 0
    try:
        with open(path, "rb") as raw:
            magic = raw.read(4)
            raw.seek(0)
            if magic.startswith(_GZIP_MAGIC):
                stream: Any = gzip.GzipFile(fileobj=raw, mode="rb")
                lines: Iterator[bytes] = iter(stream)
            elif magic == _ZSTD_MAGIC:
                lines = _zstd_lines(raw)
            else:
                lines = iter(raw)
            for line in lines:
                number += 1
                yield number, line.rstrip(b"\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error, _ZstdTruncated) as exc:
        raise ReplaySourceError(
            f"the compressed stream is truncated or corrupt after line {number} ({exc})",
            path=path,
            line=number + 1,
        ) from exc
    except OSError as exc:
        raise ReplaySourceError(f"cannot read the file: {exc}", path=path) from exc


class _ZstdTruncated(Exception):
    """The zstd stream ended inside a frame (never leaves this module)."""


def _zstd_lines(raw: Any) -> Iterator[bytes]:
    try:
        import zstandard
    except ImportError:  # pragma: no cover (a dependency; only a broken install lacks it)
        raise ReplaySourceError(
            "a zstd file needs the zstandard package (pip install zstandard)", path=raw.name
        ) from None
    decompressor = zstandard.ZstdDecompressor()
    frame: Any = None  # the decompressor of the zstd frame in progress
    pending = tail = b""
    while True:
        chunk = pending or raw.read(_CHUNK)
        pending = b""
        if not chunk:
            if frame is not None:
                raise _ZstdTruncated("the zstd stream ends inside a frame")
            break
        if frame is None:
            frame = decompressor.decompressobj()
        try:
            data = tail + frame.decompress(chunk)
        except zstandard.ZstdError as exc:
            raise _ZstdTruncated(f"corrupt zstd data: {exc}") from None
        if frame.eof:  # a multi-frame file: what follows starts the next frame
            pending, frame = frame.unused_data, None
        # Complete lines go out as they come, so memory stays bounded for big files.
        cut = data.rfind(b"\n") + 1
        if cut:
            yield from data[: cut - 1].split(b"\n")
        tail = data[cut:]
    if tail:
        yield tail


# ---------------------------------------------------------------------- lines


def _recording_frame(path: str, number: int, line: bytes) -> ReplayFrame | None:
    try:
        row = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ReplaySourceError(
            f"a recording line that is not JSON ({exc})", path=path, line=number
        ) from None
    if type(row) is not dict:
        raise ReplaySourceError(
            "a recording line that is not a JSON object", path=path, line=number
        )
    direction = row.get("dir")
    if direction not in _RECEIVED:
        if not isinstance(direction, str):
            raise ReplaySourceError(
                'a recording line without a "dir" (expected "recv" or "send")',
                path=path,
                line=number,
            )
        return None  # what the client sent, a socket opening: not a server frame
    text = row.get("frame", row.get("raw"))
    if text is None and "msg" in row:
        text = orjson.dumps(row["msg"]).decode()
    t = row.get("t", row.get("ts"))
    if type(text) is not str:
        raise ReplaySourceError("a received row without its frame text", path=path, line=number)
    if not isinstance(t, float | int) or isinstance(t, bool):
        raise ReplaySourceError(
            'a received row without a numeric receive time ("t")', path=path, line=number
        )
    return _new_frame(float(t), text, path, number)


_minute_starts: dict[bytes, float] = {}


def _slice_frame(path: str, number: int, line: bytes) -> ReplayFrame:
    space = line.find(b" ")
    stamp = _STAMP.fullmatch(line, 0, space) if space > 0 else None
    if stamp is None:
        raise ReplaySourceError(
            f'a malformed slice line (expected "<timestamp> <message>"): {line[:60]!r}',
            path=path,
            line=number,
        )
    minute = line[:16]
    start = _minute_starts.get(minute)
    if start is None:
        try:
            year, month, day, hour, minute_of_hour = map(int, stamp.groups()[:5])
            moment = datetime.datetime(year, month, day, hour, minute_of_hour, tzinfo=datetime.UTC)
        except ValueError:
            raise ReplaySourceError(
                f"a slice line with an impossible timestamp {line[:space]!r}",
                path=path,
                line=number,
            ) from None
        start = moment.timestamp()
        if len(_minute_starts) > 4096:  # a day has 1440 minutes; never grow without bound
            _minute_starts.clear()
        _minute_starts[minute] = start
    seconds = int(stamp[6])
    fraction = stamp[7]
    if fraction is not None:
        seconds += int(fraction) / 10 ** len(fraction)
    try:
        text = line[space + 1 :].decode()
    except UnicodeDecodeError as exc:
        raise ReplaySourceError(
            f"a slice line that is not UTF-8 ({exc})", path=path, line=number
        ) from None
    return _new_frame(start + seconds, text, path, number)
