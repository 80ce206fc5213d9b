"""Run every benchmark on one stream and print the summary table with the targets.

Theory of operation: the stream is generated (or taken from the cache) first; then each benchmark
module runs in its own child process with ``--json`` (so each reports its own peak memory and
none inherits another's heap), in the order ceilings, in-process, 2021 in-process, loopback
(both servers, 2021 library included), latency and memory. All ratios are computed from
figures of this one run. ``--no-oldlib`` skips the 2021 library (no venv is created then).

    python -m benchmarks.run_all --messages 200000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from . import oldlib
from ._common import Result, print_table
from .gen_stream import stream_path

__all__ = ["main", "summary"]

TARGETS = {
    "inprocess_vs_2021": 25.0,
    "inprocess_abs": 100_000.0,
    "inprocess_vs_ceiling": 0.5,
    "loopback_vs_bare": 0.85,
    "loopback_vs_2021": 12.0,
    "latency_p99_ms": 1.0,
    "bytes_per_level": 300.0,
}


def _run(module: str, args: Sequence[str]) -> list[Result]:
    command = [sys.executable, "-m", f"benchmarks.{module}", *args, "--json"]
    print(f"$ {' '.join(command[1:])}", file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    results = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            results.append(
                Result(
                    data["path"], data["rates"], data["messages"], data["peak_rss_mib"],
                    data.get("extra", {}),
                )
            )  # fmt: skip
    return results


def _median(results: dict[str, Result], path: str) -> float | None:
    result = results.get(path)
    return result.median if result is not None else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summary(results: dict[str, Result]) -> list[tuple[str, str, str, str]]:
    """Rows ``(what, measured, target, verdict)``."""
    rows: list[tuple[str, str, str, str]] = []

    def check(what: str, value: float | None, target: float, fmt: str, low: bool = False) -> None:
        if value is None:
            rows.append((what, "n/a", fmt.format(target), "-"))
            return
        ok = value <= target if low else value >= target
        op = "<=" if low else ">="
        rows.append((what, fmt.format(value), f"{op} {fmt.format(target)}", "ok" if ok else "MISS"))

    ours = _median(results, "in-process: ours, 3 listeners")
    old = _median(results, "in-process: 2021 library, 3 listeners")
    ceiling = _median(results, "ceiling: parse + Storage.apply")
    check("in-process 3 listeners, msg/s", ours, TARGETS["inprocess_abs"], "{:,.0f}")
    check("in-process vs 2021 library", _ratio(ours, old), TARGETS["inprocess_vs_2021"], "{:.1f}x")
    check(
        "in-process vs parse+store ceiling",
        _ratio(ours, ceiling),
        TARGETS["inprocess_vs_ceiling"],
        "{:.2f}",
    )
    past_emulator = _median(results, "loopback/emulator: 2021 library, 3 listeners")
    for kind in ("emulator", "raw"):
        mine = _median(results, f"loopback/{kind}: ours, 3 listeners")
        bare = _median(results, f"loopback/{kind}: bare trio-websocket (ceiling)")
        past = _median(results, f"loopback/{kind}: 2021 library, 3 listeners")
        label = f"loopback/{kind} vs 2021 library"
        if past is None and kind != "emulator":  # the 2021 library is client-bound
            past, label = past_emulator, f"{label} (2021 on emulator)"
        check(f"loopback/{kind} vs bare ceiling", _ratio(mine, bare), 0.85, "{:.2f}")
        check(label, _ratio(mine, past), 12.0, "{:.1f}x")
    latency = next((r for r in results.values() if r.path.startswith("latency:")), None)
    p99 = latency.extra.get("p99_ms") if latency else None
    check("latency p99 at 5,000 msg/s (ms)", p99, TARGETS["latency_p99_ms"], "{:.3f}", low=True)
    memory = next((r for r in results.values() if r.path.startswith("memory:")), None)
    per_level = memory.extra.get("bytes_per_level") if memory else None
    check("bytes per order-book level", per_level, TARGETS["bytes_per_level"], "{:.0f}", low=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_all", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--latency-messages", type=int, default=25_000)
    parser.add_argument("--levels", type=int, default=20_000)
    parser.add_argument("--no-oldlib", action="store_true", help="skip the 2021 library")
    parser.add_argument(
        "--oldlib-runs", type=int, default=None, help="runs of the 2021 library (default: --runs)"
    )
    parser.add_argument("--out", default=None, help="also write all results as JSON here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    stream = stream_path(args.messages, args.seed)
    common = ["--stream", str(stream), "--runs", str(args.runs)]
    with_old = not args.no_oldlib
    old_runs = str(args.runs if args.oldlib_runs is None else args.oldlib_runs)
    if with_old:
        oldlib.ensure_venv()
    collected: list[Result] = []
    collected += _run("ceilings", common)
    collected += _run("inprocess", common)
    if with_old:
        collected += _run("oldlib", ["--stream", str(stream), "--runs", old_runs])
    old_loopback = ["--oldlib", "--oldlib-runs", old_runs] if with_old else []
    collected += _run("loopback", [*common, *old_loopback])
    collected += _run("latency", [*common, "--latency-messages", str(args.latency_messages)])
    collected += _run("memory", ["--levels", str(args.levels)])
    collected += _run("orders", ["--runs", str(args.runs)])  # paper orders (no target)
    results = {r.path: r for r in collected}
    print(f"\nstream: {stream} ({args.messages:,} messages, seed {args.seed}), runs: {args.runs}")
    print_table("All paths (median of runs)", [r for r in collected if r.rates])
    for r in collected:
        if not r.rates:
            print(f"\n{r.path}: {json.dumps(r.extra)}")
    rows = summary(results)
    print("\n| target | measured | wanted | verdict |\n|---|---|---|---|")
    for what, value, target, verdict in rows:
        print(f"| {what} | {value} | {target} | {verdict} |")
    print(f"\n(total {time.monotonic() - started:.0f} s)")
    if args.out:
        payload: dict[str, Any] = {"results": [asdict(r) for r in collected], "summary": rows}
        with open(args.out, "w") as out:
            json.dump(payload, out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
