"""Reading a bulk-inference manifest one line at a time (``lavt predict --manifest``).

A manifest is JSON lines, one image a line::

    {"id": "cat-17", "image": "images/17.jpg", "texts": ["the cat", "the left cushion"]}
    {"image": "/data/18.png", "text": "the man in red"}

``id`` is optional (default: the line's number, counted from 1); ``"text"``
(one expression) or ``"texts"`` (a non-empty list) names the expressions;
relative image paths are read from the manifest's folder. The file is read as a
stream (never whole), so its length costs no memory; a line longer than
:data:`MAX_LINE_BYTES` is refused without being held. Every line that cannot be
used becomes a :class:`BadLine` with a one-line reason; the caller decides what
to do with it (``lavt predict`` writes it to ``errors.jsonl`` and goes on).

Under ``torchrun`` each process reads the whole file but keeps only its own
lines: line ``n`` belongs to rank ``(n - 1) % world_size``, a split that does
not depend on anything but the file, so every rerun gives each rank the same lines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lavt.errors import InputError
from lavt.runtime import check_readable_file

MAX_LINE_BYTES = 1 << 20  # a manifest line longer than 1 MiB is refused (memory stays bounded)


@dataclass(frozen=True)
class ManifestLine:
    """One usable manifest line: an image and its expressions."""

    line: int  # 1-based line number in the manifest
    id: str | int  # the line's "id", or its line number
    image: str  # the image path as the manifest writes it
    path: Path  # that path read from the manifest's folder
    texts: tuple[str, ...]


@dataclass(frozen=True)
class BadLine:
    """A line that cannot be used, and why (one line of ``errors.jsonl``)."""

    line: int
    reason: str
    id: str | int | None = None
    image: str | None = None

    def record(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.id, "image": self.image, "reason": self.reason}


def check_manifest(path: str | os.PathLike) -> Path:
    """Refuse a missing, unreadable or empty manifest with one line naming it."""
    path = Path(path)
    check_readable_file(path, "manifest", a_what="a manifest file")
    return path


def parse_line(raw: bytes, number: int, folder: Path) -> ManifestLine | BadLine:
    """One manifest line's bytes -> a :class:`ManifestLine`, or a :class:`BadLine` saying why."""
    try:
        entry = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return BadLine(number, "not UTF-8 text")
    except json.JSONDecodeError as err:
        return BadLine(number, f"not JSON ({err.msg} at column {err.colno})")
    if not isinstance(entry, dict):
        return BadLine(number, f"not a JSON object (a {type(entry).__name__})")
    ident = entry.get("id", number)
    if isinstance(ident, bool) or not isinstance(ident, str | int):
        return BadLine(number, "id: must be a string or an integer")
    image = entry.get("image")
    if not isinstance(image, str) or not image.strip():
        return BadLine(number, 'image: missing (give "image": "path")', ident)
    if "text" in entry and "texts" in entry:
        return BadLine(number, 'give "text" or "texts", not both', ident, image)
    texts = [entry["text"]] if "text" in entry else entry.get("texts")
    if texts is None:
        return BadLine(number, 'no expression (give "text": "..." or "texts": [...])', ident, image)
    if not isinstance(texts, list) or not texts:
        return BadLine(number, "texts: must be a non-empty list of expressions", ident, image)
    for k, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            name = "text" if "text" in entry else f"texts[{k}]"
            return BadLine(number, f"{name}: the expression is empty", ident, image)
    path = Path(image)
    path = path if path.is_absolute() else folder / path
    return ManifestLine(number, ident, image, path, tuple(texts))


def _skip_rest(f) -> None:
    """Read on to the end of an over-long line, a block at a time."""
    while True:
        block = f.readline(MAX_LINE_BYTES)
        if not block or block.endswith(b"\n"):
            return


def read_manifest(
    path: str | os.PathLike, *, rank: int = 0, world_size: int = 1
) -> Iterator[ManifestLine | BadLine]:
    """This process's lines of the manifest, in file order; blank lines are skipped.

    Line ``n`` (counted from 1, blank lines included) belongs to rank
    ``(n - 1) % world_size``; only that rank parses it.
    """
    path = Path(path)
    folder = path.resolve().parent
    try:
        f = open(path, "rb")
    except OSError as err:
        message = f"manifest {path}: unreadable ({err.strerror})"
        raise InputError(message, param="manifest") from None
    with f:
        number = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            mine = (number - 1) % world_size == rank
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                _skip_rest(f)
                if mine:
                    yield BadLine(number, f"longer than {MAX_LINE_BYTES} bytes")
                continue
            if mine and raw.strip():
                yield parse_line(raw, number, folder)
