"""The store cores side by side: ``Storage.apply`` pure Python, compiled (mypyc), and the 2021
library's storage section, on the same seeded stream; bytes per stored level for each core.

Theory of operation: the stream's table messages are parsed once with ``orjson`` before any
clock starts, and ``gc.freeze()`` moves them out of the collector's view (a client parses and
drops each frame; a list of 200,000 parsed frames would otherwise make every full collection in
the timed loop scan millions of objects that are not the store's). Each run applies every message
to a fresh store of each core in turn (interleaved, so drift hits all alike), and reports the
wall-clock rate and the median CPU time per message (``time.process_time``, less disturbed by
other processes on a shared machine). The 2021 library runs in its own venv
(``_oldlib_storage.py``, built by ``benchmarks.oldlib``) on the same file, its rows parsed afresh
per run since its updates mutate them, one run after each round of ours (so load drifting over the
benchmark hits both alike); ``x_2021_storage`` compares median rates, ``x_2021_storage_cpu``
median CPU times per message. Rates count table messages (partials included).

    python -m benchmarks.cores --messages 200000 --runs 3            # add --no-oldlib to skip it
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from bitmex_trio_websocket._storage import _core, _store

from . import memory, oldlib
from ._common import Result, add_common_arguments, emit, load_frames
from .gen_stream import stream_path

__all__ = ["cores", "main", "measure"]

DRIVER = Path(__file__).with_name("_oldlib_storage.py")


def cores() -> dict[str, Callable[[], Any]]:
    """Store factories by path name: pure Python always, the compiled core where it is built."""
    found: dict[str, Callable[[], Any]] = {"Storage.apply, pure Python": _store.Storage}
    compiled, _ = _core.compiled_module()
    if compiled is not None:
        found["Storage.apply, compiled (mypyc)"] = compiled.Storage
    return found


def measure(
    frames: Sequence[str], runs: int, between: Callable[[], object] | None = None
) -> list[Result]:
    """Every core ``runs`` times, interleaved; ``between`` is called after each round (the 2021
    library's run goes there, so that load drifting over the benchmark hits all alike)."""
    messages = [m for m in map(orjson.loads, frames) if "table" in m]
    gc.collect()
    gc.freeze()
    factories = cores()
    results = {name: Result(name, [], len(messages)) for name in factories}
    cpu: dict[str, list[float]] = {name: [] for name in factories}
    try:
        for _ in range(runs):
            for name, factory in factories.items():
                apply = factory().apply
                gc.collect()
                start_cpu, start = time.process_time(), time.perf_counter()
                for message in messages:
                    apply(message)
                results[name].rates.append(len(messages) / (time.perf_counter() - start))
                cpu[name].append((time.process_time() - start_cpu) / len(messages) * 1e6)
            if between is not None:
                gc.unfreeze()  # the other process runs now; ours are frozen again after it
                between()
                gc.freeze()
    finally:
        gc.unfreeze()
    for name, result in results.items():
        result.extra["cpu_us_per_msg"] = round(statistics.median(cpu[name]), 2)
    return list(results.values())


def measure_oldlib(stream: Path, runs: int) -> Result:
    python = oldlib.ensure_venv()
    command = [str(python), str(DRIVER), str(stream), "--runs", str(runs)]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=oldlib.venv_dir(), env=oldlib._clean_env()
    )
    if done.returncode != 0:
        raise RuntimeError(f"2021 library storage driver failed:\n{done.stderr[-4000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    result = Result(data["path"], data["rates"], data["messages"])
    result.extra["cpu_us_per_msg"] = data["cpu_us_per_msg"]
    return result


def bytes_per_level(levels: int) -> dict[str, float]:
    return {
        name: memory.measure(levels, factory)[0].extra["bytes_per_level"]
        for name, factory in cores().items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cores", description=__doc__)
    add_common_arguments(parser)
    parser.add_argument("--no-oldlib", action="store_true", help="skip the 2021 library")
    parser.add_argument("--levels", type=int, default=20_000, help="book size for bytes/level")
    args = parser.parse_args(argv)
    stream = Path(args.stream) if args.stream else stream_path(args.messages, args.seed)
    olds: list[Result] = []
    between = None if args.no_oldlib else lambda: olds.append(measure_oldlib(stream, 1))
    results = measure(load_frames(stream), args.runs, between)
    if olds:
        old = Result(olds[0].path, [r for o in olds for r in o.rates], olds[0].messages)
        old_cpu = statistics.median([o.extra["cpu_us_per_msg"] for o in olds])
        old.extra["cpu_us_per_msg"] = round(old_cpu, 2)
        results.append(old)
        for result in results[:-1]:
            result.extra["x_2021_storage"] = round(result.median / old.median, 2)
            result.extra["x_2021_storage_cpu"] = round(old_cpu / result.extra["cpu_us_per_msg"], 2)
    for name, value in bytes_per_level(args.levels).items():
        for result in results:
            if result.path == name:
                result.extra["bytes_per_level"] = value
    emit(results, args.json, f"Store cores (active: {_core.CORE})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
