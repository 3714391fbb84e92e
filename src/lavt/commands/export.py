"""``lavt export``: a checkpoint as one ONNX graph (BERT included) for onnxruntime and others."""

from __future__ import annotations

import argparse
from pathlib import Path

from lavt.commands.shared_flags import CHECKPOINT_SOURCES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lavt.export.onnx_export import DEFAULT_OPSET, EXPORT_DTYPES

    parser.add_argument("checkpoint", type=Path, help=CHECKPOINT_SOURCES)
    parser.add_argument("output", type=Path, metavar="OUT.onnx", help="the ONNX file to write")
    parser.add_argument(
        "--img-size",
        type=int,
        default=None,
        help="image side fixed in the graph, a multiple of 32 (default: the checkpoint's)",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (17-20)")
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="token ids per expression fixed in the graph (default: the checkpoint's, 20)",
    )
    parser.add_argument(
        "--dynamic-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dynamic batch axis; --no-dynamic-batch fixes it to 1",
    )
    parser.add_argument(
        "--dtype", choices=EXPORT_DTYPES, default="fp32", help="precision of the graph's weights"
    )
    parser.add_argument(
        "--simplify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="simplify with onnxslim when installed and verified",
    )


def run(args: argparse.Namespace) -> int:
    from lavt.export import export_onnx

    result = export_onnx(
        args.checkpoint,
        args.output,
        img_size=args.img_size,
        opset=args.opset,
        max_tokens=args.max_tokens,
        dynamic_batch=args.dynamic_batch,
        dtype=args.dtype,
        simplify=args.simplify,
    )
    meta = result.metadata
    print(
        f"{result.path}: {meta.img_size}x{meta.img_size}, {meta.max_tokens} tokens, "
        f"{meta.dtype}, batch {'dynamic' if meta.dynamic_batch else 1}, opset {result.opset}, "
        f"{result.num_nodes} nodes{' (simplified)' if result.simplified else ''}, "
        f"{result.num_bytes / 1e6:.1f} MB; max |onnxruntime - PyTorch| / max |logit| = "
        f"{result.max_relative_error:.1e}; {result.seconds:.1f} s"
    )
    return 0
