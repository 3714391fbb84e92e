"""``lavt predict``: masks, overlays and a JSON line per (image, expression)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="released .pth, project checkpoint or .safetensors (default: the bundled model)",
    )
    parser.add_argument("--image", type=Path, nargs="+", required=True, help="one or more images")
    parser.add_argument(
        "--text", nargs="+", required=True, help="expressions (each image gets all)"
    )
    parser.add_argument("--output", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--img-size", type=int, default=None, help="default: the checkpoint's")
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="onnxruntime: --checkpoint is a graph written by lavt export",
    )


def _stems(images: list[Path]) -> list[str]:
    """Output name stems; images sharing a stem get a numeric suffix."""
    seen: dict[str, int] = {}
    stems = []
    for image in images:
        count = seen.get(image.stem, 0)
        seen[image.stem] = count + 1
        stems.append(image.stem if count == 0 else f"{image.stem}-{count}")
    return stems


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from lavt.imageio import load_image, save_png_atomic
    from lavt.predict import Predictor
    from lavt.tokenizer import check_expression
    from lavt.visualize import render_overlay

    for k, text in enumerate(args.text):
        check_expression(text, name=f"--text #{k + 1}")
    pictures = [load_image(path) for path in args.image]  # every input checked before any output
    predictor = Predictor.from_checkpoint(
        args.checkpoint, device=args.device, img_size=args.img_size, runtime=args.runtime
    )
    args.output.mkdir(parents=True, exist_ok=True)
    lines = []
    for path, stem, picture in zip(args.image, _stems(args.image), pictures, strict=True):
        for k, result in enumerate(predictor.predict(picture, args.text)):
            mask_path = args.output / f"{stem}_{k}_mask.png"
            overlay_path = args.output / f"{stem}_{k}_overlay.png"
            save_png_atomic(Image.fromarray(result.mask.astype("uint8") * 255, mode="L"), mask_path)
            save_png_atomic(render_overlay(picture, result.mask), overlay_path)
            lines.append(
                {
                    "image": str(path),
                    "text": result.text,
                    "mask": str(mask_path),
                    "overlay": str(overlay_path),
                    "foreground_fraction": round(result.foreground_fraction, 6),
                    "mean_foreground_probability": round(result.mean_foreground_probability, 6),
                }
            )
            print(f"{path} | {result.text!r}: {100 * result.foreground_fraction:.1f}% of the image")
    jsonl = args.output / "predictions.jsonl"
    tmp = jsonl.with_name(f".{jsonl.name}.tmp")
    tmp.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, jsonl)
    return 0
