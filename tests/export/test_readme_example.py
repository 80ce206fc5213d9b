"""The README's first example (a replay of BitMEX's history) runs as written, on real data."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from ..replay.helpers import captured_session, reference_book, stretched, write_cache_folder

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_replay_example_runs_on_a_tardis_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = README.read_text(encoding="utf-8")
    first = text.index("```python\n")
    code = text[first + len("```python\n") : text.index("```", first + 10)]
    assert "open_bitmex_replay" in code and text.index("BitMEX closed on 2026-09-23") < first
    frames = stretched(captured_session(), 10.0)
    folder = write_cache_folder(tmp_path, frames, compression="zst")
    code, replaced = re.subn(r'source = "[^"]*"', f"source = {str(folder)!r}", code)
    assert replaced == 1
    real_run = trio.run

    def bounded_run(main: Callable[[], Awaitable[None]]) -> None:
        async def bounded() -> None:
            with trio.fail_after(60):
                await main()

        real_run(bounded)

    monkeypatch.setattr(trio, "run", bounded_run)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    lines = capsys.readouterr().out.splitlines()
    trades = [line for line in lines if line.startswith("2021-07-22T")]
    assert len(trades) == len(lines) - 1 > 3
    bids, _ = reference_book(frames, "XBTUSD")
    assert lines[-1] == str(bids[0])  # the book as of the last message
