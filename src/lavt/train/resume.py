"""Resumable training: RNG states, a sampler that starts part-way, the training state.

A ``last.pt`` holds everything needed to continue bit-exactly: weights, optimizer,
scheduler, scaler, epoch, iteration, the batch reached in the epoch, every rank's
RNG states, the data order (seed, world size, batch size, accumulation) and the
run's config. A resume is refused when the data order differs (it could not
continue) and, unless ``allow_config_change``, when the config differs in a key
that changes the result.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DistributedSampler

from lavt.errors import CheckpointError, InputError
from lavt.runtime import DistInfo
from lavt.train.config import FIELDS, TrainConfig

log = logging.getLogger("lavt")

#: Keys that cannot change the trained weights or the metrics: they may differ on resume.
RESULT_NEUTRAL_KEYS = frozenset(
    {
        "data_root",
        "output_dir",
        "model_id",
        "resume",
        "allow_config_change",
        "device",
        "threads",
        "workers",
        "log_every",
        "checkpoint_every",
        "dist_timeout",
        "progress",
        "max_nonfinite",
        "val_batch_size",
    }
)

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
    key = npy["key"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], key, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states(info: DistInfo) -> list[dict[str, Any]]:
    """The RNG states of every rank, indexed by rank (a collective: every rank calls it)."""
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


def data_order(cfg: TrainConfig, info: DistInfo, num_samples: int) -> dict[str, int]:
    """What fixes the sequence of batches: with these equal, a resume sees the same data."""
    return {
        "seed": cfg.seed,
        "world_size": info.world_size,
        "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum,
        "num_samples": num_samples,
    }


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

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def resume_path(cfg: TrainConfig) -> Path | None:
    """The checkpoint to continue from, if any (``resume``: None, ``auto`` or a path).

    ``auto`` continues ``RUN/last.pt`` and starts the run when there is none, so
    the same command starts and restarts a pre-emptible job; it refuses when
    ``RUN`` does not exist while ``output_dir`` holds other runs (a mistyped
    ``model_id`` would otherwise start a new run silently).
    """
    run_dir = cfg.run_dir
    last = run_dir / "last.pt"
    if cfg.resume is None:
        if last.exists():
            raise InputError(
                f"{run_dir} already holds a run (last.pt): pass --resume auto to continue it, "
                "or choose another --model_id or --output-dir"
            )
        return None
    if cfg.resume == "auto":
        if last.exists():
            return last
        others = sorted({p.parent.name for p in Path(cfg.output_dir).glob("*/config.yaml")})
        if not run_dir.exists() and others:
            names = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise InputError(
                f"resume auto: nothing to resume in {run_dir} (it does not exist; "
                f"{cfg.output_dir} holds {names}); check model_id, or drop resume to start a run",
                param="resume",
            )
        log.info("resume auto: no %s yet, starting the run", last)
        return None
    path = Path(cfg.resume)
    if not path.is_file():
        raise CheckpointError(f"resume {path}: checkpoint not found", param="resume")
    return path


def read_resume_checkpoint(path: Path, order: dict[str, int]) -> dict[str, Any]:
    """Read a ``last.pt`` and refuse it when its data order differs from ``order``.

    Only ``seed``, ``world_size``, ``batch_size`` and ``grad_accum`` of ``order``
    are compared: with these equal, the resumed run sees the batches and the
    schedule the interrupted one would have.
    """
    from lavt.checkpoint import read_torch_file

    ckpt = read_torch_file(path, allow_namespace=False)
    check_data_order(ckpt, path, order)
    return ckpt


def check_data_order(ckpt: Any, path: Path, order: dict[str, int]) -> None:
    """Refuse ``ckpt`` (read from ``path``) unless it is a ``last.pt`` of ``order``'s data order."""
    if not isinstance(ckpt, dict) or "optimizer" not in ckpt or "data_order" not in ckpt:
        raise CheckpointError(
            f"resume {path}: holds no training state (optimizer, data order); "
            "resume from the last.pt of a run",
            param="resume",
        )
    saved = ckpt["data_order"]
    same = ("world_size", "batch_size", "grad_accum", "seed")
    if any(saved.get(k) != order[k] for k in same):
        was = ", ".join(f"{k} {saved.get(k)}" for k in same)
        now = ", ".join(f"{k} {order[k]}" for k in same)
        raise CheckpointError(
            f"resume {path}: written with {was}; this run has {now}: the data order and "
            "the schedule would not continue; resume with the same number of processes, "
            "--batch-size, --grad-accum and --seed",
            param="resume",
        )


def config_changes(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    """``key old -> new`` for every key of ``cfg`` that differs from ``saved``.

    A key ``saved`` lacks (an option added since) counts at its default.
    """
    now = cfg.to_dict()
    changes = []
    for key, option in FIELDS.items():
        before = saved.get(key, option.default)
        if key == "model_id" and before is None:
            continue
        if before != now[key] and not _same_number(before, now[key]):
            changes.append(f"{key} {before!r} -> {now[key]!r}")
    return changes


def _same_number(a: Any, b: Any) -> bool:
    numbers = int | float
    return isinstance(a, numbers) and isinstance(b, numbers) and float(a) == float(b)


def check_config_unchanged(
    ckpt: dict[str, Any], cfg: TrainConfig, source: Path
) -> tuple[list[str], list[str]]:
    """Refuse a resume whose config differs from the checkpoint's in a result-changing key.

    Returns (result-changing changes, accepted with ``cfg.allow_config_change``;
    neutral changes such as ``workers``), each as ``key old -> new``.
    """
    saved = ckpt.get("train_config")
    if not isinstance(saved, dict):
        log.warning("%s holds no training config: cannot check it against this run's", source)
        return [], []
    changes = config_changes(saved, cfg)
    neutral = [c for c in changes if c.split(" ", 1)[0] in RESULT_NEUTRAL_KEYS]
    changed = [c for c in changes if c not in neutral]
    if changed and not cfg.allow_config_change:
        raise InputError(
            f"resume {source}: the config differs from the run's: {'; '.join(changed)}; "
            f"resume with the run's config (--config {source.parent / 'config.yaml'}) or "
            "accept the change with --allow-config-change",
            param="resume",
        )
    return changed, neutral


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


@dataclass
class Resume:
    """A checkpoint accepted for resuming this run, and how its config differs."""

    path: Path
    ckpt: dict[str, Any] | None
    changed: list[str] = field(default_factory=list)  # accepted with allow_config_change
    neutral: list[str] = field(default_factory=list)
    why: str = ""  # logged with the changes, once train.log is open

    @classmethod
    def open(cls, cfg: TrainConfig, info: DistInfo) -> Resume | None:
        """The run's checkpoint to continue from (None: a new run); refusals happen here."""
        path = resume_path(cfg)
        if path is None:
            return None
        ckpt = read_resume_checkpoint(path, data_order(cfg, info, num_samples=-1))
        return cls(path, ckpt, *check_config_unchanged(ckpt, cfg, path))

    @property
    def iteration(self) -> int:
        return int(self.ckpt["iteration"]) if self.ckpt else -1

    def log_changes(self) -> None:
        if self.why:
            log.warning("%s", self.why)
        for change in self.changed:
            log.warning("resumed with a changed config (allow_config_change): %s", change)
        for change in self.neutral:
            log.info("resumed with %s (does not change the result)", change)

    def restore(self, **objects: Any) -> TrainState:
        """:func:`load_training_state`, then the checkpoint's memory is released."""
        state = load_training_state(self.ckpt, source=self.path, **objects)
        self.ckpt = None
        return state
