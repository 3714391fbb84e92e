"""Whole-model operations over :mod:`lavt.checkpoint.io`: load a model, convert a file.

Both read through ``io`` (strict, safetensors or ``weights_only=True``) and build the
image or the video model the config names; ``io`` itself never builds a model, so the
model classes can call into it (``LAVT.from_checkpoint``) without an import cycle.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lavt.checkpoint.io import (
    check_output_file,
    load_state_dict_strict,
    read_model_weights,
    write_model_safetensors,
)
from lavt.errors import InputError
from lavt.modeling.config import AnyConfig, LAVTVideoConfig
from lavt.modeling.lavt import LAVT, build_model
from lavt.modeling.lavt_video import LAVTVideo, build_video_model
from lavt.precision import cast_for_inference, choose_precision


def build_any_model(config: AnyConfig, *, vocab: list[str] | None = None) -> LAVT | LAVTVideo:
    """A randomly initialised image or video model for ``config``."""
    if isinstance(config, LAVTVideoConfig):
        return build_video_model(config, vocab=vocab)
    return build_model(config, vocab=vocab)


def _read_model(path: str | os.PathLike) -> LAVT | LAVTVideo:
    config, state_dict, vocab = read_model_weights(path)
    model = build_any_model(config, vocab=vocab)
    load_state_dict_strict(model, state_dict, source=os.fspath(path))
    return model


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    dtype: str | torch.dtype | None = None,
) -> LAVT | LAVTVideo:
    """Build the model a checkpoint describes and load its weights strictly.

    Accepts the released ``.pth`` files (image: either variant; video: the LAVT-RS
    ``lavt_video`` files, docs/video.md), this project's checkpoints, ``.safetensors``
    exports and pretrained folders (``save_pretrained``, ``hf://owner/repo[@revision]``).
    Returns the model in eval mode on ``device``: :class:`~lavt.modeling.LAVT`, or
    :class:`~lavt.modeling.lavt_video.LAVTVideo` for a video checkpoint.
    ``dtype`` (:mod:`lavt.precision`): ``bfloat16``/``float16`` cast the
    matrix-product weights once (norms and embeddings stay float32: call the model
    under ``lavt.runtime.autocast(device, dtype)``); ``int8`` quantises the linear
    layers; ``auto`` picks as ``--dtype auto`` does; None or ``float32`` leaves the
    weights float32.
    """
    model = _read_model(path).to(device=device)
    if dtype is not None:
        precision = choose_precision(dtype, torch.device(device), embed_dim=model.config.embed_dim)
        model = cast_for_inference(model, precision.name, copy_model=False)
    return model.eval()


def convert_to_safetensors(
    src: str | os.PathLike, dst: str | os.PathLike, *, dtype: str = "float32"
) -> AnyConfig:
    """Export any supported checkpoint's model weights to ``dst`` (.safetensors), atomically.

    ``dtype`` (float32, float16 or bfloat16) is the storage type of the floating
    tensors; :func:`load_model` casts them back to float32.
    """
    dst = Path(dst)
    check_output_file(dst)
    if dst.suffix != ".safetensors":
        raise InputError(f"output {dst}: must end in .safetensors", param="output")
    model = _read_model(src)  # validated (strict, finite) before anything is written
    write_model_safetensors(model, dst, dtype=dtype)
    return model.config
