"""The training step and the training epoch (torchvision references' ``train_one_epoch``).

:func:`train_step` is one optimizer step over ``grad_accum`` micro-batches: what
the epoch loop runs, and what ``lavt benchmark --mode train`` times. A step
whose loss is NaN or inf on any rank is skipped on every rank (weights,
optimizer and BatchNorm statistics untouched) without a host-device
synchronisation; :class:`NonFiniteTracker` stops the run after
``max_nonfinite`` such steps in a row.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from lavt.data.workers import clean_worker_errors
from lavt.errors import LavtError
from lavt.runtime import DistInfo, all_reduce_sum, autocast, unwrap_model
from lavt.train.losses import NO_TARGET_WEIGHT, no_target_loss
from lavt.train.resume import TrainState
from lavt.train.runlog import MetricsLog, log_train_record

log = logging.getLogger("lavt")

Batch = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NonFiniteTracker:
    """Counts steps skipped for a NaN/inf loss and stops the run after ``limit`` in a row.

    The streak is checked at every step. On the CPU that costs nothing; on a GPU
    the step's streak is copied to the host without waiting and read one step
    later, so the check never stalls the device (the run stops one step late).
    """

    def __init__(self, device: torch.device, limit: int) -> None:
        self.limit = limit
        self.streak = torch.zeros((), device=device)
        self.total = torch.zeros((), device=device)
        lagged = device.type == "cuda"
        self._host = torch.zeros((), pin_memory=lagged)
        self._copied = torch.cuda.Event() if lagged else None

    def update(self, found: torch.Tensor, *, iteration: int | None = None) -> None:
        """found: () float, 1.0 when this step's loss was not finite."""
        if self._copied is not None:
            self._copied.synchronize()  # the previous step's copy
            self._raise_if_over(int(self._host), iteration)
        self.streak = (self.streak + 1.0) * found
        self.total = self.total + found
        self._host.copy_(self.streak, non_blocking=self._copied is not None)
        if self._copied is not None:
            self._copied.record()
        else:
            self._raise_if_over(int(self._host), iteration)

    def _raise_if_over(self, streak: int, iteration: int | None) -> None:
        if self.limit and streak >= self.limit:
            where = f" at iteration {iteration}" if iteration is not None else ""
            raise LavtError(
                f"loss was NaN or inf for {streak} steps in a row (max_nonfinite "
                f"{self.limit}); stopped{where} without saving; lower the lr, try "
                "amp bf16 or none, or resume from the last checkpoint"
            )

    def check(self, state: TrainState) -> None:
        """Synchronise once: add the skipped steps to ``state``, check the streak."""
        total, streak = (int(v) for v in torch.stack([self.total, self.streak]).tolist())
        state.skipped_steps += total
        self.total.zero_()
        self._raise_if_over(streak, state.iteration)


class BufferGuard:
    """Undoes BatchNorm running-statistics updates of a step whose loss was not finite."""

    def __init__(self, model: nn.Module) -> None:
        self.buffers = [
            b
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b in m.buffers()
        ]
        self.saved: list[torch.Tensor] = []

    def snapshot(self) -> None:
        self.saved = [b.detach().clone() for b in self.buffers]

    def restore_if(self, found: torch.Tensor) -> None:
        bad = found.bool()
        with torch.no_grad():
            for buf, old in zip(self.buffers, self.saved, strict=True):
                buf.copy_(torch.where(bad, old, buf))


def optimizer_step(
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, found: torch.Tensor
) -> None:
    """One update that leaves the weights untouched when ``found`` (a () float tensor) is 1.

    The fused AdamW reads ``found_inf`` on the device (no synchronisation);
    GradScaler (fp16) finds the non-finite gradients itself.
    """
    if scaler.is_enabled():
        scaler.step(optimizer)
        scaler.update()
    elif optimizer.defaults.get("fused"):
        optimizer.found_inf = found
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not bool(found):  # unfused optimizers cannot skip on the device
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def batch_to_device(batch: Batch, device: torch.device, *, channels_last: bool = False):
    """image (B,3,H,W), target (B,H,W), input_ids (B,N), attention_mask (B,N) on ``device``."""
    nb = device.type == "cuda"
    image = batch["image"].to(device, non_blocking=nb)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    return (
        image,
        batch["target"].to(device, non_blocking=nb),
        batch["input_ids"].to(device, non_blocking=nb),
        batch["attention_mask"].to(device, non_blocking=nb),
    )


@dataclass
class StepResult:
    """Device tensors (no synchronisation): summed finite losses, their count, skipped flag."""

    loss_sum: torch.Tensor
    loss_count: torch.Tensor
    found: torch.Tensor
    samples: int


