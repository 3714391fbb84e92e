"""Training: the published LAVT recipe (LAVT_SPEC section 6), distributed and resumable.

One process (CPU, or one GPU)::

    lavt train --config configs/refcoco_lavt.yaml --data-root ./refer/data

One node, 4 GPUs (the reference ``lavt`` setting: batch 8 per GPU, 32 in total)::

    torchrun --standalone --nproc_per_node 4 -m lavt train --config configs/refcoco_lavt.yaml

Two nodes with 4 GPUs each; run the same command on every node, with HOST the
address of one of them (the c10d rendezvous needs no ranks by hand)::

    torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        --rdzv_id refcoco_lavt -m lavt train --config configs/refcoco_lavt.yaml

The run directory (``--output-dir``/``--model_id``) must be on storage every
node sees: rank 0 writes it, every rank reads the checkpoint on resume.

Structure (torchvision's reference scripts): :func:`main` builds everything
from a resolved config dict, :func:`train_one_epoch` runs one pass over the
training objects, validation after each epoch goes through
:func:`lavt.engine.evaluate`. Checkpoints (``last.pt``, ``best.pt``) are written
atomically from the unwrapped model and hold everything needed to continue
bit-exactly: optimizer, scheduler, scaler, epoch, iteration, the batch reached
in the epoch, every rank's RNG states and the data order (seed, epoch, world
size, batch size).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from lavt.errors import CheckpointError, InputError, LavtError
from lavt.hub import resolve_weights
from lavt.runtime import DistInfo, cleanup_distributed, init_distributed

log = logging.getLogger("lavt")

# ----------------------------------------------------------------------------- configuration

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Every config key with its default (the reference's defaults where it has one).
DEFAULTS: dict[str, Any] = {
    # data
    "dataset": "refcoco",
    "splitBy": "unc",
    "data_root": "./refer/data",
    "train_split": "train",
    "val_split": "val",
    "skip_missing": False,
    # model
    "model": "lavt",
    "swin_type": "base",
    "window12": None,  # None: 12 when the Swin weights' file name says window12, else 7
    "mha": "",
    "drop_path": 0.3,
    "fusion_drop": 0.0,
    "img_size": 480,
    "arch": None,  # custom architecture (replaces swin_type/window12), see resolve_model_config
    "pretrained_swin_weights": None,
    "text_encoder": None,  # Hugging Face name or local directory of a BERT
    "text_trainable": "0-9",
    "init_weights": None,  # a LAVT checkpoint to fine-tune from (weights only)
    # optimisation
    "batch_size": 8,  # per process
    "val_batch_size": None,  # default: batch_size
    "lr": 5e-5,
    "wd": 1e-2,
    "epochs": 40,
    "warmup_iters": 0,
    "lr_power": 0.9,
    "loss": "ce",
    "grad_accum": 1,
    "amp": "none",
    "grad_checkpointing": False,
    "compile": False,
    "channels_last": False,
    "max_nonfinite": 10,
    # run
    "model_id": None,  # run name; default "<model>_<dataset>"
    "output_dir": "runs",
    "resume": None,  # None, "auto" or a checkpoint path
    "seed": 0,
    "device": "auto",
    "threads": None,
    "workers": 4,
    "log_every": 50,
    "checkpoint_every": 0,  # optimizer steps between mid-epoch checkpoints; 0: epoch ends only
    "val_every": 1,
    "progress": True,
}

_TYPES: dict[str, type] = {
    "window12": bool,
    "arch": dict,
    "pretrained_swin_weights": str,
    "text_encoder": str,
    "init_weights": str,
    "val_batch_size": int,
    "model_id": str,
    "resume": str,
    "threads": int,
}
_TYPES.update({k: type(v) for k, v in DEFAULTS.items() if v is not None})
_POSITIVE = ("batch_size", "epochs", "grad_accum", "img_size", "log_every", "val_every")
_NON_NEGATIVE = ("warmup_iters", "checkpoint_every", "max_nonfinite", "workers", "seed")


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check (and convert where unambiguous) one config value against its type."""
    if value is None:
        return None
    kind = _TYPES[key]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    elif isinstance(value, kind):
        return value
    what = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    raise InputError(f"{source}: {key} must be {what.get(kind, 'a mapping')}, got {value!r}")


