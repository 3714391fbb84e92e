"""Registry of the files bundled in the package (no download ever needed).

- ``default_model_path()``: the small LAVT trained on ``lavt synth`` scenes
  (float16 safetensors), used when no checkpoint is given;
- ``generalized_model_path()``: the same small LAVT with a no-target head, trained
  on ``lavt synth --generalized`` scenes (docs/gres.md);
- ``BUNDLED_MODELS``: the names under which a checkpoint argument finds them
  (``--checkpoint synthetic-generalized``);
- ``bert_vocab_path()``: the bert-base-uncased WordPiece vocabulary (30,522 lines).

Neither the predictor nor the data generator owns these; both ask here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lavt.errors import CheckpointError

DEFAULT_MODEL = "lavt_synthetic.safetensors"
GENERALIZED_MODEL = "lavt_synthetic_generalized.safetensors"
#: checkpoint names -> bundled files
BUNDLED_MODELS = {"synthetic": DEFAULT_MODEL, "synthetic-generalized": GENERALIZED_MODEL}
BERT_VOCAB = "bert-base-uncased-vocab.txt"


def asset_path(name: str) -> Path:
    """Path of the bundled file ``name``; a clear error if the installation lacks it."""
    path = Path(str(resources.files("lavt.assets") / name))
    if not path.is_file():
        raise CheckpointError(f"{path}: bundled file missing from this installation of lavt")
    return path


def default_model_path() -> Path:
    """The small default model shipped in the package (trained on ``lavt synth`` scenes)."""
    return asset_path(DEFAULT_MODEL)


def generalized_model_path() -> Path:
    """The small generalized model (no-target head) shipped in the package."""
    return asset_path(GENERALIZED_MODEL)


def bert_vocab_path() -> Path:
    """The bundled bert-base-uncased vocabulary (30,522 lines)."""
    return asset_path(BERT_VOCAB)
