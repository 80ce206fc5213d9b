"""Sphinx configuration for the bitmex-trio-websocket documentation.

Build locally (the ``docs`` extra installs Sphinx and the theme)::

    python -m pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

CI builds the same way, with warnings as errors. The API reference (``api.rst``) is generated
from the docstrings and follows the public modules' ``__all__`` both ways: each entry is a
``.. public:: NAME`` directive (below), which documents NAME with the right autodoc directive
only while the current module exports it, and ``check_public_names`` makes the build fail when
a name in the ``__all__`` of ``bitmex_trio_websocket``, ``.emulator`` or ``.backtest`` has no
entry, so a new public name cannot ship undocumented.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

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

PUBLIC_MODULES = (
    "bitmex_trio_websocket",
    "bitmex_trio_websocket.emulator",
    "bitmex_trio_websocket.backtest",
)


class PublicName(SphinxDirective):
    """``.. public:: NAME`` (or ``NAME(signature)``), with optional prose as content.

    Expands to ``autofunction``, ``autoclass``, ``autoexception`` or ``autodata`` for NAME in the
    current module (``.. module::``), if that module's ``__all__`` has it; otherwise to nothing,
    so a name withdrawn from ``__all__`` leaves the reference without breaking the build.
    """

    required_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec: ClassVar[dict[str, Callable[[str], Any]] | None] = {
        "members": directives.unchanged,
        "no-value": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        module_name = self.env.ref_context.get("py:module")
        if module_name is None:
            raise self.error("'public' needs a '.. module::' before it")
        module = importlib.import_module(module_name)
        target = self.arguments[0]
        name = target.split("(", 1)[0].strip()
        if name not in getattr(module, "__all__", ()):
            return []
        obj = getattr(module, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            kind = "autoexception"
        elif isinstance(obj, type):
            kind = "autoclass"
        elif inspect.isroutine(obj):
            kind = "autofunction"
        else:
            kind = "autodata"
        lines = [f".. {kind}:: {target}"]
        for option, value in self.options.items():
            lines.append(f"   :{option}: {value or ''}".rstrip())
        lines.append("")
        lines.extend(f"   {line}" if line else "" for line in self.content)
        source, _ = self.get_source_info()
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=source), self.content_offset, container)
        return list(container.children)


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
    app.add_directive("public", PublicName)
    app.connect("env-check-consistency", check_public_names)
    app.connect("autodoc-process-docstring", drop_inherited_type_docs)
    return {"parallel_read_safe": True}
