"""``lavt benchmark``: time inference, a training step, evaluation or data loading."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lavt.bench import COMPILE_MODES, MODES
from lavt.modeling import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="Swin size of a random model, with BERT-base (default: tiny)",
    )
    which.add_argument(
        "--checkpoint",
        default=None,
        metavar="NAME_OR_PATH",
        help="time this model instead: a bundled name (synthetic, synthetic-generalized), a "
        "registered name (lavt weights list) or a file (default: none, a random --preset model)",
    )
    add(
        "--img-size",
        "--img_size",
        type=int,
        default=None,
        help="image side in pixels, a multiple of 32 (default: 480, or the checkpoint's)",
    )
    add("--batch-size", "--batch_size", type=int, default=1, help="images per batch")
    add(
        "--expressions-per-image",
        "--expressions_per_image",
        type=int,
        default=1,
        help="expressions per image (each image-expression pair is one model input)",
    )
    add("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    add(
        "--dtype",
        choices=("auto", "fp32", "bf16", "bf16-all", "fp16", "int8"),
        default="fp32",
        help="inference: the lavt.precision path (bf16/fp16: a copy with the matmul weights "
        "cast once, the PWAMs in float32, under autocast; bf16-all: no float32 PWAMs; int8: "
        "dynamic quantisation of the linear layers; auto: what lavt predict picks on this "
        "machine); train: the autocast dtype (default: %(default)s)",
    )
    add(
        "--mode",
        choices=MODES,
        default="infer",
        help="infer: forward + mask; train: one optimisation step; eval: the evaluation "
        "loop; data: the training data loader",
    )
    add(
        "--compile",
        action="store_true",
        help="torch.compile the model (inference: weights frozen, as lavt predict --compile); "
        "the first call, which compiles, is reported apart",
    )
    add(
        "--compile-mode",
        "--compile_mode",
        choices=COMPILE_MODES,
        default="default",
        help="torch.compile mode with --compile (reduce-overhead: CUDA graphs)",
    )
    add(
        "--channels-last",
        "--channels_last",
        action="store_true",
        help="channels-last memory format for the decoder",
    )
    add(
        "--grad-checkpointing",
        "--grad_checkpointing",
        action="store_true",
        help="train mode: recompute the Swin blocks in the backward pass (less memory)",
    )
    add("--warmup", type=int, default=2, help="untimed runs first (0 or more)")
    add("--repeats", type=int, default=5, help="timed runs (at least 1)")
    add("--workers", type=int, default=0, help="data loader workers (eval and data modes)")
    add("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add("--json", type=Path, default=None, help="also write the figures to this JSON file")


def run(args: argparse.Namespace) -> int:
    import torch

    from lavt.bench import run_benchmark
    from lavt.errors import InputError
    from lavt.runtime import atomic_write_text

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads {args.threads}: must be at least 1")
        torch.set_num_threads(args.threads)
    if args.json is not None and args.json.is_dir():
        raise InputError(f"--json {args.json}: is a directory, not a file")
    result = run_benchmark(
        mode=args.mode,
        preset=args.preset or "tiny",
        checkpoint=args.checkpoint,
        img_size=args.img_size,
        batch_size=args.batch_size,
        expressions_per_image=args.expressions_per_image,
        device=args.device,
        dtype=args.dtype,
        compile_model=args.compile,
        compile_mode=args.compile_mode,
        channels_last=args.channels_last,
        grad_checkpointing=args.grad_checkpointing,
        warmup=args.warmup,
        repeats=args.repeats,
        workers=args.workers,
    )
    print(result.table())
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(result.to_dict(), indent=2) + "\n")
    return 0
