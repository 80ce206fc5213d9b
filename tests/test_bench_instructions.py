"""benchmarks.instructions without valgrind: reading callgrind's out file, the per-message
arithmetic, the ratios, the missing-valgrind exit, and each child mode at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import instructions, oldlib
from benchmarks.instructions import Count, callgrind_total, per_message, ratios

# The shape of a real callgrind out file (valgrind 3.19, one part), cut down.
ONE_PART = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 29545
cmd:  /tmp/venv/bin/python -c import orjson; print(1)
part: 1

positions: line
events: Ir
summary: 132476056


ob=(1) /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
fl=(1) ???
fn=(1) 0x000000000001fe20
0 43

totals: 132476056
"""


def test_callgrind_total_reads_the_summary_of_the_right_event() -> None:
    assert callgrind_total(ONE_PART) == 132_476_056
    two_events = ONE_PART.replace("events: Ir", "events: Dr Ir").replace(
        "summary: 132476056", "summary: 7 132476099"
    )
    assert callgrind_total(two_events) == 132_476_099
    assert callgrind_total(two_events, "Dr") == 7


def test_callgrind_total_sums_parts_without_a_summary() -> None:
    parts = "events: Ir\ntotals: 1000\npart: 2\ntotals: 234\n"
    assert callgrind_total(parts) == 1234


@pytest.mark.parametrize(
    "text",
    ["events: Ir\n", "summary: 5\n", ONE_PART.replace("events: Ir", "events: Dr")],
)
def test_callgrind_total_refuses_a_file_without_the_count(text: str) -> None:
    with pytest.raises(ValueError):
        callgrind_total(text)


def test_per_message_is_the_second_repetition_divided() -> None:
    # Start-up 1,000,000 instructions, 8,400 a message for 20,000 messages.
    once, twice = 1_000_000 + 20_000 * 8_400, 1_000_000 + 2 * 20_000 * 8_400
    assert per_message(once, twice, 20_000) == 8_400
    assert Count("apply-compiled", 20_000, once, twice).per_message == 8_400
    with pytest.raises(ValueError):
        per_message(twice, once, 20_000)  # N=2 cheaper than N=1: a broken run
    with pytest.raises(ValueError):
        per_message(once, twice, 0)


def test_ratios_need_both_workloads() -> None:
    counts = [
        Count("apply-compiled", 10, 0, 84_000),
        Count("apply-2021", 10, 50, 217_210),
        Count("replay-orjson", 4, 0, 42_140),
    ]
    found = ratios(counts)
    assert found == {instructions.RATIOS[0][0]: round(21_716 / 8_400, 3)}
    counts.append(Count("replay-3-listeners", 4, 0, 121_208))
    assert ratios(counts)[instructions.RATIOS[2][0]] == round(10_535 / 30_302, 3)


def test_without_valgrind_it_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(instructions, "valgrind", lambda: None)
    assert instructions.main(["--workloads", "orjson"]) == 2
    assert "apt install valgrind" in capsys.readouterr().err


def test_unknown_workload_is_refused() -> None:
    with pytest.raises(SystemExit):
        instructions.main(["--workloads", "orjson,nonsense"])


def _child(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert instructions.main(["--child", *argv]) == 0
    report: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(
    "workload",
    [
        "orjson",
        "apply-pure",
        "apply-compiled",
        "replay-orjson",
        "replay-3-listeners",
        "replay-topics",
    ],
)
def test_each_child_reports_the_messages_of_one_repetition(
    workload: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bitmex_trio_websocket._storage import _core

    if workload == "apply-compiled" and _core.compiled_module()[0] is None:
        pytest.skip("no compiled core built")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))  # streams made here, not in the cache
    report = _child(capsys, workload, "2", "--messages", "200", "--seed", "3")
    # Every frame of the seeded stream is a table message (partials, then deltas).
    assert report == {"workload": workload, "repeat": 2, "messages": 200, "core": _core.CORE}


def test_counts_from_children_that_ran_another_core_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A store source edited (or the core rebuilt) between a workload's two runs would put
    two different cores into one difference: measure() gives it no figure and no ratio."""
    cores = {1: "compiled (mypyc)", 2: "pure Python (compiled core is stale)"}
    monkeypatch.setattr(instructions, "_plans", lambda *args: {"apply-pure": None})
    monkeypatch.setattr(instructions, "_run", lambda *args: (10, cores[1]))

    def count(tool: str, plan: object, workload: str, repeat: int, *rest: object) -> object:
        return 10, cores[repeat], 1000 * repeat

    monkeypatch.setattr(instructions, "_count", count)
    [mixed] = instructions.measure(["apply-pure"], 10, 1, core=cores[1], jobs=1, tool="valgrind")
    assert "core changed" in mixed.refused
    assert ratios([mixed, Count("apply-compiled", 10, 0, 500)]) == {}
    cores[2] = cores[1]
    [found] = instructions.measure(["apply-pure"], 10, 1, core=cores[1], jobs=1, tool="valgrind")
    assert not found.refused and found.per_message == 100
    assert list(ratios([found, Count("apply-compiled", 10, 0, 500)]).values()) == [2.0]


@pytest.mark.skipif(not oldlib.available(), reason="no 2021-library venv (benchmarks.oldlib)")
def test_the_2021_child_runs_in_its_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from benchmarks import gen_stream

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    stream = gen_stream.stream_path(200, 3)
    python = oldlib.ensure_venv()
    script = str(Path(instructions.__file__).resolve())
    command = [str(python), script, "--child", "apply-2021", "1", "--stream", str(stream)]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=oldlib.venv_dir(), env=oldlib._clean_env()
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {
        "workload": "apply-2021",
        "repeat": 1,
        "messages": 200,
        "core": instructions.OLD_CORE,
    }
