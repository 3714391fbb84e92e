"""User-facing errors.

Every error a user can cause (a bad file, a bad argument) is raised as a
:class:`LavtError` with a one-line message naming the file or argument. The CLI
prints that line and exits non-zero without a traceback.
"""

from __future__ import annotations


class LavtError(Exception):
    """An error caused by user input, with a one-line message for the user."""

    exit_code: int = 2


class CheckpointError(LavtError):
    """A checkpoint file is missing, unreadable, unsafe or not a LAVT checkpoint."""


class InputError(LavtError):
    """An image, expression or dataset file is missing, unreadable or malformed."""
