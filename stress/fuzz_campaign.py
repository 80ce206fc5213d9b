"""Fuzzing campaign: hypothesis-driven hostile inputs against the codec and the store.

Runs the targets of ``tests.support.fuzz_targets`` (``server-frames``, ``client-frames``,
``storage``) until each has tried ``--count`` inputs (a frame decoded, or a message applied to a
``Storage``), in batches of hypothesis examples with seeds derived from ``--seed``, and prints
per-target figures: inputs tried, accepted, rejected with the typed error, crashes (any other
exception), corruptions (a rejected message that changed state, an accepted one that disagrees
with the reference model, a mutated caller message or handed-out row) and false rejections, with
up to three samples of every distinct problem.

Exit status 0 when there were no crashes and no corruptions, 1 otherwise.

    python -m stress.fuzz_campaign --count 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.support.fuzz_findings import Findings, crash_signature
from tests.support.fuzz_strategies import CAMPAIGN, SUITE, Scale
from tests.support.fuzz_targets import TARGETS


def run_target(
    name: str,
    count: int,
    *,
    scale: Scale = CAMPAIGN,
    seed: int = 0,
    batch: int = 500,
    progress: bool = False,
) -> Findings:
    """Run target ``name`` until it has tried at least ``count`` inputs."""
    case = TARGETS[name]
    batch = max(1, min(batch, count))
    findings = Findings()
    started = time.monotonic()
    index = 0
    while findings.inputs[name] < count:

        @hypothesis_seed(seed * 1_000_003 + index)
        @settings(
            max_examples=batch,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def body(data: st.DataObject) -> None:
            try:
                case(data, scale, findings)
            except Exception as exc:  # a bug of the fuzzer itself: count it, keep going
                findings.harness_errors[crash_signature(exc)] += 1

        body()
        index += 1
        if progress:
            crashes = sum(findings.crashes.values())
            corruptions = sum(findings.corruptions.values())
            print(
                f"  {name}: {findings.inputs[name]} inputs, {crashes} crashes, "
                f"{corruptions} corruptions, {time.monotonic() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress.fuzz_campaign", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}"
    )
    parser.add_argument("--small", action="store_true", help="suite-sized hostile values")
    parser.add_argument("--progress", action="store_true", help="a line per batch on stderr")
    parser.add_argument("--outcomes", action="store_true", help="storage outcomes per table")
    parser.add_argument(
        "--memory-limit-gb",
        type=float,
        default=8.0,
        help="address-space cap: a runaway input becomes a MemoryError, not an OOM kill",
    )
    args = parser.parse_args(argv)
    if args.memory_limit_gb > 0 and sys.platform != "win32":
        import resource

        limit = int(args.memory_limit_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    names = [name for name in args.targets.split(",") if name]
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}")
    scale = SUITE if args.small else CAMPAIGN
    total = Findings()
    started = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        findings = run_target(name, args.count, scale=scale, seed=args.seed, progress=args.progress)
        elapsed = time.monotonic() - t0
        rate = findings.inputs[name] / max(elapsed, 1e-9)
        print(
            f"{name}: {findings.inputs[name]} inputs in {elapsed:.0f} s ({rate:.0f}/s)", flush=True
        )
        total.merge(findings)
    print(f"\nfuzz campaign, seed {args.seed}, {time.monotonic() - started:.0f} s")
    print(total.report())
    if args.outcomes:
        print("\noutcomes by table/action:")
        for key, n in sorted(total.outcomes.items()):
            print(f"  {key:50} {n:>8}")
    crashes, corruptions = sum(total.crashes.values()), sum(total.corruptions.values())
    print(f"\ninputs tried: {sum(total.inputs.values())}  crashes: {crashes}  "
          f"corruptions: {corruptions}")  # fmt: skip
    return 0 if crashes == 0 and corruptions == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
