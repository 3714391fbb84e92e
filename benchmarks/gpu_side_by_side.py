"""The reference implementation and `lavt` on the same device, same weights and inputs (issue 25).

One process times one side (``--impl reference`` or ``--impl lavt``), so each peak memory is
its own; ``scripts/gpu_check.sh`` runs the pairs as steps and ``gpu_check_summary.py`` puts the
ratios side by side. Swin ``--preset`` (base: Swin-B ``lavt_one``, window 12, as the CPU
harness) with random weights built by the reference code (seed 1234, as
../shared/reference/harness/side_by_side.py) and loaded by `lavt` from the released
checkpoint format.

    LAVT_REF_DIR=DIR python benchmarks/gpu_side_by_side.py --impl reference --mode train \\
        --batch-size 8 --device cuda --json OUT.json
    LAVT_REF_DIR=DIR python benchmarks/gpu_side_by_side.py --impl lavt --mode train \\
        --batch-size 8 --dtype bf16 --device cuda --json OUT.json

``--mode infer``: one forward and the argmax mask (the reference: float32, no_grad, as its
test.py; `lavt`: ``--dtype`` through ``lavt.precision``, inference mode); ``--save-mask``
writes the masks (uint8 .npy) for the summary's pixel agreement. ``--mode train``: one
optimisation step on a fixed batch (target: the top half of each image). The reference's step
is its ``train_one_epoch`` body without the data loader: forward, weighted cross-entropy
(0.9, 1.1), ``zero_grad``, backward, AdamW over its parameter groups (BERT layers 0-9),
the scheduler step, ``loss.item()``, and the ``gc.collect()`` + ``torch.cuda.empty_cache()`` it
runs after every iteration (``--bare`` leaves those two out). `lavt`'s step is
``lavt.train.train_step`` as ``lavt train`` and ``lavt benchmark --mode train`` run it
(autocast ``--dtype``, fused AdamW, ``--compile``, ``--channels-last``).

Prints one JSON record (and writes it to ``--json``): median and spread of the step in ms,
samples/s, peak memory (GPU ``max_memory_allocated``; CPU: peak RSS), device and versions.
``--device cpu --preset tiny --img-size 64`` is the dry run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import types
from pathlib import Path

import numpy as np
import torch
from side_by_side_fast import import_reference, reference_and_lavt  # imports lavt first

from lavt.bench.result import peak_memory_mib, versions
from lavt.bench.timing import time_call
from lavt.runtime import autocast


def _inputs(batch: int, side: int, device: torch.device):
    """The harness's input, repeated over the batch: images, ids, mask (11 of 20 tokens)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, side, side, generator=gen).repeat(batch, 1, 1, 1)
    ids = torch.randint(1000, 30000, (1, 20), generator=gen).repeat(batch, 1)
    mask = torch.ones(batch, 20, dtype=torch.long)
    mask[:, 11:] = 0
    target = torch.zeros(batch, side, side, dtype=torch.long)
    target[:, : side // 2] = 1  # (B, H, W): the top half is the object
    return [t.to(device) for t in (x, ids, mask, target)]


def _reference_train_step(model, x, ids, mask, target, *, bare: bool):
    """The body of the reference's train_one_epoch for a lavt_one model."""
    import functools
    import operator

    decay, no_decay = [], []
    for name, p in model.backbone.named_parameters():
        is_no_decay = "norm" in name or "relative_position_bias_table" in name
        (no_decay if is_no_decay or "absolute_pos_embed" in name else decay).append(p)
    layers = model.text_encoder.encoder.layer
    groups = [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay},
        {"params": [p for p in model.classifier.parameters() if p.requires_grad]},
        {
            "params": functools.reduce(
                operator.concat, [list(layers[i].parameters()) for i in range(10)]
            )
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=5e-5, weight_decay=1e-2, amsgrad=False)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: (1 - it / 10**6) ** 0.9)
    weight = torch.tensor([0.9, 1.1], device=x.device)
    model.train()

    def step() -> None:
        output = model(x, ids, l_mask=mask)
        loss = torch.nn.functional.cross_entropy(output, target, weight=weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss.item()
        if not bare:
            gc.collect()
            if x.device.type == "cuda":
                torch.cuda.empty_cache()

    return step


def _lavt_train_step(model, x, ids, mask, a, device):
    """lavt's training step (its target: the top half, as :func:`_inputs`)."""
    from lavt.bench.steps import make_train_step

    model.train()
    runner = torch.compile(model) if a.compile else model
    spec = types.SimpleNamespace(
        device=device, dtype=_DTYPES[a.dtype], channels_last=a.channels_last
    )
    return make_train_step(model, runner, (x, ids, mask), spec)


_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=("reference", "lavt"), required=True)
    p.add_argument("--mode", choices=("infer", "train"), required=True)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtype", choices=tuple(_DTYPES), default="fp32", help="lavt only")
    p.add_argument("--compile", action="store_true", help="lavt only")
    p.add_argument("--channels-last", action="store_true", help="lavt training only")
    p.add_argument("--bare", action="store_true", help="reference training without gc/empty_cache")
    p.add_argument("--device", default="cuda")
    p.add_argument("--preset", default="base", choices=("tiny", "small", "base", "large"))
    p.add_argument("--img-size", type=int, default=480)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (the dry run)")
    p.add_argument(
        "--harness", default=os.environ.get("LAVT_HARNESS_DIR", "../shared/reference/harness")
    )
    p.add_argument("--save-mask", type=Path, default=None, help="infer: the argmax masks (.npy)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    if a.impl == "reference" and (a.dtype != "fp32" or a.compile or a.channels_last):
        p.error("--dtype/--compile/--channels-last: the reference runs float32 eager")
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    reference, ours = reference_and_lavt(import_reference(a.harness), a.preset)
    model = (ours if a.impl == "lavt" else reference).to(device)
    del reference, ours
    x, ids, mask, target = _inputs(a.batch_size, a.img_size, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    masks = []
    if a.mode == "train" and a.impl == "reference":
        step = _reference_train_step(model, x, ids, mask, target, bare=a.bare)
    elif a.mode == "train":
        step = _lavt_train_step(model, x, ids, mask, a, device)
    elif a.impl == "reference":
        model.eval()

        def step() -> None:
            with torch.no_grad():
                masks[:] = [model(x, ids, mask).argmax(1)]
    else:
        from lavt.precision import compile_for_inference, prepare_for_inference

        fast, precision = prepare_for_inference(model.eval(), device, a.dtype)
        runner = compile_for_inference(fast) if a.compile else fast

        def step() -> None:
            with torch.inference_mode(), autocast(device, precision.amp):
                masks[:] = [runner(x, ids, mask).argmax(1)]

    compile_s = None
    if a.compile:  # the first call compiles: timed apart
        compile_s = time_call(step, device, warmup=0, repeats=1)[0] / 1000
    times = time_call(step, device, warmup=a.warmup, repeats=a.repeats)
    peak, memory_kind = peak_memory_mib(device)
    median = statistics.median(times)
    record = {
        "impl": a.impl, "mode": a.mode, "batch_size": a.batch_size, "preset": a.preset,
        "img_size": a.img_size, "dtype": a.dtype, "compile": a.compile,
        "channels_last": a.channels_last, "bare": a.bare, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "median_ms": round(median, 3), "min_ms": round(min(times), 3),
        "max_ms": round(max(times), 3), "samples_per_s": round(1000 * a.batch_size / median, 3),
        "peak_memory_mib": round(peak, 1), "memory_kind": memory_kind,
        "compile_s": None if compile_s is None else round(compile_s, 1),
        "warmup": a.warmup, "repeats": a.repeats, "versions": versions(),
        "command": " ".join(sys.argv),
    }  # fmt: skip
    if a.save_mask is not None and masks:
        np.save(a.save_mask, masks[0].to("cpu", torch.uint8).numpy())
    text = json.dumps(record, indent=2)
    print(text)
    if a.json is not None:
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
