"""The pages that restate the code (the exception tree, the command line) still match it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bitmex_trio_websocket import _exceptions
from bitmex_trio_websocket._cli._main import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs"


def tree_lines(text: str) -> list[str]:
    """The drawn tree: from the ``BitMEXError`` line to the last line drawn with a box rule."""
    lines = [line.strip() for line in text.splitlines()]
    start = lines.index("BitMEXError")
    tree = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith(("├", "│", "└")):
            break
        tree.append(" ".join(line.split()))
    return tree


def test_the_exceptions_page_draws_the_tree_of_the_code() -> None:
    assert _exceptions.__doc__ is not None
    drawn = tree_lines((DOCS / "exceptions.rst").read_text(encoding="utf-8"))
    assert drawn == tree_lines(_exceptions.__doc__)
    assert len(drawn) > 10


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_the_cli_page_names_every_option(command: str) -> None:
    page = (DOCS / "cli.rst").read_text(encoding="utf-8")
    assert f"\n{command}\n---" in page  # a section per command
    options = [
        option
        for action in subcommands()[command]._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    ]
    assert options
    missing = [option for option in options if option not in page]
    assert missing == []
