"""Whole-model operations over :mod:`lavt.checkpoint.io`: load a model, convert a file.

Both build the model through :meth:`LAVT.from_checkpoint`, which reads through
``io`` (strict, safetensors or ``weights_only=True``); ``io`` itself never builds a
model, so the model class can call into it without an import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lavt.checkpoint.io import check_output_file, write_model_safetensors
from lavt.errors import InputError
from lavt.modeling.config import LAVTConfig
from lavt.modeling.lavt import LAVT
from lavt.precision import cast_for_inference, choose_precision


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    dtype: str | torch.dtype | None = None,
) -> LAVT:
    """Build the model a checkpoint describes and load its weights strictly.

    Accepts the released ``.pth`` files (either variant), this project's
    checkpoints, ``.safetensors`` exports and pretrained folders (``save_pretrained``,
    ``hf://owner/repo[@revision]``). Returns the model in eval mode on ``device``.
    ``dtype`` (:mod:`lavt.precision`): ``bfloat16``/``float16`` cast the
    matrix-product weights once (norms and embeddings stay float32: call the model
    under ``lavt.runtime.autocast(device, dtype)``); ``int8`` quantises the linear
    layers; ``auto`` picks as ``--dtype auto`` does; None or ``float32`` leaves the
    weights float32.
    """
    model = LAVT.from_checkpoint(path, device=device)
    if dtype is not None:
        precision = choose_precision(dtype, torch.device(device), embed_dim=model.config.embed_dim)
        model = cast_for_inference(model, precision.name, copy_model=False)
    return model.eval()


def convert_to_safetensors(
    src: str | os.PathLike, dst: str | os.PathLike, *, dtype: str = "float32"
) -> LAVTConfig:
    """Export any supported checkpoint's model weights to ``dst`` (.safetensors), atomically.

    ``dtype`` (float32, float16 or bfloat16) is the storage type of the floating
    tensors; :func:`load_model` casts them back to float32.
    """
    dst = Path(dst)
    check_output_file(dst)
    if dst.suffix != ".safetensors":
        raise InputError(f"output {dst}: must end in .safetensors", param="output")
    model = LAVT.from_checkpoint(src)  # validated (strict, finite) before anything is written
    write_model_safetensors(model, dst, dtype=dtype)
    return model.config