def load_config_file(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config; a ``base: other.yaml`` key (relative to the file) is read first."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--config {path}: file not found")
    if path.resolve() in _seen:
        raise InputError(f"--config {path}: 'base' chain loops back to this file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0]
        raise InputError(f"--config {path}: not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise InputError(f"--config {path}: expected a mapping of config keys")
    base = data.pop("base", None)
    out: dict[str, Any] = {}
    if base is not None:
        out = load_config_file(path.parent / str(base), (*_seen, path.resolve()))
    for key, value in data.items():
        if key not in DEFAULTS:
            raise InputError(f"--config {path}: unknown config key {key!r}")
        out[key] = _merge(out.get(key), value)
    return out


def _merge(base: Any, value: Any) -> Any:
    """A child config's mapping updates its base's key by key (``arch.text`` too)."""
    if isinstance(base, dict) and isinstance(value, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in value.items()}}
    return value


def parse_override(item: str) -> tuple[list[str], Any]:
    """``key=value`` (``arch.embed_dim=32`` for nested keys; the value is read as YAML)."""
    import yaml

    if "=" not in item:
        raise InputError(f"override {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if parts[0] not in DEFAULTS or not all(parts):
        raise InputError(f"override {item!r}: unknown config key {parts[0]!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def resolve_config(
    config_file: str | os.PathLike | None = None,
    cli: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Defaults < YAML file (with its ``base`` chain) < command-line flags < ``key=value``."""
    cfg = dict(DEFAULTS)
    if config_file is not None:
        cfg.update(load_config_file(config_file))
    for key, value in (cli or {}).items():
        if key not in DEFAULTS:
            raise InputError(f"unknown config key {key!r}")
        cfg[key] = value
    for item in overrides:
        parts, value = parse_override(item)
        if len(parts) == 1:
            cfg[parts[0]] = value
            continue
        if parts[0] != "arch":
            raise InputError(f"override {item!r}: only arch.* keys are nested")
        for part in reversed(parts[1:]):  # arch.text.num_layers=2 -> {"text": {"num_layers": 2}}
            value = {part: value}
        cfg["arch"] = _merge(cfg["arch"], value)
    return validate_config(cfg)


def validate_config(cfg: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Fill defaults, check types and ranges; returns a new dict."""
    from lavt.engine.losses import LOSSES
    from lavt.modeling.config import PRESETS, VARIANTS

    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise InputError(f"{source}: unknown config keys {unknown}")
    out = {**DEFAULTS, **cfg}
    out = {key: _coerce(key, value, source) for key, value in out.items()}
    choices = {
        "model": VARIANTS,
        "loss": LOSSES,
        "amp": tuple(AMP_DTYPES),
        "swin_type": PRESETS,
    }
    for key, allowed in choices.items():
        if out[key] not in allowed:
            raise InputError(
                f"{source}: {key} must be one of {', '.join(allowed)}, got {out[key]!r}"
            )
    for key in _POSITIVE:
        if out[key] < 1:
            raise InputError(f"{source}: {key} must be at least 1, got {out[key]}")
    for key in _NON_NEGATIVE:
        if out[key] < 0:
            raise InputError(f"{source}: {key} must not be negative, got {out[key]}")
    if out["val_batch_size"] is not None and out["val_batch_size"] < 1:
        raise InputError(f"{source}: val_batch_size must be at least 1")
    if not out["lr"] > 0 or out["wd"] < 0:
        raise InputError(f"{source}: lr must be positive and wd not negative")
    if not 0.0 <= out["drop_path"] < 1.0:
        raise InputError(f"{source}: drop_path must be in [0, 1), got {out['drop_path']}")
    if out["init_weights"] and (out["pretrained_swin_weights"] or out["text_encoder"]):
        raise InputError(
            f"{source}: init_weights sets every weight; drop pretrained_swin_weights "
            "and text_encoder"
        )
    if out["model_id"] is None:
        out["model_id"] = f"{out['model']}_{out['dataset']}"
    return out


def resolve_model_config(cfg: dict[str, Any]):
    """The :class:`LAVTConfig` and tokenizer vocabulary (None: bert-base-uncased) of ``cfg``.

    Without ``arch``: the Swin preset ``swin_type`` with BERT-base, window 12 or 7.
    ``arch`` instead gives the architecture directly: any ``LAVTConfig`` field
    (``embed_dim``, ``depths``, ``num_heads``, ``window_size``, ``mlp_ratio``,
    ``pwam_heads``), ``text`` (``TextEncoderConfig`` fields) and ``vocab``:
    ``synthetic`` (the synthetic dataset's word list), ``bert`` (default) or a
    vocabulary file, one token a line.
    """
    from lavt.modeling.config import LAVTConfig, TextEncoderConfig, preset_config
    from lavt.tokenizer import Tokenizer

    common = {
        "variant": cfg["model"],
        "img_size": cfg["img_size"],
        "drop_path_rate": cfg["drop_path"],
        "fusion_drop": cfg["fusion_drop"],
    }
    if cfg["mha"]:
        try:
            heads = tuple(int(h) for h in str(cfg["mha"]).split("-"))
        except ValueError:
            heads = ()
        if len(heads) != 4:
            raise InputError(f"--mha {cfg['mha']!r}: expected four head counts a-b-c-d")
        common["pwam_heads"] = heads
    arch = dict(cfg["arch"] or {})
    vocab = None
    try:
        if not arch:
            window12 = cfg["window12"]
            if window12 is None:
                window12 = "window12" in str(cfg["pretrained_swin_weights"] or "")
            return preset_config(
                cfg["swin_type"], window_size=12 if window12 else 7, **common
            ), None
        vocab_spec = arch.pop("vocab", "bert")
        text = dict(arch.pop("text", None) or {})
        clash = sorted(set(arch) & {*common, "text"})
        if clash:
            raise InputError(f"arch: set {clash} with the top-level keys, not inside arch")
        if vocab_spec == "synthetic":
            from lavt.data.synthetic import synthetic_vocabulary

            vocab = list(synthetic_vocabulary())
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


def save_config(cfg: dict[str, Any], path: Path) -> None:
    """Write the resolved config as YAML, atomically (reusable with ``--config``)."""
    import yaml

    text = "# resolved config of this run: lavt train --config <this file>\n"
    text += yaml.safe_dump(cfg, sort_keys=False)
    _atomic_write_text(path, text)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- distributed


def _all_reduce(tensor: torch.Tensor, info: DistInfo, op=torch_dist.ReduceOp.SUM) -> torch.Tensor:
    if info.enabled:
        torch_dist.all_reduce(tensor, op=op)
    return tensor


# ----------------------------------------------------------------------------- RNG state


def rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain numbers (``weights_only``-loadable)."""
    version, internal, gauss = random.getstate()
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` recorded."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["key"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(info: DistInfo) -> list[dict[str, Any]]:
    """The RNG states of every rank, indexed by rank."""
    state = rng_state()
    if not info.enabled:
        return [state]
    out: list[Any] = [None] * info.world_size
    torch_dist.all_gather_object(out, state)
    return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- data order


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (order from seed and epoch) that can start an epoch part-way.

    ``set_start(n)`` skips the first ``n`` indices of this rank's share for the
    next iteration, so a resumed run sees exactly the batches the interrupted
    one had not consumed yet.
    """

    def __init__(self, dataset, *, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)


# ----------------------------------------------------------------------------- training state


@dataclass
class TrainState:
    """Where the run is. ``batch_in_epoch`` counts batches of ``epoch`` already consumed."""

    epoch: int = 0
    iteration: int = 0
    batch_in_epoch: int = 0
    best_oiou: float = -1.0
    best_epoch: int = -1
    skipped_steps: int = 0


class NonFiniteTracker:
    """Counts steps skipped for a NaN/inf loss on the device, without synchronising.

    ``check`` (at logging intervals and before checkpoints) syncs once and stops
    the run when ``limit`` consecutive steps were non-finite.
    """

    def __init__(self, device: torch.device, limit: int) -> None:
        self.limit = limit
        self.streak = torch.zeros((), device=device)
        self.max_streak = torch.zeros((), device=device)
        self.total = torch.zeros((), device=device)

    def update(self, found: torch.Tensor) -> None:
        """found: () float, 1.0 when this step's loss was not finite."""
        self.streak = (self.streak + 1.0) * found
        self.max_streak = torch.maximum(self.max_streak, self.streak)
        self.total = self.total + found

    def check(self, state: TrainState) -> None:
        max_streak, total = (int(v) for v in torch.stack([self.max_streak, self.total]).tolist())
        state.skipped_steps += total
        self.total.zero_()
        if self.limit and max_streak >= self.limit:
            raise LavtError(
                f"loss was NaN or inf for {max_streak} steps in a row (--max-nonfinite "
                f"{self.limit}); stopped at iteration {state.iteration} without saving; "
                "lower --lr, try --amp bf16 or none, or resume from the last checkpoint"
            )
        self.max_streak.copy_(self.streak)


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


@dataclass
class TrainContext:
    """Everything :func:`train_one_epoch` needs besides model, data and optimizer."""

    device: torch.device
    dist: DistInfo
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    amp_dtype: torch.dtype | None
    grad_accum: int
    iters_per_epoch: int
    log_every: int
    checkpoint_every: int
    channels_last: bool
    tracker: NonFiniteTracker
    guard: BufferGuard
    save_last: Callable[[TrainState], None]
    log_record: Callable[[dict[str, Any]], None]
    progress: bool = True
    timer: dict[str, float] = field(default_factory=dict)


def _batch_to_device(batch: dict[str, torch.Tensor], ctx: TrainContext):
    """image (B,3,H,W), target (B,H,W), input_ids (B,N), attention_mask (B,N) on the device."""
    nb = ctx.device.type == "cuda"
    image = batch["image"].to(ctx.device, non_blocking=nb)
    if ctx.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    return (
        image,
        batch["target"].to(ctx.device, non_blocking=nb),
        batch["input_ids"].to(ctx.device, non_blocking=nb),
        batch["attention_mask"].to(ctx.device, non_blocking=nb),
    )


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


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    *,
    state: TrainState,
    ctx: TrainContext,
) -> None:
    """Train from ``state.batch_in_epoch`` to the end of ``state.epoch``.

    One optimizer step per ``grad_accum`` batches; a step with a non-finite
    loss is skipped (and counted). Logs every ``log_every`` steps (the only
    host-device synchronisation) and writes ``last`` every ``checkpoint_every``
    steps.
    """
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    model.train()
    device, accum = ctx.device, ctx.grad_accum
    batches_total = ctx.iters_per_epoch * accum
    loss_sum = torch.zeros((), device=device)
    loss_count = torch.zeros((), device=device)
    found = torch.zeros((), device=device)
    samples, t_start = 0, time.perf_counter()
    autocast = torch.autocast(
        device_type=device.type,
        dtype=ctx.amp_dtype or torch.float32,
        enabled=ctx.amp_dtype is not None,
    )
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(
        total=ctx.iters_per_epoch,
        initial=state.batch_in_epoch // accum,
        desc=f"epoch {state.epoch}",
        unit="step",
        disable=not (ctx.progress and ctx.dist.is_main),
        dynamic_ncols=True,
        mininterval=1.0 if os.isatty(2) else 30.0,
    )
    with bar, logging_redirect_tqdm(loggers=[log]):
        for batch in loader:
            if state.batch_in_epoch >= batches_total:
                break
            image, target, input_ids, attention_mask = _batch_to_device(batch, ctx)
            micro = state.batch_in_epoch % accum
            if micro == 0:
                ctx.guard.snapshot()
                found.zero_()
            last_micro = micro == accum - 1
            sync = (
                model.no_sync() if ctx.dist.enabled and not last_micro else contextlib.nullcontext()
            )
            with sync:
                with autocast:
                    logits = model(image, input_ids, attention_mask)  # (B, 2, H, W)
                loss = ctx.loss_fn(logits, target)
                scaler.scale(loss / accum).backward()
            loss = loss.detach()
            finite = torch.isfinite(loss)
            found = torch.maximum(found, (~finite).float())
            loss_sum += torch.where(finite, loss, 0.0)
            loss_count += finite.float()
            samples += image.shape[0]
            state.batch_in_epoch += 1
            if not last_micro:
                continue

            _all_reduce(found, ctx.dist, torch_dist.ReduceOp.MAX)
            optimizer_step(optimizer, scaler, found)
            ctx.guard.restore_if(found)
            ctx.tracker.update(found)
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            state.iteration += 1
            bar.update(1)

            if state.iteration % ctx.log_every == 0:
                totals = _all_reduce(torch.stack([loss_sum, loss_count]), ctx.dist).tolist()
                ctx.tracker.check(state)
                elapsed = time.perf_counter() - t_start
                record = {
                    "type": "train",
                    "epoch": state.epoch,
                    "iteration": state.iteration,
                    "loss": totals[0] / totals[1] if totals[1] else float("nan"),
                    "lr": lr,
                    "skipped_steps": state.skipped_steps,
                    "samples_per_s": samples * ctx.dist.world_size / max(elapsed, 1e-9),
                }
                ctx.log_record(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
                loss_sum.zero_()
                loss_count.zero_()
                samples, t_start = 0, time.perf_counter()
            if (
                ctx.checkpoint_every
                and state.iteration % ctx.checkpoint_every == 0
                and state.batch_in_epoch < batches_total  # the epoch end saves anyway
            ):
                ctx.tracker.check(state)
                ctx.save_last(state)
    ctx.tracker.check(state)


# ----------------------------------------------------------------------------- metrics log


class MetricsLog:
    """Rank 0's JSON-lines metrics file, plus TensorBoard scalars when it is installed."""

    def __init__(self, run_dir: Path, *, enabled: bool, resume_iteration: int | None) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if resume_iteration is not None and self.path.exists():
            # lines written after the checkpoint we resume from describe steps
            # that will be redone: drop them
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("iteration", 0) <= resume_iteration
            ]
            _atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        elif self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: metrics go to %s only", self.path)
        else:
            self.writer = SummaryWriter(
                str(run_dir / "tensorboard"), purge_step=resume_iteration or None
            )
        self._file = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {**record, "time": round(time.time(), 3)}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.writer is not None:
            kind = record["type"]
            for key, value in record.items():
                if key not in ("type", "epoch", "iteration", "time") and isinstance(
                    value, int | float
                ):
                    self.writer.add_scalar(f"{kind}/{key}", value, record["iteration"])

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: Path, out_path: Path) -> bool:
    """PNG of the training loss and the validation IoUs; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        log.info("matplotlib is not installed: no training-curve plot (pip install matplotlib)")
        return False
    records = read_metrics(metrics_path)
    train = [r for r in records if r["type"] == "train"]
    val = [r for r in records if r["type"] == "val"]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([r["iteration"] for r in train], [r["loss"] for r in train], lw=1)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss")
    ax_loss.grid(alpha=0.3)
    for key, label in (("overall_iou", "overall IoU"), ("mean_iou", "mean IoU")):
        epochs = [r["epoch"] + 1 for r in val]
        ax_val.plot(epochs, [r[key] for r in val], marker="o", label=label)
    ax_val.set_xlabel("epochs completed")
    ax_val.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_val.set_ylabel("validation (%)")
    ax_val.grid(alpha=0.3)
    if val:
        ax_val.legend()
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".png", dir=out_path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, out_path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return True


# ----------------------------------------------------------------------------- checkpoints


def resume_path(cfg: dict[str, Any], run_dir: Path) -> Path | None:
    """The checkpoint to continue from, if any (``--resume auto|PATH``)."""
    last = run_dir / "last.pt"
    resume = cfg["resume"]
    if resume is None:
        if last.exists():
            raise InputError(
                f"{run_dir} already holds a run (last.pt): pass --resume auto to continue it, "
                "or choose another --model_id or --output-dir"
            )
        return None
    if resume == "auto":
        if last.exists():
            return last
        log.info("--resume auto: no %s yet, starting a new run", last)
        return None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"--resume {path}: checkpoint not found")
    return path


def data_order(cfg: dict[str, Any], info: DistInfo, num_samples: int) -> dict[str, int]:
    """What fixes the sequence of batches: with these equal, a resume sees the same data."""
    return {
        "seed": cfg["seed"],
        "world_size": info.world_size,
        "batch_size": cfg["batch_size"],
        "grad_accum": cfg["grad_accum"],
        "num_samples": num_samples,
    }


def read_resume_checkpoint(path: Path, order: dict[str, int]) -> dict[str, Any]:
    """Read a ``last.pt`` and refuse it when its data order differs from ``order``.

    Only ``seed``, ``world_size``, ``batch_size`` and ``grad_accum`` of ``order``
    are compared: with these equal, the resumed run sees the batches and the
    schedule the interrupted one would have.
    """
    from lavt.checkpoint import read_torch_file

    ckpt = read_torch_file(path, allow_namespace=False)
    if not isinstance(ckpt, dict) or "optimizer" not in ckpt or "data_order" not in ckpt:
        raise CheckpointError(
            f"--resume {path}: holds no training state (optimizer, data order); "
            "resume from the last.pt of a run"
        )
    saved = ckpt["data_order"]
    same = ("world_size", "batch_size", "grad_accum", "seed")
    if any(saved.get(k) != order[k] for k in same):
        was = ", ".join(f"{k} {saved.get(k)}" for k in same)
        now = ", ".join(f"{k} {order[k]}" for k in same)
        raise CheckpointError(
            f"--resume {path}: written with {was}; this run has {now}: the data order and "
            "the schedule would not continue; resume with the same number of processes, "
            "--batch-size, --grad-accum and --seed"
        )
    return ckpt


def load_training_state(
    ckpt: dict[str, Any],
    *,
    source: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
    order: dict[str, int],
    info: DistInfo,
) -> TrainState:
    """Restore a ``last.pt`` read by :func:`read_resume_checkpoint`.

    Weights, optimizer, scheduler, scaler and this rank's RNGs; ``source`` names
    the file in messages.
    """
    from lavt.checkpoint import load_state_dict_strict

    saved = ckpt["data_order"]
    if saved.get("num_samples") != order["num_samples"]:
        log.warning(
            "the training split now has %d samples per process, the checkpoint's run had %s",
            order["num_samples"],
            saved.get("num_samples"),
        )
    load_state_dict_strict(model, ckpt["model"], source=str(source))
    optimizer.load_state_dict(ckpt["optimizer"])
    sched = dict(ckpt["scheduler"])
    sched["lr_lambdas"] = [None] * len(scheduler.lr_lambdas)  # keep this run's rule
    scheduler.load_state_dict(sched)
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"][info.rank])
    state = TrainState(
        epoch=int(ckpt["epoch"]),
        iteration=int(ckpt["iteration"]),
        batch_in_epoch=int(ckpt["batch_in_epoch"]),
        best_oiou=float(ckpt.get("best_oiou", -1.0)),
        best_epoch=int(ckpt.get("best_epoch", -1)),
        skipped_steps=int(ckpt.get("skipped_steps", 0)),
    )
    log.info(
        "resumed from %s: epoch %d, batch %d of it, iteration %d",
        source,
        state.epoch,
        state.batch_in_epoch,
        state.iteration,
    )
    return state


# ----------------------------------------------------------------------------- main


def _setup_logging(run_dir: Path, info: DistInfo) -> tuple[logging.Handler | None, int]:
    """Console on rank 0 (warnings only elsewhere) and ``train.log`` in the run directory."""
    from lavt.cli import setup_logging

    setup_logging()
    old_level = log.level
    if not info.is_main:
        log.setLevel(logging.WARNING)
        return None, old_level
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler, old_level


def main(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train as ``cfg`` (see :data:`DEFAULTS`) says; returns a summary of the run.

    Launched by torchrun, every process calls this; rank 0 writes the run
    directory ``<output_dir>/<model_id>``: ``config.yaml``, ``train.log``,
    ``metrics.jsonl``, ``last.pt``, ``best.pt``, ``curves.png``.
    """
    cfg = validate_config(cfg)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    info, device = init_distributed(cfg["device"])
    try:
        return _train(cfg, info, device)
    finally:
        cleanup_distributed(info)


def _train(cfg: dict[str, Any], info: DistInfo, device: torch.device) -> dict[str, Any]:
    run_dir = Path(cfg["output_dir"]) / cfg["model_id"]
    resume = resume_path(cfg, run_dir)
    # Read once, here: an incompatible resume is refused before the run directory
    # changes; _fit takes the dict out of ``pending`` so that it is freed once loaded.
    pending: dict[str, Any] = {}
    if resume is not None:
        pending = {
            "path": resume,
            "ckpt": read_resume_checkpoint(resume, data_order(cfg, info, num_samples=-1)),
        }
    if (
        cfg["init_weights"]
        and not pending
        and not resolve_weights(cfg["init_weights"], param="init_weights").is_file()
    ):
        raise InputError(f"--init-weights {cfg['init_weights']}: file not found")
    index = load_index(cfg)  # bad data fails here, before the run directory is touched
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if info.enabled:
        torch_dist.barrier()
    handler, old_level = _setup_logging(run_dir, info)
    metrics = None
    try:
        if info.is_main:
            save_config(cfg, run_dir / "config.yaml")
        metrics = MetricsLog(
            run_dir,
            enabled=info.is_main,
            resume_iteration=int(pending["ckpt"]["iteration"]) if pending else None,
        )
        return _fit(
            cfg, info, device, run_dir=run_dir, resume=pending, index=index, metrics=metrics
        )
    finally:
        if metrics is not None:
            metrics.close()
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(old_level)


def build_training_model(cfg: dict[str, Any], *, initialise: bool) -> nn.Module:
    """The model of ``cfg`` on the CPU.

    With ``initialise``: from ``init_weights`` (a LAVT checkpoint), or from ImageNet
    Swin / BERT weights, when given; otherwise (or on resume) randomly initialised.
    """
    from lavt.checkpoint import load_bert_weights, load_lavt_weights, load_swin_imagenet_weights
    from lavt.engine.optim import configure_text_trainable
    from lavt.modeling import build_model

    model_config, vocab = resolve_model_config(cfg)
    model = build_model(model_config, vocab=vocab)
    if initialise and cfg["pretrained_swin_weights"]:
        load_swin_imagenet_weights(model, cfg["pretrained_swin_weights"])
    if initialise and cfg["text_encoder"]:
        load_bert_weights(model, cfg["text_encoder"])
    if initialise and cfg["init_weights"]:
        load_lavt_weights(model, cfg["init_weights"])
    layers = configure_text_trainable(model, cfg["text_trainable"])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info(
        "model: %s, Swin embed %d depths %s window %d, BERT %d layers x %d (trainable: %s); "
        "%.2fM parameters, %.2fM trained",
        model_config.variant,
        model_config.embed_dim,
        list(model_config.depths),
        model_config.window_size,
        model_config.text.num_layers,
        model_config.text.hidden_size,
        cfg["text_trainable"] if cfg["text_trainable"] in ("all", "none") else f"layers {layers}",
        total / 1e6,
        trainable / 1e6,
    )
    return model


def _fit(
    cfg: dict[str, Any],
    info: DistInfo,
    device: torch.device,
    *,
    run_dir: Path,
    resume: dict[str, Any],
    index,
    metrics: MetricsLog,
) -> dict[str, Any]:
    """Train; ``resume`` is empty or ``{"path", "ckpt"}`` (the ckpt is popped, then freed)."""
    from lavt.checkpoint import save_checkpoint, unwrap_model
    from lavt.data.dataset import collate_train
    from lavt.engine.losses import build_loss
    from lavt.engine.optim import build_optimizer, build_scheduler
    from lavt.tokenizer import tokenizer_for_model

    seed_everything(cfg["seed"])  # the same initial weights on every rank
    model = build_training_model(cfg, initialise=not resume)
    model.to(device)
    if cfg["channels_last"]:
        model.to(memory_format=torch.channels_last)
    if cfg["grad_checkpointing"]:
        model.set_grad_checkpointing(True)
    if info.enabled and device.type != "cpu":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif info.enabled:
        log.info("decoder BatchNorm is not synchronised on the CPU (SyncBatchNorm needs a GPU)")

    tokenizer = tokenizer_for_model(model)
    train_set = build_train_dataset(cfg, index, tokenizer)
    sampler = ResumableSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, seed=cfg["seed"]
    )
    loader_generator = torch.Generator()
    loader = DataLoader(
        train_set,
        batch_size=cfg["batch_size"],
        sampler=sampler,
        num_workers=cfg["workers"],
        pin_memory=device.type == "cuda",
        drop_last=True,
        collate_fn=collate_train,
        generator=loader_generator,  # keeps the global RNG out of the data order
    )
    iters_per_epoch = sampler.num_samples // cfg["batch_size"] // cfg["grad_accum"]
    if iters_per_epoch < 1:
        raise InputError(
            f"the {cfg['train_split']} split has {len(train_set)} samples: not one step of "
            f"{info.world_size} process(es) x --batch-size {cfg['batch_size']} x "
            f"--grad-accum {cfg['grad_accum']}"
        )
    validate = build_validator(cfg, index, tokenizer, info, device)

    optimizer = build_optimizer(model, lr=cfg["lr"], weight_decay=cfg["wd"])
    total_iters = iters_per_epoch * cfg["epochs"]
    scheduler = build_scheduler(
        optimizer, total_iters=total_iters, warmup_iters=cfg["warmup_iters"], power=cfg["lr_power"]
    )
    scaler = torch.amp.GradScaler(device.type, enabled=cfg["amp"] == "fp16")
    order = data_order(cfg, info, sampler.num_samples)
    if resume:
        state = load_training_state(
            resume.pop("ckpt"),
            source=resume["path"],
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            order=order,
            info=info,
        )
    else:
        state = TrainState()
        seed_everything(cfg["seed"] + info.rank)  # dropout and drop-path differ per rank

    runner: nn.Module = model
    if info.enabled:
        runner = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg["compile"]:
        runner = torch.compile(runner)

    def save_last(current: TrainState) -> None:
        rngs = gather_rng_states(info)  # collective: every rank calls it
        if info.is_main:
            save_checkpoint(
                run_dir / "last.pt",
                model,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(),
                epoch=current.epoch,
                iteration=current.iteration,
                batch_in_epoch=current.batch_in_epoch,
                best_oiou=current.best_oiou,
                best_epoch=current.best_epoch,
                skipped_steps=current.skipped_steps,
                rng=rngs,
                data_order=order,
                train_config=cfg,
            )

    ctx = TrainContext(
        device=device,
        dist=info,
        loss_fn=build_loss(cfg["loss"]),
        amp_dtype=AMP_DTYPES[cfg["amp"]],
        grad_accum=cfg["grad_accum"],
        iters_per_epoch=iters_per_epoch,
        log_every=cfg["log_every"],
        checkpoint_every=cfg["checkpoint_every"],
        channels_last=cfg["channels_last"],
        tracker=NonFiniteTracker(device, cfg["max_nonfinite"]),
        guard=BufferGuard(model),
        save_last=save_last,
        log_record=lambda record: _log_train(record, metrics),
        progress=cfg["progress"],
    )
    log.info(
        "training %d epochs x %d iterations (%d process(es) x batch %d x accumulation %d = %d "
        "samples a step), run directory %s",
        cfg["epochs"],
        iters_per_epoch,
        info.world_size,
        cfg["batch_size"],
        cfg["grad_accum"],
        info.world_size * cfg["batch_size"] * cfg["grad_accum"],
        run_dir,
    )
    started = time.perf_counter()
    last_val: dict[str, Any] | None = None
    for epoch in range(state.epoch, cfg["epochs"]):
        state.epoch = epoch
        sampler.set_epoch(epoch)
        sampler.set_start(state.batch_in_epoch * cfg["batch_size"])
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        loader_generator.manual_seed(cfg["seed"] * 100003 + epoch)
        train_one_epoch(runner, loader, optimizer, scheduler, scaler, state=state, ctx=ctx)
        is_last = epoch + 1 == cfg["epochs"]
        improved = False
        if (epoch + 1) % cfg["val_every"] == 0 or is_last:
            plain = unwrap_model(model)
            last_val = validate(plain, ctx.amp_dtype)
            plain.train()
            record = {"type": "val", "epoch": epoch, "iteration": state.iteration, **last_val}
            metrics.write(record)
            log.info(
                "epoch %d validation (%d expressions): overall IoU %.2f, mean IoU %.2f, P@0.5 %.2f",
                epoch,
                last_val["num_expressions"],
                last_val["overall_iou"],
                last_val["mean_iou"],
                last_val["precision@0.5"],
            )
            improved = last_val["overall_iou"] > state.best_oiou
        state.epoch, state.batch_in_epoch = epoch + 1, 0
        if improved:
            state.best_oiou, state.best_epoch = last_val["overall_iou"], epoch
            if info.is_main:
                save_checkpoint(
                    run_dir / "best.pt",
                    model,
                    epoch=epoch,
                    iteration=state.iteration,
                    val=last_val,
                    train_config=cfg,
                )
        save_last(state)
    wall = time.perf_counter() - started
    if info.is_main:
        plotted = plot_curves(metrics.path, run_dir / "curves.png")
        log.info(
            "done: %d iterations in %.1f s; best overall IoU %.2f at epoch %d; %s",
            state.iteration,
            wall,
            state.best_oiou,
            state.best_epoch,
            f"curves in {run_dir / 'curves.png'}" if plotted else "no plot",
        )
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


