"""Bulk inference over a manifest (``lavt predict --manifest``), on one process or many.

::

    lavt predict --manifest pairs.jsonl --output out/
    torchrun --nproc_per_node 4 -m lavt predict --manifest pairs.jsonl --output out/

Each process runs one pipeline over its share of the manifest's lines
(:mod:`lavt.predict.manifest`)::

    manifest (streamed, main) -> DataLoader workers: decode + resize
      -> Batcher: batch_size (image, expression) rows -> model (device)
      -> thread pool: upsample to the image's size, RLE (+ PNGs) -> part file, in order

The model's thread only packs batches and calls the model: the postprocessing
(:func:`lavt.predict.predictions_from_logits`, the predictor's and ``lavt
serve``'s own, then :func:`lavt.predict.encode.encode_prediction`, serve's
result encoder) runs on ``threads`` threads while the next batches go through
the model, and a bounded queue of pending batches keeps memory flat. Every line
of ``predictions.jsonl`` is serve's result for one pair plus where it comes from::

    {"line": 3, "text_index": 0, "id": "cat-17", "image": "images/17.jpg", "text": "the cat",
     "width": 640, "height": 480, "rle": {"size": [480, 640], "counts": "..."},
     "bbox": [x, y, w, h], "area": 1234, "score": 0.93, "found": true}

How the folder stays consistent when a run is killed, resumed or sharded is
described in :mod:`lavt.predict.store`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader

from lavt.errors import InputError
from lavt.evaluation.outputs import check_output_dir
from lavt.evaluation.overlays import render_prediction
from lavt.imageio import save_png_atomic
from lavt.predict.bulk_data import Batch, Batcher, ImageLoading, LineTasks, Segment, as_is
from lavt.predict.encode import encode_prediction
from lavt.predict.manifest import check_manifest
from lavt.predict.predictor import Predictor, predictions_from_logits
from lavt.predict.store import (
    PARTS,
    PREDICTIONS,
    SUMMARY,
    DoneCursor,
    LineWriter,
    consolidate,
    finish,
    iter_sorted,
    part_path,
)
from lavt.runtime import DistInfo, atomic_write_text, autocast, barrier

log = logging.getLogger("lavt")

LOCK = ".lock"  # held by rank 0 while a run works
STOP = "stop"  # DIR/parts/stop: a rank passed --max-errors; the others stop too
PROGRESS_SECONDS = 30.0


@dataclass
class ManifestSummary:
    """What a run did (summed over processes)."""

    lines: int = 0  # manifest lines read (blank ones not counted)
    pairs_written: int = 0  # (image, expression) pairs predicted by this run
    pairs_skipped: int = 0  # pairs an earlier run had done
    lines_failed: int = 0  # lines in errors.jsonl
    stopped_early: bool = False  # --max-errors was passed
    pairs_total: int = 0  # lines of predictions.jsonl at the end
    processes: int = 1
    seconds: float = 0.0

    def add(self, other: ManifestSummary) -> None:
        for name in ("lines", "pairs_written", "pairs_skipped", "lines_failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.stopped_early = self.stopped_early or other.stopped_early


class Postprocessor:
    """Model outputs -> result lines on a thread pool, written in submission order."""

    def __init__(
        self,
        predictor: Predictor,
        writer: LineWriter,
        *,
        threads: int,
        png_dir: Path | None,
        max_pending: int,
    ) -> None:
        self.predictor = predictor
        self.writer = writer
        self.png_dir = png_dir
        self.max_pending = max_pending
        self.written = 0
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lavt-post")
        self._pending: deque[Future] = deque()

    def submit(self, batch: Batch, logits: torch.Tensor, no_target: torch.Tensor | None) -> None:
        """Queue one batch's outputs; write whatever is ready (wait when too much is pending)."""
        self._pending.append(self._pool.submit(self._lines, batch.segments, logits, no_target))
        while self._pending and (self._pending[0].done() or len(self._pending) > self.max_pending):
            self._write(self._pending.popleft())

    def drain(self) -> None:
        while self._pending:
            self._write(self._pending.popleft())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _write(self, future: Future) -> None:
        for record in future.result():
            self.writer.write(record)
            self.written += 1

    @torch.inference_mode()
    def _lines(
        self, segments: list[Segment], logits: torch.Tensor, no_target: torch.Tensor | None
    ) -> list[dict[str, Any]]:
        """logits (B, 2, S, S), no_target (B, 2) or None -> one record per real row."""
        records = []
        for seg in segments:
            item, entry = seg.item, seg.item.task.entry
            texts = [entry.texts[k] for k in seg.indices]
            predictions = predictions_from_logits(
                texts,
                logits[seg.start : seg.stop],
                None if no_target is None else no_target[seg.start : seg.stop],
                (item.height, item.width),
                rule=self.predictor.no_target_rule,
                area_threshold=self.predictor.area_threshold,
            )
            for k, prediction in zip(seg.indices, predictions, strict=True):
                result = encode_prediction(prediction)
                record = {"line": entry.line, "text_index": k, "id": entry.id}
                record |= {"image": entry.image, "text": result.pop("text")}
                record |= {"width": item.width, "height": item.height, **result}
                if self.png_dir is not None:
                    record |= self._save_pngs(item, k, prediction)
                records.append(record)
        return records

    def _save_pngs(self, item, k: int, prediction) -> dict[str, str]:
        name = f"{item.task.entry.line}_{k}.png"
        mask = Image.fromarray(prediction.mask.view("uint8") * 255, mode="L")  # (H, W)
        save_png_atomic(mask, self.png_dir / "masks" / name, compress_level=3)
        overlay = render_prediction(
            Image.fromarray(item.picture),
            prediction.mask,
            prediction.text,
            colour_index=k,
            found=bool(prediction.found),
            no_target_probability=prediction.no_target_probability,
        )
        save_png_atomic(overlay, self.png_dir / "overlays" / name)
        return {"mask": f"masks/{name}", "overlay": f"overlays/{name}"}


