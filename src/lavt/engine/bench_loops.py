"""``lavt benchmark --mode eval|data``: the evaluation loop and the data loader alone.

Both run on a synthetic dataset written to a temporary folder (``lavt synth``
scenes at the benchmark's image size), so they need no download.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from lavt.benchmark import BenchmarkResult, _result, synchronize


def _dataset_root(tmp: Path, num_images: int, img_size: int) -> Path:
    from lavt.data.synthetic import generate_dataset

    side = max(img_size, 32)
    generate_dataset(tmp, num_images=num_images, seed=0, image_size=(side, side))
    return tmp


def run_loop_benchmark(
    *,
    mode,
    preset,
    img_size,
    batch_size,
    expressions_per_image,
    device,
    dtype,
    compile_model,
    channels_last,
    warmup,
    repeats,
    workers,
) -> BenchmarkResult:
    from lavt.benchmark import DTYPES, _prepare_model
    from lavt.data.refer import ReferIndex
    from lavt.tokenizer import Tokenizer

    torch_dtype = DTYPES[dtype]
    with tempfile.TemporaryDirectory(prefix="lavt-bench-") as tmp:
        root = _dataset_root(Path(tmp), max(8, 4 * batch_size * (repeats + warmup)), img_size)
        index = ReferIndex(root, "refcoco", "unc")
        tokenizer = Tokenizer()
        if mode == "data":
            return _data(
                index,
                tokenizer,
                img_size=img_size,
                batch_size=batch_size,
                workers=workers,
                repeats=repeats,
                warmup=warmup,
                preset=preset,
                device=device,
                dtype=dtype,
                torch_dtype=torch_dtype,
            )
        model, runner = _prepare_model(
            preset,
            device=device,
            channels_last=channels_last,
            compile_model=compile_model,
            train=False,
        )
        return _eval(
            index,
            tokenizer,
            runner,
            img_size=img_size,
            batch_size=batch_size,
            workers=workers,
            repeats=repeats,
            warmup=warmup,
            preset=preset,
            device=device,
            dtype=dtype,
            torch_dtype=torch_dtype,
            compile_model=compile_model,
            channels_last=channels_last,
            per_image=expressions_per_image,
        )


def _data(
    index,
    tokenizer,
    *,
    img_size,
    batch_size,
    workers,
    repeats,
    warmup,
    preset,
    device,
    dtype,
    torch_dtype,
) -> BenchmarkResult:
    from torch.utils.data import DataLoader

    from lavt.data.dataset import ReferTrainDataset, collate_train

    dataset = ReferTrainDataset(index, index.split("train"), tokenizer=tokenizer, img_size=img_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        shuffle=False,
        collate_fn=collate_train,
        drop_last=True,
    )
    times, it = [], iter(loader)
    for step in range(warmup + repeats):
        t0 = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
        if step >= warmup:
            times.append(1000 * (time.perf_counter() - t0))
    result = _result(
        mode="data",
        preset=preset,
        dev=torch.device("cpu"),
        dtype=dtype,
        img_size=img_size,
        batch_size=batch_size,
        per_image=1,
        compile_model=False,
        channels_last=False,
        times=times,
        flops=0.0,
        torch_dtype=torch_dtype,
    )
    result.extra["workers"] = workers
    result.extra["samples/s per worker"] = round(result.pairs_per_second / max(workers, 1), 2)
    return result


def _eval(
    index,
    tokenizer,
    runner,
    *,
    img_size,
    batch_size,
    workers,
    repeats,
    warmup,
    preset,
    device,
    dtype,
    torch_dtype,
    compile_model,
    channels_last,
    per_image,
) -> BenchmarkResult:
    from lavt.engine.evaluate import evaluate, make_eval_loader

    from lavt.data.dataset import ReferEvalDataset

    dataset = ReferEvalDataset(index, index.split("train"), tokenizer=tokenizer, img_size=img_size)
    amp = None if torch_dtype == torch.float32 else torch_dtype

    def timed(objects_per_batch: int, limit: int) -> tuple[float, int]:
        subset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
        subset.items = dataset.items  # evaluate() reads nothing else from it
        loader = make_eval_loader(
            subset, batch_size=objects_per_batch, workers=workers, pin_memory=device.type == "cuda"
        )
        synchronize(device)
        t0 = time.perf_counter()
        result = evaluate(runner, loader, device, amp_dtype=amp, keep_records=False)
        synchronize(device)
        return time.perf_counter() - t0, result.metrics.num_expressions

    objects = batch_size * repeats
    timed(batch_size, batch_size * warmup)  # warm-up
    seconds, expressions = timed(batch_size, objects)
    base_seconds, base_expressions = _one_at_a_time(
        runner, dataset, device, amp, limit=max(2, objects // 4)
    )
    result = _result(
        mode="eval",
        preset=preset,
        dev=device,
        dtype=dtype,
        img_size=img_size,
        batch_size=batch_size,
        per_image=per_image,
        compile_model=compile_model,
        channels_last=channels_last,
        times=[1000 * seconds / max(repeats, 1)],
        flops=0.0,
        torch_dtype=torch_dtype,
        pairs=expressions / max(repeats, 1),
    )
    result.extra["expressions/s (batched)"] = round(expressions / seconds, 2)
    result.extra["expressions/s (one at a time)"] = round(base_expressions / base_seconds, 2)
    result.extra["speed-up over one at a time"] = round(
        (expressions / seconds) / (base_expressions / base_seconds), 2
    )
    return result


@torch.inference_mode()
def _one_at_a_time(runner, dataset, device, amp, *, limit: int) -> tuple[float, int]:
    """The reference's loop: one expression per forward, the mask compared on the host."""
    import contextlib

    count, t0 = 0, time.perf_counter()
    for i in range(min(limit, len(dataset))):
        item = dataset[i]
        image = item["image"][None].to(device)
        for e in range(item["input_ids"].shape[0]):
            ctx = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()
            with ctx:
                logits = runner(
                    image,
                    item["input_ids"][e : e + 1].to(device),
                    item["attention_mask"][e : e + 1].to(device),
                )
            pred = logits.argmax(1)[0].cpu().numpy()
            target = item["target"].numpy()
            _ = ((pred == 1) & (target == 1)).sum(), ((pred == 1) | (target == 1)).sum()
            count += 1
    synchronize(device)
    return time.perf_counter() - t0, count
