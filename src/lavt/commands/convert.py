"""``lavt convert``: export a checkpoint to .safetensors (read with no pickle at all)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", type=Path, help="released .pth, project checkpoint or .safetensors"
    )
    parser.add_argument(
        "output",
        type=Path,
        help="the .safetensors file to write (replaced atomically; its folder is created)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float16", "bfloat16"),
        help="storage type of the weights (loaded back as float32); float16 halves the file",
    )
    parser.set_defaults(_flags={"output": "output", "src": "input"})


def run(args: argparse.Namespace) -> int:
    from lavt.checkpoint import convert_to_safetensors

    config = convert_to_safetensors(args.input, args.output, dtype=args.dtype)
    print(
        f"wrote {args.output} ({config.variant}, embed {config.embed_dim}, depths "
        f"{'-'.join(map(str, config.depths))}, window {config.window_size}, {args.dtype})"
    )
    return 0
