"""Instructions per message under valgrind's callgrind: a drift-free check of issue 15's ratios.

Theory of operation: on a shared machine the wall-clock ratio of the same two paths swings by
1.7-2.4x between runs, so this module counts instructions instead, which do not depend on load.
Each workload is a child mode of this module (``--child WORKLOAD N``) that prepares its input
once (imports, the seeded stream read and, where the workload does not parse, parsed), then does
the measured work ``N`` times in the same process. The parent runs every workload under
``valgrind --tool=callgrind --collect-atstart=yes`` twice, with N=1 and N=2, reads the program
totals from callgrind's out file and reports

    instructions per message = (total(N=2) - total(N=1)) / messages

so start-up, imports and the one-time preparation cancel and the difference is one repetition
of the work as a caller sees it: the loop over the messages, dropping each result, and for the
stores a fresh store's creation and teardown included. So ``apply-compiled`` is about 1,100
instructions a message above ``Storage.apply``'s inclusive cost in a profile (9,442 against
8,275 at commit 21fcf0a: freeing the results and rows handed back is most of it).

``PYTHONHASHSEED=0`` makes the counts repeatable; the cyclic collector is frozen after the
preparation, so it never scans the input; a warm-up run of each child (N=0, no valgrind) first
caches every module's bytecode (in the benchmarks' cache directory), so neither counted run
compiles a source the other does not. Every child reports the store core it ran, and a
workload whose two runs ran different cores (the core went stale or was rebuilt mid-run) gets
no figure (exit status 1); a source changed during the run is warned about. Repeated runs on
the same code agree to within about 0.1% a message (the rest is address-space layout).

Workloads (messages per repetition in brackets):

* ``orjson``: ``orjson.loads`` of every frame of the seeded stream (``gen_stream``) [frames];
* ``apply-compiled``, ``apply-pure``: ``Storage.apply`` of every table message of that stream,
  parsed before the work as ``benchmarks.cores`` does, to a fresh store per repetition: the
  compiled (mypyc) core and the pure-Python one [table messages];
* ``apply-2021``: the 2021 library's storage section (``Storage.pump``, as
  ``_oldlib_storage.py`` drives it) on the same messages, run by that library's own venv
  (``benchmarks.oldlib``). Its updates mutate the parsed rows, so each repetition needs a fresh
  parse; parsing one copy per repetition would put the parse into the difference, so both runs
  parse two copies up front and apply one (N=1) or both (N=2): the difference holds only the
  storage work [table messages];
* ``replay-orjson``, ``replay-3-listeners``, ``replay-topics``: the day file of
  ``benchmarks.replay`` through ``orjson.loads`` alone, through ``open_bitmex_replay`` with three
  listeners taking every row, and with topics only and no listener (``benchmarks.replay``'s own
  functions) [frames].

What instructions measure and what they do not: the work done, deterministically, and so a
change's effect to a fraction of a percent where wall-clock figures cannot see 10%. Not the
time: instructions retire at different rates (IPC). orjson's tight C loops retire several per
cycle; interpreted and mypyc-compiled code (calls, reference counting, allocation, dict
probes) retires far fewer, so **instruction ratios flatter the interpreted side**: replay at
0.35 of orjson by instructions has measured 0.14-0.19 by the clock. The 2021 section's
``dict.update``s retire faster than our compiled store's calls too. These are a drift-free
check between commits, not the verdict: issue 15's targets are wall-clock ratios
(``benchmarks.cores``, ``benchmarks.replay``).

Why the imports of our package are inside functions: the ``apply-2021`` child is this file run
as a script by the 2021 library's venv, which has its own ``bitmex_trio_websocket`` and must
import nothing of ours.

    python -m benchmarks.instructions --messages 20000                  # callgrind is ~50x slow
    python -m benchmarks.instructions --workloads apply-compiled,apply-pure --no-oldlib
    python -m benchmarks.instructions --workloads apply-compiled --keep /tmp/cg  # for annotating
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "RATIOS",
    "WORKLOADS",
    "Count",
    "callgrind_total",
    "main",
    "per_message",
    "ratios",
]

WORKLOADS: Final = (
    "orjson",
    "apply-compiled",
    "apply-pure",
    "apply-2021",
    "replay-orjson",
    "replay-3-listeners",
    "replay-topics",
)
# (label, numerator, denominator): the ratios issue 15's targets are stated in.
OLD_CORE: Final = "the 2021 library"
RATIOS: Final = (
    (
        "Storage.apply vs the 2021 library (apply-2021 / apply-compiled)",
        "apply-2021",
        "apply-compiled",
    ),
    ("pure Python vs compiled (apply-pure / apply-compiled)", "apply-pure", "apply-compiled"),
    (
        "replay vs orjson (replay-orjson / replay-3-listeners)",
        "replay-orjson",
        "replay-3-listeners",
    ),
)
SOURCES: Final = (".py", ".c", ".h")
ROOT: Final = Path(__file__).resolve().parent.parent  # where ``-m benchmarks...`` resolves


# -- reading callgrind's out file ---------------------------------------------------------------


def callgrind_total(text: str, event: str = "Ir") -> int:
    """The program total of ``event`` in a callgrind out file's text: its ``summary:`` line
    (the whole run), else the sum of its parts' ``totals:`` lines."""
    events: list[str] = []
    summary: list[int] | None = None
    totals: list[list[int]] = []
    for line in text.splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("summary:"):
            summary = [int(v) for v in line.split()[1:]]
        elif line.startswith("totals:"):
            totals.append([int(v) for v in line.split()[1:]])
    if event not in events:
        raise ValueError(f"no {event!r} in the callgrind file's events line ({events})")
    index = events.index(event)
    if summary is not None:
        return summary[index]
    if totals:
        return sum(part[index] for part in totals)
    raise ValueError("no summary: or totals: line in the callgrind file")


