"""Every ``--help`` of every command and sub-command shows every default.

The parsers are walked, not listed by hand: a new command, sub-command or flag is
checked as soon as it exists.
"""

from __future__ import annotations

import argparse
import re

import pytest

from lavt.cli import COMMANDS, build_parser

#: actions whose default says nothing a person needs: switches, help, version
_SILENT = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._CountAction,
)


def _parsers(parser: argparse.ArgumentParser, prog: str):
    """``(prog, parser)`` for ``parser`` and every sub-command under it."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{prog} {name}")


def _all_parsers():
    """Each command's parser (built as ``lavt COMMAND`` builds it) and its sub-commands."""
    top = build_parser([])
    yield from _parsers(top, "lavt")  # the top level and the commands without arguments
    for name in COMMANDS:
        parser = build_parser([name])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        yield from _parsers(sub.choices[name], f"lavt {name}")


def _shown(action: argparse.Action) -> str:
    default = action.default
    if isinstance(action, argparse.BooleanOptionalAction):  # the flag that is on
        return action.option_strings[0 if default else 1]
    if isinstance(default, list | tuple):
        return " ".join(map(str, default))
    return str(default)


def _entries(help_text: str) -> dict[str, str]:
    """Option string -> its entry in the help, all whitespace removed (wrapping may
    break long words such as paths)."""
    entries = {}
    for block in re.split(r"\n(?=  -)", help_text)[1:]:  # [0]: usage, description
        head = block.strip().split("  ")[0]
        for option in re.findall(r"(?<![\w-])(--?[\w][\w-]*)", head):
            entries.setdefault(option, re.sub(r"\s+", "", block))
    return entries


def _cases():
    for prog, parser in _all_parsers():
        for action in parser._actions:
            default = action.default
            if (
                not action.option_strings
                or isinstance(action, _SILENT)
                or default is None
                or default is argparse.SUPPRESS
                or action.help is argparse.SUPPRESS
            ):
                continue
            yield pytest.param(prog, parser, action, id=f"{prog} {action.option_strings[-1]}")


CASES = list(_cases())


def test_the_walk_finds_every_command_and_sub_command():
    progs = {prog for prog, _ in _all_parsers()}
    assert {f"lavt {name}" for name in COMMANDS} <= progs
    assert {"lavt weights list", "lavt weights fetch", "lavt weights verify"} <= progs
    assert len(CASES) > 50


@pytest.mark.parametrize(("prog", "parser", "action"), CASES)
def test_every_option_with_a_default_shows_it(prog, parser, action):
    entries = _entries(parser.format_help())
    entry = entries[action.option_strings[0]]
    shown = re.sub(r"\s+", "", _shown(action))
    assert f"(default:{shown}" in entry, f"{prog} {action.option_strings[0]}: {entry}"
