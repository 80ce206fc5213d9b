"""A replay left before the end of its data closes the file it was reading, at once."""

from __future__ import annotations

import gzip
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio

from benchmarks.replay import write_day_file
from bitmex_trio_websocket import open_bitmex_replay
from bitmex_trio_websocket._replay import _sources


@pytest.mark.parametrize("compressed", [False, True])
async def test_leaving_a_replay_early_closes_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    path = tmp_path / "day.json"
    write_day_file(path, 20_000, seed=2)  # several blocks: the replay stops inside the file
    if compressed:
        path = path.with_suffix(".json.gz")
        path.write_bytes(gzip.compress((tmp_path / "day.json").read_bytes()))
    opened: list[Any] = []

    def tracking_open(*args: Any, **kwargs: Any) -> Any:
        file = open(*args, **kwargs)  # noqa: SIM115 (the replay closes it: checked below)
        opened.append(file)
        return file

    monkeypatch.setattr(_sources, "open", tracking_open, raising=False)
    taken = 0
    with trio.fail_after(10):
        async with open_bitmex_replay(path) as bws:
            async with aclosing(bws.listen("orderBookL2")) as rows:
                async for _ in rows:
                    taken += 1
                    if taken == 3000:
                        break
            assert bws.stats.messages < 20_000  # left before the end of the data
        assert opened
        assert all(file.closed for file in opened)
