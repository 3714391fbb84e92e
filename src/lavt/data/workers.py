"""Errors raised inside DataLoader worker processes, shown as their own one-line message.

A worker's exception reaches the main process re-created by torch with a
message of the form ``Caught InputError in DataLoader worker process 0.
Original Traceback ...`` ending with the original ``lavt.errors.InputError:
<message>`` line. :func:`clean_worker_errors` turns such a :class:`LavtError`
back into the plain one-liner, so ``--workers 2`` reports a bad file exactly as
``--workers 0`` does (the error's ``param`` does not cross the process boundary:
torch passes only the text). Training and evaluation loops iterate inside it::

    with clean_worker_errors():
        for batch in loader:
            ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from lavt.errors import LavtError

_MARKER = "DataLoader worker process"


def original_message(error: LavtError) -> str:
    """The worker's own message inside torch's re-raised wrapper text (or ``str(error)``)."""
    text = str(error)
    if _MARKER not in text:
        return text
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    lines = [line for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(prefix):
            return line[len(prefix) :]
    return lines[-1] if lines else text


@contextlib.contextmanager
def clean_worker_errors() -> Iterator[None]:
    """Re-raise a :class:`LavtError` from a loader worker with its original one-line message."""
    try:
        yield
    except LavtError as err:
        if _MARKER not in str(err):
            raise
        raise type(err)(original_message(err)) from None
