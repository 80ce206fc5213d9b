"""The documentation's example programs run and print what the pages say they print.

Each example in ``docs/examples/`` is shown on a page with ``literalinclude``; running them here
keeps the documentation honest when the library changes.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
TIMEOUT = 120


def run_example(name: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.splitlines()


def test_storage_only() -> None:
    assert run_example("storage_only.py") == [
        "(100.5, 5) (101.0, 10)",
        "(100.5, 7)",
        "['update'] ()",
        "['unknown_key']",
    ]


def test_first_listener_prints_five_trades() -> None:
    lines = run_example("first_listener.py")
    assert re.fullmatch(r"emulator at ws://127\.0\.0\.1:\d+/realtime", lines[0])
    assert len(lines) == 6
    for line in lines[1:]:
        assert re.fullmatch(r"\S+Z (Buy|Sell) \d+ @ [\d.]+", line), line


def test_order_book_is_read_from_storage() -> None:
    lines = run_example("order_book.py")
    tops = [line for line in lines if line.startswith("best bid (")]
    assert len(tops) == 3
    for line in tops:
        bid, ask = (float(price) for price in re.findall(r"\(([\d.]+), \d+\)", line))
        assert bid < ask
    assert lines[-1] == "tables kept: ['orderBookL2']"


def test_lifecycle_shows_the_drop_and_the_fresh_partial() -> None:
    assert run_example("lifecycle.py") == [
        "partial #1: 1 row(s)",
        "disconnected: 1006 connection lost",
        "reconnected after 1 attempt(s)",
        "partial #2: 1 row(s)",
        "reconnects: 1",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="the bot tests listen on loopback")
def test_the_bot_tests_pass() -> None:
    # A user's project of its own: its pytest.ini and conftest.py, not this repository's.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLES / "bot_tests",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
