"""``lavt predict``: masks, overlays and a JSON line per (image, expression)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lavt.commands.shared_flags import (
    add_dtype_flag,
    add_img_size_flag,
    add_no_target_flags,
    add_runtime_flag,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="released .pth, project checkpoint or .safetensors (default: the bundled model)",
    )
    parser.add_argument(
        "--image", type=Path, nargs="+", required=True, help="one or more image files"
    )
    parser.add_argument(
        "--text", nargs="+", required=True, help="one or more expressions (each image gets all)"
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
    add_img_size_flag(parser)
    add_dtype_flag(parser, default="auto")
    add_runtime_flag(parser)
    add_no_target_flags(parser)
    parser.set_defaults(_flags={"texts": "--text", "image": "--image"})


def run(args: argparse.Namespace) -> int:
    from lavt.evaluation.outputs import check_output_dir
    from lavt.predict import Predictor, predict_to_folder
    from lavt.predict.batch import check_inputs
    from lavt.runtime import select_device
    from lavt.tokenizer import check_expression

    for k, text in enumerate(args.text):
        check_expression(text, name=f"--text #{k + 1}")
    if args.img_size is not None and args.img_size < 16:
        from lavt.errors import InputError

        raise InputError(f"img_size {args.img_size}: must be at least 16", param="img_size")
    from lavt.modeling.no_target import check_rule

    check_rule(args.no_target_rule, args.area_threshold)
    from lavt.precision import check_dtype

    check_dtype(args.dtype, runtime=args.runtime)
    images = check_inputs(args.image)  # every header checked before the model loads
    check_output_dir(args.output)
    device = select_device(args.device)
    predictor = Predictor.from_checkpoint(
        args.checkpoint,
        device=device,
        img_size=args.img_size,
        no_target_rule=args.no_target_rule,
        area_threshold=args.area_threshold,
        runtime=args.runtime,
        dtype=args.dtype,
    )

    def report(line: dict) -> None:
        share = 100 * line["foreground_fraction"]
        found = f"{share:.1f}% of the image" if line["found"] else "no object found"
        print(f"{line['image']} | {line['text']!r}: {found} -> {line['overlay']}")

    predict_to_folder(predictor, images, args.text, args.output, report=report)
    return 0
