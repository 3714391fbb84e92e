"""``main(cfg)``: set up, build, maybe resume, then per epoch train, validate, save.

See :mod:`lavt.train` for the ``torchrun`` commands. Rank 0 writes the run
directory ``<output_dir>/<model_id>``: ``config.yaml``, ``train.log``,
``metrics.jsonl``, ``last.pt``, ``best.pt``, ``curves.png``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader

from lavt.errors import InputError
from lavt.hub import resolve_weights
from lavt.runtime import (
    DistInfo,
    barrier,
    cleanup_distributed,
    init_distributed,
    parse_dtype,
    unwrap_model,
)
from lavt.train.config import AMP_NAMES, TrainConfig, save_config
from lavt.train.elastic import job_agents, lost_peer_as_error, open_resume
from lavt.train.finetune import expressions_of, log_finetuning
from lavt.train.loop import BufferGuard, NonFiniteTracker, train_one_epoch
from lavt.train.model import build_training_model, resolve_model_config
from lavt.train.resume import (
    ResumableSampler,
    Resume,
    TrainState,
    data_order,
    gather_rng_states,
    seed_everything,
)
from lavt.train.runlog import MetricsLog, log_val_record, plot_curves, run_logging

log = logging.getLogger("lavt")


def main(cfg: TrainConfig) -> dict[str, Any]:
    """Train as ``cfg`` says; returns a summary of the run (every process calls this)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    exit_with_launcher()
    info, device = init_distributed(cfg.device, timeout_s=cfg.dist_timeout)
    with contextlib.ExitStack() as stack:
        stack.callback(cleanup_distributed, info)
        stack.enter_context(lost_peer_as_error(info, cfg.dist_timeout))
        agents = job_agents(info)  # the torchrun agents: this job, across its restarts
        resume, index = preflight(cfg, info, agents)  # refusals before the run dir changes
        run_dir = prepare_run_dir(cfg, info, resume)
        stack.enter_context(run_logging(run_dir, info))
        if resume is not None:
            resume.log_changes()
        metrics = stack.enter_context(
            MetricsLog(
                run_dir, enabled=info.is_main, resume_iteration=resume.iteration if resume else None
            )
        )

        # Model, data, optimizer.
        seed_everything(cfg.seed)  # the same initial weights on every rank
        log_finetuning(cfg)
        model = build_training_model(
            cfg, initialise=resume is None, expressions=expressions_of(index, cfg.train_split)
        )
        model = place_model(model, cfg, info, device)
        data = TrainData.build(cfg, index, model, info, device)
        validate = build_validator(cfg, index, data.tokenizer, info, device)
        optimizer, scheduler, scaler = build_optimization(cfg, model, data.steps_per_epoch, device)
        order = data_order(cfg, info, data.sampler.num_samples)
        saver = Checkpointer(
            run_dir, cfg, info, model, optimizer, scheduler, scaler, order, job=agents
        )

        # Resume, or start with per-rank dropout and drop-path.
        if resume is not None:
            state = resume.restore(
                model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                order=order, info=info,
            )  # fmt: skip
        else:
            state = TrainState()
            seed_everything(cfg.seed + info.rank)
        runner = wrap_model(model, cfg, info, device)

        amp_dtype = parse_dtype(cfg.amp, param="amp", allowed=AMP_NAMES)
        loop_args = dict(
            steps_per_epoch=data.steps_per_epoch, grad_accum=cfg.grad_accum, device=device,
            amp_dtype=amp_dtype, channels_last=cfg.channels_last, dist=info, metrics=metrics,
            tracker=NonFiniteTracker(device, cfg.max_nonfinite), guard=BufferGuard(model),
            log_every=cfg.log_every, max_steps=cfg.checkpoint_every, progress=cfg.progress,
            no_target_weight=cfg.no_target_loss_weight,
        )  # fmt: skip
        log_plan(cfg, info, data.steps_per_epoch, run_dir)
        started, last_val = time.perf_counter(), None
        for epoch in range(state.epoch, cfg.epochs):
            state.epoch = epoch
            while not train_one_epoch(
                runner, data.loader_at(state), optimizer, scheduler, scaler, data.loss_fn,
                state=state, **loop_args,
            ).finished:  # fmt: skip
                saver.save_last(state)  # every checkpoint_every steps inside the epoch
            val = None
            if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
                last_val = val = validate(model, amp_dtype)
                metrics.write({"type": "val", "epoch": epoch, "iteration": state.iteration, **val})
                log_val_record({"epoch": epoch, **val})
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            if val is not None and val["overall_iou"] > state.best_oiou:
                state.best_oiou, state.best_epoch = val["overall_iou"], epoch
                saver.save_best(state, val)
            saver.save_last(state)
        return finish(cfg, info, state, run_dir, metrics, last_val, time.perf_counter() - started)


# ----------------------------------------------------------------------------- set-up


_launcher_watch_started = False


