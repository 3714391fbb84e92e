"""Adapter for the released LAVT ``.pth`` files (both variants).

A released file holds ``model`` (the image side, or everything for
``lavt_one``), ``bert_model`` for ``lavt`` and an ``argparse.Namespace`` of
training arguments. :func:`filter_released_state_dict` renames its tensors to
this project's names; :func:`infer_config` reads the architecture off the tensor
shapes plus three arguments (``model``, ``mha``, ``img_size``). Why each rule
exists is in docs/model.md, "The released weights".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from lavt.errors import CheckpointError, InputError
from lavt.modeling.config import LAVTConfig, TextEncoderConfig

StateDict = dict[str, torch.Tensor]

#: derived buffers that are recomputed, never loaded (relative-position index, shift mask).
DERIVED_SUFFIXES = (".relative_position_index", ".attn_mask", "embeddings.position_ids")


def filter_released_state_dict(
    model_sd: Mapping[str, torch.Tensor], bert_sd: Mapping[str, torch.Tensor] | None = None
) -> StateDict:
    """Released LAVT ``model`` (+ ``bert_model``) -> this project's state-dict names.

    Strips a DDP ``module.`` prefix, puts the separate BERT under
    ``text_encoder.``, and drops derived buffers (relative-position indices,
    BERT position ids) and the BERT pooler, which LAVT never uses.
    """
    out: StateDict = {}
    sources = [("", model_sd)]
    if bert_sd is not None:
        sources.append(("text_encoder.", bert_sd))
    for prefix, sd in sources:
        for key, value in sd.items():
            key = key.removeprefix("module.")
            if prefix and not key.startswith(prefix):
                key = prefix + key.removeprefix("bert.")
            if (
                key.endswith(DERIVED_SUFFIXES)
                or ".pooler." in key
                or key.endswith("embeddings.token_type_ids")
            ):
                continue
            out[key] = value
    return out


def parse_mha(mha: Any, *, param: str = "mha") -> tuple[int, ...]:
    """PWAM heads per stage from the reference's ``mha`` string: ``"4-4-4-4"`` -> (4, 4, 4, 4).

    Empty or None means one head per stage (the reference's default). The one
    parser of this spelling, for released files and training configs alike;
    raises :class:`InputError` naming ``param``.
    """
    if mha in (None, ""):
        return (1, 1, 1, 1)
    try:
        heads = tuple(int(x) for x in str(mha).split("-"))
    except ValueError:
        heads = ()
    if len(heads) != 4 or min(heads) < 1:
        raise InputError(
            f"{param} {mha!r}: expected four positive head counts a-b-c-d", param=param
        )
    return heads


def count_indexed(sd: Mapping[str, Any], pattern: str) -> int:
    found = {int(m.group(1)) for key in sd if (m := re.match(pattern, key))}
    if found and found != set(range(max(found) + 1)):
        raise CheckpointError(f"non-contiguous indices for {pattern!r}: {sorted(found)}")
    return len(found)


def text_config(sd: Mapping[str, torch.Tensor]) -> TextEncoderConfig:
    words = sd["text_encoder.embeddings.word_embeddings.weight"]  # (vocab, hidden)
    positions = sd["text_encoder.embeddings.position_embeddings.weight"]
    return TextEncoderConfig(
        vocab_size=words.shape[0],
        hidden_size=words.shape[1],
        num_layers=count_indexed(sd, r"text_encoder\.encoder\.layer\.(\d+)\."),
        num_heads=max(1, words.shape[1] // 64),  # BERT's 64-wide heads
        intermediate_size=sd["text_encoder.encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=positions.shape[0],
        type_vocab_size=sd["text_encoder.embeddings.token_type_embeddings.weight"].shape[0],
    )


def infer_config(sd: Mapping[str, torch.Tensor], args: Any = None) -> LAVTConfig:
    """Read the architecture off a (filtered) released state dict and its ``args``."""
    try:
        proj = sd["backbone.patch_embed.proj.weight"]  # (C, 3, patch, patch)
        embed_dim, patch = proj.shape[0], proj.shape[-1]
        depths = tuple(
            count_indexed(sd, rf"backbone\.layers\.{s}\.blocks\.(\d+)\.") for s in range(4)
        )
        heads, window = [], None
        for s in range(4):
            # ((2 * window - 1) ** 2, heads)
            table = sd[f"backbone.layers.{s}.blocks.0.attn.relative_position_bias_table"]
            heads.append(table.shape[1])
            window = (math.isqrt(table.shape[0]) + 1) // 2
        mlp_hidden = sd["backbone.layers.0.blocks.0.mlp.fc1.weight"].shape[0]
        text_dim = sd["backbone.layers.0.fusion.image_lang_att.f_key.0.weight"].shape[1]
        text = text_config(sd)
    except KeyError as err:
        raise CheckpointError(f"missing tensor {err.args[0]!r}: not a LAVT checkpoint") from None
    if text_dim != text.hidden_size:
        raise CheckpointError(
            f"PWAM key width {text_dim} does not match the text encoder width {text.hidden_size}"
        )
    variant = getattr(args, "model", None)
    if variant not in ("lavt", "lavt_one"):
        variant = "lavt"
    try:
        pwam_heads = parse_mha(getattr(args, "mha", ""), param="args.mha")
    except InputError as err:
        raise CheckpointError(str(err)) from None
    try:
        return LAVTConfig(
            variant=variant,
            embed_dim=embed_dim,
            patch_size=patch,
            depths=depths,
            num_heads=tuple(heads),
            window_size=window,
            mlp_ratio=mlp_hidden / embed_dim,
            pwam_heads=pwam_heads,
            fusion_drop=float(getattr(args, "fusion_drop", 0.0) or 0.0),
            text=text,
            img_size=int(getattr(args, "img_size", 480) or 480),
        )
    except ValueError as err:
        raise CheckpointError(f"inconsistent architecture: {err}") from None


def is_released_checkpoint(obj: Any) -> bool:
    """Whether an unpickled object looks like a released LAVT file."""
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("model"), Mapping)
        and any(
            k.removeprefix("module.") == "backbone.patch_embed.proj.weight" for k in obj["model"]
        )
    )


def read_released(obj: dict[str, Any]) -> tuple[LAVTConfig, StateDict]:
    """Config and renamed state dict of an unpickled released file."""
    bert = obj.get("bert_model")
    sd = filter_released_state_dict(obj["model"], bert if isinstance(bert, Mapping) else None)
    return infer_config(sd, obj.get("args")), sd