def _forward(predictor: Predictor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One batch -> (logits (rows, 2, S, S), no-target logits (rows, 2) or None), on the device."""
    device = predictor.device
    pixels = batch.pixels.pin_memory() if device.type == "cuda" else batch.pixels
    with torch.inference_mode(), autocast(device, predictor.amp):
        logits, no_target = predictor.model(
            pixels.to(device, non_blocking=True),
            batch.input_ids.to(device),
            batch.attention_mask.to(device),
            return_no_target=True,
        )  # (B, 2, S, S), (B, 2) or None
    return logits[: batch.rows], None if no_target is None else no_target[: batch.rows]


def _work(
    predictor: Predictor,
    manifest: Path,
    output: Path,
    dist: DistInfo,
    *,
    batch_size: int,
    workers: int,
    threads: int,
    save_png: bool,
    max_errors: int | None,
) -> ManifestSummary:
    """This rank's share: its lines in order, predictions and errors to its own parts."""
    tasks = LineTasks(
        manifest, DoneCursor(output / PREDICTIONS), rank=dist.rank, world_size=dist.world_size
    )
    loader = DataLoader(
        ImageLoading(predictor.img_size, keep_picture=save_png),
        sampler=tasks,
        batch_size=None,
        num_workers=workers,
        collate_fn=as_is,
        prefetch_factor=4 if workers else None,
    )
    batcher = Batcher(
        predictor.tokenizer, batch_size, synthetic_only=predictor.knows_synthetic_only
    )
    summary = ManifestSummary()
    stop_flag = output / PARTS / STOP
    with (
        LineWriter(part_path(output, "predictions", dist.rank)) as out,
        LineWriter(part_path(output, "errors", dist.rank)) as errors,
    ):
        post = Postprocessor(
            predictor, out, threads=threads, png_dir=output if save_png else None,
            max_pending=2 * threads,
        )  # fmt: skip
        try:
            next_report = time.monotonic() + PROGRESS_SECONDS
            for item in loader:
                if item.error is not None:
                    errors.write(item.error.record())
                    summary.lines_failed += 1
                    if max_errors is not None and summary.lines_failed > max_errors:
                        summary.stopped_early = True
                        stop_flag.touch()
                        log.error("more than %d lines failed (--max-errors): stopping", max_errors)
                        break
                    continue
                for batch in batcher.add(item):
                    post.submit(batch, *_forward(predictor, batch))
                if dist.enabled and stop_flag.exists():
                    summary.stopped_early = True
                    break
                if time.monotonic() > next_report:
                    next_report = time.monotonic() + PROGRESS_SECONDS
                    log.info("%s: %d pairs written so far", manifest, post.written)
            for batch in batcher.flush():
                post.submit(batch, *_forward(predictor, batch))
            post.drain()
        finally:
            post.close()
    summary.lines = tasks.lines
    summary.pairs_skipped = tasks.skipped_pairs
    summary.pairs_written = post.written
    return summary


def _gather(output: Path, dist: DistInfo, mine: ManifestSummary) -> ManifestSummary:
    """Every rank's counts, once all ranks have finished (each writes a ``done`` file)."""
    atomic_write_text(output / PARTS / f"done-rank{dist.rank}.json", json.dumps(asdict(mine)))
    paths = [output / PARTS / f"done-rank{r}.json" for r in range(dist.world_size)]
    while not all(p.exists() for p in paths):  # no collective: ranks may end far apart
        time.sleep(0.2)
    total = ManifestSummary(processes=dist.world_size)
    for path in paths:
        total.add(ManifestSummary(**json.loads(path.read_text(encoding="utf-8"))))
    return total


def predict_manifest(
    predictor: Predictor,
    manifest: str | os.PathLike,
    output: str | os.PathLike,
    *,
    batch_size: int = 16,
    workers: int = 2,
    threads: int = 2,
    save_png: bool = False,
    max_errors: int | None = None,
    dist: DistInfo | None = None,
) -> ManifestSummary:
    """Predict every (image, expression) pair of ``manifest`` into ``output``.

    Pairs already in ``output/predictions.jsonl`` are skipped (a rerun resumes).
    ``batch_size`` counts expressions; ``workers`` loader processes decode the
    images; ``threads`` postprocess. ``max_errors``: stop once more lines than
    this have failed (per process). ``dist``: this process's place under
    ``torchrun`` (every rank calls this function with the same arguments).
    """
    for name, value, least in (("batch_size", batch_size, 1), ("workers", workers, 0),
                               ("threads", threads, 1), ("max_errors", max_errors, 0)):  # fmt: skip
        if value is not None and value < least:
            raise InputError(f"{name} {value}: must be at least {least}", param=name)
    predictor.check_image_model()
    manifest = check_manifest(manifest)
    output = check_output_dir(output)
    dist = dist or DistInfo()
    next(iter_sorted(output / PREDICTIONS), None)  # another command's folder: refused here
    start = time.perf_counter()
    with _only_run(output, dist):
        if dist.is_main:
            consolidate(output)
        barrier()
        mine = _work(
            predictor, manifest, output, dist, batch_size=batch_size, workers=workers,
            threads=threads, save_png=save_png, max_errors=max_errors,
        )  # fmt: skip
        total = _gather(output, dist, mine)
        barrier()  # every rank has read the done files before rank 0 removes them
        if dist.is_main:
            total.pairs_total = finish(output, dist.world_size)
            total.seconds = round(time.perf_counter() - start, 3)
            atomic_write_text(output / SUMMARY, json.dumps(asdict(total), indent=2) + "\n")
    return total


@contextlib.contextmanager
def _only_run(output: Path, dist: DistInfo) -> Iterator[None]:
    """Rank 0 holds ``DIR/.lock`` for the run: a second run on the same folder is refused."""
    if not dist.is_main:
        yield
        return
    from filelock import FileLock, Timeout

    output.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(output / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise InputError(
            f"output {output}: another lavt predict --manifest is writing there", param="output"
        ) from None
    try:
        yield
    finally:
        lock.release()
