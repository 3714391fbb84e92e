"""All weight loading and saving, split by job.

- :mod:`lavt.checkpoint.io`: reading files and pretrained folders (safetensors, or
  ``torch.load(weights_only=True)`` with ``argparse.Namespace`` as the only
  extra global), strict loading, :func:`save_checkpoint`, safetensors writing;
- :mod:`lavt.checkpoint.model_files`: :func:`load_model` and
  :func:`convert_to_safetensors` (through ``LAVT.from_pretrained``);
- :mod:`lavt.checkpoint.pretrained`: the pretrained folder ``LAVT.save_pretrained``
  writes (``config.json``, ``model.safetensors``, ``vocab.txt``, model card);
- :mod:`lavt.checkpoint.released`: the adapter for the released LAVT files
  (renaming, and the architecture read off tensor shapes and ``args.mha``);
- :mod:`lavt.checkpoint.initialise`: training initialisers (Swin ImageNet
  backbone, BERT text encoder, a LAVT checkpoint for fine-tuning).

Nothing here unpickles arbitrary objects; loading is strict and refuses
non-finite weights, naming the tensors.
"""

from __future__ import annotations

from lavt.checkpoint.initialise import (
    filter_swin_imagenet_state_dict,
    load_bert_weights,
    load_lavt_weights,
    load_swin_imagenet_weights,
)
from lavt.checkpoint.io import (
    FORMAT,
    FORMAT_VERSION,
    SAVE_DTYPES,
    StateDict,
    check_finite,
    load_state_dict_strict,
    model_payload,
    read_model_weights,
    read_safetensors,
    read_torch_file,
    save_checkpoint,
)
from lavt.checkpoint.model_files import convert_to_safetensors, load_model
from lavt.checkpoint.released import filter_released_state_dict, infer_config, parse_mha
from lavt.runtime import unwrap_model

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "SAVE_DTYPES",
    "StateDict",
    "check_finite",
    "convert_to_safetensors",
    "filter_released_state_dict",
    "filter_swin_imagenet_state_dict",
    "infer_config",
    "load_bert_weights",
    "load_lavt_weights",
    "load_model",
    "load_state_dict_strict",
    "load_swin_imagenet_weights",
    "model_payload",
    "parse_mha",
    "read_model_weights",
    "read_safetensors",
    "read_torch_file",
    "save_checkpoint",
    "unwrap_model",
]
