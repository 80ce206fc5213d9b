"""benchmarks.export still runs (tiny size, one run, no timing asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import export, gen_stream
from benchmarks._common import load_frames

pytest.importorskip("pyarrow")


def test_export_benchmark_runs(tmp_path: Path) -> None:
    stream = tmp_path / "stream.jsonl.gz"
    gen_stream.write_recording(stream, gen_stream.generate(500, seed=3))
    frames = load_frames(stream)
    results = export.measure(stream, frames, runs=1)
    assert len(results) == 4 and all(result.median > 0 for result in results)
    rows, types = export.rows_of(frames, "orderBookL2")
    assert len(rows) > len(frames) and types["price"] == "float"
