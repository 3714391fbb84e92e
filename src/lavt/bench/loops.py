"""``eval`` and ``data`` modes: the evaluation loop and the data loader alone.

Both run on a synthetic dataset written to a temporary folder (``lavt synth``
scenes at the benchmark's image size), so they need no download.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from lavt.bench.result import BenchmarkResult, BenchSpec, make_result
from lavt.bench.steps import prepare_model
from lavt.runtime import autocast, synchronize


def run_loop_benchmark(spec: BenchSpec) -> BenchmarkResult:
    """Time ``spec.mode`` (``eval`` or ``data``) on freshly written synthetic scenes."""
    from lavt.data.refer import ReferIndex
    from lavt.data.synthetic import generate_dataset
    from lavt.tokenizer import Tokenizer

    scenes = max(8, 4 * spec.batch_size * (spec.repeats + spec.warmup))
    with tempfile.TemporaryDirectory(prefix="lavt-bench-") as tmp:
        side = max(spec.img_size, 32)
        generate_dataset(tmp, num_images=scenes, seed=0, image_size=(side, side))
        index = ReferIndex(Path(tmp), "refcoco", "unc")
        if spec.mode == "data":
            return _data(index, Tokenizer(), spec)
        return _eval(index, Tokenizer(), spec)


def _data(index, tokenizer, spec: BenchSpec) -> BenchmarkResult:
    from torch.utils.data import DataLoader

    from lavt.data.dataset import ReferTrainDataset, collate_train

    dataset = ReferTrainDataset(
        index, index.split("train"), tokenizer=tokenizer, img_size=spec.img_size
    )
    loader = DataLoader(
        dataset,
        batch_size=spec.batch_size,
        num_workers=spec.workers,
        shuffle=False,
        collate_fn=collate_train,
        drop_last=True,
    )
    times, it = [], iter(loader)
    for step in range(spec.warmup + spec.repeats):
        t0 = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
        if step >= spec.warmup:
            times.append(1000 * (time.perf_counter() - t0))
    cpu_spec = dataclasses.replace(
        spec, expressions_per_image=1, compile_model=False, channels_last=False
    )
    result = make_result(cpu_spec, times, device=torch.device("cpu"))
    result.extra["workers"] = spec.workers
    result.extra["samples/s per worker"] = round(result.pairs_per_second / max(spec.workers, 1), 2)
    return result


def evaluate_expressions(runner, dataset, spec: BenchSpec) -> int:
    """Run the evaluation driver over ``dataset``; returns the number of expressions scored.

    The one call into the evaluation code: the same loop ``lavt evaluate`` runs.
    """
    from lavt.evaluation import run_evaluation

    amp = None if spec.dtype == torch.float32 else spec.dtype
    result = run_evaluation(
        runner,
        dataset,
        device=spec.device,
        batch_size=spec.batch_size,
        workers=spec.workers,
        amp=amp,
        keep_records=False,
    )
    return result.metrics.num_expressions


def _eval(index, tokenizer, spec: BenchSpec) -> BenchmarkResult:
    from lavt.data.dataset import ReferEvalDataset

    _, runner = prepare_model(spec, train=False)
    dataset = ReferEvalDataset(
        index, index.split("train"), tokenizer=tokenizer, img_size=spec.img_size
    )
    device = spec.device

    def timed(limit: int) -> tuple[float, int]:
        subset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
        synchronize(device)
        t0 = time.perf_counter()
        expressions = evaluate_expressions(runner, subset, spec)
        synchronize(device)
        return time.perf_counter() - t0, expressions

    objects = spec.batch_size * spec.repeats
    if spec.warmup:
        timed(spec.batch_size * spec.warmup)
    seconds, expressions = timed(objects)
    base_seconds, base_expressions = _one_at_a_time(
        runner, dataset, spec, limit=max(2, objects // 4)
    )
    result = make_result(spec, [1000 * seconds / spec.repeats], pairs=expressions / spec.repeats)
    batched, single = expressions / seconds, base_expressions / base_seconds
    result.extra["expressions/s (batched)"] = round(batched, 2)
    result.extra["expressions/s (one at a time)"] = round(single, 2)
    result.extra["speed-up over one at a time"] = round(batched / single, 2)
    return result


@torch.inference_mode()
def _one_at_a_time(runner, dataset, spec: BenchSpec, *, limit: int) -> tuple[float, int]:
    """The reference's loop: one expression per forward, the mask compared on the host."""
    device = spec.device
    subset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    # items as they are (batch_size=None), read ahead by the same workers as the batched run
    loader = torch.utils.data.DataLoader(subset, batch_size=None, num_workers=spec.workers)
    count, t0 = 0, time.perf_counter()
    for item in loader:
        image = item["image"][None].to(device)  # (3, S, S) -> (1, 3, S, S)
        target = item["target"].numpy()
        for e in range(item["input_ids"].shape[0]):
            with autocast(device, spec.dtype):
                logits = runner(
                    image,
                    item["input_ids"][e : e + 1].to(device),
                    item["attention_mask"][e : e + 1].to(device),
                )
            pred = logits.argmax(1)[0].cpu().numpy()  # (1, 2, S, S) -> (S, S)
            _ = ((pred == 1) & (target == 1)).sum(), ((pred == 1) | (target == 1)).sum()
            count += 1
    synchronize(device)
    return time.perf_counter() - t0, count