# -- the arithmetic -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Count:
    """One workload's two callgrind totals and what one repetition handled."""

    workload: str
    messages: int  # per repetition
    once: int  # instructions of the whole process, N=1
    twice: int  # N=2
    refused: str = ""  # why the two runs do not make a difference (then no figure)

    @property
    def per_message(self) -> float:
        return per_message(self.once, self.twice, self.messages)


def per_message(once: int, twice: int, messages: int) -> float:
    """Instructions per message of one repetition: the second repetition's cost, divided."""
    if messages <= 0:
        raise ValueError("a repetition must handle at least one message")
    if twice <= once:
        raise ValueError(f"N=2 counted {twice:,} instructions, not more than N=1's {once:,}")
    return (twice - once) / messages


def ratios(counts: Iterable[Count]) -> dict[str, float]:
    """Issue 15's ratios among the workloads measured (a ratio needs both of its workloads)."""
    by_name = {count.workload: count.per_message for count in counts if not count.refused}
    return {
        label: round(by_name[top] / by_name[bottom], 3)
        for label, top, bottom in RATIOS
        if top in by_name and bottom in by_name
    }


# -- the children: each prepares once, then works N times -----------------------------------


def _frames(messages: int, seed: int) -> list[str]:
    from ._common import load_frames
    from .gen_stream import stream_path

    return load_frames(stream_path(messages, seed))


def _child_orjson(repeat: int, messages: int, seed: int) -> int:
    import orjson

    frames = _frames(messages, seed)
    loads = orjson.loads
    gc.collect()
    gc.freeze()
    for _ in range(repeat):
        for frame in frames:
            loads(frame)
    return len(frames)


def _store_factory(workload: str) -> Callable[[], Any]:
    from bitmex_trio_websocket._storage import _core, _store

    if workload == "apply-pure":
        return _store.Storage
    compiled, why = _core.compiled_module()
    if compiled is None:
        raise SystemExit(f"no compiled core: {why}")
    factory: Callable[[], Any] = compiled.Storage
    return factory


def _child_apply(workload: str, repeat: int, messages: int, seed: int) -> int:
    import orjson

    factory = _store_factory(workload)
    parsed = [m for m in map(orjson.loads, _frames(messages, seed)) if "table" in m]
    gc.collect()
    gc.freeze()
    for _ in range(repeat):
        apply = factory().apply
        for message in parsed:
            apply(message)
    return len(parsed)


def _child_apply_2021(repeat: int, stream: str) -> int:
    """Run by the 2021 library's venv: its storage section, driven by ``_oldlib_storage.py``
    (this file's folder is first on ``sys.path`` when it runs as a script)."""
    import importlib

    import trio

    driver: Any = importlib.import_module("_oldlib_storage")
    frames = driver.read_frames(stream)
    # Two fresh copies always (it mutates rows), whatever ``repeat`` is: see the docstring.
    copies = [driver.table_messages(frames) for _ in range(2)]
    storage = driver.storage_class()
    gc.collect()
    gc.freeze()

    async def run() -> None:
        for messages in copies[:repeat]:
            await driver.pump(storage, messages)

    trio.run(run)
    return len(copies[0])


