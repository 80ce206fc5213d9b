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

How it reads, for speed. Files are read (and decompressed: zlib for gzip, ``zstandard`` for zstd)
in blocks of about 1 MiB of complete lines, so memory stays bounded whatever the file's size and
there is no Python call per line to split them. ``iter_batches`` yields each block's frames as
one ``FrameBatch`` (the replay's unit of work): for a block of Tardis slice lines that are all
plain (ASCII, no ``\r``, every line ``<28-character stamp> {...}``) a replay that decodes a
frame gives its bytes to orjson as they are. With the compiled core, one C call
(``_compiled._lines.split_plain``, from ``_lines.c``) checks the block and cuts it into the
frames' texts (``line[29:]``) and receive times in one pass; in pure Python, ``isascii``, a
search for ``\r`` and two regular expressions check the whole block, the batch holds the lines
themselves, and a frame's text and time are read only when asked for (the time only for pacing
and ``data_time``). Both take exactly the same blocks and read the same texts and times
(``tests/replay/test_plain_lines.py``). Other blocks (a
recording, odd stamps, non-ASCII text, a disconnect marker, a bad line) are read line by line as
before, into frames with their text and time; a bad line ends its batch, and the error is raised
after the frames before it were handed out. ``iter_frames`` yields the frames of those batches.

