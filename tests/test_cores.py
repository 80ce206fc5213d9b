"""The two cores: the mypyc-compiled one and pure Python behave identically.

Both are loaded side by side (``_storage._core``: the compiled modules live in their own package,
so the pure modules are never shadowed) and fed the same messages: fuzzed sequences of valid and
mutated messages (the fuzzers' generators), and the seeded benchmark stream. After every message
both must have raised the same error or returned equal results, and hold the same rows and books.
The comparisons skip where no compiled core is built; ``BITMEX_TRIO_WEBSOCKET_EXPECT_COMPILED=1``
(set by ``.ci/run``) turns a missing or stale compiled core into a failure instead.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import os
import pickle
import subprocess
import sys
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import cores as cores_benchmark
from benchmarks.gen_stream import generate, write_recording
from bitmex_trio_websocket import ApplyResult, Change, RemoteProtocolError, Storage
from bitmex_trio_websocket._cli import main
from bitmex_trio_websocket._storage import _book, _core, _store
from bitmex_trio_websocket._websocket import _connection, _reader
from bitmex_trio_websocket._websocket._frames import FramingError
from bitmex_trio_websocket._websocket._frames import encode_frame as server_frame_of
from tests.support.fuzz_findings import short
from tests.support.fuzz_messages import SYMBOLS, TABLES, make_row, table_message
from tests.support.fuzz_model import canon
from tests.support.fuzz_strategies import SUITE, Issued, between, flip, mutate, valid_message

EXPECT_COMPILED = os.environ.get("BITMEX_TRIO_WEBSOCKET_EXPECT_COMPILED", "") not in ("", "0")
COMPILED, WHY = _core.compiled_module()
needs_compiled = pytest.mark.skipif(COMPILED is None, reason=f"no compiled core: {WHY}")


def compiled_storage(**options: Any) -> _store.Storage:
    assert COMPILED is not None
    storage: _store.Storage = COMPILED.Storage(**options)
    return storage


def test_the_compiled_core_is_there_when_expected() -> None:
    if not EXPECT_COMPILED:
        pytest.skip("BITMEX_TRIO_WEBSOCKET_EXPECT_COMPILED is not set")
    assert COMPILED is not None, WHY
    pure_variable = os.environ.get(_core.PURE_VARIABLE, "") not in ("", "0")
    assert (Storage is _store.Storage) == pure_variable
    pure = "pure Python (BITMEX_TRIO_WEBSOCKET_PURE is set)"
    assert (pure if pure_variable else "compiled (mypyc)") == _core.CORE


def test_the_pure_modules_are_never_shadowed() -> None:
    assert _book.__file__ is not None and _book.__file__.endswith(".py")
    assert _store.__file__ is not None and _store.__file__.endswith(".py")
    if COMPILED is not None:
        assert COMPILED.__file__ is not None and not COMPILED.__file__.endswith(".py")


def test_the_environment_variable_forces_pure_python() -> None:
    code = "from bitmex_trio_websocket._storage import _core, _store, Storage; "
    code += "print(_core.CORE); assert Storage is _store.Storage"
    env = {**os.environ, _core.PURE_VARIABLE: "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure Python (BITMEX_TRIO_WEBSOCKET_PURE is set)"


def test_version_names_the_active_core(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    out = capsys.readouterr().out
    assert f"store core: {_core.CORE}" in out


@needs_compiled
def test_a_stale_build_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_core, "source_hash", lambda: "0" * 64)
    store, why = _core.compiled_module()
    assert store is None and "stale" in why


def _outcome(storage: _store.Storage, message: Any) -> Any:
    try:
        return storage.apply(message)
    except RemoteProtocolError as exc:
        return ("refused", exc.message, exc.frame)


def _image(storage: _store.Storage) -> Any:
    """What a user can read: every table's rows, keys, and both sides of every book."""
    books = {
        (table, symbol): (book.bids[:], book.asks[:])
        for table in ("orderBookL2", "orderBookL2_25", "orderBook10")
        for symbol in (*SYMBOLS, "NEWUSD")
        for book in [storage.book(symbol, table)]
    }
    rows = {table: storage.rows(table) for table in storage.data}
    gates = {table: storage.has_partial(table) for table in TABLES}
    return rows, dict(storage.keys), books, gates


def _same(pure: _store.Storage, fast: _store.Storage, message: Any) -> None:
    # apply never changes the message (the fuzzers check it), so both take the same one; canon
    # compares values nested ~1000 deep (beyond depth 9, by identity) without recursing.
    expected = canon(_outcome(pure, message))
    assert canon(_outcome(fast, message)) == expected, short(message)
    assert canon(_image(fast)) == canon(_image(pure))


