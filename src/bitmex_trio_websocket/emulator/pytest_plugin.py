"""A pytest fixture that runs the BitMEX emulator for a test (needs pytest-trio).

Enable it in your project's top-level ``conftest.py``::

    pytest_plugins = ["bitmex_trio_websocket.emulator.pytest_plugin"]

then ask for ``bitmex_emulator`` in a trio test::

    async def test_my_bot(bitmex_emulator):
        async with open_bitmex_websocket(bitmex_emulator.url) as bws:
            ...

Theory of operation: the fixture is an async generator fixture (pytest-trio runs it in the
test's trio run), so the emulator's nursery lives exactly as long as the test. It yields a
running ``Emulator`` with seed 1, listening on ``127.0.0.1`` (a free port) and reachable in memory
(``bitmex_emulator.open_memory_websocket()``, or ``connect=bitmex_emulator.connect_in_memory``),
which works under pytest-trio's ``autojump_clock``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from . import Emulator, open_emulator

__all__ = ["bitmex_emulator"]


@pytest.fixture
async def bitmex_emulator() -> AsyncIterator[Emulator]:
    """A running emulator (seed 1, default account, TCP on 127.0.0.1 plus in-memory)."""
    async with open_emulator(seed=1) as emulator:
        yield emulator
