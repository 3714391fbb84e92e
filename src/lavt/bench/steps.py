"""The model, its inputs and the one-batch steps that ``infer`` and ``train`` time.

:func:`make_train_step` returns a closure doing one optimisation step on a
fixed batch through the trainer's public :func:`lavt.train.train_step`, so
``lavt benchmark --mode train`` times exactly what ``lavt train`` runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lavt.bench.result import BenchSpec
from lavt.modeling import LAVT, build_model
from lavt.precision import cast_for_inference, compile_for_inference
from lavt.runtime import autocast

Step = Callable[[], Any]
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def prepare_model(spec: BenchSpec, *, train: bool) -> tuple[LAVT, nn.Module]:
    """The model (``spec.model``, or a random one of seed 0) on the device, and what to
    call: itself or its compiled form. For inference, in ``spec.precision``
    (:func:`lavt.precision.cast_for_inference`: the weights cast once)."""
    torch.manual_seed(0)
    model = spec.model if spec.model is not None else build_model(spec.config)
    model = model.to(spec.device)
    model.train(train)
    if not train:
        model = cast_for_inference(model, spec.precision, copy_model=False).eval()
    if spec.channels_last:
        model.classifier.to(memory_format=torch.channels_last)
    if spec.grad_checkpointing:
        model.set_grad_checkpointing(True)  # recompute Swin blocks in backward (train mode)
    runner = model
    if spec.compile_model and train:
        runner = torch.compile(model, mode=spec.compile_mode)
    elif spec.compile_model:  # weights frozen into the graph, as lavt predict --compile
        runner = compile_for_inference(model, mode=spec.compile_mode)
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
    """One optimisation step on ``batch``: the trainer's own :func:`lavt.train.train_step`.

    Optimizer (AdamW over the recipe's groups, fused), loss (weighted
    cross-entropy) and trainable parts (BERT layers 0-9) as ``lavt train``
    builds them, so the benchmark times the real training step. ``model`` is the
    plain model (for its parameters), ``runner`` what is called (the model or
    its compiled form).
    """
    from lavt.train import train_step
    from lavt.train.losses import build_loss
    from lavt.train.optim import DEFAULT_TEXT_TRAINABLE, build_optimizer, configure_text_trainable

    images, ids, mask = batch
    device, dtype = spec.device, spec.dtype
    configure_text_trainable(model, DEFAULT_TEXT_TRAINABLE)
    optimizer = build_optimizer(model, lr=1e-5, weight_decay=1e-2)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    target = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.long, device=device)
    target[:, : images.shape[-2] // 2] = 1  # (B*E, H, W): the top half is the object
    micro_batches = [{"image": images, "target": target, "input_ids": ids, "attention_mask": mask}]
    loss_fn = build_loss("ce")

    def step() -> None:
        train_step(
            runner, micro_batches, optimizer, scaler, loss_fn,
            device=device, amp_dtype=dtype, channels_last=spec.channels_last,
        )  # fmt: skip

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
