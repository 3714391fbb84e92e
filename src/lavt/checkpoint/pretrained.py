"""Writing a pretrained folder (``LAVT.save_pretrained``): the Hugging Face Hub layout.

``config.json`` (the ``LAVTConfig`` as a plain dict), ``model.safetensors`` (written by
:func:`lavt.checkpoint.io.write_model_safetensors`: never a pickle), ``vocab.txt`` (the
tokenizer's vocabulary), ``tokenizer_config.json`` (for transformers' ``BertTokenizer``)
and the model card ``README.md``. :func:`lavt.checkpoint.io.read_model_weights` reads it
back. Layout and card: docs/hub.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from lavt.assets import bert_vocab_path
from lavt.checkpoint.io import (
    CARD_FILE,
    CONFIG_FILE,
    PRETRAINED_FILES,
    TOKENIZER_CONFIG_FILE,
    VOCAB_FILE,
    WEIGHTS_FILE,
    check_output_file,
    write_model_safetensors,
)
from lavt.errors import InputError
from lavt.runtime import unwrap_model


def _tokenizer_config(model: nn.Module) -> dict[str, Any]:
    """For other tools (transformers' ``BertTokenizer``); lavt itself reads ``vocab.txt``."""
    return {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "strip_accents": True,
        "model_max_length": model.config.max_text_len,
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
    }


def write_pretrained_dir(
    model: nn.Module, directory: str | os.PathLike, *, card: str, dtype: str = "float32"
) -> Path:
    """A pretrained folder: ``config.json``, ``model.safetensors``, ``vocab.txt``,
    ``tokenizer_config.json`` and the model card ``README.md``.

    The files are written into a temporary folder beside ``directory`` and then moved in
    one by one, so a failure leaves ``directory`` as it was; other files there are kept.
    """
    model = unwrap_model(model)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"output {directory}: exists and is not a folder", param="output")
    check_output_file(directory / CONFIG_FILE)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        write_model_safetensors(model, staging / WEIGHTS_FILE, dtype=dtype)
        config = json.dumps(model.config.to_dict(), indent=2, sort_keys=True)
        (staging / CONFIG_FILE).write_text(config + "\n", encoding="utf-8")
        if model.vocab is None:
            shutil.copyfile(bert_vocab_path(), staging / VOCAB_FILE)
        else:
            text = "".join(token + "\n" for token in model.vocab)
            (staging / VOCAB_FILE).write_text(text, encoding="utf-8")
        tokenizer = json.dumps(_tokenizer_config(model), indent=2)
        (staging / TOKENIZER_CONFIG_FILE).write_text(tokenizer + "\n", encoding="utf-8")
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        for name in PRETRAINED_FILES:
            os.replace(staging / name, directory / name)
    except OSError as err:
        message = f"output {directory}: cannot write ({err.strerror or err})"
        raise InputError(message, param="output") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