def _log_train(record: dict[str, Any], metrics: MetricsLog) -> None:
    metrics.write(record)
    log.info(
        "epoch %d iteration %d: loss %.4f, lr %.3g, %.1f samples/s%s",
        record["epoch"],
        record["iteration"],
        record["loss"],
        record["lr"],
        record["samples_per_s"],
        f", {record['skipped_steps']} steps skipped (non-finite loss)"
        if record["skipped_steps"]
        else "",
    )


# ----------------------------------------------------------------------------- data


def load_index(cfg: dict[str, Any]):
    """The refer index of ``cfg``'s dataset (checked on load)."""
    from lavt.data.refer import ReferIndex

    return ReferIndex(cfg["data_root"], cfg["dataset"], cfg["splitBy"])


def build_train_dataset(cfg: dict[str, Any], index, tokenizer):
    """The training split: one item per object, one random expression per epoch."""
    from lavt.data.dataset import ReferTrainDataset

    refs = index.check_images(index.split(cfg["train_split"]), skip_missing=cfg["skip_missing"])
    return ReferTrainDataset(
        index, refs, tokenizer=tokenizer, img_size=cfg["img_size"], seed=cfg["seed"]
    )


def build_validator(
    cfg: dict[str, Any], index, tokenizer, info: DistInfo, device: torch.device
) -> Callable[[nn.Module, torch.dtype | None], dict[str, Any]]:
    """``validate(model, amp_dtype) -> metrics`` over every expression of the validation split.

    The objects are sharded over the processes and the integer sums merged
    (:func:`lavt.engine.evaluate.evaluate`); metrics are percentages.
    """
    from lavt.engine.evaluate import evaluate, make_eval_loader

    from lavt.data.dataset import ReferEvalDataset

    refs = index.check_images(index.split(cfg["val_split"]), skip_missing=cfg["skip_missing"])
    dataset = ReferEvalDataset(index, refs, tokenizer=tokenizer, img_size=cfg["img_size"])
    loader = make_eval_loader(
        dataset,
        batch_size=cfg["val_batch_size"] or cfg["batch_size"],
        workers=cfg["workers"],
        rank=info.rank,
        world_size=info.world_size,
        pin_memory=device.type == "cuda",
    )

    def validate(model: nn.Module, amp_dtype: torch.dtype | None) -> dict[str, Any]:
        if info.enabled:  # every rank evaluates rank 0's model, the one that is saved
            for buffer in model.buffers():  # (unsynchronised BatchNorm statistics differ)
                torch_dist.broadcast(buffer, src=0)
        result = evaluate(model, loader, device, amp_dtype=amp_dtype, keep_records=False)
        return {**result.metrics.summary(), "num_expressions": result.metrics.num_expressions}

    return validate
