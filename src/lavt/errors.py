"""User-facing errors.

Every error a user can cause (a bad file, a bad argument) is raised as a
:class:`LavtError` with a one-line message naming the file or argument. The CLI
prints that line and exits non-zero without a traceback.
"""

from __future__ import annotations


class LavtError(Exception):
    """An error caused by user input, with a one-line message for the user.

    ``param`` names the parameter at fault (``device``, ``img_size``) when the
    message starts with it: the CLI shows that parameter as its flag
    (``--device``), a Python caller sees the parameter's own name.
    """

    exit_code: int = 2

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def message_for_cli(self, flags: dict[str, str] | None = None) -> str:
        """The message with a leading parameter name replaced by its CLI flag."""
        text = str(self)
        if self.param and text.startswith(self.param):
            flag = (flags or {}).get(self.param, "--" + self.param.replace("_", "-"))
            text = flag + text[len(self.param) :]
        return text


class CheckpointError(LavtError):
    """A checkpoint file is missing, unreadable, unsafe or not a LAVT checkpoint."""


class InputError(LavtError):
    """An image, expression or dataset file is missing, unreadable or malformed."""


class ConfigError(InputError, ValueError):
    """An invalid value in a model or run configuration.

    Also a :class:`ValueError`, so code that validates configs with
    ``except ValueError`` keeps working; ``param`` names the field at fault.
    """
