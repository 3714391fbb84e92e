"""``lavt convert``: export a checkpoint to .safetensors (read with no pickle at all)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lavt.commands.shared_flags import CHECKPOINT_SOURCES, add_storage_dtype_flag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help=CHECKPOINT_SOURCES)
    parser.add_argument(
        "output",
        type=Path,
        help="the .safetensors file to write (replaced atomically; its folder is created)",
    )
    add_storage_dtype_flag(parser)
    parser.set_defaults(_flags={"output": "output", "src": "input"})


def run(args: argparse.Namespace) -> int:
    from lavt.checkpoint import convert_to_safetensors

    config = convert_to_safetensors(args.input, args.output, dtype=args.dtype)
    print(
        f"wrote {args.output} ({config.variant}, embed {config.embed_dim}, depths "
        f"{'-'.join(map(str, config.depths))}, window {config.window_size}, {args.dtype})"
    )
    return 0