def _child_replay(workload: str, repeat: int, messages: int, seed: int) -> int:
    from . import replay

    run = {
        "replay-orjson": replay._parse,
        "replay-3-listeners": replay._replay,
        "replay-topics": replay._topics,
    }[workload]
    path = replay.day_file(messages, seed)
    texts = replay._messages_of(path)
    gc.collect()
    gc.freeze()
    for _ in range(repeat):
        run(path, texts)
    return len(texts)


def run_child(workload: str, repeat: int, messages: int, seed: int, stream: str) -> int:
    """The child's work; returns the messages one repetition handled."""
    if workload == "orjson":
        return _child_orjson(repeat, messages, seed)
    if workload in ("apply-compiled", "apply-pure"):
        return _child_apply(workload, repeat, messages, seed)
    if workload == "apply-2021":
        return _child_apply_2021(repeat, stream)
    if workload.startswith("replay-"):
        return _child_replay(workload, repeat, messages, seed)
    raise SystemExit(f"unknown workload {workload!r}")


# -- the parent: each workload twice under callgrind ----------------------------------------


def valgrind() -> str | None:
    return shutil.which("valgrind") or (
        "/usr/bin/valgrind" if os.access("/usr/bin/valgrind", os.X_OK) else None
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to start one workload's child: its Python, where, and with what environment."""

    python: str
    target: list[str]  # ["-m", "benchmarks.instructions"] or [path of this file]
    cwd: str
    env: dict[str, str]
    extra: list[str]  # arguments after --child WORKLOAD N


def _child_env(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with a fixed hash seed (dict and set layouts, so counts repeat) and bytecode
    cached in our own directory: a run that compiles a module's source costs millions of
    instructions that one finding the cached bytecode does not, so the warm-up writes it
    (even where ``PYTHONDONTWRITEBYTECODE`` is set) and both counted runs read it."""
    from ._common import cache_dir

    env = {k: v for k, v in base.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONPYCACHEPREFIX"] = str(cache_dir() / "pycache")
    return env


def _plans(workloads: Sequence[str], messages: int, seed: int) -> dict[str, _Plan]:
    from . import oldlib
    from .gen_stream import stream_path
    from .replay import day_file

    # Inputs made here, once, not under callgrind in every child.
    stream = stream_path(messages, seed)
    if any(w.startswith("replay-") for w in workloads):
        day_file(messages, seed)
    ours = _Plan(
        sys.executable,
        ["-m", "benchmarks.instructions"],
        str(ROOT),
        _child_env(os.environ),
        ["--messages", str(messages), "--seed", str(seed)],
    )
    plans = {w: ours for w in workloads if w != "apply-2021"}
    if "apply-2021" in workloads:
        # The 2021 venv's Python runs this file as a script, away from our tree (oldlib's way).
        plans["apply-2021"] = _Plan(
            str(oldlib.ensure_venv()),
            [str(Path(__file__).resolve())],
            str(oldlib.venv_dir()),
            _child_env(oldlib._clean_env()),
            ["--stream", str(stream)],
        )
    return plans


def _run(plan: _Plan, workload: str, repeat: int, prefix: Sequence[str] = ()) -> tuple[int, str]:
    """Run one child (under ``prefix``, the valgrind command, if given): the messages of one
    repetition and the store core it ran."""
    command = [*prefix, plan.python, *plan.target, "--child", workload, str(repeat), *plan.extra]
    done = subprocess.run(command, capture_output=True, text=True, cwd=plan.cwd, env=plan.env)
    if done.returncode != 0:
        raise RuntimeError(f"{workload} N={repeat} failed:\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return int(report["messages"]), str(report["core"])


def _count(
    tool: str, plan: _Plan, workload: str, repeat: int, workdir: Path, keep: bool
) -> tuple[int, str, int]:
    """One callgrind run: the child's messages and core, and the program's instructions."""
    out = workdir / f"callgrind.{workload}.{repeat}.out"
    prefix = [tool, "--tool=callgrind", "--collect-atstart=yes", f"--callgrind-out-file={out}"]
    handled, core = _run(plan, workload, repeat, prefix)
    total = callgrind_total(out.read_text())
    if not keep:
        out.unlink()
    return handled, core, total


def _source_stamp() -> list[tuple[str, int]]:
    """Every source of ours a child may run, with its modification time."""
    paths = [p for d in ("src", "benchmarks") for p in (ROOT / d).rglob("*") if p.suffix in SOURCES]
    return sorted((str(p), p.stat().st_mtime_ns) for p in paths if p.is_file())


def measure(
    workloads: Sequence[str],
    messages: int,
    seed: int,
    *,
    core: str,
    jobs: int,
    tool: str,
    keep: Path | None = None,
) -> list[Count]:
    """Every workload's two counts. ``core`` is the store core ours must run in every child
    (a source edited or the core rebuilt during the run would mix cores: refused); ``keep``
    keeps the callgrind out files there (for ``callgrind_annotate``)."""
    plans = _plans(workloads, messages, seed)
    for workload in workloads:  # N=0, no valgrind: imports done, bytecode cached
        _run(plans[workload], workload, 0)
    runs = [(w, repeat) for w in workloads for repeat in (1, 2)]
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        workdir = keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            results = pool.map(
                lambda run: _count(tool, plans[run[0]], run[0], run[1], workdir, keep is not None),
                runs,
            )
            done = dict(zip(runs, results, strict=True))
    counts: list[Count] = []
    for workload in workloads:
        (handled, core_once, once), (again, core_twice, twice) = (
            done[workload, 1],
            done[workload, 2],
        )
        wanted = OLD_CORE if workload == "apply-2021" else core
        refused = ""
        if handled != again:
            refused = f"{handled} messages with N=1, {again} with N=2"
        elif not core_once == core_twice == wanted:
            refused = (
                f"ran {core_once!r} (N=1) and {core_twice!r} (N=2), not {wanted!r}: the store"
                " core changed during the run (sources edited or rebuilt); run again"
            )
        counts.append(Count(workload, handled, once, twice, refused))
    return counts


def print_counts(title: str, counts: Sequence[Count]) -> None:
    print(f"\n{title}")
    header = f"{'workload':<20} {'messages':>9} {'N=1 total':>16} {'N=2 total':>16} {'per msg':>10}"
    print(header)
    print("-" * len(header))
    for c in counts:
        line = f"{c.workload:<20} {c.messages:>9,} {c.once:>16,} {c.twice:>16,}"
        print(f"{line}    REFUSED: {c.refused}" if c.refused else f"{line} {c.per_message:>10,.0f}")
    found = ratios(counts)
    if found:
        print()
        for label, value in found.items():
            print(f"{label:<66} {value:>8.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000, help="stream length (frames)")
    parser.add_argument("--seed", type=int, default=1, help="market seed")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated list")
    parser.add_argument("--no-oldlib", action="store_true", help="skip apply-2021")
    parser.add_argument("--json", action="store_true", help="one JSON object per workload")
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at once")
    parser.add_argument("--keep", default="", help="keep the callgrind out files in this folder")
    parser.add_argument("--child", nargs=2, metavar=("WORKLOAD", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--stream", default="", help=argparse.SUPPRESS)  # apply-2021's input
    args = parser.parse_args(argv)

    if args.child:
        workload, repeat = args.child[0], int(args.child[1])
        handled = run_child(workload, repeat, args.messages, args.seed, args.stream)
        # The core the store ran (the 2021 venv has no module of that name).
        core_module = sys.modules.get("bitmex_trio_websocket._storage._core")
        core = OLD_CORE if workload == "apply-2021" else getattr(core_module, "CORE", "-")
        report = {"workload": workload, "repeat": repeat, "messages": handled, "core": core}
        print(json.dumps(report))
        return 0

    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    if args.no_oldlib:
        workloads = [w for w in workloads if w != "apply-2021"]
    tool = valgrind()
    if tool is None:
        print("valgrind not found: apt install valgrind", file=sys.stderr)
        return 2

    from bitmex_trio_websocket._storage import _core

    compiled, why = _core.compiled_module()
    if compiled is None and "apply-compiled" in workloads:
        print(f"apply-compiled skipped: {why} (pip install -e . rebuilds it)", file=sys.stderr)
        workloads.remove("apply-compiled")

    start, sources = time.perf_counter(), _source_stamp()
    keep = Path(args.keep) if args.keep else None
    counts = measure(
        workloads, args.messages, args.seed, core=_core.CORE, jobs=args.jobs, tool=tool, keep=keep
    )
    seconds = time.perf_counter() - start
    if _source_stamp() != sources:
        print(
            "WARNING: sources under src/ or benchmarks/ changed during the run; a child may have"
            " run (or compiled) other code than its pair: run again",
            file=sys.stderr,
        )
    if args.json:
        for count in counts:
            figure = None if count.refused else round(count.per_message, 1)
            print(json.dumps({**asdict(count), "per_message": figure}))
        print(json.dumps({"ratios": ratios(counts), "core": _core.CORE, "seconds": seconds}))
    else:
        title = (
            f"Instructions per message, callgrind, {args.messages:,} frames, seed {args.seed}"
            f" (active core: {_core.CORE}; {seconds:.0f} s)"
        )
        print_counts(title, counts)
    return 1 if any(count.refused for count in counts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