(About 650 lines, over the usual 600: the formats, the blocks and the two readers of plain lines
share their private helpers and are read together; split, each part would import the others'.)
"""

from __future__ import annotations

import datetime
import os
import re
import zlib
from array import array
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final, TypeAlias

import orjson

from .._events import fast_constructor
from .._exceptions import ReplaySourceError
from .._storage._core import core_module

__all__ = [
    "RECORDING",
    "SLICES",
    "FrameBatch",
    "Gap",
    "ReplayFrame",
    "ReplaySource",
    "detect_format",
    "iter_batches",
    "iter_frames",
    "source_files",
]

ReplaySource: TypeAlias = "str | os.PathLike[str] | Sequence[str | os.PathLike[str]]"

RECORDING: Final = "recording"
SLICES: Final = "slices"

_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_BLOCK: Final = 1 << 20  # decompressed bytes per block of lines
_INPUT: Final = 1 << 17  # compressed bytes per step: bounds what one step can expand to
_ZSTD_FIRST_INPUT: Final = 64  # a zstd file's first step: its ratio is not known yet
_ZSTD_MIN_INPUT: Final = 64
# Tardis writes 7 fractional digits; any count (or none) is read, the "Z" is required.
_STAMP: Final = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z")
# The plain slice line: a 28-character stamp that _STAMP reads and datetime accepts (a real
# date of years 1-9999, hour < 24, minute < 60; seconds unchecked, as _STAMP), a space, and a
# JSON object. Only blocks whose every line is plain take the lazy path.
_DATE: Final = (
    rb"(?!0000)(?:\d{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
    rb"|(?:0[13578]|1[02])-31)|(?:\d\d(?:0[48]|[2468][048]|[13579][26])"
    rb"|(?:[02468][048]|[13579][26])00)-02-29)"
)
_PLAIN: Final = _DATE + rb"T(?:[01]\d|2[0-3]):[0-5]\d:\d\d\.\d{7}Z \{"
_PLAIN_FIRST: Final = re.compile(_PLAIN)
_NOT_PLAIN_NEXT: Final = re.compile(rb"\n(?!" + _PLAIN + rb")")
_PLAIN_TEXT_AT: Final = 29  # where a plain line's frame text starts
# <anything>/<64 hex: the subscription set>/YYYY/MM/DD/HH/MM[.size-N].json[.gz|.zst]
_CACHE_PATH: Final = re.compile(
    r"(?:^|.*/)([0-9a-f]{64})/(\d{4})/(\d\d)/(\d\d)/(\d\d)/(\d\d)((?:\.size-\d+)?)"
    r"\.json(\.gz|\.zst)?$"
)
_RECEIVED: Final = frozenset({"recv", "server"})


def _compiled_splitter() -> Callable[[bytes], tuple[list[bytes], bytes] | None] | None:
    """The compiled core's ``split_plain`` while the compiled core is active, else ``None``."""
    try:
        module = core_module("_lines")
    except ImportError:  # a build without it: its hash would not match, but never half-use one
        return None
    return None if module is None else module.split_plain


# Chosen once, as the store's core; tests set it to None to compare with the pure path.
_split_plain = _compiled_splitter()


@dataclass(frozen=True, slots=True)
class ReplayFrame:
    """One server-to-client frame of a replay source."""

    received_at: float  # seconds since the Unix epoch (a recording's "t", a slice line's stamp)
    text: str  # the server frame's text exactly as received
    origin: str  # the file it came from
    line: int  # 1-based line number in that file


_new_frame: Final = fast_constructor(ReplayFrame)


class FrameBatch:
    """Consecutive frames of one file (see the module docstring).

    ``payloads[i]`` holds frame ``i``: its text (``str``), or, when ``times`` is ``None``, a
    plain slice line's text as ``bytes`` (ASCII) from ``offset`` on: the whole line (offset 29,
    its time read from it) or, when ``stamps`` holds the times, the text alone (offset 0).
    ``lines`` are the frames' line numbers, ``None`` when they follow each other from ``first``.
    """

    __slots__ = ("first", "lines", "offset", "origin", "payloads", "stamps", "times")

    def __init__(
        self,
        origin: str,
        payloads: list[bytes] | list[str],
        offset: int,
        first: int,
        lines: list[int] | None = None,
        times: list[float] | None = None,
        stamps: array[float] | None = None,
    ) -> None:
        self.origin = origin
        self.payloads = payloads
        self.offset = offset
        self.first = first
        self.lines = lines
        self.times = times
        self.stamps = stamps

    def __len__(self) -> int:
        return len(self.payloads)

    def time_of(self, index: int) -> float:
        """Frame ``index``'s receive time (seconds since the Unix epoch)."""
        if self.stamps is not None:
            return self.stamps[index]
        if self.times is not None:
            return self.times[index]
        return _plain_time(self.payloads[index])  # type: ignore[arg-type]

    def line_of(self, index: int) -> int:
        return self.first + index if self.lines is None else self.lines[index]

    def text_of(self, index: int) -> str:
        payload = self.payloads[index]
        if type(payload) is str:
            return payload
        return payload[self.offset :].decode("ascii")  # type: ignore[union-attr]

    def frame(self, index: int) -> ReplayFrame:
        return _new_frame(
            self.time_of(index), self.text_of(index), self.origin, self.line_of(index)
        )


@dataclass(frozen=True, slots=True)
class Gap:
    """A disconnect of Tardis's recorder (an empty line in slices), at the time of the frame
    before it."""

    received_at: float
    origin: str
    line: int


def iter_frames(source: ReplaySource, *, disconnects: bool = False) -> Iterator[ReplayFrame]:
    """Server-to-client frames of ``source`` in time order (see the module docstring).

    ``ReplaySourceError`` for anything that cannot be read; files are opened one at a time, as
    the iteration reaches them. With ``disconnects``, a recorder's disconnect (an empty line in
    Tardis slices: its connection to BitMEX dropped, so what follows starts afresh) is yielded
    too, as a frame with empty ``text`` and the time of the frame before it.
    """
    for batch in iter_batches(source, disconnects=disconnects):
        if type(batch) is Gap:
            yield _new_frame(batch.received_at, "", batch.origin, batch.line)
            continue
        frame = batch.frame  # type: ignore[union-attr]
        for index in range(len(batch)):  # type: ignore[arg-type]
            yield frame(index)


def iter_batches(
    source: ReplaySource, *, disconnects: bool = False
) -> Generator[FrameBatch | Gap, None, None]:
    """``iter_frames`` in batches: each ``FrameBatch`` holds one or more frames, a ``Gap``
    (with ``disconnects``) is a recorder's disconnect."""
    last_time: float | None = None
    last_origin, last_line = "", 0
    after_frame = False  # one marker per gap, and none before the first frame
    for path in source_files(source):
        first = True
        for batch in _file_batches(path, disconnects):
            if type(batch) is Gap:
                if after_frame and last_time is not None:
                    after_frame = False
                    last_origin, last_line = batch.origin, batch.line
                    yield Gap(last_time, batch.origin, batch.line)
                continue
            assert type(batch) is FrameBatch
            if first:
                first = False
                start = batch.time_of(0)
                if last_time is not None and start < last_time:
                    raise ReplaySourceError(
                        f"time goes backwards between files: this file starts at "
                        f"{start:.7f}, before {last_origin}:{last_line} "
                        f"({last_time:.7f}); give files in time order",
                        path=batch.origin,
                        line=batch.line_of(0),
                    )
            end = len(batch) - 1
            last_time, last_origin, last_line = batch.time_of(end), path, batch.line_of(end)
            after_frame = True
            yield batch


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
    with closing(_file_batches(path, False)) as batches:
        for batch in batches:
            if type(batch) is FrameBatch:
                return batch.time_of(0)
    return float("-inf")  # an empty file goes first; it yields nothing


# ---------------------------------------------------------------------- one file


def detect_format(first_line: bytes) -> str | None:
    """``RECORDING``, ``SLICES`` or ``None`` for the first non-empty line of a file."""
    if first_line.startswith(b"{"):
        return RECORDING
    if _STAMP.match(first_line) is not None:
        return SLICES
    return None


def _file_batches(path: str, disconnects: bool = False) -> Generator[FrameBatch | Gap, None, None]:
    kind: str | None = None
    split = _split_plain
    for number, block, lines, times in _blocks(path, split):
        if kind is None:
            kind = _block_format(block)
        if kind is SLICES and times is not None:
            yield FrameBatch(path, lines, 0, number, stamps=times)
        elif kind is SLICES and split is None and _is_plain(block):
            # (with ``split``, a block it refused is one _is_plain refuses too)
            yield FrameBatch(path, lines, _PLAIN_TEXT_AT, number)
        else:
            if times is not None:  # plain lines in a recording: read (and refused) as it is
                lines = block.split(b"\n")
            kind = yield from _line_by_line(path, number, lines, kind, disconnects)


def _is_plain(block: bytes) -> bool:
    """Whether every line of ``block`` is a plain slice line (the pure-Python check)."""
    return (
        block.isascii()
        and b"\r" not in block
        and _PLAIN_FIRST.match(block) is not None
        and _NOT_PLAIN_NEXT.search(block) is None
    )


def _block_format(block: bytes) -> str | None:
    """The format told by the first non-empty line of ``block`` (None: none, or unknown)."""
    start = 0
    while True:
        end = block.find(b"\n", start)
        line = block[start : end if end >= 0 else len(block)].rstrip(b"\r\n")
        if line:
            return detect_format(line)
        if end < 0:
            return None
        start = end + 1


def _line_by_line(
    path: str, number: int, block: list[bytes], kind: str | None, disconnects: bool
) -> Generator[FrameBatch | Gap, None, str | None]:
    """The frames of the lines of ``block`` read one at a time (any format, any oddity);
    returns the file's format once known."""
    texts: list[str] = []
    times: list[float] = []
    lines: list[int] = []
    parse = None if kind is None else _recording_frame if kind is RECORDING else _slice_frame
    try:
        for offset, line in enumerate(block):
            line = line.rstrip(b"\r\n")
            if not line:
                if disconnects and parse is _slice_frame:
                    if texts:
                        yield FrameBatch(path, texts, 0, lines[0], lines, times)
                        texts, times, lines = [], [], []
                    yield Gap(0.0, path, number + offset)
                continue
            if parse is None:
                kind = detect_format(line)
                if kind is None:
                    raise ReplaySourceError(
                        'unknown format: neither a recording (JSON Lines with "dir") nor Tardis '
                        f'slices ("<timestamp> <message>" lines); the line starts {line[:40]!r}',
                        path=path,
                        line=number + offset,
                    )
                parse = _recording_frame if kind is RECORDING else _slice_frame
            frame = parse(path, number + offset, line)
            if frame is not None:
                texts.append(frame[1])
                times.append(frame[0])
                lines.append(number + offset)
    except ReplaySourceError:
        # What was read before a bad line is replayed before its error is raised.
        if texts:
            yield FrameBatch(path, texts, 0, lines[0], lines, times)
        raise
    if texts:
        yield FrameBatch(path, texts, 0, lines[0], lines, times)
    return kind


def _blocks(
    path: str, split: Callable[[bytes], tuple[list[bytes], bytes] | None] | None
) -> Iterator[tuple[int, bytes, list[bytes], array[float] | None]]:
    """``(number of its first line, block, its lines, None)`` for each block of whole lines of
    a plain, gzip or zstd file: lines joined by ``\\n``, without the last one's; a last line
    without an end is a block of its own. Where ``split`` (the compiled ``split_plain``) takes
    the block as plain slice lines: ``(number, block, the frames' texts, their times)``."""
    number = 1  # of the next line
    try:
        with open(path, "rb") as raw:
            magic = raw.read(4)
            raw.seek(0)
            if magic.startswith(_GZIP_MAGIC):
                chunks = _gzip_chunks(raw)
            elif magic == _ZSTD_MAGIC:
                chunks = _zstd_chunks(raw)
            else:
                chunks = iter(lambda: raw.read(_BLOCK), b"")
            pending: list[bytes] = []  # the start of a line longer than what came so far
            for chunk in chunks:
                cut = chunk.rfind(b"\n")
                if cut < 0:
                    pending.append(chunk)
                    continue
                if pending:  # (a view: the chunk is copied once, into the block)
                    block = b"".join([*pending, memoryview(chunk)[:cut]])
                    pending = []
                else:
                    block = chunk[:cut]
                rest = chunk[cut + 1 :]
                if rest:
                    pending.append(rest)
                lines, times = _cut(block, split)
                yield number, block, lines, times
                number += len(lines)
            if pending:
                block = b"".join(pending)
                yield number, block, *_cut(block, split)
    except (EOFError, zlib.error, _Truncated) as exc:
        raise ReplaySourceError(
            f"the compressed stream is truncated or corrupt after line {number - 1} ({exc})",
            path=path,
            line=number,
        ) from exc
    except OSError as exc:
        raise ReplaySourceError(f"cannot read the file: {exc}", path=path) from exc


def _cut(
    block: bytes, split: Callable[[bytes], tuple[list[bytes], bytes] | None] | None
) -> tuple[list[bytes], array[float] | None]:
    """A block's lines, or (as ``split`` takes it as plain) its frames' texts and times."""
    plain = None if split is None else split(block)
    if plain is None:
        return block.split(b"\n"), None
    times = array("d")
    times.frombytes(plain[1])
    return plain[0], times


class _Truncated(Exception):
    """The compressed stream ended inside a frame or member (never leaves this module)."""


def _gzip_chunks(raw: BinaryIO) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file, any number of members (as ``gzip`` reads them:
    zero bytes between or after members are padding), at most ``_BLOCK`` at a time."""
    data = raw.read(_INPUT)
    while data:
        member = zlib.decompressobj(31)  # 31: a gzip header and trailer (its CRC is checked)
        while True:
            out = member.decompress(data, _BLOCK)
            if out:
                yield out
            if member.eof:
                data = member.unused_data
                break
            data = member.unconsumed_tail or raw.read(_INPUT)
            if not data:
                out = member.flush()
                if out:
                    yield out
                if not member.eof:
                    raise _Truncated(
                        "Compressed file ended before the end-of-stream marker was reached"
                    )
                data = member.unused_data
                break
        while True:
            data = data.lstrip(b"\x00")
            if data:
                break
            data = raw.read(_INPUT)
            if not data:
                return


def _zstd_chunks(raw: BinaryIO) -> Iterator[bytes]:
    try:
        import zstandard
    except ImportError:  # pragma: no cover (a dependency; only a broken install lacks it)
        raise ReplaySourceError(
            "a zstd file needs the zstandard package (pip install zstandard)", path=raw.name
        ) from None
    decompressor = zstandard.ZstdDecompressor()
    frame: Any = None  # the decompressor of the zstd frame in progress
    pending = b""
    # zstandard's decompressobj has no output limit and zstd expands up to ~32,000-fold (RLE
    # blocks), so each step is given only as much input as should expand to about a block, by
    # the ratio of the step before (at least _ZSTD_MIN_INPUT: a step yields ~2 MiB at worst), and
    # twice as much after a step that gave nothing.
    size = _ZSTD_FIRST_INPUT
    while True:
        if pending:
            chunk, pending = pending[:size], pending[size:]
        else:
            chunk = raw.read(size)
        if not chunk:
            if frame is not None:
                raise _Truncated("the zstd stream ends inside a frame")
            return
        if frame is None:
            frame = decompressor.decompressobj()
        try:
            out = frame.decompress(chunk)
        except zstandard.ZstdError as exc:
            raise _Truncated(f"corrupt zstd data: {exc}") from None
        if frame.eof:  # a multi-frame file: what follows starts the next frame
            pending, frame = frame.unused_data + pending, None
        if out:
            size = max(_ZSTD_MIN_INPUT, min(_INPUT, _BLOCK * len(chunk) // len(out)))
            yield out
        else:  # inside a compressed block (decoded whole): more input, until it ends
            size = min(_INPUT, 2 * size)


# ---------------------------------------------------------------------- lines


def _recording_frame(path: str, number: int, line: bytes) -> tuple[float, str] | None:
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
    return float(t), text


_minute_starts: dict[bytes, float] = {}


def _minute_start(minute: bytes, stamp: re.Match[bytes]) -> float:
    """The epoch time of a stamp's minute (``ValueError`` for an impossible date), cached."""
    year, month, day, hour, minute_of_hour = map(int, stamp.groups()[:5])
    start = datetime.datetime(
        year, month, day, hour, minute_of_hour, tzinfo=datetime.UTC
    ).timestamp()
    if len(_minute_starts) > 4096:  # a day has 1440 minutes; never grow without bound
        _minute_starts.clear()
    _minute_starts[minute] = start
    return start


def _plain_time(line: bytes) -> float:
    """The receive time of a plain slice line (its stamp already checked)."""
    minute = line[:16]
    start = _minute_starts.get(minute)
    if start is None:
        stamp = _STAMP.match(line)
        assert stamp is not None
        start = _minute_start(minute, stamp)
    # The same arithmetic as _slice_frame, so both paths read the same float.
    return start + (int(line[17:19]) + int(line[20:27]) / 10**7)


def _slice_frame(path: str, number: int, line: bytes) -> tuple[float, str]:
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
            start = _minute_start(minute, stamp)
        except ValueError:
            raise ReplaySourceError(
                f"a slice line with an impossible timestamp {line[:space]!r}",
                path=path,
                line=number,
            ) from None
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
    return start + seconds, text
