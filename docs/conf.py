"""Sphinx configuration for the bitmex-trio-websocket documentation.

Build locally (the ``docs`` extra installs Sphinx and the theme)::

    python -m pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

CI builds the same way, with warnings as errors. The API reference (``api.rst``) is generated
from the docstrings; ``check_public_names`` below makes the build fail when a name in
``bitmex_trio_websocket.__all__`` or ``bitmex_trio_websocket.emulator.__all__`` is missing from
it, so a new public name cannot ship undocumented.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

import bitmex_trio_websocket

project = "bitmex-trio-websocket"
author = "bitmex-trio-websocket developers"
copyright = "2021-2026, bitmex-trio-websocket developers"
release = bitmex_trio_websocket.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
default_role = "py:obj"
highlight_language = "python3"
pygments_style = "default"

# -- autodoc ------------------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "class"

# -- HTML ---------------------------------------------------------------------------------------
# furo comes with the docs extra; without it the docs still build with Sphinx's default theme.
html_theme = "furo" if importlib.util.find_spec("furo") is not None else "alabaster"
html_title = f"bitmex-trio-websocket {release}"
html_static_path: list[str] = []

PUBLIC_MODULES = ("bitmex_trio_websocket", "bitmex_trio_websocket.emulator")


def check_public_names(app: Sphinx, env: Any) -> None:
    """Warn (an error under ``-W``) for every public name the API reference does not document."""
    documented = set(env.domaindata["py"]["objects"])
    log = logging.getLogger(__name__)
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name.startswith("__"):
                continue
            if f"{module_name}.{name}" not in documented:
                log.warning(
                    "public name %s.%s is not in the API reference (docs/api.rst)",
                    module_name,
                    name,
                    type="bitmex",
                    subtype="public-names",
                )


def drop_inherited_type_docs(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    """A constant without a doc comment would show its type's docstring (``dict()`` -> ...).

    Only the prose written under its directive in the ``.rst`` file should show.
    """
    if what in ("data", "attribute") and lines:
        type_doc = type(obj).__doc__
        if type_doc and "\n".join(lines).strip() == inspect.cleandoc(type_doc).strip():
            lines.clear()


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("env-check-consistency", check_public_names)
    app.connect("autodoc-process-docstring", drop_inherited_type_docs)
    return {"parallel_read_safe": True}
