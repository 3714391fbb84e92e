"""Bulk inference over a manifest (``lavt predict --manifest``), on one process or many.

::

    lavt predict --manifest pairs.jsonl --output out/
    torchrun --nproc_per_node 4 -m lavt predict --manifest pairs.jsonl --output out/

Each process runs one pipeline over its share of the manifest's lines
(:mod:`lavt.predict.manifest`)::

    manifest (streamed, main) -> decode + resize (main thread, or DataLoader workers)
      -> Batcher: batch_size (image, expression) rows
      -> thread pool, one batch per thread: model, then upsample to the image's
         size, RLE (+ PNGs) -> part file, in order (main thread)

Each pool thread runs a whole batch: the forward pass (torch releases the GIL in
its kernels) and the postprocessing (:func:`lavt.predict.predictions_from_logits`,
the predictor's and ``lavt serve``'s own, then
:func:`lavt.predict.encode.encode_prediction`, serve's result encoder). On the
CPU, ``threads`` batches run at once with ``cores // threads`` torch threads
each, so no core waits for another (an OpenMP team sharing its cores with the
decoding would stall at every barrier); a bounded queue of pending batches keeps
memory flat. :func:`choose_pipeline` sets the defaults from the cores this
process has (docs/bulk.md). Every line of ``predictions.jsonl`` is serve's
result for one pair plus where it comes from::

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
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from lavt.errors import InputError
from lavt.evaluation.outputs import check_output_dir
from lavt.predict.bulk_data import Batch, Batcher, ImageLoading, LineTasks, as_is
from lavt.predict.bulk_post import batch_records
from lavt.predict.manifest import check_manifest
from lavt.predict.predictor import Predictor
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


@dataclass(frozen=True)
class PipelinePlan:
    """How one process spreads its work (:func:`choose_pipeline`)."""

    batch_size: int  # (image, expression) rows per forward pass
    workers: int  # DataLoader processes decoding images (0: the main thread decodes)
    threads: int  # batches in flight at once, each on its own thread (forward + postprocessing)
    torch_threads: int | None  # intra-op threads of each (None: torch's setting, left alone)


def available_cores() -> int:
    """The CPUs this process may run on, shared among torchrun's processes on this node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def choose_pipeline(
    device: torch.device,
    img_size: int,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> PipelinePlan:
    """The defaults (None) of ``--batch-size``, ``--workers`` and ``--threads`` for
    ``device`` and a model input of ``img_size``, and the torch threads of each
    pipeline thread.

    ``batch_size``: as many rows as hold the pixels of 16 rows of 480 x 480 (the
    paper's input), between 16 and 32 (a small model's forward pass costs a fixed
    time per call that larger batches share). On the CPU every stage competes for
    the same cores: up to 4 cores the main thread decodes (a loader process would
    cost more to feed than it gives) and ``min(cores, 4)`` batches run at once with
    ``cores // threads`` torch threads each; more cores add 2 loader processes. On
    a GPU: 2 loader processes, 2 threads, torch's threads as set. Measured in
    docs/bulk.md.
    """
    if batch_size is None:
        batch_size = min(32, max(16, 16 * 480**2 // img_size**2))
    if device.type != "cpu":
        return PipelinePlan(batch_size, 2 if workers is None else workers,
                            2 if threads is None else threads, None)  # fmt: skip
    cores = available_cores()
    if threads is None:
        threads = min(cores, 4)
    if workers is None:
        workers = 0 if cores <= 4 else 2
    return PipelinePlan(batch_size, workers, threads, max(1, cores // threads))


class BatchRunner:
    """Batches -> result lines on a thread pool (forward + postprocessing each), written
    in submission order."""

    def __init__(
        self,
        predictor: Predictor,
        writer: LineWriter,
        *,
        threads: int,
        torch_threads: int | None,
        png_dir: Path | None,
        max_pending: int,
    ) -> None:
        self.predictor = predictor
        self.writer = writer
        self.png_dir = png_dir
        self.max_pending = max_pending
        self.written = 0
        self._torch_threads = torch_threads
        self._caller_threads = torch.get_num_threads()
        self._pool = ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix="lavt-batch",
            initializer=None if torch_threads is None else torch.set_num_threads,
            initargs=() if torch_threads is None else (torch_threads,),
        )
        self._pending: deque[Future] = deque()
        # on a GPU one forward at a time (as much device memory as one batch needs); the
        # postprocessing of the others overlaps it. On the CPU each thread computes its own.
        cpu = predictor.device.type == "cpu"
        self._one_forward = contextlib.nullcontext() if cpu else threading.Lock()

    def submit(self, batch: Batch) -> None:
        """Queue one batch; write whatever is ready (wait when too much is pending)."""
        self._pending.append(self._pool.submit(self._run, batch))
        while self._pending and (self._pending[0].done() or len(self._pending) > self.max_pending):
            self._write(self._pending.popleft())

    def drain(self) -> None:
        while self._pending:
            self._write(self._pending.popleft())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._torch_threads is not None:  # set_num_threads is global: the caller's again
            torch.set_num_threads(self._caller_threads)

    def _write(self, future: Future) -> None:
        for record in future.result():
            self.writer.write(record)
            self.written += 1

    def _run(self, batch: Batch) -> list[dict[str, Any]]:
        with self._one_forward:
            logits, no_target = _forward(self.predictor, batch)
        return batch_records(
            batch.segments, logits, no_target, rule=self.predictor.no_target_rule,
            area_threshold=self.predictor.area_threshold, png_dir=self.png_dir,
        )  # fmt: skip


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
    plan: PipelinePlan,
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
        num_workers=plan.workers,
        collate_fn=as_is,
        prefetch_factor=4 if plan.workers else None,
    )
    batcher = Batcher(
        predictor.tokenizer, plan.batch_size, synthetic_only=predictor.knows_synthetic_only
    )
    summary = ManifestSummary()
    stop_flag = output / PARTS / STOP
    with (
        LineWriter(part_path(output, "predictions", dist.rank)) as out,
        LineWriter(part_path(output, "errors", dist.rank)) as errors,
    ):
        post = BatchRunner(
            predictor, out, threads=plan.threads, torch_threads=plan.torch_threads,
            png_dir=output if save_png else None, max_pending=2 * plan.threads,
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
                    post.submit(batch)
                if dist.enabled and stop_flag.exists():
                    summary.stopped_early = True
                    break
                if time.monotonic() > next_report:
                    next_report = time.monotonic() + PROGRESS_SECONDS
                    log.info("%s: %d pairs written so far", manifest, post.written)
            for batch in batcher.flush():
                post.submit(batch)
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
    batch_size: int | None = None,
    workers: int | None = None,
    threads: int | None = None,
    save_png: bool = False,
    max_errors: int | None = None,
    dist: DistInfo | None = None,
) -> ManifestSummary:
    """Predict every (image, expression) pair of ``manifest`` into ``output``.

    Pairs already in ``output/predictions.jsonl`` are skipped (a rerun resumes).
    ``batch_size`` counts expressions; ``workers`` loader processes decode the
    images (0: the main thread); ``threads`` batches run at once (forward and
    postprocessing); None chooses them from the device, the model's input size
    and the cores (:func:`choose_pipeline`). ``max_errors``: stop once more lines than
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
    plan = choose_pipeline(
        predictor.device, predictor.img_size, batch_size=batch_size, workers=workers,
        threads=threads,
    )  # fmt: skip
    log.debug("pipeline: %s", plan)
    start = time.perf_counter()
    with _only_run(output, dist):
        if dist.is_main:
            consolidate(output)
        barrier()
        mine = _work(
            predictor, manifest, output, dist, plan=plan,
            save_png=save_png, max_errors=max_errors,
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
