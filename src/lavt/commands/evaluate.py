"""``lavt evaluate``: the published test protocol on RefCOCO/RefCOCO+/G-Ref layouts."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("lavt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="released .pth, project checkpoint or .safetensors (default: the bundled model)",
    )
    parser.add_argument(
        "--data-root", type=Path, required=True, help="folder holding <dataset>/ and images/"
    )
    parser.add_argument("--dataset", default="refcoco", help="refcoco, refcoco+ or refcocog")
    parser.add_argument("--splitBy", dest="split_by", default="unc", help="unc, umd or google")
    parser.add_argument("--split", default="val", help="comma-separated, e.g. val,testA,testB")
    parser.add_argument(
        "--img-size", type=int, default=None, help="default: the checkpoint's (480)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="objects per batch (all their expressions)"
    )
    parser.add_argument(
        "--resolution",
        choices=("model", "original"),
        default="model",
        help="model: reference protocol at img_size; original: full-resolution masks",
    )
    parser.add_argument("--output", type=Path, default=Path("eval_output"))
    parser.add_argument(
        "--save-worst",
        type=int,
        default=0,
        metavar="K",
        help="write overlays of the K lowest-IoU expressions per split",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1"
    )
    parser.add_argument("--workers", type=int, default=2, help="data loader workers per process")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="onnxruntime: --checkpoint is a graph written by lavt export (no --amp)",
    )
    parser.add_argument("--skip-missing", action="store_true", help="go on without missing images")
    parser.add_argument(
        "--swap-expressions",
        action="store_true",
        help="give each object another object's expressions (language check)",
    )


def _check_args(args: argparse.Namespace) -> list[str]:
    from lavt.errors import InputError

    for name in ("batch_size", "workers"):
        value = getattr(args, name)
        if value < (1 if name == "batch_size" else 0):
            raise InputError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.img_size is not None and args.img_size < 16:
        raise InputError(f"--img-size must be at least 16, got {args.img_size}")
    if args.runtime == "onnxruntime" and args.amp != "none":
        raise InputError("--amp: not used by --runtime onnxruntime (export with --dtype fp16)")
    if args.save_worst < 0:
        raise InputError(f"--save-worst must be >= 0, got {args.save_worst}")
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    if not splits:
        raise InputError("--split: no split given")
    return splits


def run(args: argparse.Namespace) -> int:
    import torch

    from lavt.data.dataset import ReferEvalDataset
    from lavt.data.refer import ReferIndex
    from lavt.engine.evaluate import evaluate, make_eval_loader
    from lavt.engine.metrics import format_table
    from lavt.export.runner import load_for_runtime
    from lavt.runtime import cleanup_distributed, init_distributed
    from lavt.tokenizer import tokenizer_for_model

    splits = _check_args(args)
    index = ReferIndex(args.data_root, args.dataset, args.split_by)
    split_refs = {
        s: index.check_images(index.split(s), skip_missing=args.skip_missing) for s in splits
    }
    info, device = init_distributed(args.device)
    try:
        model = load_for_runtime(args.checkpoint, runtime=args.runtime, device=device)
        tokenizer = tokenizer_for_model(model)
        img_size = args.img_size or model.config.img_size
        amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
        results: dict[str, dict[str, Any]] = {}
        for split, refs in split_refs.items():
            dataset = ReferEvalDataset(
                index,
                refs,
                tokenizer=tokenizer,
                img_size=img_size,
                original_masks=args.resolution == "original",
                swap_expressions=args.swap_expressions,
            )
            loader = make_eval_loader(
                dataset,
                batch_size=args.batch_size,
                workers=args.workers,
                rank=info.rank,
                world_size=info.world_size,
                pin_memory=device.type == "cuda",
            )
            result = evaluate(
                model,
                loader,
                device,
                resolution=args.resolution,
                amp_dtype=amp,
                progress=info.is_main,
            )
            summary = result.metrics.summary()
            summary.update(
                num_expressions=result.metrics.num_expressions, num_objects=result.num_objects
            )
            results[split] = summary
            if info.is_main:
                _write_split(args, split, result, dataset, model, img_size, device)
        if info.is_main:
            _write_summary(args, results, format_table)
    finally:
        cleanup_distributed(info)
    return 0


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_split(args, split, result, dataset, model, img_size, device) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in result.records)
    _atomic_write(args.output / f"{split}.jsonl", lines)
    if args.save_worst:
        from lavt.engine.visualize import save_worst

        save_worst(
            result.records,
            dataset,
            model,
            img_size,
            device,
            args.output / f"worst_{split}",
            args.save_worst,
        )


def _write_summary(args, results, format_table) -> None:
    table = format_table({k: v for k, v in results.items()})
    print(table)
    _atomic_write(args.output / "metrics.md", table + "\n")
    _atomic_write(args.output / "metrics.json", json.dumps(results, indent=2) + "\n")
    log.info("wrote %s", args.output / "metrics.json")
