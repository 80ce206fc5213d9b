"""The export tools' errors, and optional extras imported on use.

Theory of operation: ``ExportError`` is what an export refuses to do (nothing to plot); the CLI
prints it as one line. Parquet (pyarrow, extra ``parquet``) and plots (matplotlib, extra
``plot``) are optional, so they are imported only when used, through ``require``. A missing
library is a ``MissingExtraError`` whose message is the one line a user needs: what is missing
and the ``pip install`` command that brings it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .._exceptions import BitMEXError

__all__ = ["ExportError", "MissingExtraError", "require"]


class ExportError(BitMEXError):
    """An export that cannot be made from the data given (the message says why)."""


class MissingExtraError(ExportError):
    """An optional library is not installed: ``extra`` names the extra that installs it."""

    def __init__(self, extra: str, module: str, purpose: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f"{purpose} needs {module}, which is not installed: "
            f'pip install "bitmex-trio-websocket[{extra}]"'
        )


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """``import module``, or ``MissingExtraError`` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(extra, module.partition(".")[0], purpose) from None
