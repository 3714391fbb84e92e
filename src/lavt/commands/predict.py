"""``lavt predict``: masks, overlays and a JSON line per (image, expression).

``--image ... --text ...`` predicts every text on every image; ``--video PATH --text ...``
every text on every frame of a video file or a folder of frames
(:mod:`lavt.predict.video_output`); ``--manifest FILE.jsonl`` runs bulk inference over a
JSON-lines manifest (:mod:`lavt.predict.bulk`), also under ``torchrun``::

    torchrun --nproc_per_node 4 -m lavt predict --manifest pairs.jsonl --output out/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lavt.commands.shared_flags import (
    CHECKPOINT_SOURCES,
    add_compile_flag,
    add_dtype_flag,
    add_img_size_flag,
    add_no_target_flags,
    add_runtime_flag,
    check_compile_flag,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lavt.predict.video import DEFAULT_CLIP_LENGTH

    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"{CHECKPOINT_SOURCES} (default: the bundled model)",
    )
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--image", type=Path, nargs="+", help="one or more image files")
    inputs.add_argument(
        "--video",
        type=Path,
        help="a video file (mp4, mkv, ...; needs PyAV) or a folder of .jpg/.png frames "
        "(natural order): per-frame masks as JSON lines (docs/video.md)",
    )
    inputs.add_argument(
        "--manifest",
        type=Path,
        help='JSON lines {"id", "image", "texts"} (or "text"), paths relative to the '
        "file: bulk inference, resumable, shardable under torchrun (docs/bulk.md)",
    )
    parser.add_argument(
        "--text",
        nargs="+",
        action="extend",
        help="with --image or --video: one or more expressions (each image or frame gets all; "
        "--text may be repeated)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("predictions"),
        help="output folder; later runs add to it (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when available, else cpu), cpu, cuda or cuda:N (default: %(default)s)",
    )
    parser.add_argument(
        "--coco-results",
        type=Path,
        default=None,
        metavar="JSON",
        help="also write the masks as a COCO results file (image_id, category_id, RLE, "
        "score; docs/integrations.md) (default: none)",
    )
    add_img_size_flag(parser)
    add_dtype_flag(parser, default="auto")
    add_compile_flag(parser)
    add_runtime_flag(parser)
    add_no_target_flags(parser)
    bulk = parser.add_argument_group("bulk inference (--manifest)")
    bulk.add_argument(
        "--batch-size",
        "--batch_size",
        dest="batch_size",
        type=_count_or_auto,
        default=None,
        help="expressions per forward pass, across images (default: auto: as many as hold "
        "the pixels of 16 at 480x480, between 16 and 32: 32 for the bundled model)",
    )
    bulk.add_argument(
        "--workers",
        type=_count_or_auto,
        default=None,
        help="DataLoader processes decoding and resizing images, 0: the main thread "
        "(default: auto: 0 on a CPU device with up to 4 cores, else 2; docs/bulk.md)",
    )
    bulk.add_argument(
        "--threads",
        type=_count_or_auto,
        default=None,
        help="batches in flight, each on a thread running the model, upsampling masks and "
        "encoding RLE (default: auto: min(cores, 4) on a CPU device, else 2)",
    )
    bulk.add_argument(
        "--save-png",
        "--save_png",
        dest="save_png",
        action="store_true",
        help="with --manifest or --video: also write mask PNGs (masks/; --manifest also "
        "overlays/) (default: off, RLE only)",
    )
    bulk.add_argument(
        "--max-errors",
        "--max_errors",
        dest="max_errors",
        type=int,
        default=None,
        metavar="N",
        help="stop once more than N lines have failed, per process (default: no limit)",
    )
    video = parser.add_argument_group("video (--video)")
    video.add_argument(
        "--clip-length",
        "--clip_length",
        dest="clip_length",
        type=int,
        default=DEFAULT_CLIP_LENGTH,
        metavar="N",
        help="frames a lavt_video model sees at once (consecutive clips); 0: the whole "
        "video as one clip, the LAVT-RS protocol, memory growing with the video; an image "
        "model sees one frame at a time whatever N (default: %(default)s)",
    )
    video.add_argument(
        "--overlay-video",
        "--overlay_video",
        dest="overlay_video",
        action="store_true",
        help="also write overlay.mp4, every mask tinted on its frame (default: off)",
    )
    parser.set_defaults(
        _flags={
            "texts": "--text",
            "image": "--image",
            "video": "--video",
            "coco_results": "--coco-results",
            "clip_length": "--clip-length",
        }
    )


def _count_or_auto(value: str) -> int | None:
    """``auto`` -> None (chosen by lavt.predict.bulk.choose_pipeline), else an integer."""
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or auto, got {value!r}") from None


def _model_flags(args: argparse.Namespace) -> None:
    """Refuse bad model flags before anything loads."""
    from lavt.errors import InputError
    from lavt.modeling.no_target import check_rule

    if args.img_size is not None and args.img_size < 16:
        raise InputError(f"img_size {args.img_size}: must be at least 16", param="img_size")
    check_rule(args.no_target_rule, args.area_threshold)
    from lavt.precision import check_dtype

    check_dtype(args.dtype, runtime=args.runtime)
    check_compile_flag(args)


def _predictor(args: argparse.Namespace, device):
    from lavt.predict import Predictor

    predictor = Predictor.from_checkpoint(
        args.checkpoint,
        device=device,
        img_size=args.img_size,
        no_target_rule=args.no_target_rule,
        area_threshold=args.area_threshold,
        runtime=args.runtime,
        dtype=args.dtype,
    )
    if args.compile:
        from lavt.precision import compile_for_inference

        predictor.model = compile_for_inference(predictor.model)
    return predictor


def run(args: argparse.Namespace) -> int:
    if args.manifest is not None:
        return run_manifest(args)
    if args.video is not None:
        return run_video(args)
    from lavt.errors import InputError
    from lavt.evaluation.outputs import check_output_dir
    from lavt.predict import predict_to_folder
    from lavt.predict.batch import check_inputs
    from lavt.runtime import select_device
    from lavt.tokenizer import check_expression

    if not args.text:
        raise InputError("--text: give one or more expressions with --image")
    for k, text in enumerate(args.text):
        check_expression(text, name=f"--text #{k + 1}")
    _model_flags(args)
    images = check_inputs(args.image)  # every header checked before the model loads
    check_output_dir(args.output)
    if args.coco_results is not None:
        from lavt.checkpoint.io import check_output_file

        check_output_file(args.coco_results, param="coco_results")
    predictor = _predictor(args, select_device(args.device))
    predictor.check_image_model()

    def report(line: dict) -> None:
        share = 100 * line["foreground_fraction"]
        found = f"{share:.1f}% of the image" if line["found"] else "no object found"
        print(f"{line['image']} | {line['text']!r}: {found} -> {line['overlay']}")

    lines = predict_to_folder(predictor, images, args.text, args.output, report=report)
    if args.coco_results is not None:
        from lavt.predict.coco_results import write_coco_results

        count = write_coco_results(args.coco_results, lines)
        print(f"{count} COCO results -> {args.coco_results}")
    return 0


def run_manifest(args: argparse.Namespace) -> int:
    """Bulk inference; exit status 1 when any manifest line failed."""
    import logging

    from lavt.errors import InputError
    from lavt.predict.bulk import predict_manifest
    from lavt.runtime import cleanup_distributed, init_distributed

    if args.text:
        raise InputError("--text: not with --manifest (its lines name the expressions)")
    if args.coco_results is not None:
        raise InputError("--coco-results: with --image only (not with --manifest)")
    _model_flags(args)
    dist, device = init_distributed(args.device)
    try:
        summary = predict_manifest(
            _predictor(args, device),
            args.manifest,
            args.output,
            batch_size=args.batch_size,
            workers=args.workers,
            threads=args.threads,
            save_png=args.save_png,
            max_errors=args.max_errors,
            dist=dist,
        )
    finally:
        cleanup_distributed(dist)
    if dist.is_main:
        failed = (
            f", {summary.lines_failed} line(s) failed (see {args.output / 'errors.jsonl'})"
            if summary.lines_failed
            else ""
        )
        logging.getLogger("lavt").info(
            "%s: %d pairs predicted, %d done before, %d in %s%s%s",
            args.manifest,
            summary.pairs_written,
            summary.pairs_skipped,
            summary.pairs_total,
            args.output / "predictions.jsonl",
            failed,
            "; stopped early (--max-errors)" if summary.stopped_early else "",
        )
    return 1 if summary.lines_failed else 0


def run_video(args: argparse.Namespace) -> int:
    """``--video``: every input checked before the model loads, then one summary line."""
    from lavt.errors import InputError
    from lavt.predict.video import check_clip_length
    from lavt.predict.video_output import check_video_output, predict_video_to_folder
    from lavt.runtime import select_device
    from lavt.tokenizer import check_expression
    from lavt.videoio import open_video

    if not args.text:
        raise InputError("--text: give one or more expressions with --video")
    for k, text in enumerate(args.text):
        check_expression(text, name=f"--text #{k + 1}")
    if args.coco_results is not None:
        raise InputError("--coco-results: with --image only (not with --video)")
    check_clip_length(args.clip_length)
    if args.no_target_rule == "head" or args.area_threshold:
        raise InputError(
            "--no-target-rule head / --area-threshold: images only; on a video an expression "
            "is found where its mask is not empty"
        )
    _model_flags(args)
    video = open_video(args.video)  # opened and its first frame decoded: a bad file fails now
    check_video_output(args.output)
    predictor = _predictor(args, select_device(args.device))
    summary = predict_video_to_folder(
        predictor, video, args.text, args.output, clip_length=args.clip_length,
        save_png=args.save_png, overlay_video=args.overlay_video,
    )  # fmt: skip
    if not predictor.is_video:
        how = "frame by frame (an image model)"
    elif args.clip_length and summary.frames > args.clip_length:
        how = f"in clips of {args.clip_length} frames"
    else:
        how = "as one clip"
    files = ", ".join(str(path) for path in summary.files)
    print(
        f"{args.video}: {summary.frames} frames x {summary.expressions} expression(s) "
        f"segmented {how} -> {files}"
    )
    return 0
