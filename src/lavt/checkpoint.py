"""All weight loading and saving.

Sources, each with its own filter function (timm's ``checkpoint_filter_fn``):

- the released LAVT ``.pth`` files of both variants (``model`` + ``bert_model``,
  or ``model`` holding ``text_encoder.*``), read with ``weights_only=True`` and
  ``argparse.Namespace`` as the only allow-listed global; the architecture is
  read off the tensor shapes and ``args.mha``;
- this project's own checkpoints (``format: "lavt"``, config as a plain dict);
- ``.safetensors`` exports with the config in their metadata;
- the official Swin ImageNet checkpoints (backbone initialisation);
- a Hugging Face BERT (text encoder initialisation).

Loading into a model is strict: missing, unexpected or mis-shaped keys are an
error that lists them. Nothing here unpickles arbitrary objects.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lavt.errors import CheckpointError, InputError
from lavt.hub import resolve_weights
from lavt.modeling.config import LAVTConfig, TextEncoderConfig
from lavt.modeling.lavt import LAVT, build_model
from lavt.modeling.swin import resize_bias_table

log = logging.getLogger("lavt")

FORMAT = "lavt"
FORMAT_VERSION = 1
StateDict = dict[str, torch.Tensor]

# ----------------------------------------------------------------------------- reading files


def read_torch_file(path: str | os.PathLike, *, allow_namespace: bool = True) -> Any:
    """``torch.load(weights_only=True)``; ``Namespace`` is the only extra global allowed."""
    path = Path(path)
    _check_file(path)
    allowed = [argparse.Namespace] if allow_namespace else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None and "Unsupported" not in str(err):
            raise CheckpointError(f"{path}: not a readable checkpoint (corrupt pickle)") from None
        what = found.group(1) if found else "an object that is not a tensor or a Namespace"
        raise CheckpointError(
            f"{path}: refusing to load: it holds a pickled {what} (only tensors, plain "
            "containers and argparse.Namespace are allowed)"
        ) from None
    except Exception as err:  # any parse failure of a damaged file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt: {first})"
        ) from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: checkpoint is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")


def read_safetensors(path: str | os.PathLike) -> tuple[StateDict, dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    return tensors, metadata


# ----------------------------------------------------------------------------- released weights


_DROP_SUFFIXES = (".relative_position_index", ".attn_mask", "embeddings.position_ids")


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
                key.endswith(_DROP_SUFFIXES)
                or ".pooler." in key
                or key.endswith("embeddings.token_type_ids")
            ):
                continue
            out[key] = value
    return out


def _count_indexed(sd: Mapping[str, Any], pattern: str) -> int:
    found = {int(m.group(1)) for key in sd if (m := re.match(pattern, key))}
    if found and found != set(range(max(found) + 1)):
        raise CheckpointError(f"non-contiguous indices for {pattern!r}: {sorted(found)}")
    return len(found)


def _parse_mha(mha: Any) -> tuple[int, ...]:
    if mha in (None, ""):
        return (1, 1, 1, 1)
    try:
        heads = tuple(int(x) for x in str(mha).split("-"))
    except ValueError:
        raise CheckpointError(f"args.mha {mha!r} is not of the form a-b-c-d") from None
    if len(heads) != 4 or min(heads) < 1:
        raise CheckpointError(f"args.mha {mha!r} is not of the form a-b-c-d")
    return heads


def infer_config(sd: Mapping[str, torch.Tensor], args: Any = None) -> LAVTConfig:
    """Read the architecture off a (filtered) released state dict and its ``args``."""
    try:
        proj = sd["backbone.patch_embed.proj.weight"]
        embed_dim, patch = proj.shape[0], proj.shape[-1]
        depths = tuple(
            _count_indexed(sd, rf"backbone\.layers\.{s}\.blocks\.(\d+)\.") for s in range(4)
        )
        heads, window = [], None
        for s in range(4):
            table = sd[f"backbone.layers.{s}.blocks.0.attn.relative_position_bias_table"]
            heads.append(table.shape[1])
            window = (math.isqrt(table.shape[0]) + 1) // 2
        mlp_hidden = sd["backbone.layers.0.blocks.0.mlp.fc1.weight"].shape[0]
        text_dim = sd["backbone.layers.0.fusion.image_lang_att.f_key.0.weight"].shape[1]
        words = sd["text_encoder.embeddings.word_embeddings.weight"]
        text = TextEncoderConfig(
            vocab_size=words.shape[0],
            hidden_size=words.shape[1],
            num_layers=_count_indexed(sd, r"text_encoder\.encoder\.layer\.(\d+)\."),
            num_heads=max(1, words.shape[1] // 64),
            intermediate_size=sd["text_encoder.encoder.layer.0.intermediate.dense.weight"].shape[0],
            max_position_embeddings=sd["text_encoder.embeddings.position_embeddings.weight"].shape[
                0
            ],
            type_vocab_size=sd["text_encoder.embeddings.token_type_embeddings.weight"].shape[0],
        )
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
        return LAVTConfig(
            variant=variant,
            embed_dim=embed_dim,
            patch_size=patch,
            depths=depths,
            num_heads=tuple(heads),
            window_size=window,
            mlp_ratio=mlp_hidden / embed_dim,
            pwam_heads=_parse_mha(getattr(args, "mha", "")),
            fusion_drop=float(getattr(args, "fusion_drop", 0.0) or 0.0),
            text=text,
            img_size=int(getattr(args, "img_size", 480) or 480),
        )
    except ValueError as err:
        raise CheckpointError(f"inconsistent architecture: {err}") from None


# ----------------------------------------------------------------------------- generic loading


def _describe_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict_strict(
    model: nn.Module, sd: Mapping[str, torch.Tensor], *, source: str
) -> None:
    """Load ``sd`` into ``model``; any missing, unexpected or mis-shaped key is an error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(sd) & set(expected)
        if tuple(sd[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_describe_keys(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{source}: state dict does not match the model; " + "; ".join(problems)
        )
    model.load_state_dict(sd, strict=True)


def _is_project_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT and "config" in obj


def _is_released_checkpoint(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("model"), Mapping)
        and any(
            k.removeprefix("module.") == "backbone.patch_embed.proj.weight" for k in obj["model"]
        )
    )


def _config_from_dict(data: Any, path: Path) -> LAVTConfig:
    try:
        return LAVTConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid model config ({err})") from None


def _vocab_or_none(value: Any, path: Path) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise CheckpointError(f"{path}: 'vocab' must be a list of strings")
    return list(value)


def read_model_weights(path: str | os.PathLike) -> tuple[LAVTConfig, StateDict, list[str] | None]:
    """Config, filtered state dict and tokenizer vocabulary (or None) of any supported file."""
    path = resolve_weights(path)  # a registered name, URL or hf:// -> the cached file
    if path.suffix == ".safetensors":
        tensors, meta = read_safetensors(path)
        if meta.get("format") != FORMAT or "config" not in meta:
            raise CheckpointError(f"{path}: safetensors file has no LAVT config in its metadata")
        try:
            config_dict = json.loads(meta["config"])
            vocab = json.loads(meta["vocab"]) if "vocab" in meta else None
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path}: malformed metadata ({err})") from None
        return _config_from_dict(config_dict, path), tensors, _vocab_or_none(vocab, path)
    obj = read_torch_file(path)
    if _is_project_checkpoint(obj):
        sd = obj.get("model")
        if not isinstance(sd, Mapping):
            raise CheckpointError(f"{path}: checkpoint has no 'model' state dict")
        config = _config_from_dict(obj["config"], path)
        return config, dict(sd), _vocab_or_none(obj.get("vocab"), path)
    if _is_released_checkpoint(obj):
        bert = obj.get("bert_model")
        sd = filter_released_state_dict(obj["model"], bert if isinstance(bert, Mapping) else None)
        try:
            config = infer_config(sd, obj.get("args"))
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None
        return config, sd, None
    raise CheckpointError(f"{path}: not a LAVT checkpoint (no LAVT model weights found)")


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", *, dtype: torch.dtype | None = None
) -> LAVT:
    """Build the model a checkpoint describes and load its weights strictly.

    Accepts the released ``.pth`` files (either variant), this project's
    checkpoints and ``.safetensors`` exports. Returns the model in eval mode on
    ``device``.
    """
    config, sd, vocab = read_model_weights(path)
    model = build_model(config, vocab=vocab)
    load_state_dict_strict(model, sd, source=str(path))
    model.to(device=device, dtype=dtype)
    return model.eval()