@needs_compiled
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_cores_agree_on_fuzzed_messages(data: st.DataObject) -> None:
    ttl = data.draw(st.sampled_from([60.0, 0.0, None]))
    pure = _store.Storage(max_table_len=5, closed_order_ttl=ttl)
    fast = compiled_storage(max_table_len=5, closed_order_ttl=ttl)
    tables = data.draw(st.lists(st.sampled_from(TABLES), min_size=1, max_size=3, unique=True))
    issued: Issued = defaultdict(set)
    for table in tables:
        rows = [make_row(table, s, n) for s in SYMBOLS for n in range(3)]
        if table == "orderBook10":
            rows = [make_row(table, "XBTUSD", 0)]
        for s in SYMBOLS:
            issued[(table, s)].update(range(3))
        _same(pure, fast, table_message(table, "partial", rows))
    for _ in range(between(data, 1, 12)):
        if between(data, 0, 5) == 0:
            table = data.draw(st.sampled_from(tables))
            symbol = data.draw(st.sampled_from([None, *SYMBOLS]))
            pure.reset(table, symbol)
            fast.reset(table, symbol)
            continue
        message: Any = valid_message(data, issued, tables, SUITE)
        if flip(data):
            message = mutate(data, message, SUITE)
        _same(pure, fast, message)


@needs_compiled
def test_cores_agree_on_the_benchmark_stream() -> None:
    pure, fast = _store.Storage(), compiled_storage()
    messages = [
        m for m in (orjson.loads(text) for _, text in generate(3000, seed=3)) if "table" in m
    ]
    assert len(messages) > 2000
    for message in messages:
        assert fast.apply(message) == pure.apply(message)
    assert _image(fast) == _image(pure)
    # Views, copies and pickles of the compiled store are what the pure one gives.
    assert copy.deepcopy(fast.data) == copy.deepcopy(pure.data)
    assert pickle.loads(pickle.dumps(fast.data)) == pure.data
    assert repr(fast.book("XBTUSD")) == repr(pure.book("XBTUSD"))


@needs_compiled
def test_python_subclasses_of_the_compiled_store_work() -> None:
    assert COMPILED is not None

    class Counting(COMPILED.Storage):  # type: ignore[name-defined,misc]
        applied = 0

        def apply(self, message: Any) -> Any:
            self.applied += 1
            return super().apply(message)

    storage = Counting()
    storage.apply(table_message("trade", "partial", [make_row("trade", "XBTUSD", 0)]))
    assert storage.applied == 1 and len(storage.rows("trade")) == 1


@pytest.mark.parametrize("core", ["pure", "compiled"])
def test_both_cores_hand_out_genuine_frozen_results(core: str) -> None:
    # The result objects are built by _book's own twin constructors (C in the compiled core).
    if core == "compiled" and COMPILED is None:
        pytest.skip(f"no compiled core: {WHY}")
    storage = _store.Storage() if core == "pure" else compiled_storage()
    rows = [make_row("orderBookL2", "XBTUSD", n) for n in range(2)]
    storage.apply(table_message("orderBookL2", "partial", rows, "XBTUSD"))
    update = {**rows[0], "size": 7}
    result = storage.apply(table_message("orderBookL2", "update", [update], "XBTUSD"))
    (change,) = result.changes
    assert type(result) is ApplyResult and type(change) is Change
    assert change == Change("orderBookL2", "update", "XBTUSD", (update,))
    assert result == ApplyResult("orderBookL2", "update", (change,), 0, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.rows = ()  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(result)) == result and repr(result).startswith("ApplyResult(")


def test_the_comparison_sees_a_store_that_differs() -> None:
    class LosesDeletes(_store.Storage):
        def apply(self, message: Any) -> Any:
            if isinstance(message, dict) and message.get("action") == "delete":
                message = {**message, "data": message["data"][1:]}
            return super().apply(message)

    pure, broken = _store.Storage(), LosesDeletes()
    rows = [make_row("orderBookL2", "XBTUSD", n) for n in range(3)]
    _same(pure, broken, table_message("orderBookL2", "partial", rows, "XBTUSD"))
    with pytest.raises(AssertionError):
        _same(pure, broken, table_message("orderBookL2", "delete", rows[:1], "XBTUSD"))


def test_the_cores_benchmark_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stream = tmp_path / "stream.jsonl"
    write_recording(stream, generate(500, seed=1))
    argv = ["--stream", str(stream), "--runs", "1", "--no-oldlib", "--levels", "200", "--json"]
    assert cores_benchmark.main(argv) == 0
    out = capsys.readouterr().out
    assert "Storage.apply, pure Python" in out and "bytes_per_level" in out
    assert ("compiled (mypyc)" in out) == (COMPILED is not None)


class _FakeOldlib:
    """Stands in for the 2021 library's process: one second a segment, turns counted."""

    def __init__(self) -> None:
        self.readies = 0
        self.segments = 0

    def ready(self) -> None:
        self.readies += 1

    def segment(self) -> tuple[float, float]:
        self.segments += 1
        return 1.0, 0.5