def train_step(
    model: nn.Module,
    micro_batches: Sequence[Batch],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss_fn: LossFn,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    guard: BufferGuard | None = None,
    no_target_weight: float = NO_TARGET_WEIGHT,
) -> StepResult:
    """One optimizer step: forward and backward over each micro-batch, then the update.

    Gradients of the ``len(micro_batches)`` batches are accumulated (a DDP
    ``model`` all-reduces them once, after the last); ``found`` is 1.0 when any
    loss was not finite on any process, and then the update is skipped (and
    ``guard`` restores the BatchNorm statistics). A model with a no-target head
    adds ``no_target_weight`` times its cross-entropy against ``batch["no_target"]``.
    """
    accum = len(micro_batches)
    head = getattr(unwrap_model(model), "no_target_head", None) is not None
    found = torch.zeros((), device=device)
    loss_sum = torch.zeros((), device=device)
    loss_count = torch.zeros((), device=device)
    samples = 0
    if guard is not None:
        guard.snapshot()
    for i, batch in enumerate(micro_batches):
        image, target, input_ids, attention_mask = batch_to_device(
            batch, device, channels_last=channels_last
        )
        last = i == accum - 1
        # DDP (plain or compiled) has no_sync: skip the all-reduce until the last micro-batch
        sync = (
            model.no_sync() if hasattr(model, "no_sync") and not last else contextlib.nullcontext()
        )
        with sync:
            with autocast(device, amp_dtype):
                if head:
                    logits, nt_logits = model(
                        image, input_ids, attention_mask, return_no_target=True
                    )  # (B, 2, H, W), (B, 2)
                else:
                    logits = model(image, input_ids, attention_mask)  # (B, 2, H, W)
            loss = loss_fn(logits, target)
            if head:
                no_target = batch["no_target"].to(device, non_blocking=device.type == "cuda")
                loss = loss + no_target_weight * no_target_loss(nt_logits, no_target)
            scaler.scale(loss / accum).backward()
        loss = loss.detach()
        finite = torch.isfinite(loss)
        found = torch.maximum(found, (~finite).float())
        loss_sum += torch.where(finite, loss, 0.0)
        loss_count += finite.float()
        samples += image.shape[0]
    found = all_reduce_sum(found).clamp(max=1.0)  # any rank's NaN skips the step everywhere
    optimizer_step(optimizer, scaler, found)
    if guard is not None:
        guard.restore_if(found)
    return StepResult(loss_sum, loss_count, found, samples)


@dataclass
class EpochStats:
    """What :func:`train_one_epoch` did: steps, their mean finite loss, whether the epoch ended."""

    steps: int
    loss: float
    finished: bool


def _groups(loader: Iterable[Batch], size: int) -> Iterator[list[Batch]]:
    group: list[Batch] = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    loss_fn: LossFn,
    *,
    state: TrainState,
    steps_per_epoch: int,
    grad_accum: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    tracker: NonFiniteTracker,
    guard: BufferGuard,
    dist: DistInfo,
    metrics: MetricsLog,
    log_every: int,
    max_steps: int = 0,
    progress: bool = True,
    no_target_weight: float = NO_TARGET_WEIGHT,
) -> EpochStats:
    """Train ``state.epoch`` from ``state.batch_in_epoch`` to its end, or ``max_steps`` steps.

    ``loader`` must start at ``state.batch_in_epoch`` (see ``ResumableSampler``).
    Updates ``state`` (iteration, batch_in_epoch, skipped_steps); writes a
    ``train`` record every ``log_every`` steps (the only synchronisation besides
    the non-finite check).
    """
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    model.train()
    optimizer.zero_grad(set_to_none=True)
    done = state.batch_in_epoch // grad_accum
    steps_left = steps_per_epoch - done
    if max_steps:
        steps_left = min(steps_left, max_steps - state.iteration % max_steps)
    window = _LossWindow(device)
    epoch_loss = _LossWindow(device)
    bar = tqdm(
        total=steps_per_epoch,
        initial=done,
        desc=f"epoch {state.epoch}",
        unit="step",
        disable=not (progress and dist.is_main),
        dynamic_ncols=True,
        mininterval=1.0 if os.isatty(2) else 30.0,
    )
    steps = 0
    with bar, logging_redirect_tqdm(loggers=[log]), clean_worker_errors():
        for micro_batches in _groups(loader, grad_accum) if steps_left > 0 else ():
            result = train_step(
                model,
                micro_batches,
                optimizer,
                scaler,
                loss_fn,
                device=device,
                amp_dtype=amp_dtype,
                channels_last=channels_last,
                guard=guard,
                no_target_weight=no_target_weight,
            )
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            state.iteration += 1
            state.batch_in_epoch += grad_accum
            steps += 1
            tracker.update(result.found, iteration=state.iteration)
            window.add(result)
            epoch_loss.add(result)
            bar.update(1)
            if state.iteration % log_every == 0:
                tracker.check(state)
                record = window.record(state, lr, dist)
                metrics.write(record)
                if dist.is_main:
                    log_train_record(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
            if steps == steps_left:
                break  # before the loader reads another batch
    tracker.check(state)
    loss_sum, count = epoch_loss.totals(dist)
    ended = done + steps == steps_per_epoch or steps < steps_left  # or the loader ran out
    return EpochStats(steps, loss_sum / count if count else float("nan"), ended)


class _LossWindow:
    """Running sums of losses and samples since the last record (on the device)."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(2, device=device)
        self.samples = 0
        self.started = time.perf_counter()

    def add(self, result: StepResult) -> None:
        self.sums += torch.stack([result.loss_sum, result.loss_count])
        self.samples += result.samples

    def totals(self, dist: DistInfo) -> list[float]:
        return all_reduce_sum(self.sums.clone()).tolist()

    def record(self, state: TrainState, lr: float, dist: DistInfo) -> dict[str, Any]:
        loss_sum, count = self.totals(dist)
        elapsed = time.perf_counter() - self.started
        record = {
            "type": "train",
            "epoch": state.epoch,
            "iteration": state.iteration,
            "loss": loss_sum / count if count else float("nan"),
            "lr": lr,
            "skipped_steps": state.skipped_steps,
            "samples_per_s": self.samples * dist.world_size / max(elapsed, 1e-9),
        }
        self.sums.zero_()
        self.samples, self.started = 0, time.perf_counter()
        return record
