"""Optimizer, parameter groups and learning-rate schedule (docs/training.md).

AdamW (betas 0.9, 0.999) over four groups, as the reference builds them:

1. ``backbone_no_decay``: backbone parameters whose name contains ``norm``,
   ``relative_position_bias_table`` or ``absolute_pos_embed``; weight decay 0;
2. ``backbone_decay``: the other backbone parameters;
3. ``decoder``: the classifier (all of it decays, BatchNorm included);
4. ``text_encoder``: the trainable part of the BERT, by default encoder layers
   0-9 (``text_trainable``); the embeddings and the other layers are frozen
   (``requires_grad=False``), so DDP never waits for their gradients.

The learning rate follows ``lr * (1 - it / total) ** 0.9`` per iteration, with
an optional linear warm-up multiplied in over the first iterations.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from torch import nn

from lavt.errors import InputError

log = logging.getLogger("lavt")

NO_DECAY_KEYS = ("norm", "relative_position_bias_table", "absolute_pos_embed")
GROUP_NAMES = ("backbone_no_decay", "backbone_decay", "decoder", "text_encoder")
DEFAULT_TEXT_TRAINABLE = "0-9"


def parse_text_trainable(spec: str, num_layers: int) -> tuple[bool, list[int]]:
    """``text_trainable`` -> (embeddings trainable, trainable encoder layer indices).

    ``all``: embeddings and every layer; ``none``: nothing; ``A-B`` (inclusive),
    ``A,B,C`` or a mix (``0-3,7``): those encoder layers, embeddings frozen.
    Indices beyond the encoder's depth are ignored (``0-9`` on a 2-layer BERT
    trains layers 0 and 1).
    """
    spec = str(spec).strip().lower()
    if spec == "all":
        return True, list(range(num_layers))
    if spec == "none":
        return False, []
    layers: set[int] = set()
    for part in spec.split(","):
        found = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if found is None:
            raise InputError(
                f"text_trainable {spec!r}: expected all, none, A-B or a comma list of layers",
                param="text_trainable",
            )
        first = int(found.group(1))
        last = int(found.group(2)) if found.group(2) is not None else first
        if last < first:
            raise InputError(
                f"text_trainable {spec!r}: empty range {part.strip()!r}", param="text_trainable"
            )
        layers.update(range(first, last + 1))
    return False, sorted(i for i in layers if i < num_layers)


def configure_text_trainable(model: nn.Module, spec: str = DEFAULT_TEXT_TRAINABLE) -> list[int]:
    """Freeze the text encoder except what ``spec`` names; returns the trainable layers."""
    encoder = model.text_encoder
    num_layers = len(encoder.encoder.layer)
    embeddings, layers = parse_text_trainable(spec, num_layers)
    encoder.requires_grad_(False)
    if embeddings:
        encoder.requires_grad_(True)
    for i in layers:
        encoder.encoder.layer[i].requires_grad_(True)
    return layers


def is_no_decay(name: str) -> bool:
    """Backbone parameters without weight decay (the reference's name rule)."""
    return any(key in name for key in NO_DECAY_KEYS)


def param_groups(model: nn.Module, *, weight_decay: float) -> list[dict[str, Any]]:
    """The four AdamW groups (empty ones dropped), each with a ``name``.

    Only parameters with ``requires_grad`` are included; every one of them lands
    in exactly one group.
    """
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in GROUP_NAMES}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("backbone."):
            groups["backbone_no_decay" if is_no_decay(name) else "backbone_decay"].append(param)
        elif name.startswith(("classifier.", "no_target_head.")):  # heads: the decoder group
            groups["decoder"].append(param)
        elif name.startswith("text_encoder."):
            groups["text_encoder"].append(param)
        else:
            raise ValueError(f"parameter {name} belongs to no optimizer group")
    out = []
    for name in GROUP_NAMES:
        if groups[name]:
            decay = 0.0 if name == "backbone_no_decay" else weight_decay
            out.append({"name": name, "params": groups[name], "weight_decay": decay})
    return out


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`.

    ``fused`` defaults to True on CUDA and CPU: the fused kernel also honours
    ``optimizer.found_inf``, which lets the trainer skip a step with a
    non-finite loss without a host-device synchronisation.
    """
    groups = param_groups(model, weight_decay=weight_decay)
    if not groups:
        raise InputError("nothing to train: every parameter is frozen")
    if fused is None:
        device = groups[0]["params"][0].device
        fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)


def lr_factor(iteration: int, *, total: int, power: float = 0.9, warmup: int = 0) -> float:
    """Multiplier of the base LR at ``iteration`` (0-based).

    Polynomial decay ``(1 - it / total) ** power`` (0 from ``total`` on), times
    a linear warm-up ``(it + 1) / warmup`` over the first ``warmup`` iterations.
    """
    factor = max(0.0, 1.0 - iteration / max(total, 1)) ** power
    if warmup > 0 and iteration < warmup:
        factor *= (iteration + 1) / warmup
    return factor


class PolyWithWarmup:
    """The LR rule as an object: ``LambdaLR`` stores its plain attributes in its state dict."""

    def __init__(self, total: int, power: float = 0.9, warmup: int = 0) -> None:
        self.total = int(total)
        self.power = float(power)
        self.warmup = int(warmup)

    def __call__(self, iteration: int) -> float:
        return lr_factor(iteration, total=self.total, power=self.power, warmup=self.warmup)


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, total_iters: int, warmup_iters: int = 0, power: float = 0.9
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration polynomial LR (with optional warm-up): call ``step()`` every iteration."""
    rule = PolyWithWarmup(total_iters, power=power, warmup=warmup_iters)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, rule)
