"""What feeds the model in ``lavt predict --manifest``: tasks, images decoded in workers, batches.

- :class:`LineTasks` runs in the main process as the DataLoader's sampler: the
  rank's manifest lines, less the pairs ``predictions.jsonl`` already holds. Bad
  lines travel on as tasks too, so that they reach ``errors.jsonl`` in line order.
- :class:`ImageLoading` runs in the DataLoader workers: it decodes one line's
  image (EXIF, any mode -> RGB, :func:`lavt.imageio.load_image`) and resizes it
  to the model's input (:func:`lavt.data.transforms.image_to_tensor`), as the
  predictor does; an unreadable image comes back as an error, not an exception.
- :class:`Batcher` packs (image, expression) pairs of consecutive images into
  batches of exactly ``batch_size`` rows, the last one padded with copies of its
  first row: every forward pass then has the same shape, so a pair's mask does
  not depend on which pairs share its batch (a CPU or GPU kernel may round
  differently for another batch size), and one process, several processes and a
  resumed run give the same bytes.

The loader keeps the sampler's order (``in_order``), so items arrive in manifest order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lavt.data.transforms import image_to_tensor
from lavt.errors import InputError
from lavt.imageio import load_image
from lavt.predict.manifest import BadLine, ManifestLine, read_manifest
from lavt.predict.notices import notice_tokens
from lavt.predict.store import DoneCursor
from lavt.tokenizer import Tokenizer


@dataclass
class Task:
    """One manifest line for a worker: the line (or why it is bad) and the texts still to do."""

    entry: ManifestLine | BadLine
    todo: tuple[int, ...] = ()  # indices into entry.texts


@dataclass
class LoadedImage:
    """A worker's answer for one task."""

    task: Task
    pixels: torch.Tensor | None = None  # (3, S, S) float32, normalized
    width: int = 0
    height: int = 0
    picture: np.ndarray | None = None  # (H, W, 3) uint8, only when PNGs are written
    error: BadLine | None = None


class LineTasks:
    """The rank's tasks in manifest order, counting what it reads and skips (main process)."""

    def __init__(self, manifest: Path, done: DoneCursor, *, rank: int = 0, world_size: int = 1):
        self.manifest = manifest
        self.done = done
        self.rank, self.world_size = rank, world_size
        self.lines = 0
        self.skipped_pairs = 0

    def __iter__(self) -> Iterator[Task]:
        for entry in read_manifest(self.manifest, rank=self.rank, world_size=self.world_size):
            self.lines += 1
            if isinstance(entry, BadLine):
                yield Task(entry)
                continue
            todo = []
            for k, text in enumerate(entry.texts):
                earlier = self.done.text((entry.line, k))
                if earlier is None:
                    todo.append(k)
                elif earlier != text:
                    raise InputError(
                        f"{self.done.path}: line {entry.line} text {k} is {earlier!r} there but "
                        f"{text!r} in {self.manifest}: the manifest changed; use another --output"
                    )
                else:
                    self.skipped_pairs += 1
            if todo:
                yield Task(entry, tuple(todo))


class ImageLoading(Dataset):
    """Task -> :class:`LoadedImage` (decoded, resized to ``img_size``); runs in loader workers."""

    def __init__(self, img_size: int, *, keep_picture: bool = False) -> None:
        self.img_size = img_size
        self.keep_picture = keep_picture

    def __getitem__(self, task: Task) -> LoadedImage:  # type: ignore[override]
        entry = task.entry
        if isinstance(entry, BadLine):
            return LoadedImage(task, error=entry)
        try:
            picture = load_image(entry.path)
        except InputError as err:
            return LoadedImage(task, error=BadLine(entry.line, str(err), entry.id, entry.image))
        width, height = picture.size
        pixels = image_to_tensor(picture, self.img_size)  # (3, S, S)
        kept = np.asarray(picture) if self.keep_picture else None  # (H, W, 3)
        return LoadedImage(task, pixels, width, height, kept)


def as_is(item: LoadedImage) -> LoadedImage:
    """The loader's collate function: items are not batched by the loader."""
    return item


@dataclass
class Segment:
    """One image's rows ``start:stop`` in a batch, for its texts ``indices``."""

    item: LoadedImage
    indices: list[int]
    start: int
    stop: int


@dataclass
class Batch:
    """``batch_size`` rows of (image, expression) pairs; ``rows`` of them are real."""

    pixels: torch.Tensor  # (B, 3, S, S)
    input_ids: torch.Tensor  # (B, N)
    attention_mask: torch.Tensor  # (B, N)
    rows: int
    segments: list[Segment] = field(default_factory=list)


class Batcher:
    """Packs the pairs of consecutive images into batches of exactly ``batch_size`` rows."""

    def __init__(self, tokenizer: Tokenizer, batch_size: int, *, synthetic_only: bool = False):
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.synthetic_only = synthetic_only
        self._pairs: list[tuple[LoadedImage, int, torch.Tensor, torch.Tensor]] = []

    def add(self, item: LoadedImage) -> Iterator[Batch]:
        """Queue the item's pairs; yield each batch that fills up."""
        texts = [item.task.entry.texts[k] for k in item.task.todo]
        ids, attention = self.tokenizer(texts)  # (E, N) each
        notice_tokens(self.tokenizer, texts, ids, synthetic_only=self.synthetic_only)
        for row, k in enumerate(item.task.todo):
            self._pairs.append((item, k, ids[row], attention[row]))
            if len(self._pairs) == self.batch_size:
                yield self._take()

    def flush(self) -> Iterator[Batch]:
        """The last, partial batch (padded), if any pair is waiting."""
        if self._pairs:
            yield self._take()

    def _take(self) -> Batch:
        pairs, self._pairs = self._pairs, []
        rows = len(pairs)
        padded = pairs + [pairs[0]] * (self.batch_size - rows)
        batch = Batch(
            pixels=torch.stack([p[0].pixels for p in padded]),  # B x (3, S, S) -> (B, 3, S, S)
            input_ids=torch.stack([p[2] for p in padded]),  # B x (N,) -> (B, N)
            attention_mask=torch.stack([p[3] for p in padded]),  # B x (N,) -> (B, N)
            rows=rows,
        )
        for row, (item, k, _, _) in enumerate(pairs):
            last = batch.segments[-1] if batch.segments else None
            if last is not None and last.item is item:
                last.indices.append(k)
                last.stop = row + 1
            else:
                batch.segments.append(Segment(item, [k], row, row + 1))
        return batch
