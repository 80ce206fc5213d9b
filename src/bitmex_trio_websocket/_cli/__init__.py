"""The ``bitmex-trio-websocket`` command line (see ``_main`` for how it is put together)."""

from ._main import main, main_entry

__all__ = ["main", "main_entry"]