# ----------------------------------------------------------------------------- saving


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside DDP and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        else:
            return model


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def model_payload(model: nn.Module) -> dict[str, Any]:
    """The model part of a project checkpoint: format tag, config dict, weights, vocabulary."""
    model = unwrap_model(model)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "vocab": list(model.vocab) if model.vocab is not None else None,
    }


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> None:
    """Write a project checkpoint atomically.

    ``extra`` (optimizer state, epoch, ...) must hold only tensors, numbers,
    strings and plain containers, so that ``weights_only=True`` reads it back.
    Refuses to write non-finite weights.
    """
    payload = model_payload(model)
    bad = [
        k
        for k, v in payload["model"].items()
        if v.is_floating_point() and not torch.isfinite(v).all()
    ]
    if bad:
        raise CheckpointError(
            f"{path}: refusing to save non-finite weights ({_describe_keys(bad)})"
        )
    atomic_save({**payload, **extra}, path)


SAVE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def convert_to_safetensors(
    src: str | os.PathLike, dst: str | os.PathLike, *, dtype: str = "float32"
) -> LAVTConfig:
    """Export any supported checkpoint's model weights to ``dst`` (.safetensors), atomically.

    ``dtype`` (float32, float16 or bfloat16) is the storage type of the floating
    tensors; :func:`load_model` casts them back to float32.
    """
    from safetensors.torch import save_file

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise CheckpointError(f"{dst}: output must end in .safetensors")
    if dtype not in SAVE_DTYPES:
        raise InputError(f"--dtype {dtype}: expected one of {', '.join(SAVE_DTYPES)}")
    store = SAVE_DTYPES[dtype]
    config, sd, vocab = read_model_weights(src)
    model = build_model(config, vocab=vocab)
    load_state_dict_strict(model, sd, source=str(src))  # validate before writing
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(config.to_dict()),
    }
    if vocab is not None:
        meta["vocab"] = json.dumps(vocab)
    tensors = {
        k: (v.to(store) if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return config


# ----------------------------------------------------------------------------- initialisation


def filter_swin_imagenet_state_dict(sd: Mapping[str, torch.Tensor], window: int) -> StateDict:
    """Official Swin classification weights -> ``backbone.*`` names of LAVT.

    Drops the classifier ``head.*``, the final ``norm.*``, ``attn_mask`` and
    relative-position-index buffers; resizes bias tables of another window
    bicubically (LAVT_SPEC section 5).
    """
    out: StateDict = {}
    for key, value in sd.items():
        key = key.removeprefix("module.")
        if key.startswith(("head.", "norm.")) or key.endswith(_DROP_SUFFIXES):
            continue
        if key.endswith("relative_position_bias_table"):
            value = resize_bias_table(value, window)
        out[f"backbone.{key}"] = value
    return out


def load_swin_imagenet_weights(model: LAVT, path: str | os.PathLike) -> list[str]:
    """Initialise the backbone from an official Swin ImageNet checkpoint.

    Returns the backbone keys left at their initialisation (PWAMs, gates,
    norm0-3). Any other leftover or mis-shaped key is an error.
    """
    obj = read_torch_file(
        resolve_weights(path, param="pretrained_swin_weights"), allow_namespace=False
    )
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, Mapping) or "patch_embed.proj.weight" not in {
        k.removeprefix("module.") for k in sd
    }:
        raise CheckpointError(f"{path}: not a Swin checkpoint (no patch_embed.proj.weight)")
    sd = filter_swin_imagenet_state_dict(sd, model.config.window_size)
    expected = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    unexpected = sorted(set(sd) - set(expected))
    mismatched = sorted(k for k in set(sd) & set(expected) if sd[k].shape != expected[k].shape)
    if unexpected or mismatched:
        raise CheckpointError(
            f"{path}: does not fit this backbone; unexpected: {_describe_keys(unexpected)}; "
            f"shape mismatches: {_describe_keys(mismatched)}"
        )
    left = sorted(set(expected) - set(sd))
    allowed = re.compile(r"backbone\.(layers\.\d+\.(fusion|res_gate)\.|norm\d\.)")
    foreign = [k for k in left if not allowed.match(k)]
    if foreign:
        raise CheckpointError(f"{path}: Swin weights lack {_describe_keys(foreign)}")
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
    """Initialise the text encoder from a BERT (local directory or Hugging Face name)."""
    from transformers import BertModel

    try:
        bert = BertModel.from_pretrained(source, add_pooling_layer=False)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"--text-encoder {source}: cannot load a BERT ({first})") from None
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
            f"--text-encoder {source}: does not match the model's text encoder config "
            f"({_describe_keys(bad or sorted(set(expected) - set(sd)))})"
        )
    model.load_state_dict(sd, strict=False)
