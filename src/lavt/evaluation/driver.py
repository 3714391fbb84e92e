"""One evaluation driver: dataset -> loader -> :func:`evaluate` -> summary and files.

Used by ``lavt evaluate`` (:func:`evaluate_splits`), and meant for
training-time validation and the benchmark (:func:`run_evaluation`)::

    from lavt.evaluation import run_evaluation
    result = run_evaluation(model, dataset, device=device, batch_size=8, workers=2)
    result.metrics.summary()["overall_iou"]

Under ``torchrun`` every process calls it with the same arguments and its
``DistInfo``; each evaluates its shard and all get the merged metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lavt.data.dataset import ReferEvalDataset
from lavt.data.refer import Ref, ReferIndex
from lavt.evaluation.loop import EvalResult, GresSettings, evaluate, make_eval_loader
from lavt.evaluation.outputs import write_split, write_summary
from lavt.evaluation.worst import clear_worst, save_worst
from lavt.runtime import DistInfo
from lavt.tokenizer import tokenizer_for_model

log = logging.getLogger("lavt")


def run_evaluation(
    model: nn.Module,
    dataset: ReferEvalDataset,
    *,
    device: torch.device,
    batch_size: int = 8,
    workers: int = 0,
    dist: DistInfo | None = None,
    amp: torch.dtype | None = None,
    resolution: str = "model",
    keep_records: bool = True,
    progress: bool = False,
    gres: GresSettings | None = None,
) -> EvalResult:
    """Evaluate ``model`` on every expression of ``dataset`` (this process's shard, merged).

    ``gres``: the GRES metrics (gRefCOCO) with this no-target decision rule.
    """
    dist = dist or DistInfo()
    loader = make_eval_loader(
        dataset,
        batch_size=batch_size,
        workers=workers,
        rank=dist.rank,
        world_size=dist.world_size,
        pin_memory=device.type == "cuda",
    )
    return evaluate(
        model,
        loader,
        device=device,
        amp=amp,
        resolution=resolution,
        keep_records=keep_records,
        progress=progress,
        gres=gres,
    )


@dataclass(frozen=True)
class EvalSettings:
    """What ``lavt evaluate`` asks for, besides the model and the data."""

    output: Path
    img_size: int | None = None
    batch_size: int = 8
    workers: int = 2
    resolution: str = "model"
    amp: torch.dtype | None = None
    save_worst: int = 0
    swap_expressions: bool = False
    gres: GresSettings = field(default_factory=GresSettings)  # used on gRefCOCO


def evaluate_splits(
    model: nn.Module,
    index: ReferIndex,
    split_refs: dict[str, Sequence[Ref]],
    settings: EvalSettings,
    *,
    device: torch.device,
    dist: DistInfo | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate each split; the main process writes ``<split>.jsonl``, ``worst_<split>/``
    (stale overlays removed), ``metrics.md`` and ``metrics.json``. Returns the summaries."""
    dist = dist or DistInfo()
    tokenizer = tokenizer_for_model(model)
    img_size = settings.img_size or model.config.img_size
    results: dict[str, dict[str, Any]] = {}
    for split, refs in split_refs.items():
        dataset = ReferEvalDataset(
            index,
            refs,
            tokenizer=tokenizer,
            img_size=img_size,
            original_masks=settings.resolution == "original",
            swap_expressions=settings.swap_expressions,
        )
        result = run_evaluation(
            model,
            dataset,
            device=device,
            batch_size=settings.batch_size,
            workers=settings.workers,
            dist=dist,
            amp=settings.amp,
            resolution=settings.resolution,
            progress=dist.is_main,
            gres=settings.gres if index.generalized else None,
        )
        results[split] = result.summary()
        if dist.is_main:
            write_split(settings.output, split, result)
            worst = settings.output / f"worst_{split}"
            clear_worst(worst)
            if settings.save_worst:
                save_worst(
                    result.records,
                    dataset,
                    model,
                    device=device,
                    folder=worst,
                    k=settings.save_worst,
                    amp=settings.amp,
                )
    if dist.is_main:
        write_summary(settings.output, results)
        log.info("wrote %s", settings.output / "metrics.json")
    return results
