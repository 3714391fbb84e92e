"""The model, its inputs and the one-batch steps that ``infer`` and ``train`` time.

:func:`make_train_step` is the seam for the trainer: it returns a closure doing
one optimisation step on a fixed batch. It keeps its own implementation of the
recipe's step (weighted cross-entropy, AdamW, a gradient scaler for float16)
until the trainer's public one-step function is plugged in here, so that
``lavt benchmark --mode train`` times exactly what ``lavt train`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lavt.bench.result import BenchSpec
from lavt.modeling import LAVT, build_model
from lavt.runtime import autocast

Step = Callable[[], Any]
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def prepare_model(spec: BenchSpec, *, train: bool) -> tuple[LAVT, nn.Module]:
    """The model (seed 0) on the device, and what to call: itself or its compiled form."""
    torch.manual_seed(0)
    model = build_model(spec.config).to(spec.device)
    model.train(train)
    if spec.channels_last:
        model.classifier.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if spec.compile_model else model
    return model, runner


def make_inputs(spec: BenchSpec) -> Batch:
    """B images each repeated for E expressions.

    Returns images (B*E, 3, S, S), ids (B*E, N) and mask (B*E, N), expressions
    of half the token limit.
    """
    g = torch.Generator().manual_seed(0)
    batch, per_image, side = spec.batch_size, spec.expressions_per_image, spec.img_size
    images = torch.randn(batch, 3, side, side, generator=g)
    images = images.repeat_interleave(per_image, dim=0)  # (B, 3, S, S) -> (B*E, 3, S, S)
    n = spec.config.max_text_len
    vocab = min(spec.config.text.vocab_size, 30522)
    ids = torch.randint(1, vocab, (batch * per_image, n), generator=g)  # (B*E, N)
    mask = torch.ones(batch * per_image, n, dtype=torch.long)
    mask[:, n // 2 :] = 0  # half-length expressions
    return images.to(spec.device), ids.to(spec.device), mask.to(spec.device)


def make_infer_step(runner: nn.Module, batch: Batch, spec: BenchSpec) -> Step:
    """One forward pass and the argmax mask, under inference mode and autocast."""
    images, ids, mask = batch

    def step() -> torch.Tensor:
        with torch.inference_mode(), autocast(spec.device, spec.dtype):
            return runner(images, ids, mask).argmax(1)  # (B*E, 2, H, W) -> (B*E, H, W)

    return step


def make_train_step(model: LAVT, runner: nn.Module, batch: Batch, spec: BenchSpec) -> Step:
    """One optimisation step on ``batch``: forward, loss, backward, optimizer step.

    The seam for the trainer: replace the body with the trainer's public
    one-step function (optimizer and loss built as ``lavt train`` builds them)
    to time the real training step. ``model`` is the plain model (for its
    parameters), ``runner`` what is called (the model or its compiled form).
    """
    images, ids, mask = batch
    device, dtype = spec.device, spec.dtype
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    target = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.long, device=device)
    target[:, : images.shape[-2] // 2] = 1  # (B*E, H, W): the top half is the object
    class_weight = torch.tensor([0.9, 1.1], device=device)  # the recipe's weighted cross-entropy

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            logits = runner(images, ids, mask)  # (B*E, 2, H, W)
        loss = F.cross_entropy(logits.float(), target, weight=class_weight)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def make_step(spec: BenchSpec) -> tuple[Step, Step]:
    """The timed step of ``infer`` or ``train`` mode, and an uncompiled twin for FLOP counting."""
    model, runner = prepare_model(spec, train=spec.mode == "train")
    batch = make_inputs(spec)
    build = make_infer_step if spec.mode == "infer" else None

    def make(call: nn.Module) -> Step:
        if build is not None:
            return build(call, batch, spec)
        return make_train_step(model, call, batch, spec)

    step = make(runner)
    return step, (make(model) if spec.compile_model else step)
