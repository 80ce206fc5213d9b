"""Which core runs the hot paths: the mypyc-compiled one where it was built, else pure Python.

Theory of operation
-------------------
The store's ``_validate``, ``_book`` and ``_store``, the websocket's frame reader
(``_websocket/_reader``) and the replay feeder's hot loop (``_replay/_fastpath``) are plain typed
Python. The build (``setup.py``) compiles copies of them with mypyc into the sibling package
``bitmex_trio_websocket._compiled`` where the machine can; the modules in the source tree are
never replaced, so both cores can be loaded in one process and behave identically: the same
source, the same shared views (``_views``), closed-order rule (``_orders``), result classes
(``_events``) and frame types (``_websocket/_frames``).
``core_module(name)`` gives the compiled copy of a module while the compiled core is active, so
every module of the core is chosen by the one rule below.

At import, ``Storage`` is the compiled class unless

* ``BITMEX_TRIO_WEBSOCKET_PURE`` is set to anything but ``""`` or ``"0"``;
* no compiled core was built (no C compiler, or installed from a pure wheel); or
* the compiled core is stale: it records the SHA-256 of the sources it was built from, and an
  editable install whose sources changed since must not run old code (rebuild with
  ``pip install -e .``).

``CORE`` names the active core and why (``bitmex-trio-websocket --version`` prints it).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final

from ._store import Storage as PureStorage

__all__ = [
    "CORE",
    "CORE_MODULES",
    "PURE_VARIABLE",
    "Storage",
    "compiled_module",
    "core_module",
    "core_name",
    "source_hash",
]

PURE_VARIABLE: Final = "BITMEX_TRIO_WEBSOCKET_PURE"
# setup.py compiles these (paths in the package), in this order.
CORE_MODULES: Final = (
    "_storage/_validate",
    "_storage/_book",
    "_storage/_store",
    "_websocket/_reader",
    "_replay/_fastpath",
)
# The compiled core's C modules (``_compiled._slots``: its result objects; ``_compiled._lines``:
# the replay's reader of plain slice blocks), also hashed.
C_SOURCES: Final = ("_storage/_slots.c", "_replay/_lines.c")


def source_hash() -> str:
    """SHA-256 of the core's sources as they are now (what the build records)."""
    digest = hashlib.sha256()
    package = Path(__file__).parent.parent
    for path in CORE_MODULES:
        digest.update((package / f"{path}.py").read_bytes())
    for path in C_SOURCES:
        digest.update((package / path).read_bytes())
    return digest.hexdigest()


def compiled_module() -> tuple[ModuleType | None, str]:
    """The compiled ``_store`` module, or ``None`` and why it cannot be used."""
    try:
        package = importlib.import_module("bitmex_trio_websocket._compiled")
        store = importlib.import_module("bitmex_trio_websocket._compiled._store")
    except ImportError:
        return None, "no compiled core built"
    built: object = getattr(package, "SOURCE_HASH", None)
    try:
        current: object = source_hash()
    except OSError:  # installed without sources (a zipped or stripped install): trust the build
        current = built
    if built != current:
        return None, "compiled core is stale (sources changed since it was built)"
    return store, "mypyc"


def _select() -> tuple[type[PureStorage], str]:
    if os.environ.get(PURE_VARIABLE, "") not in ("", "0"):
        return PureStorage, f"pure Python ({PURE_VARIABLE} is set)"
    store, why = compiled_module()
    if store is None:
        return PureStorage, f"pure Python ({why})"
    compiled: type[PureStorage] = store.Storage
    return compiled, "compiled (mypyc)"


_selected, CORE = _select()
if TYPE_CHECKING:
    from ._store import Storage
else:
    Storage = _selected


def core_module(name: str) -> ModuleType | None:
    """The compiled copy of the core module ``name`` (``"_reader"``) while the compiled core is
    active; ``None`` when pure Python runs (then the caller uses its own module)."""
    if _selected is PureStorage:
        return None
    return importlib.import_module(f"bitmex_trio_websocket._compiled.{name}")


def core_name() -> str:
    """The active core and why: ``"compiled (mypyc)"``, or ``"pure Python (...)"``."""
    return CORE
