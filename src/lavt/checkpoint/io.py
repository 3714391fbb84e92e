"""Reading and saving weights: the one place a weight file is opened.

- ``.pth``/``.pt`` files are read with ``torch.load(weights_only=True)`` and
  ``argparse.Namespace`` as the only extra allowed global (the released files
  store their training arguments in one); nothing else is ever unpickled, and
  there is no fallback to unsafe loading (timm's ``_helpers``, transformers);
- ``.safetensors`` files need no unpickling at all;
- loading into a model is strict: missing, unexpected or mis-shaped keys, and
  tensors holding NaN or infinity, are errors that name the tensors.

This project's checkpoints are dicts with ``format: "lavt"``, the model config
as a plain dict (nanoGPT's ``model_args``), the state dict and the tokenizer
vocabulary; saving goes through :mod:`lavt.runtime`'s atomic writes.

A *pretrained folder* (what ``LAVT.save_pretrained`` writes, and a Hugging Face Hub
repository holds) is read here too: ``config.json`` (the ``LAVTConfig``, a plain
dict), ``vocab.txt`` and ``model.safetensors``. Nothing else in the folder is read,
and nothing in it is ever imported or unpickled (docs/hub.md).

Nothing here builds a model (``LAVT.from_pretrained`` and
:mod:`lavt.checkpoint.model_files` do, through these readers), so the model class can
call in without an import cycle.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lavt.checkpoint.released import is_released_checkpoint, read_released
from lavt.checkpoint.released_video import is_video_checkpoint, read_released_video
from lavt.errors import CheckpointError, InputError
from lavt.hub import resolve_weights
from lavt.modeling.config import AnyConfig, config_from_dict
from lavt.runtime import (
    atomic_path,
    atomic_torch_save,
    check_readable_file,
    parse_dtype,
    unwrap_model,
)

#: the files of a pretrained folder (``LAVT.save_pretrained``, a Hub repository)
CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE = "config.json", "model.safetensors", "vocab.txt"
TOKENIZER_CONFIG_FILE, CARD_FILE = "tokenizer_config.json", "README.md"
PRETRAINED_FILES = (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE, TOKENIZER_CONFIG_FILE, CARD_FILE)

FORMAT = "lavt"
FORMAT_VERSION = 1
StateDict = dict[str, torch.Tensor]
#: storage dtypes of ``convert_to_safetensors`` (names as :func:`lavt.runtime.parse_dtype` reads).
SAVE_DTYPES = ("float32", "float16", "bfloat16")

# ----------------------------------------------------------------------------- reading files


def check_file(path: Path) -> None:
    """Refuse a missing, empty, unreadable path or a directory, naming it."""
    check_readable_file(path, "checkpoint", a_what="a checkpoint file", error=CheckpointError)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _unpickling_error(path: Path, err: pickle.UnpicklingError) -> CheckpointError:
    """Explain why ``torch.load(weights_only=True)`` refused a file, in one line."""
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found is not None:
        return CheckpointError(
            f"{path}: refusing to load: it holds a pickled {found.group(1)} (only tensors, "
            "plain containers and argparse.Namespace are allowed)"
        )
    opcode = re.search(r"Unsupported operand (\d+)", text)
    if opcode is not None:
        return CheckpointError(
            f"{path}: not a torch checkpoint (unsupported pickle opcode {opcode.group(1)}: "
            "random bytes, text such as JSON, or a pickle not written by torch.save)"
        )
    return CheckpointError(f"{path}: not a readable checkpoint (corrupt pickle)")


def read_torch_file(path: str | os.PathLike, *, allow_namespace: bool = True) -> Any:
    """``torch.load(weights_only=True)``; ``Namespace`` is the only extra global allowed."""
    path = Path(path)
    check_file(path)
    allowed = [argparse.Namespace] if allow_namespace else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise _unpickling_error(path, err) from None
    except Exception as err:  # any parse failure of a damaged file
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt: {_first_line(err)})"
        ) from None


def read_safetensors(path: str | os.PathLike) -> tuple[StateDict, dict[str, str]]:
    """Tensors and metadata of a ``.safetensors`` file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    check_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    return tensors, metadata


# ----------------------------------------------------------------------------- checking


