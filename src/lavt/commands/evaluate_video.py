"""``lavt evaluate --video-protocol ytvos|davis|a2d``: the referring-video protocols
(docs/video.md, "Datasets and protocols"), with a ``lavt_video`` or an image checkpoint.

Several processes (the same numbers as one)::

    torchrun --nproc_per_node 4 -m lavt evaluate --video-protocol ytvos \\
        --checkpoint ytvos.pth --data-root ./ReferringYouTubeVOS2021 --split valid
"""

from __future__ import annotations

import argparse
import json
from typing import Any

VIDEO_PROTOCOLS = ("ytvos", "davis", "a2d")


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--video-protocol",
        "--video_protocol",
        dest="video_protocol",
        choices=VIDEO_PROTOCOLS,
        default=None,
        help="evaluate a referring-video dataset: ytvos (Refer-YouTube-VOS layout: J, F, J&F, "
        "or the submission zip for a split without masks), davis (Ref-DAVIS17, raw DAVIS or "
        "Refer-YouTube-VOS layout) or a2d (A2D-Sentences: overall/mean IoU, precision@K) "
        "(default: none, the image evaluation)",
    )
    parser.add_argument(
        "--clip-length",
        "--clip_length",
        dest="clip_length",
        type=int,
        default=None,
        metavar="N",
        help="video protocols: frames per clip of a video model, 0 the whole video as one "
        "clip (default: 0 for ytvos and davis, 16 for a2d: the authors' protocols)",
    )
    parser.add_argument(
        "--submission",
        action="store_true",
        help="ytvos, davis: also write the Refer-YouTube-VOS submission (Annotations/, "
        "submission.zip) for a split with masks (default: only for a split without masks)",
    )


def default_split(protocol: str | None, data_root) -> str:
    """The split evaluated when ``--split`` is not given."""
    if protocol in ("ytvos", "davis"):
        from lavt.data.video.davis import is_davis_layout

        return "val" if protocol == "davis" and is_davis_layout(data_root) else "valid"
    return "test" if protocol == "a2d" else "val"


def _check_video_args(args: argparse.Namespace) -> str:
    from lavt.errors import InputError
    from lavt.predict.video import check_clip_length

    image_only = {
        "save_worst": args.save_worst != 0,
        "swap_expressions": args.swap_expressions,
        "resolution": args.resolution != "model",
        "dataset": args.dataset != "refcoco",
        "split_by": args.split_by != "unc",
        "skip_missing": args.skip_missing,
        "workers": args.workers != 2,
    }
    for name, given in image_only.items():
        if given:
            raise InputError(f"{name}: not used with --video-protocol", param=name)
    if args.runtime != "torch":
        raise InputError("runtime: video evaluation runs with torch only", param="runtime")
    if args.clip_length is not None:
        check_clip_length(args.clip_length)
    if args.submission and args.video_protocol == "a2d":
        raise InputError("submission: only for ytvos and davis", param="submission")
    splits = [s.strip() for s in (args.split or "").split(",") if s.strip()]
    if len(splits) > 1:
        raise InputError("split: one split at a time with --video-protocol", param="split")
    return splits[0] if splits else default_split(args.video_protocol, args.data_root)


def _read_split(protocol: str, root, split: str):
    if protocol == "a2d":
        from lavt.data.video.a2d import read_a2d

        return read_a2d(root, split)
    from lavt.data.video.davis import is_davis_layout, read_davis
    from lavt.data.video.ytvos import read_ytvos

    if protocol == "davis" and is_davis_layout(root):
        return read_davis(root, split)
    return read_ytvos(root, split)


def _evaluate(model, data, args, split: str, *, device, info, amp) -> tuple[dict, list, str]:
    """(summary, records, table) of one split."""
    if args.video_protocol == "a2d":
        from lavt.evaluation.a2d_eval import A2D_CLIP_LENGTH, A2DSettings, evaluate_a2d_split
        from lavt.evaluation.metrics import format_table

        clip = A2D_CLIP_LENGTH if args.clip_length is None else args.clip_length
        settings = A2DSettings(clip, args.img_size, args.batch_size, amp)
        result = evaluate_a2d_split(model, data, settings, device=device, dist=info)
        summary = result.summary()
        return summary, result.records, format_table({split: summary})
    from lavt.evaluation.video_eval import (
        VideoEvalSettings,
        evaluate_video_split,
        format_video_table,
    )

    settings = VideoEvalSettings(
        output=args.output,
        protocol=args.video_protocol,
        img_size=args.img_size,
        clip_length=args.clip_length or 0,
        chunk_size=args.batch_size,
        amp=amp,
        submission=args.submission,
    )
    summary, records = evaluate_video_split(model, data, settings, device=device, dist=info)
    return summary, records, format_video_table({split: summary})


def run_video(args: argparse.Namespace) -> int:
    from lavt.evaluation.outputs import check_output_dir
    from lavt.export.runner import load_for_runtime
    from lavt.precision import check_dtype, prepare_for_inference
    from lavt.runtime import atomic_write_text, cleanup_distributed, init_distributed

    split = _check_video_args(args)
    check_dtype(args.dtype, runtime=args.runtime)
    check_output_dir(args.output)
    data = _read_split(args.video_protocol, args.data_root, split)  # checked before any work
    info, device = init_distributed(args.device)
    try:
        model = load_for_runtime(args.checkpoint, runtime="torch", device=device)
        model, precision = prepare_for_inference(model, device, args.dtype, copy_model=False)
        summary, records, table = _evaluate(
            model, data, args, split, device=device, info=info, amp=precision.amp
        )
        if info.is_main:
            results: dict[str, Any] = {split: summary}
            lines = "".join(json.dumps(r) + "\n" for r in records)
            atomic_write_text(args.output / f"{split}.jsonl", lines)
            atomic_write_text(args.output / "metrics.md", table + "\n")
            atomic_write_text(args.output / "metrics.json", json.dumps(results, indent=2) + "\n")
            print(table)
    finally:
        cleanup_distributed(info)
    return 0