def exit_with_launcher(poll_s: float = 1.0) -> None:
    """Under torchrun, end this worker (SIGTERM) when its launcher dies.

    Killing only the ``torchrun`` process would otherwise leave its workers
    training and writing the run directory. A thread polls the parent pid
    (portable, unlike ``prctl(PR_SET_PDEATHSIG)``, and unaffected by which
    thread of the launcher started the worker).
    """
    global _launcher_watch_started
    if "TORCHELASTIC_RUN_ID" not in os.environ or _launcher_watch_started:
        return
    launcher = os.getppid()

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(poll_s)
        log.warning("the torchrun launcher (pid %d) is gone: stopping this worker", launcher)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lavt-launcher-watch", daemon=True).start()
    _launcher_watch_started = True


def preflight(cfg: TrainConfig, info: DistInfo, agents: list[str]) -> tuple[Resume | None, Any]:
    """Check what can be refused before anything is written: resume, model, init file, data.

    A job restarted by torchrun continues its own last checkpoint (:mod:`lavt.train.elastic`).
    """
    resume = open_resume(cfg, info, agents)
    resolve_model_config(cfg)  # a bad arch or mha
    if cfg.init_weights and resume is None:  # a path (file or folder), or a name fetched now
        if not resolve_weights(cfg.init_weights, param="init_weights").exists():
            raise InputError(
                f"init_weights {cfg.init_weights}: file not found", param="init_weights"
            )
    return resume, load_index(cfg)


def load_index(cfg: TrainConfig):
    """The refer index of ``cfg``'s dataset (checked on load)."""
    from lavt.data.refer import ReferIndex

    return ReferIndex(cfg.data_root, cfg.dataset, cfg.splitBy)


def prepare_run_dir(cfg: TrainConfig, info: DistInfo, resume: Resume | None) -> Path:
    """Create the run directory; write ``config.yaml`` for a new run or an accepted change.

    On resume with an unchanged config the saved file is left as it is; an
    accepted change keeps the previous file as ``config.before-<time>.yaml``.
    """
    run_dir = cfg.run_dir
    path = run_dir / "config.yaml"
    changed = resume is not None and bool(resume.changed)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if changed and path.exists():
            path.rename(run_dir / f"config.before-{time.strftime('%Y%m%d-%H%M%S')}.yaml")
        if resume is None or not path.exists():
            save_config(cfg, path)
    barrier()
    return run_dir


def place_model(model: nn.Module, cfg: TrainConfig, info: DistInfo, device) -> nn.Module:
    """Move to ``device`` with the memory layout and recomputation ``cfg`` asks for."""
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if info.enabled and device.type != "cpu":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif info.enabled:
        log.info("decoder BatchNorm is not synchronised on the CPU (SyncBatchNorm needs a GPU)")
    return model


def wrap_model(model: nn.Module, cfg: TrainConfig, info: DistInfo, device) -> nn.Module:
    """DDP across processes, then ``torch.compile``; checkpoints use the unwrapped ``model``."""
    runner = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        runner = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return torch.compile(runner) if cfg.compile else runner


@dataclass
class TrainData:
    """The training split, its resumable sampler and loader, and the loss."""

    cfg: TrainConfig
    tokenizer: Any
    sampler: ResumableSampler
    loader: DataLoader
    generator: torch.Generator
    steps_per_epoch: int
    loss_fn: Any

    @classmethod
    def build(cls, cfg: TrainConfig, index, model: nn.Module, info: DistInfo, device) -> TrainData:
        from lavt.data.dataset import ReferTrainDataset, collate_train
        from lavt.tokenizer import tokenizer_for_model
        from lavt.train.losses import build_loss

        tokenizer = tokenizer_for_model(model)
        refs = index.check_images(index.split(cfg.train_split), skip_missing=cfg.skip_missing)
        dataset = ReferTrainDataset(
            index, refs, tokenizer=tokenizer, img_size=cfg.img_size, seed=cfg.seed
        )  # one item per object, one random expression per epoch
        sampler = ResumableSampler(
            dataset, num_replicas=info.world_size, rank=info.rank, seed=cfg.seed
        )
        generator = torch.Generator()  # keeps the global RNG out of the data order
        loader = DataLoader(
            dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
            pin_memory=device.type == "cuda", drop_last=True, collate_fn=collate_train,
            generator=generator,
        )  # fmt: skip
        steps = sampler.num_samples // cfg.batch_size // cfg.grad_accum
        if steps < 1:
            raise InputError(
                f"the {cfg.train_split} split has {len(dataset)} samples: not one step of "
                f"{info.world_size} process(es) x batch_size {cfg.batch_size} x "
                f"grad_accum {cfg.grad_accum}"
            )
        return cls(cfg, tokenizer, sampler, loader, generator, steps, build_loss(cfg.loss))

    def loader_at(self, state: TrainState) -> DataLoader:
        """The loader positioned at ``state``: its epoch's order, from the batch reached."""
        self.sampler.set_epoch(state.epoch)
        self.sampler.set_start(state.batch_in_epoch * self.cfg.batch_size)
        if hasattr(self.loader.dataset, "set_epoch"):
            self.loader.dataset.set_epoch(state.epoch)
        self.generator.manual_seed(self.cfg.seed * 100003 + state.epoch)
        return self.loader


