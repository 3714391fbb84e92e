"""The model a :class:`TrainConfig` describes, initialised as it asks."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from torch import nn

from lavt.errors import InputError
from lavt.train.config import TrainConfig

log = logging.getLogger("lavt")


def resolve_model_config(cfg: TrainConfig):
    """The :class:`LAVTConfig` and tokenizer vocabulary (None: bert-base-uncased) of ``cfg``.

    Without ``arch``: the Swin preset ``swin_type`` with BERT-base, window 12 or 7.
    ``arch`` instead gives the architecture directly: any ``LAVTConfig`` field
    (``embed_dim``, ``depths``, ``num_heads``, ``window_size``, ``mlp_ratio``,
    ``pwam_heads``), ``text`` (``TextEncoderConfig`` fields) and ``vocab``:
    ``synthetic`` (the synthetic dataset's word list), ``synthetic_generalized``
    (that list plus the words of ``lavt synth --generalized``), ``init_weights``
    (the vocabulary of that checkpoint), ``bert`` (default) or a vocabulary
    file, one token a line.
    """
    from lavt.checkpoint import parse_mha
    from lavt.modeling.config import LAVTConfig, TextEncoderConfig, preset_config
    from lavt.tokenizer import Tokenizer
    from lavt.train.finetune import INIT_VOCAB, vocabulary_of

    common = {
        "variant": cfg.model,
        "img_size": cfg.img_size,
        "drop_path_rate": cfg.drop_path,
        "fusion_drop": cfg.fusion_drop,
        "no_target_head": (
            cfg.dataset == "grefcoco" if cfg.no_target_head is None else cfg.no_target_head
        ),
    }
    if cfg.mha:
        common["pwam_heads"] = parse_mha(cfg.mha)
    arch = dict(cfg.arch or {})
    vocab = None
    try:
        if not arch:
            window12 = cfg.window12
            if window12 is None:
                window12 = "window12" in str(cfg.pretrained_swin_weights or "")
            window = 12 if window12 else 7
            return preset_config(cfg.swin_type, window_size=window, **common), None
        vocab_spec = arch.pop("vocab", "bert")
        text = dict(arch.pop("text", None) or {})
        clash = sorted(set(arch) & {*common, "text"})
        if clash:
            raise InputError(f"arch: set {clash} with the top-level keys, not inside arch")
        if vocab_spec == "synthetic":
            from lavt.tokenizer import synthetic_vocabulary

            vocab = list(synthetic_vocabulary())
        elif vocab_spec == "synthetic_generalized":
            from lavt.tokenizer import generalized_synthetic_vocabulary

            vocab = generalized_synthetic_vocabulary()
        elif vocab_spec == INIT_VOCAB:
            vocab = vocabulary_of(vocab_spec, cfg.init_weights)
        elif vocab_spec not in (None, "bert"):
            path = Path(str(vocab_spec))
            if not path.is_file():
                raise InputError(f"arch.vocab {path}: vocabulary file not found")
            vocab = [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]
        if vocab is not None:
            Tokenizer(vocab=vocab)  # checks the special tokens
            text.setdefault("vocab_size", len(vocab))
        config = LAVTConfig(text=TextEncoderConfig(**text), **arch, **common)
    except (TypeError, ValueError) as err:
        raise InputError(f"arch: invalid architecture ({err})") from None
    return config, vocab


def build_training_model(
    cfg: TrainConfig, *, initialise: bool, expressions: Iterable[str] | None = None
) -> nn.Module:
    """The model of ``cfg`` on the CPU.

    With ``initialise``: from ``init_weights`` (a LAVT checkpoint), or from ImageNet
    Swin / BERT weights, when given; otherwise (or on resume) randomly initialised.
    With ``init_weights`` and the training ``expressions``, a word-level vocabulary
    gains their unknown words (on resume too, so that the shapes match). Then
    ``text_trainable`` and ``freeze`` decide what trains.
    """
    from lavt.checkpoint import load_bert_weights, load_lavt_weights, load_swin_imagenet_weights
    from lavt.modeling import build_model
    from lavt.train.finetune import extend_vocabulary, freeze_parts
    from lavt.train.optim import configure_text_trainable

    model_config, vocab = resolve_model_config(cfg)
    model = build_model(model_config, vocab=vocab)
    if initialise and cfg.pretrained_swin_weights:
        load_swin_imagenet_weights(model, cfg.pretrained_swin_weights)
    if initialise and cfg.text_encoder:
        load_bert_weights(model, cfg.text_encoder)
    if initialise and cfg.init_weights:
        load_lavt_weights(model, cfg.init_weights)
    if cfg.init_weights and expressions is not None:
        model = extend_vocabulary(model, expressions, initialise=initialise, seed=cfg.seed)
    layers = configure_text_trainable(model, cfg.text_trainable)
    frozen = freeze_parts(model, cfg.freeze)
    if frozen:
        log.info("frozen (%s): %.2fM parameters", cfg.freeze, frozen / 1e6)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    text = cfg.text_trainable
    log.info(
        "model: %s, Swin embed %d depths %s window %d, BERT %d layers x %d (trainable: %s); "
        "%.2fM parameters, %.2fM trained",
        model_config.variant,
        model_config.embed_dim,
        list(model_config.depths),
        model_config.window_size,
        model_config.text.num_layers,
        model_config.text.hidden_size,
        text if text in ("all", "none") else f"layers {layers}",
        total / 1e6,
        trainable / 1e6,
    )
    return model
