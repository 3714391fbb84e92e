"""Help formatting shared by the subcommands: each flag's help ends with its default.

Like ``argparse.ArgumentDefaultsHelpFormatter``, but a default that says
nothing (None, False of a switch) is left out, a help text that already
mentions ``%(default)`` or says ``(default: ...)`` itself is kept as written, and
an ``--x/--no-x`` pair names the flag that is on. ``lavt`` applies it to every
command and sub-command (``cli.build_parser``); ``tests/cli/test_help_defaults.py``
walks them all.
"""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to the help of every optional flag with a real default;
    an ``--x/--no-x`` pair shows the flag that is on by default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "(default: " in text  # written by hand; the test checks it shows the value
            or not action.option_strings
            or default is None
            or default is argparse.SUPPRESS
        ):
            return text
        if isinstance(action, argparse.BooleanOptionalAction):
            on, off = (s for s in action.option_strings if s.startswith("--"))
            return text + f" (default: {on if default else off})"
        if default is False:  # a switch: off unless given
            return text
        if isinstance(default, tuple | list):
            return text + " (default: " + " ".join(map(str, default)) + ")"
        return text + " (default: %(default)s)"


def use_defaults_help(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` and every sub-command parser under it show each flag's default."""
    parser.formatter_class = DefaultsHelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                use_defaults_help(child)
