"""Flags that several subcommands take, declared once (predict, evaluate, serve)."""

from __future__ import annotations

import argparse

#: what a checkpoint argument takes (every source goes through lavt.hub.resolve_weights)
CHECKPOINT_SOURCES = (
    "released .pth, project checkpoint, .safetensors, save_pretrained folder, registered "
    "name (lavt weights list), URL or hf://owner/repo[@rev]"
)


def add_runtime_flag(parser: argparse.ArgumentParser) -> None:
    """``--runtime torch|onnxruntime``: which engine runs ``--checkpoint``."""
    parser.add_argument(
        "--runtime",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="torch, or onnxruntime: --checkpoint is a graph written by lavt export "
        "(default: %(default)s)",
    )


def add_no_target_flags(parser: argparse.ArgumentParser, *, applies_to: str = "") -> None:
    """``--no-target-rule`` and ``--area-threshold``: how "no object" is decided.

    ``applies_to`` prefixes the help ("grefcoco: ") where the flags matter for one
    dataset only.
    """
    parser.add_argument(
        "--no-target-rule",
        "--no_target_rule",
        dest="no_target_rule",
        choices=("auto", "head", "area"),
        default="auto",
        help=f"{applies_to}how 'no object' is decided: the model's no-target head, or a "
        "predicted mask of at most --area-threshold pixels; auto: the head when the model "
        "has one (default: %(default)s)",
    )
    parser.add_argument(
        "--area-threshold",
        "--area_threshold",
        dest="area_threshold",
        type=int,
        default=0,
        metavar="TAU",
        help=f"{applies_to}area rule: 'no object' when the mask has at most TAU pixels at "
        "the model's input size (default: %(default)s)",
    )


def add_img_size_flag(parser: argparse.ArgumentParser) -> None:
    """``--img-size``: the square input size, default the checkpoint's."""
    parser.add_argument(
        "--img-size",
        "--img_size",
        dest="img_size",
        type=int,
        default=None,
        help="square input size (default: the checkpoint's)",
    )


def add_storage_dtype_flag(parser: argparse.ArgumentParser) -> None:
    """``--dtype``: how the floating weights of a written file are stored (convert, push)."""
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float16", "bfloat16"),
        help="storage type of the weights (loaded back as float32); float16 halves the file "
        "(default: %(default)s)",
    )


def add_dtype_flag(parser: argparse.ArgumentParser, *, default: str) -> None:
    """``--dtype`` (alias ``--amp``): the inference precision (:mod:`lavt.precision`)."""
    parser.add_argument(
        "--dtype",
        "--amp",
        dest="dtype",
        default=default,
        metavar="DTYPE",
        help="auto, float32 (none), bfloat16, bfloat16-all, float16 or int8 (CPU): low "
        "precision runs a copy of the model with its weights cast once, the language fusion "
        "(PWAMs) kept float32 except with bfloat16-all; auto picks bfloat16 only on a CPU "
        "with fast bf16 matrix products (AMX, AVX512-BF16) and a model large enough to "
        "gain, and logs why (default: %(default)s)",
    )


def add_compile_flag(parser: argparse.ArgumentParser) -> None:
    """``--compile``: torch.compile the inference model
    (:func:`lavt.precision.compile_for_inference`)."""
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile (inductor) the model with its weights frozen; the first batch of "
        "each new shape compiles, minutes for Swin-B on a CPU (default: off)",
    )


def check_compile_flag(args: argparse.Namespace) -> None:
    """Refuse ``--compile`` with a runtime other than torch (an exported graph)."""
    from lavt.errors import InputError

    runtime = getattr(args, "runtime", "torch")
    if getattr(args, "compile", False) and runtime != "torch":
        raise InputError(f"compile: compiles a torch model, not a {runtime} graph", param="compile")


def add_split_by_flag(parser: argparse.ArgumentParser) -> None:
    """``--splitBy``: which ``refs(<splitBy>).p`` of the dataset is read."""
    parser.add_argument(
        "--splitBy",
        "--split-by",
        "--split_by",
        dest="split_by",
        default="unc",
        help="annotation partition refs(<splitBy>).p: unc, umd or google for the published "
        "sets, unc for imported ones (default: %(default)s)",
    )