def describe_keys(keys: list[str], limit: int = 8) -> str:
    """The first ``limit`` keys, comma-separated, with a count of the rest."""
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def non_finite_tensors(sd: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``sd`` holding NaN or infinity."""
    return [
        k
        for k, v in sd.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
    ]


def check_finite(sd: Mapping[str, torch.Tensor], *, source: str, action: str = "load") -> None:
    """Refuse weights holding NaN or infinity, naming the tensors."""
    bad = non_finite_tensors(sd)
    if bad:
        raise CheckpointError(
            f"{source}: refusing to {action} non-finite weights (NaN or inf in "
            f"{describe_keys(bad)})"
        )


def load_state_dict_strict(
    model: nn.Module, sd: Mapping[str, torch.Tensor], *, source: str
) -> None:
    """Load ``sd`` into ``model``.

    A missing, unexpected, mis-shaped or non-finite tensor is an error naming it.
    """
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
        problems.append(f"missing keys: {describe_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {describe_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {describe_keys(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{source}: state dict does not match the model; " + "; ".join(problems)
        )
    check_finite(sd, source=source)
    model.load_state_dict(sd, strict=True)


# ----------------------------------------------------------------------------- model files


def _is_project_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT and "config" in obj


def _config_from_dict(data: Any, path: Path) -> AnyConfig:
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid model config ({err})") from None


def _vocab_or_none(value: Any, path: Path) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(t, str) for t in value):
        raise CheckpointError(f"{path}: 'vocab' must be a list of strings")
    return list(value)


def _read_safetensors_model(path: Path) -> tuple[AnyConfig, StateDict, list[str] | None]:
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: safetensors file has no LAVT config in its metadata")
    try:
        config_dict = json.loads(meta["config"])
        vocab = json.loads(meta["vocab"]) if "vocab" in meta else None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: malformed metadata ({err})") from None
    return _config_from_dict(config_dict, path), tensors, _vocab_or_none(vocab, path)


def _read_vocab_file(path: Path) -> list[str] | None:
    """A folder's ``vocab.txt``: None when it is the bundled bert-base-uncased vocabulary."""
    from lavt.assets import bert_vocab_path

    try:
        tokens = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable vocabulary ({err})") from None
    if tokens == bert_vocab_path().read_text(encoding="utf-8").splitlines():
        return None
    return tokens


def _read_pretrained_dir(path: Path) -> tuple[AnyConfig, StateDict, list[str] | None]:
    """``config.json``, ``model.safetensors`` and ``vocab.txt`` of a pretrained folder."""
    weights, config_file, vocab_file = path / WEIGHTS_FILE, path / CONFIG_FILE, path / VOCAB_FILE
    if not weights.is_file() or not config_file.is_file():
        raise CheckpointError(
            f"{path}: a folder without {CONFIG_FILE} and {WEIGHTS_FILE} (what "
            "LAVT.save_pretrained writes; pickled weights such as pytorch_model.bin are "
            "never read)"
        )
    try:
        config_dict = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_file}: not a readable JSON config ({err})") from None
    if not isinstance(config_dict, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object (the LAVT config)")
    config = _config_from_dict(config_dict, config_file)
    tensors, _ = read_safetensors(weights)
    vocab = _read_vocab_file(vocab_file) if vocab_file.exists() else None
    return config, tensors, vocab


def read_model_weights(path: str | os.PathLike) -> tuple[AnyConfig, StateDict, list[str] | None]:
    """Config, filtered state dict and tokenizer vocabulary (or None) of any supported file
    or pretrained folder (a path, or ``hf://owner/repo[@revision]``)."""
    path = resolve_weights(path)  # a registered name, URL or hf:// -> the cached file/folder
    if path.is_dir():
        return _read_pretrained_dir(path)
    if path.suffix == ".safetensors":
        return _read_safetensors_model(path)
    obj = read_torch_file(path)
    if _is_project_checkpoint(obj):
        sd = obj.get("model")
        if not isinstance(sd, Mapping):
            raise CheckpointError(f"{path}: checkpoint has no 'model' state dict")
        config = _config_from_dict(obj["config"], path)
        return config, dict(sd), _vocab_or_none(obj.get("vocab"), path)
    if is_released_checkpoint(obj):
        reader = read_released_video if is_video_checkpoint(obj) else read_released
        try:
            config, sd = reader(obj)
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None
        return config, sd, None
    raise CheckpointError(f"{path}: not a LAVT checkpoint (no LAVT model weights found)")


# ----------------------------------------------------------------------------- saving


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
    """Write a project checkpoint atomically (permissions follow the umask).

    ``extra`` (optimizer state, epoch, ...) must hold only tensors, numbers,
    strings and plain containers, so that ``weights_only=True`` reads it back.
    Refuses to write non-finite weights.
    """
    payload = model_payload(model)
    check_finite(payload["model"], source=str(path), action="save")
    atomic_torch_save({**payload, **extra}, path)


def check_output_file(path: Path, *, param: str = "output") -> None:
    """Refuse an output path that is a directory or sits in a folder we cannot write."""
    if path.is_dir():
        raise InputError(f"{param} {path}: is a directory, not a file", param=param)
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not folder.is_dir():
        raise InputError(f"{param} {path}: cannot write below {folder}, a file", param=param)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            f"{param} {path}: cannot write in {folder} (permission denied)", param=param
        )


def safetensors_metadata(config: AnyConfig, vocab: list[str] | None) -> dict[str, str]:
    """What a LAVT ``.safetensors`` file carries beside its tensors (config, vocabulary)."""
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(config.to_dict()),
    }
    if vocab is not None:
        meta["vocab"] = json.dumps(vocab)
    return meta


def write_model_safetensors(model: nn.Module, dst: Path, *, dtype: str = "float32") -> None:
    """``model``'s weights (floating tensors stored as ``dtype``), config and vocabulary as
    one ``.safetensors`` file, written atomically; non-finite weights are refused."""
    from safetensors.torch import save_file

    model = unwrap_model(model)
    store = parse_dtype(dtype, allowed=SAVE_DTYPES)
    tensors = {
        k: (v.detach().cpu().to(store) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
    }
    check_finite(tensors, source=str(dst), action="save")
    try:
        with atomic_path(dst) as tmp:
            save_file(tensors, str(tmp), metadata=safetensors_metadata(model.config, model.vocab))
    except OSError as err:
        message = f"output {dst}: cannot write ({err.strerror or err})"
        raise InputError(message, param="output") from None
