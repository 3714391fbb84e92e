"""Help formatting shared by the subcommands: each flag's help ends with its default.

Like ``argparse.ArgumentDefaultsHelpFormatter``, but a default that says
nothing (None, False of a switch) is left out, and a help text that already
mentions ``%(default)`` is kept as written.
"""

from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to the help of every optional flag with a real default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
        ):
            return text
        if isinstance(default, tuple | list):
            return text + " (default: " + " ".join(map(str, default)) + ")"
        return text + " (default: %(default)s)"


def use_defaults_help(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` show each flag's default in its help."""
    parser.formatter_class = DefaultsHelpFormatter