def build_validator(cfg: TrainConfig, index, tokenizer, info: DistInfo, device):
    """``validate(model, amp_dtype) -> metrics`` (percentages) over the validation split.

    Through the evaluation driver shared with ``lavt evaluate``: each process
    evaluates its shard of the objects and the integer sums are merged. Every
    rank evaluates rank 0's model, the one that is saved (unsynchronised
    BatchNorm statistics differ).
    """
    from lavt.data.dataset import ReferEvalDataset
    from lavt.evaluation import GresSettings, run_evaluation

    refs = index.check_images(index.split(cfg.val_split), skip_missing=cfg.skip_missing)
    dataset = ReferEvalDataset(index, refs, tokenizer=tokenizer, img_size=cfg.img_size)

    def validate(model: nn.Module, amp_dtype: torch.dtype | None) -> dict[str, Any]:
        plain = unwrap_model(model)
        if info.enabled:
            for buffer in plain.buffers():
                torch_dist.broadcast(buffer, src=0)
        result = run_evaluation(
            plain, dataset, device=device, batch_size=cfg.val_batch_size or cfg.batch_size,
            workers=cfg.workers, dist=info, amp=amp_dtype, keep_records=False,
            gres=GresSettings() if index.generalized else None,
        )  # fmt: skip
        plain.train()
        out = {**result.summary(), "num_expressions": result.metrics.num_expressions}
        out.pop("num_objects", None)
        if index.generalized:  # GRES: the best checkpoint is the one of the best cIoU
            out["overall_iou"] = out["cIoU"]
        return out

    return validate


def build_optimization(cfg: TrainConfig, model: nn.Module, steps_per_epoch: int, device):
    """AdamW over the recipe's groups, the per-step polynomial LR, the fp16 GradScaler."""
    from lavt.train.optim import build_optimizer, build_scheduler

    optimizer = build_optimizer(model, lr=cfg.lr, weight_decay=cfg.wd)
    scheduler = build_scheduler(
        optimizer,
        total_iters=steps_per_epoch * cfg.epochs,
        warmup_iters=cfg.warmup_iters,
        power=cfg.lr_power,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    return optimizer, scheduler, scaler


# ----------------------------------------------------------------------------- saving


class Checkpointer:
    """Writes ``last.pt`` (everything to continue) and ``best.pt`` from the unwrapped model."""

    def __init__(
        self, run_dir, cfg, info, model, optimizer, scheduler, scaler, order, *, job=()
    ) -> None:
        self.run_dir, self.cfg, self.info, self.model = run_dir, cfg, info, model
        self.optimizer, self.scheduler, self.scaler, self.order = (
            optimizer,
            scheduler,
            scaler,
            order,
        )
        self.job = list(job)  # the torchrun agents of this job (lavt.train.elastic)

    def save_last(self, state: TrainState) -> None:
        """A collective (the RNG states of every rank are gathered): every rank calls it."""
        from lavt.checkpoint import save_checkpoint

        rngs = gather_rng_states(self.info)
        if self.info.is_main:
            save_checkpoint(
                self.run_dir / "last.pt",
                unwrap_model(self.model),
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                **state.as_dict(),
                rng=rngs,
                data_order=self.order,
                train_config=self.cfg.to_dict(),
                job=self.job,
            )

    def save_best(self, state: TrainState, val: dict[str, Any]) -> None:
        from lavt.checkpoint import save_checkpoint

        if self.info.is_main:
            save_checkpoint(
                self.run_dir / "best.pt",
                unwrap_model(self.model),
                epoch=state.best_epoch,
                iteration=state.iteration,
                val=val,
                train_config=self.cfg.to_dict(),
            )


def log_plan(cfg: TrainConfig, info: DistInfo, steps_per_epoch: int, run_dir: Path) -> None:
    per_step = info.world_size * cfg.batch_size * cfg.grad_accum
    log.info(
        "training %d epochs x %d iterations (%d process(es) x batch %d x accumulation %d = %d "
        "samples a step), run directory %s",
        cfg.epochs, steps_per_epoch, info.world_size, cfg.batch_size, cfg.grad_accum,
        per_step, run_dir,
    )  # fmt: skip


def finish(cfg, info, state: TrainState, run_dir: Path, metrics, last_val, wall: float) -> dict:
    """Plot the curves (rank 0) and return the run's summary."""
    if info.is_main:
        plotted = plot_curves(metrics.path, run_dir / "curves.png")
        log.info(
            "done: %d iterations in %.1f s; best overall IoU %.2f at epoch %d; %s",
            state.iteration, wall, state.best_oiou, state.best_epoch,
            f"curves in {run_dir / 'curves.png'}" if plotted else "no plot",
        )  # fmt: skip
    return {
        "run_dir": str(run_dir),
        "iterations": state.iteration,
        "epochs": state.epoch,
        "best_oiou": state.best_oiou,
        "best_epoch": state.best_epoch,
        "last_val": last_val,
        "skipped_steps": state.skipped_steps,
        "wall_s": wall,
    }
