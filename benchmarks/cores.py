"""The store cores side by side: ``Storage.apply`` pure Python, compiled (mypyc), and the 2021
library's storage section, on the same seeded stream; bytes per stored level for each core.

Theory of operation: the stream's table messages are parsed once with ``orjson`` before any
clock starts, and ``gc.freeze()`` moves them out of the collector's view (a client parses and
drops each frame; a list of 200,000 parsed frames would otherwise make every full collection in
the timed loop scan millions of objects that are not the store's). Each run applies every message
to a fresh store of each core, in turns of ``--segment`` messages: a segment goes through every
core, then the next, so load changing on a shared machine (it swings within seconds there) hits
all alike. It reports the wall-clock rate and the median CPU time per message
(``time.process_time``). The 2021 library runs in its own venv (``_oldlib_storage.py --segment``,
built by ``benchmarks.oldlib``), one process for the whole benchmark, on the same file, its rows
parsed afresh per run since its updates mutate them; it takes its turn on each segment after
ours, on command through a pipe. ``x_2021_storage`` is the median over runs of its time over
ours in the same run (``x_2021_storage_runs``: every run's), ``x_2021_storage_cpu`` the same with
CPU times. Rates count table messages (partials included).

    python -m benchmarks.cores --messages 200000 --runs 3            # add --no-oldlib to skip it
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from bitmex_trio_websocket._storage import _core, _store

from . import memory, oldlib
from ._common import Result, add_common_arguments, emit, load_frames
from .gen_stream import stream_path

__all__ = ["cores", "main", "measure"]

DRIVER = Path(__file__).with_name("_oldlib_storage.py")
OLDLIB_PATH: Final = "2021 library: storage section (Storage.pump)"
# Messages per turn: ~20-40 ms of each store, far shorter than the load swings of a shared machine.
SEGMENT: Final = 10_000


def cores() -> dict[str, Callable[[], Any]]:
    """Store factories by path name: pure Python always, the compiled core where it is built."""
    found: dict[str, Callable[[], Any]] = {"Storage.apply, pure Python": _store.Storage}
    compiled, _ = _core.compiled_module()
    if compiled is not None:
        found["Storage.apply, compiled (mypyc)"] = compiled.Storage
    return found


class PairedOldlib:
    """The 2021 library's storage section in its own venv, timed segment by segment in step with
    ours (``_oldlib_storage.py --segment``): one process for the whole benchmark."""

    def __init__(self, stream: Path, runs: int, segment: int) -> None:
        python = oldlib.ensure_venv()
        command = [str(python), str(DRIVER), str(stream), "--runs", str(runs)]
        self._errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by close())
        self._process = subprocess.Popen(
            [*command, "--segment", str(segment)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
            cwd=oldlib.venv_dir(),
            env=oldlib._clean_env(),
        )

    def ready(self) -> None:
        """Wait until it has parsed a fresh copy of the stream for the next run."""
        if (line := self._line()) != "ready":
            raise RuntimeError(f"2021 library storage driver said {line!r}")

    def segment(self) -> tuple[float, float]:
        """Let its next segment through; (seconds, CPU seconds) it took."""
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write("go\n")
        stdin.flush()
        elapsed, cpu = self._line().split()
        return float(elapsed), float(cpu)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait()
        self._errors.close()

    def _line(self) -> str:
        stdout = self._process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            self._process.wait()
            self._errors.seek(0)
            raise RuntimeError(
                f"2021 library storage driver failed:\n{self._errors.read()[-4000:]}"
            )
        return line.strip()


def measure(
    frames: Sequence[str], runs: int, paired: PairedOldlib | None = None, segment: int = SEGMENT
) -> list[Result]:
    """Every core ``runs`` times on a fresh store, segment by segment: each segment of the stream
    goes through every core in turn, then through the 2021 library's section (``paired``), so
    that load changing on a shared machine hits all alike. Its ratios are per run (its time over
    ours in that run), their median reported."""
    messages = [m for m in map(orjson.loads, frames) if "table" in m]
    segments = [messages[at : at + segment] for at in range(0, len(messages), segment)]
    gc.collect()
    gc.freeze()
    factories = cores()
    names = [*factories, OLDLIB_PATH] if paired is not None else list(factories)
    results = {name: Result(name, [], len(messages)) for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in factories}
    ratios_cpu: dict[str, list[float]] = {name: [] for name in factories}
    try:
        for _ in range(runs):
            applies = {name: factory().apply for name, factory in factories.items()}
            if paired is not None:
                paired.ready()
            gc.collect()
            seconds = dict.fromkeys(names, 0.0)
            cpu_seconds = dict.fromkeys(names, 0.0)
            for chunk in segments:
                for name, apply in applies.items():
                    start_cpu, start = time.process_time(), time.perf_counter()
                    for message in chunk:
                        apply(message)
                    seconds[name] += time.perf_counter() - start
                    cpu_seconds[name] += time.process_time() - start_cpu
                if paired is not None:
                    elapsed, used = paired.segment()
                    seconds[OLDLIB_PATH] += elapsed
                    cpu_seconds[OLDLIB_PATH] += used
            for name in names:
                results[name].rates.append(len(messages) / seconds[name])
                cpu[name].append(cpu_seconds[name] / len(messages) * 1e6)
            if paired is not None:
                for name in factories:
                    ratios[name].append(seconds[OLDLIB_PATH] / seconds[name])
                    ratios_cpu[name].append(cpu_seconds[OLDLIB_PATH] / cpu_seconds[name])
    finally:
        gc.unfreeze()
    for name, result in results.items():
        result.extra["cpu_us_per_msg"] = round(statistics.median(cpu[name]), 2)
        if ratios.get(name):
            result.extra["x_2021_storage"] = round(statistics.median(ratios[name]), 2)
            result.extra["x_2021_storage_cpu"] = round(statistics.median(ratios_cpu[name]), 2)
            result.extra["x_2021_storage_runs"] = [round(r, 2) for r in ratios[name]]
    return list(results.values())


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
    parser.add_argument(
        "--segment", type=int, default=SEGMENT, help="messages per turn of each store"
    )
    args = parser.parse_args(argv)
    stream = Path(args.stream) if args.stream else stream_path(args.messages, args.seed)
    paired = None if args.no_oldlib else PairedOldlib(stream, args.runs, args.segment)
    try:
        results = measure(load_frames(stream), args.runs, paired, args.segment)
    finally:
        if paired is not None:
            paired.close()
    for name, value in bytes_per_level(args.levels).items():
        for result in results:
            if result.path == name:
                result.extra["bytes_per_level"] = value
    emit(results, args.json, f"Store cores (active: {_core.CORE})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
