"""``lavt benchmark``: time inference, a training step, evaluation or data loading."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from lavt.modeling import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESETS, default="tiny")
    parser.add_argument("--img-size", type=int, default=480)
    parser.add_argument("--batch-size", type=int, default=1, help="images per batch")
    parser.add_argument("--expressions-per-image", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--mode", choices=("infer", "train", "eval", "data"), default="infer")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--channels-last", action="store_true", help="channels-last decoder")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=0, help="data loader workers (eval/data)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")


def run(args: argparse.Namespace) -> int:
    import torch

    from lavt.benchmark import run_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_benchmark(
        mode=args.mode,
        preset=args.preset,
        img_size=args.img_size,
        batch_size=args.batch_size,
        expressions_per_image=args.expressions_per_image,
        device=args.device,
        dtype=args.dtype,
        compile_model=args.compile,
        channels_last=args.channels_last,
        warmup=args.warmup,
        repeats=args.repeats,
        workers=args.workers,
    )
    print(result.table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(f".{args.json.name}.tmp")
        tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        os.replace(tmp, args.json)
    return 0
