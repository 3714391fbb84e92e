"""The output folder of ``lavt predict --manifest``: append-only parts, merged in manifest order.

::

    DIR/predictions.jsonl    every pair done so far, sorted by (line, text_index), each once
    DIR/errors.jsonl         this run's bad lines, sorted by line
    DIR/summary.json         this run's counts
    DIR/parts/               while a run works: predictions-rank<R>.jsonl, errors-rank<R>.jsonl,
                             done-rank<R>.json (a rank's counts when it has finished)

A run starts by folding whatever an earlier run left in ``parts/`` into
``predictions.jsonl`` (:func:`consolidate`), so each rank then appends to a
fresh part of its own, one ``os.write`` per line (:class:`LineWriter`); a part
is sorted because a rank writes its pairs in manifest order. At the end rank 0
merges ``predictions.jsonl`` and every part into a new ``predictions.jsonl``
(a k-way merge of sorted streams, one line per stream in memory) that replaces
the old one atomically, then removes the parts.

A process killed at any moment leaves one of these states, each of which the
next run turns into "every pair exactly once": a part whose last line is cut
(:func:`repair_tail` drops the cut line; that pair is predicted again), or a
merged ``predictions.jsonl`` beside the parts it came from (the merge keeps one
line per key, so nothing is doubled).
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lavt.errors import InputError
from lavt.runtime import atomic_path

PREDICTIONS = "predictions.jsonl"
ERRORS = "errors.jsonl"
SUMMARY = "summary.json"
PARTS = "parts"

Key = tuple[int, ...]


def part_path(output: Path, kind: str, rank: int) -> Path:
    """``DIR/parts/<kind>-rank<R>.jsonl`` (kind: ``predictions`` or ``errors``)."""
    return output / PARTS / f"{kind}-rank{rank}.jsonl"


def prediction_key(record: dict[str, Any]) -> Key:
    return (int(record["line"]), int(record["text_index"]))


def error_key(record: dict[str, Any]) -> Key:
    return (int(record["line"]),)


def repair_tail(path: Path) -> int:
    """Cut a last line that was not written whole (no final newline); returns bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        block = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return 0
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                return size - (start + cut + 1)
            end = start
        f.truncate(0)
    return size


class LineWriter:
    """Appends JSON lines to a file, each in one ``os.write`` of the whole line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, separators=(", ", ": ")) + "\n").encode("utf-8")
        while data:
            data = data[os.write(self._fd, data) :]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_sorted(path: Path, key=prediction_key) -> Iterator[tuple[Key, str, dict[str, Any]]]:
    """``(key, line, record)`` of a sorted JSON-lines file, streamed; refuses anything else."""
    if not path.exists():
        return
    last: Key | None = None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                this = key(record)
            except (json.JSONDecodeError, TypeError, KeyError, ValueError):
                raise InputError(
                    f"{path}: line {number} is not a record of lavt predict --manifest; "
                    "use another --output",
                    param="output",
                ) from None
            if last is not None and this < last:
                raise InputError(f"{path}: line {number} is out of order; use another --output")
            last = this
            yield this, line if line.endswith("\n") else line + "\n", record


def merge_sorted(sources: Iterable[Path], target: Path, key=prediction_key) -> int:
    """Merge sorted JSON-lines files into ``target`` (atomically), one line per key; returns
    the number of lines. ``target`` may be one of the sources."""
    streams = [iter_sorted(path, key) for path in sources]
    count, last = 0, None
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for this, line, _ in heapq.merge(*streams, key=lambda item: item[0]):
            if this != last:
                out.write(line)
                count += 1
                last = this
    return count


def consolidate(output: Path) -> None:
    """Fold an earlier run's prediction parts into ``predictions.jsonl``; empty ``parts/``.

    Temporary files of a merge that was killed (``.predictions.jsonl.*.tmp``) are removed.
    """
    for name in (PREDICTIONS, ERRORS, SUMMARY):
        for stale in output.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    parts = output / PARTS
    found = sorted(parts.glob("predictions-rank*.jsonl")) if parts.is_dir() else []
    for path in found:
        repair_tail(path)
    if found:
        merge_sorted([output / PREDICTIONS, *found], output / PREDICTIONS)
    if parts.is_dir():
        shutil.rmtree(parts)
    parts.mkdir(parents=True)


def finish(output: Path, world_size: int) -> int:
    """Merge every rank's parts into ``predictions.jsonl`` and ``errors.jsonl`` (rank 0, once
    all ranks are done); returns the number of predictions. ``parts/`` is removed after."""
    pairs = merge_sorted(
        [output / PREDICTIONS, *(part_path(output, "predictions", r) for r in range(world_size))],
        output / PREDICTIONS,
    )
    merge_sorted(
        [part_path(output, "errors", r) for r in range(world_size)], output / ERRORS, key=error_key
    )
    shutil.rmtree(output / PARTS, ignore_errors=True)
    return pairs


class DoneCursor:
    """Which pairs ``predictions.jsonl`` already holds, asked in increasing key order.

    Reads the file once, as a stream: memory does not grow with its length.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stream = iter_sorted(path)
        self._head: tuple[Key, str, dict[str, Any]] | None = next(self._stream, None)

    def text(self, key: Key) -> str | None:
        """The done pair's text at ``key``, or None when it is not done."""
        while self._head is not None and self._head[0] < key:
            self._head = next(self._stream, None)
        if self._head is not None and self._head[0] == key:
            return self._head[2].get("text")
        return None
