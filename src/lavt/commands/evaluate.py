"""``lavt evaluate``: the published test protocol on RefCOCO/RefCOCO+/G-Ref layouts,
the GRES metrics on gRefCOCO (``--dataset grefcoco``, docs/gres.md), and the
referring-video protocols (``--video-protocol``, :mod:`lavt.commands.evaluate_video`).

Several GPUs (results identical to one process)::

    torchrun --nproc_per_node 4 -m lavt evaluate --checkpoint refcoco.pth ...
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from lavt.commands.evaluate_video import add_video_arguments, run_video
from lavt.commands.shared_flags import (
    CHECKPOINT_SOURCES,
    add_compile_flag,
    add_dtype_flag,
    add_img_size_flag,
    add_no_target_flags,
    add_runtime_flag,
    add_split_by_flag,
    check_compile_flag,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"{CHECKPOINT_SOURCES} (default: the bundled model)",
    )
    parser.add_argument(
        "--data-root",
        "--data_root",
        dest="data_root",
        type=Path,
        required=True,
        help="folder holding <dataset>/ and images/ (the refer layout)",
    )
    parser.add_argument(
        "--dataset",
        default="refcoco",
        help="refcoco, refcoco+, refcocog, grefcoco (GRES metrics) or the NAME of a lavt data "
        "import (default: %(default)s)",
    )
    add_split_by_flag(parser)
    parser.add_argument(
        "--split",
        default=None,
        help="comma-separated, e.g. val,testA,testB (default: val; with --video-protocol: "
        "valid for ytvos and davis, val in the raw DAVIS layout, test for a2d)",
    )
    add_img_size_flag(parser)
    parser.add_argument(
        "--batch-size",
        "--batch_size",
        dest="batch_size",
        type=int,
        default=8,
        help="objects per batch, with all their expressions; video protocols: expressions "
        "(image model: frame-expression pairs) per forward (default: %(default)s)",
    )
    parser.add_argument(
        "--resolution",
        choices=("model", "original"),
        default="model",
        help="model: reference protocol at img_size; original: full-resolution masks "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("eval_output"),
        help="folder for metrics.md, metrics.json, <split>.jsonl, worst_<split>/ (video: "
        "Annotations/, submission.zip) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--save-worst",
        "--save_worst",
        dest="save_worst",
        type=int,
        default=0,
        metavar="K",
        help="write overlays of the K lowest-IoU expressions per split (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available), cpu, cuda, cuda:1 (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="data loader workers per process (default: %(default)s)",
    )
    add_dtype_flag(parser, default="float32")
    add_compile_flag(parser)
    parser.add_argument(
        "--skip-missing",
        "--skip_missing",
        dest="skip_missing",
        action="store_true",
        help="go on without missing images (default: refuse)",
    )
    add_runtime_flag(parser)
    parser.add_argument(
        "--swap-expressions",
        "--swap_expressions",
        dest="swap_expressions",
        action="store_true",
        help="give each object another object's expressions (language check)",
    )
    add_no_target_flags(parser, applies_to="grefcoco: ")
    add_video_arguments(parser)
    parser.set_defaults(_flags={"split_by": "--splitBy"})


def _check_args(args: argparse.Namespace) -> list[str]:
    from lavt.errors import InputError

    if args.batch_size < 1:
        raise InputError(f"batch_size {args.batch_size}: must be positive", param="batch_size")
    if args.workers < 0:
        raise InputError(f"workers {args.workers}: must be >= 0", param="workers")
    if args.img_size is not None and args.img_size < 16:
        raise InputError(f"img_size {args.img_size}: must be at least 16", param="img_size")
    if args.save_worst < 0:
        raise InputError(f"save_worst {args.save_worst}: must be >= 0", param="save_worst")
    splits = [s.strip() for s in (args.split or "val").split(",") if s.strip()]
    if not splits:
        raise InputError("split: no split given", param="split")
    return splits


def run(args: argparse.Namespace) -> int:
    from lavt.data.refer import ReferIndex
    from lavt.evaluation import EvalSettings, GresSettings, evaluate_splits
    from lavt.evaluation.outputs import check_output_dir, format_results
    from lavt.export.runner import load_for_runtime
    from lavt.precision import check_dtype, compile_for_inference, prepare_for_inference
    from lavt.runtime import cleanup_distributed, init_distributed

    if args.video_protocol is not None:
        return run_video(args)
    splits = _check_args(args)
    check_dtype(args.dtype, runtime=args.runtime)  # fails before the data is read
    check_compile_flag(args)
    check_output_dir(args.output)
    index = ReferIndex(args.data_root, args.dataset, args.split_by)
    split_refs = {
        s: index.check_images(index.split(s), skip_missing=args.skip_missing) for s in splits
    }
    settings = EvalSettings(
        output=args.output,
        img_size=args.img_size,
        batch_size=args.batch_size,
        workers=args.workers,
        resolution=args.resolution,
        amp=None,  # set below from the precision chosen for the model
        save_worst=args.save_worst,
        swap_expressions=args.swap_expressions,
        gres=GresSettings(args.no_target_rule, args.area_threshold),
    )
    info, device = init_distributed(args.device)
    try:
        model = load_for_runtime(args.checkpoint, runtime=args.runtime, device=device)
        model, precision = prepare_for_inference(model, device, args.dtype, copy_model=False)
        settings = dataclasses.replace(settings, amp=precision.amp)
        if args.compile:
            model = compile_for_inference(model)
        results = evaluate_splits(model, index, split_refs, settings, device=device, dist=info)
        if info.is_main:
            print(format_results(results))
    finally:
        cleanup_distributed(info)
    return 0
