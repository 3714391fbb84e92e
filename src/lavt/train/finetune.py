"""Fine-tuning from a LAVT checkpoint: what ``init_weights`` changes (docs/training.md).

- :func:`apply_finetune_defaults`: with ``init_weights`` set, the architecture,
  input size and tokenizer vocabulary come from the checkpoint, and the
  fine-tuning defaults (:data:`FINETUNE_DEFAULTS`) replace the published
  recipe's, for every key the user did not set;
- :func:`extend_vocabulary`: a word-level vocabulary (the bundled models') gains
  the training expressions' words it lacks, with new embedding rows;
- :func:`freeze_parts`: ``freeze`` (backbone stages, the text encoder).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from lavt.errors import InputError

log = logging.getLogger("lavt")

#: What ``init_weights`` changes in the recipe unless set (chosen on the worked
#: example of docs/training.md, "Fine-tuning"): a short warm-up, so that the new
#: words' rows do not jolt the trained weights, and Dice beside cross-entropy (as
#: the bundled models were trained). The learning rate and the trained text
#: parts depend on the checkpoint (:func:`checkpoint_settings`).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "warmup_iters": 50,
    "loss": "ce+dice",
}
#: Learning rate for a checkpoint with a word vocabulary (the bundled models, trained
#: from scratch at 5e-4): on the worked example one epoch reached 68.7% val overall
#: IoU at 5e-4 and 55.3% at 2e-4. Other checkpoints keep the published 5e-5.
WORD_VOCAB_LR = 5e-4

#: Config keys that, set by the user, keep the checkpoint's architecture out of ``arch``.
_ARCH_KEYS = ("arch", "swin_type", "window12")
#: ``arch.vocab`` value: the vocabulary of the ``init_weights`` checkpoint.
INIT_VOCAB = "init_weights"


@functools.lru_cache(maxsize=4)
def _header(path: str, mtime: float) -> tuple[Any, tuple[str, ...] | None]:
    from lavt.checkpoint import read_model_weights

    config, _, vocab = read_model_weights(path)
    return config, tuple(vocab) if vocab is not None else None


def checkpoint_header(source: str | os.PathLike):
    """(LAVTConfig, vocabulary or None) of a checkpoint (a file, a pretrained folder or a
    weights name)."""
    from lavt.hub import resolve_weights

    path = resolve_weights(source, param="init_weights")  # a file or a pretrained folder
    if not path.exists():
        raise InputError(f"init_weights {source}: file not found", param="init_weights")
    config, vocab = _header(str(path), path.stat().st_mtime)
    return config, list(vocab) if vocab is not None else None


def is_word_level(vocab: list[str] | None) -> bool:
    """A word vocabulary (no ``##`` continuation pieces); None is BERT's WordPiece."""
    return vocab is not None and not any(token.startswith("##") for token in vocab)


def checkpoint_settings(source: str | os.PathLike) -> dict[str, Any]:
    """The config keys a checkpoint determines: variant, input size, architecture, vocabulary.

    A word-level vocabulary (the bundled small models) also sets the learning
    rate (:data:`WORD_VOCAB_LR`) and trains the whole text encoder
    (``text_trainable: all``: the new words need their embeddings trained); a
    WordPiece BERT keeps the published 5e-5 and ``0-9``.
    """
    config, vocab = checkpoint_header(source)
    arch = config.to_dict()
    settings = {
        "model": arch.pop("variant"),
        "img_size": arch.pop("img_size"),
        "drop_path": arch.pop("drop_path_rate"),
        "fusion_drop": arch.pop("fusion_drop"),
        "no_target_head": arch.pop("no_target_head"),
    }
    arch["vocab"] = INIT_VOCAB if vocab is not None else "bert"
    settings["arch"] = arch
    if is_word_level(vocab):
        settings.update(lr=WORD_VOCAB_LR, text_trainable="all")
    return settings


def apply_finetune_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (what the user set) completed from ``init_weights`` where it is given.

    The user's values always win; the checkpoint's architecture is left out when
    the user set ``arch``, ``swin_type`` or ``window12`` (``pwam_heads`` when ``mha``).
    """
    source = values.get("init_weights")
    if not source:
        return values
    out = dict(values)
    settings = {**checkpoint_settings(str(source)), **FINETUNE_DEFAULTS}
    if any(key in values for key in _ARCH_KEYS):
        settings.pop("arch")
    elif "mha" in values:
        settings["arch"].pop("pwam_heads")
    for key, value in settings.items():
        out.setdefault(key, value)
    return out


def log_finetuning(cfg) -> None:
    """One line: what the run took from its ``init_weights`` checkpoint and the defaults."""
    if not cfg.init_weights:
        return
    taken = checkpoint_settings(cfg.init_weights)
    same = [k for k, v in taken.items() if getattr(cfg, k) == v]
    defaults = [f"{k} {v}" for k, v in FINETUNE_DEFAULTS.items() if getattr(cfg, k) == v]
    log.info(
        "fine-tuning from %s: %s from the checkpoint; fine-tuning defaults: %s",
        cfg.init_weights,
        ", ".join(same) or "nothing",
        ", ".join(defaults) or "none (all set)",
    )


def vocabulary_of(spec: str, init_weights: str | None) -> list[str] | None:
    """``arch.vocab: init_weights``: the checkpoint's vocabulary (None: BERT's)."""
    if not init_weights:
        raise InputError(f"arch.vocab {spec}: needs init_weights", param="arch")
    return checkpoint_header(init_weights)[1]


# ----------------------------------------------------------------------------- new words


def missing_words(tokenizer, vocab: list[str], expressions: Iterable[str]) -> list[str]:
    """Words (as the tokenizer splits and lowercases them) absent from ``vocab``, sorted."""
    known, new = set(vocab), set()
    for text in expressions:
        new.update(w for w in tokenizer.words(text) if w not in known)
    return sorted(new)


def new_embedding_rows(
    weight: torch.Tensor, vocab: list[str], count: int, *, seed: int
) -> torch.Tensor:
    """(count, D) rows for new words: the mean of the trained word rows plus noise.

    ``weight`` (V, D): the word embeddings; the special tokens (``[PAD]``, ``[UNK]``,
    ...) are left out of the mean and the spread. The noise is Gaussian with 0.1x
    the per-dimension standard deviation of the word rows, drawn from ``seed``
    (every process draws the same), so that the new words start apart and
    close to the words the model has learnt to read.
    """
    words = [i for i, token in enumerate(vocab) if not token.startswith("[")]
    known = weight[words].float() if words else weight.float()  # (V', D)
    mean, std = known.mean(0), known.std(0) if len(known) > 1 else torch.ones_like(known[0])
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, weight.shape[1], generator=generator)  # (count, D)
    return (mean + 0.1 * std * noise).to(weight.dtype)


def extend_vocabulary(
    model: nn.Module, expressions: Iterable[str], *, initialise: bool, seed: int = 0
) -> nn.Module:
    """``model`` with the words of ``expressions`` its word vocabulary lacks appended.

    Returns ``model`` itself when the vocabulary is WordPiece or covers every
    word; else a new model whose config, vocabulary and word-embedding matrix
    (V + new, D) are larger. ``initialise``: fill the new rows
    (:func:`new_embedding_rows`); else (resume) leave them for the checkpoint.
    """
    from lavt.modeling import build_model
    from lavt.tokenizer import tokenizer_for_model

    vocab = model.vocab
    if not is_word_level(vocab):
        return model
    new = missing_words(tokenizer_for_model(model), vocab, expressions)
    if not new:
        log.info("vocabulary: every word of the training expressions is known")
        return model
    text = model.config.text
    config = dataclasses.replace(
        model.config, text=dataclasses.replace(text, vocab_size=text.vocab_size + len(new))
    )
    bigger = build_model(config, vocab=[*vocab, *new])
    state = model.state_dict()
    key = "text_encoder.embeddings.word_embeddings.weight"
    rows = bigger.state_dict()[key][text.vocab_size :]
    if initialise:
        rows = new_embedding_rows(state[key], vocab, len(new), seed=seed)
    state[key] = torch.cat([state[key], rows])  # (V, D) + (new, D) -> (V + new, D)
    bigger.load_state_dict(state, strict=True)
    shown = ", ".join(new[:8]) + (", ..." if len(new) > 8 else "")
    rows_from = "the mean of the known words' plus noise" if initialise else "the resumed run"
    log.info(
        "vocabulary: %d new words from the training expressions (%s) added to the %d of "
        "the checkpoint; their embeddings start at %s",
        len(new), shown, len(vocab), rows_from,
    )  # fmt: skip
    return bigger


# ----------------------------------------------------------------------------- freezing

_STAGE_PARTS = ("blocks", "downsample")


def freeze_prefixes(spec: str) -> list[str]:
    """``freeze`` -> parameter-name prefixes.

    ``backbone.stageN`` (N = 1..4): the Swin blocks of stage N and the patch
    merging that ends it (stage 1 also the patch embedding); the PWAM fusion, its
    gate and the stage norm keep training. ``backbone``: all four stages.
    ``text_encoder``: the whole BERT.
    """
    prefixes: list[str] = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        if part == "text_encoder":
            prefixes.append("text_encoder.")
            continue
        stage = re.fullmatch(r"backbone\.stage([1-4])", part)
        stages = [int(stage.group(1))] if stage else [1, 2, 3, 4] if part == "backbone" else []
        if not stages:
            raise InputError(
                f"freeze {part!r}: expected backbone, backbone.stage1..4 or text_encoder",
                param="freeze",
            )
        for n in stages:
            prefixes += [f"backbone.layers.{n - 1}.{p}." for p in _STAGE_PARTS]
            if n == 1:
                prefixes.append("backbone.patch_embed.")
    return prefixes


def freeze_parts(model: nn.Module, spec: str) -> int:
    """Set ``requires_grad=False`` on what ``spec`` names; returns the parameters frozen."""
    prefixes = tuple(freeze_prefixes(spec))
    frozen = 0
    if not prefixes:
        return frozen
    for name, param in model.named_parameters():
        if name.startswith(prefixes):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def expressions_of(index, split: str) -> Iterable[str]:
    """Every expression of ``split`` of a refer index."""
    for ref in index.split(split):
        for sentence in ref.sentences:
            yield sentence.text