def test_the_cores_benchmark_pairs_every_segment_with_the_2021_section() -> None:
    frames = [text for _, text in generate(500, seed=1)]
    messages = sum(1 for text in frames if '"table"' in text)
    fake = _FakeOldlib()
    results = cores_benchmark.measure(frames, 2, fake, segment=100)  # type: ignore[arg-type]
    turns = -(-messages // 100)
    assert (fake.readies, fake.segments) == (2, 2 * turns)
    by_path = {r.path: r for r in results}
    old = by_path[cores_benchmark.OLDLIB_PATH]
    assert old.rates == [messages / turns] * 2  # its own seconds, summed over its turns
    ours = by_path["Storage.apply, pure Python"]
    # Its time over ours, run by run: our rate over its rate in the same run.
    expected = sorted(rate / old.rates[0] for rate in ours.rates)
    assert ours.extra["x_2021_storage"] == round((expected[0] + expected[1]) / 2, 2)
    assert ours.extra["x_2021_storage_runs"] == [round(r / old.rates[0], 2) for r in ours.rates]
    assert old.extra["cpu_us_per_msg"] == round(turns * 0.5 / messages * 1e6, 2)


# ------------------------------------------------------------------------------ frame reader


def _read_all(reader_class: Any, chunks: list[bytes], max_size: int) -> tuple[Any, ...]:
    """Everything a reader makes of ``chunks``: messages, controls, and the error that ended it."""
    reader = reader_class(max_size)
    messages: list[bytes] = []
    try:
        for chunk in chunks:
            messages.extend(reader.feed(chunk))
    except FramingError as exc:
        return (messages, reader.controls, (exc.code, exc.reason, exc.messages))
    return (messages, reader.controls, None)


def test_the_active_frame_reader_is_the_active_cores() -> None:
    compiled = Storage is not _store.Storage
    assert (_connection.FrameReader is not _reader.FrameReader) == compiled
    if compiled:
        assert _connection.FrameReader.__module__ == "bitmex_trio_websocket._compiled._reader"


_FRAME = st.tuples(
    st.sampled_from([0x0, 0x1, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB]),  # with unknown opcodes
    st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
    st.booleans(),  # fin
    st.integers(0, 20),  # 0: a well-formed header; else the header's first byte is mangled
)


@needs_compiled
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=st.lists(_FRAME, max_size=12), cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_frame_readers_agree(frames: list[tuple[int, bytes, bool, int]], cuts: list[int]) -> None:
    assert COMPILED is not None
    fast = importlib.import_module("bitmex_trio_websocket._compiled._reader").FrameReader
    data = b""
    for opcode, payload, fin, mangle in frames:
        frame = bytearray(server_frame_of(opcode, payload, None))
        if not fin:
            frame[0] &= 0x7F  # a fragment: continuations must follow
        if mangle == 1:
            frame[0] |= 0x40  # a reserved bit
        elif mangle == 2:
            frame[1] |= 0x80  # masked, from a server
        data += bytes(frame)
    bounds = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]
    for max_size in (64, 1 << 20):
        expected = _read_all(_reader.FrameReader, chunks, max_size)
        assert _read_all(fast, chunks, max_size) == expected


# ------------------------------------------------------------------------- errors, both cores


def _store_classes() -> list[Any]:
    return [_store.Storage] + ([COMPILED.Storage] if COMPILED is not None else [])


def _reader_classes() -> list[Any]:
    found: list[Any] = [_reader.FrameReader]
    if COMPILED is not None:
        found.append(importlib.import_module("bitmex_trio_websocket._compiled._reader").FrameReader)
    return found


def _shown(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize("store_class", _store_classes())
def test_a_row_without_its_key_is_reported_without_a_chained_keyerror(store_class: Any) -> None:
    storage = store_class()
    rows = [{"symbol": "XBTUSD", "lastPrice": 1.0}]
    storage.apply({"table": "instrument", "action": "partial", "keys": ["symbol"], "data": rows})
    with pytest.raises(RemoteProtocolError, match="lacks key field 'symbol'") as caught:
        storage.apply({"table": "instrument", "action": "update", "data": [{"lastPrice": 2.0}]})
    # mypyc ignores ``raise ... from None``: the compiled core must not show the KeyError either.
    assert "KeyError" not in _shown(caught.value)
    assert "During handling" not in _shown(caught.value)


@pytest.mark.parametrize("reader_class", _reader_classes())
def test_bad_utf8_is_reported_without_a_chained_decode_error(reader_class: Any) -> None:
    frame = server_frame_of(0x1, b'{"a":"\xff"}', None)
    with pytest.raises(FramingError, match="not valid UTF-8") as caught:
        reader_class(1 << 20).feed(frame)
    assert caught.value.code == 1007
    assert "UnicodeDecodeError" not in _shown(caught.value)
