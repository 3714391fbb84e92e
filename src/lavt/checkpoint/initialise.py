"""Training initialisers: where a new model's weights come from before training.

- the official Swin ImageNet classification checkpoints (the backbone);
- a Hugging Face BERT (the text encoder);
- a LAVT checkpoint of the same architecture (fine-tuning).

Each source has its own filter function (timm's ``checkpoint_filter_fn``) and
leaves exactly the expected keys untouched; anything else is an error. See
docs/training.md, "Initialisation".
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from lavt.checkpoint.io import (
    StateDict,
    check_finite,
    describe_keys,
    load_state_dict_strict,
    read_model_weights,
    read_torch_file,
)
from lavt.checkpoint.released import DERIVED_SUFFIXES
from lavt.errors import CheckpointError
from lavt.hub import resolve_weights
from lavt.modeling.config import LAVTConfig
from lavt.modeling.lavt import LAVT

log = logging.getLogger("lavt")

#: backbone tensors the Swin classifier has no counterpart for (PWAMs, gates, stage norms).
_LAVT_ONLY_BACKBONE = re.compile(r"backbone\.(layers\.\d+\.(fusion|res_gate)\.|norm\d\.)")


def resize_bias_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """Resize a ((2w'-1)^2, h) bias table to window ``window`` bicubically (as an image)."""
    old = math.isqrt(table.shape[0])
    new = 2 * window - 1
    if old == new:
        return table
    image = table.T.reshape(1, -1, old, old)  # ((2w'-1)^2, h) -> (1, h, 2w'-1, 2w'-1)
    image = F.interpolate(image.float(), size=(new, new), mode="bicubic", align_corners=False)
    return image.reshape(-1, new * new).T.to(table.dtype)  # (1, h, new, new) -> (new^2, h)


def filter_swin_imagenet_state_dict(sd: Mapping[str, torch.Tensor], window: int) -> StateDict:
    """Official Swin classification weights -> ``backbone.*`` names of LAVT.

    Drops the classifier ``head.*``, the final ``norm.*``, ``attn_mask`` and
    relative-position-index buffers; resizes bias tables of another window
    bicubically (docs/training.md, "Initialisation").
    """
    out: StateDict = {}
    for key, value in sd.items():
        key = key.removeprefix("module.")
        if key.startswith(("head.", "norm.")) or key.endswith(DERIVED_SUFFIXES):
            continue
        if key.endswith("relative_position_bias_table"):
            value = resize_bias_table(value, window)
        out[f"backbone.{key}"] = value
    return out


def _swin_state_dict(path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    path = resolve_weights(path, param="pretrained_swin_weights")
    obj = read_torch_file(path, allow_namespace=False)
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, Mapping) or "patch_embed.proj.weight" not in {
        k.removeprefix("module.") for k in sd
    }:
        raise CheckpointError(f"{path}: not a Swin checkpoint (no patch_embed.proj.weight)")
    return sd


def load_swin_imagenet_weights(model: LAVT, path: str | os.PathLike) -> list[str]:
    """Initialise the backbone from an official Swin ImageNet checkpoint.

    Returns the backbone keys left at their initialisation (PWAMs, gates,
    norm0-3). Any other leftover or mis-shaped key is an error.
    """
    sd = filter_swin_imagenet_state_dict(_swin_state_dict(path), model.config.window_size)
    expected = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    unexpected = sorted(set(sd) - set(expected))
    mismatched = sorted(k for k in set(sd) & set(expected) if sd[k].shape != expected[k].shape)
    if unexpected or mismatched:
        raise CheckpointError(
            f"{path}: does not fit this backbone; unexpected: {describe_keys(unexpected)}; "
            f"shape mismatches: {describe_keys(mismatched)}"
        )
    left = sorted(set(expected) - set(sd))
    foreign = [k for k in left if not _LAVT_ONLY_BACKBONE.match(k)]
    if foreign:
        raise CheckpointError(f"{path}: Swin weights lack {describe_keys(foreign)}")
    check_finite(sd, source=str(path))
    model.load_state_dict(sd, strict=False)
    log.info("initialised the backbone from %s (%d tensors)", path, len(sd))
    return left


#: Config fields that do not change the computation a set of weights was trained for.
_TRAINING_ONLY_FIELDS = ("drop_path_rate", "fusion_drop", "img_size")
_TRAINING_ONLY_TEXT_FIELDS = ("hidden_dropout", "attention_dropout")


def _architecture(config: LAVTConfig) -> dict[str, Any]:
    """``config`` without its regularisation and preprocessing fields."""
    arch = config.to_dict()
    for key in _TRAINING_ONLY_FIELDS:
        arch.pop(key)
    for key in _TRAINING_ONLY_TEXT_FIELDS:
        arch["text"].pop(key)
    return arch


def load_lavt_weights(model: LAVT, path: str | os.PathLike) -> None:
    """Initialise every weight of ``model`` from a LAVT checkpoint (any supported format).

    For fine-tuning: the checkpoint must describe the same architecture (drop-path,
    dropout and input size may differ) and the same tokenizer vocabulary.
    """
    config, sd, vocab = read_model_weights(path)
    ours, theirs = _architecture(model.config), _architecture(config)
    if ours != theirs:
        differ = sorted(k for k in ours if ours[k] != theirs.get(k))
        shown = ", ".join(f"{k} {theirs.get(k)} vs {ours[k]}" for k in differ)
        raise CheckpointError(f"{path}: another architecture than this run's ({shown})")
    if vocab != model.vocab:
        raise CheckpointError(f"{path}: its tokenizer vocabulary differs from this run's")
    load_state_dict_strict(model, sd, source=str(path))
    log.info("initialised every weight from %s", path)


def load_bert_weights(model: LAVT, source: str) -> None:
    """Initialise the text encoder from a BERT (local directory or Hugging Face name).

    Errors name the parameter ``text_encoder``.
    """
    from transformers import BertModel

    try:
        bert = BertModel.from_pretrained(source, add_pooling_layer=False)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"text_encoder {source}: cannot load a BERT ({first})", param="text_encoder"
        ) from None
    sd = {f"text_encoder.{k}": v for k, v in bert.state_dict().items() if ".pooler." not in k}
    expected = {k for k in model.state_dict() if k.startswith("text_encoder.")}
    target = model.text_encoder.state_dict()
    bad = [
        k
        for k in sd
        if k not in expected or sd[k].shape != target[k.removeprefix("text_encoder.")].shape
    ]
    if bad or set(expected) - set(sd):
        raise CheckpointError(
            f"text_encoder {source}: does not match the model's text encoder config "
            f"({describe_keys(bad or sorted(set(expected) - set(sd)))})",
            param="text_encoder",
        )
    check_finite(sd, source=source)
    model.load_state_dict(sd, strict=False)
