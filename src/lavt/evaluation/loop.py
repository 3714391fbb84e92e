"""The evaluation loop: one model, one loader, integer sums merged across processes.

Each process evaluates a disjoint shard of the objects (:class:`ShardSampler`:
no padding, so nothing is counted twice); the integer sums of
:class:`~lavt.evaluation.metrics.SegmentationMetrics` are then all-reduced and
the per-expression records gathered, so one process and N give the same result.

On gRefCOCO (``gres`` set) the same loop fills
:class:`~lavt.evaluation.gres_metrics.GresMetrics` instead: each expression also
gets ``pred_nt`` from the model's no-target head or from the mask-area rule
(:mod:`lavt.modeling.no_target`), and its ground-truth flag from the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from lavt.data.dataset import ReferEvalDataset, collate_eval
from lavt.data.workers import clean_worker_errors
from lavt.evaluation.gres_metrics import GresMetrics
from lavt.evaluation.metrics import SegmentationMetrics, intersection_union
from lavt.modeling.lavt import LAVT, LAVTOutput
from lavt.modeling.no_target import (
    check_rule,
    decide_no_target,
    no_target_probability,
    resolve_rule,
)
from lavt.runtime import all_reduce_sum, autocast

RESOLUTIONS = ("model", "original")


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: disjoint shards that together cover all items once."""

    def __init__(self, length: int, *, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


@dataclass(frozen=True)
class GresSettings:
    """How a generalized (gRefCOCO) evaluation decides "no object".

    ``rule``: ``auto`` (the head when the model has one, else the area rule),
    ``head`` or ``area``; ``area_threshold``: tau of the area rule, in pixels at
    the model's input size (``pred_nt = |P| <= tau``).
    """

    rule: str = "auto"
    area_threshold: int = 0

    def __post_init__(self) -> None:
        check_rule(self.rule, self.area_threshold)


@dataclass
class EvalResult:
    """Metrics over all processes; ``records``: one dict per expression (sorted when gathered).

    ``no_target_rule``: for a generalized evaluation, the rule used (``head`` or
    ``area``) and its threshold, reported beside the metrics.
    """

    metrics: SegmentationMetrics | GresMetrics
    records: list[dict[str, Any]] = field(default_factory=list)
    num_objects: int = 0
    no_target_rule: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """Percentages plus ``num_expressions`` and ``num_objects`` (and the no-target rule)."""
        out: dict[str, Any] = dict(self.metrics.summary())
        out.update(num_expressions=self.metrics.num_expressions, num_objects=self.num_objects)
        if self.no_target_rule is not None:
            out.update(self.no_target_rule)
        return out


def make_eval_loader(
    dataset: ReferEvalDataset,
    *,
    batch_size: int,
    workers: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of ``batch_size`` objects (all their expressions) of this process's shard."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(len(dataset), rank=rank, world_size=world_size),
        num_workers=workers,
        collate_fn=collate_eval,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )


def forward_batch(
    model: nn.Module, batch: dict[str, Any], device: torch.device, *, amp: torch.dtype | None
) -> torch.Tensor:
    """Logits (E, 2, S, S) float32 for the E expressions of a collated batch."""
    images = batch["images"].to(device, non_blocking=True)  # (B, 3, S, S)
    index = batch["image_index"].to(device, non_blocking=True)  # (E,)
    ids = batch["input_ids"].to(device, non_blocking=True)  # (E, N)
    attention = batch["attention_mask"].to(device, non_blocking=True)  # (E, N)
    with autocast(device, amp):
        return model(images[index], ids, attention).float()  # (E, 2, S, S)


def forward_batch_no_target(
    model: nn.Module, batch: dict[str, Any], device: torch.device, *, amp: torch.dtype | None
) -> LAVTOutput:
    """Like :func:`forward_batch`, with the no-target logits (E, 2) (None without a head)."""
    images = batch["images"].to(device, non_blocking=True)  # (B, 3, S, S)
    index = batch["image_index"].to(device, non_blocking=True)  # (E,)
    ids = batch["input_ids"].to(device, non_blocking=True)  # (E, N)
    attention = batch["attention_mask"].to(device, non_blocking=True)  # (E, N)
    with autocast(device, amp):
        out = model(images[index], ids, attention, return_no_target=True)
    nt = out.no_target_logits
    return LAVTOutput(out.logits.float(), None if nt is None else nt.float())


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    amp: torch.dtype | None = None,
    resolution: str = "model",
    keep_records: bool = True,
    progress: bool = False,
    gres: GresSettings | None = None,
) -> EvalResult:
    """Evaluate ``model`` over ``loader`` (this process's shard), merged across processes.

    ``resolution="model"`` is the reference protocol (prediction and ground
    truth at img_size x img_size); ``"original"`` resizes the logits back to each
    image's size (:meth:`LAVT.postprocess`) and compares with the full mask.
    Errors raised in loader workers surface as their own one-line message.
    Every process of a ``torchrun`` job must call it (the sums are all-reduced).
    ``gres``: the GRES metrics (gRefCOCO) with this no-target decision.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be 'model' or 'original', got {resolution!r}")
    if gres is not None:
        return _evaluate_gres(model, loader, device, amp, resolution, keep_records, progress, gres)
    was_training = model.training
    model.eval()
    metrics, records, objects = SegmentationMetrics(), [], 0
    with clean_worker_errors():
        for batch in _batches(loader, progress):
            logits = forward_batch(model, batch, device, amp=amp)
            inter, union = _compare(logits, batch, device, resolution)
            iou = metrics.update(inter, union)
            objects += batch["images"].shape[0]
            if keep_records:
                records += _records(batch, inter, union, iou)
    model.train(was_training)
    return _merged(metrics, records, objects, device, keep_records)


def _merged(metrics, records: list, objects: int, device: torch.device, keep_records: bool,
            **extra: Any) -> EvalResult:  # fmt: skip
    """This process's sums, records and object count, merged across processes."""
    total_objects = all_reduce_sum(torch.tensor([objects], dtype=torch.int64, device=device))
    return EvalResult(
        metrics=metrics.all_reduce(device),
        records=_gather(records) if keep_records else [],
        num_objects=int(total_objects.item()),
        **extra,
    )


def _batches(loader: DataLoader, progress: bool) -> Any:
    if not progress:
        return loader
    from tqdm import tqdm

    return tqdm(loader, desc="evaluate", unit="batch", leave=False, disable=None)


@torch.inference_mode()
def _evaluate_gres(model, loader, device, amp, resolution, keep_records, progress, gres):
    """:func:`evaluate` with :class:`GresMetrics` (see there for the arguments)."""
    rule = resolve_rule(gres.rule, getattr(model, "no_target_head", None) is not None)
    was_training = model.training
    model.eval()
    metrics, records, objects = GresMetrics(), [], 0
    with clean_worker_errors():
        for batch in _batches(loader, progress):
            logits, nt_logits = forward_batch_no_target(model, batch, device, amp=amp)
            pred_nt = decide_no_target(
                logits, nt_logits, rule=rule, area_threshold=gres.area_threshold
            )  # (E,)
            gt_nt = batch["no_target"].to(device)  # (E,)
            inters, unions, ious = [], [], []
            for pred, target, rows in _mask_pairs(logits, batch, device, resolution):
                inter, union = intersection_union(pred, target)
                inters.append(inter)
                unions.append(union)
                ious.append(metrics.update(pred, target, pred_nt[rows], gt_nt[rows]))
            objects += batch["images"].shape[0]
            if keep_records:
                inter, union, iou = torch.cat(inters), torch.cat(unions), torch.cat(ious)
                prob = None if nt_logits is None else no_target_probability(nt_logits)
                records += _gres_records(batch, inter, union, iou, pred_nt, prob)
    model.train(was_training)
    rule_info = {"no_target_rule": rule, "area_threshold": gres.area_threshold}
    return _merged(metrics, records, objects, device, keep_records, no_target_rule=rule_info)


def _mask_pairs(
    logits: torch.Tensor, batch: dict[str, Any], device: torch.device, resolution: str
) -> Iterator[tuple[torch.Tensor, torch.Tensor, slice]]:
    """(pred, target, rows): bool (e, H, W) masks for the rows ``rows`` of the batch's
    expressions; all rows at once at the model's size, one at a time at the original."""
    index = batch["image_index"].to(device)  # (E,)
    if resolution == "model":
        targets = batch["targets"].to(device, non_blocking=True)[index]  # (E, S, S)
        pred = LAVT.postprocess(logits, targets.shape[-2:]) > 0  # (E, S, S)
        yield pred, targets, slice(0, logits.shape[0])
        return
    for e in range(logits.shape[0]):  # one at a time: full-resolution masks can be large
        target = batch["original_targets"][int(batch["image_index"][e])].to(device)  # (H, W)
        pred = LAVT.postprocess(logits[e : e + 1], tuple(target.shape)) > 0  # (1, H, W)
        yield pred, target[None], slice(e, e + 1)


def _compare(
    logits: torch.Tensor, batch: dict[str, Any], device: torch.device, resolution: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """I and U (E,) int64 of each expression's predicted mask against its object's."""
    pairs = [intersection_union(p, t) for p, t, _ in _mask_pairs(logits, batch, device, resolution)]
    return torch.cat([i for i, _ in pairs]), torch.cat([u for _, u in pairs])


def _gres_records(batch, inter, union, iou, pred_nt, prob) -> list[dict[str, Any]]:
    """Records plus the flags; I and U are the masks' own, IoU the GRES per-sample score."""
    rows = _records(batch, inter, union, iou)
    flags = zip(batch["no_target"].tolist(), pred_nt.tolist(), strict=True)
    for k, (row, (gt_nt, nt)) in enumerate(zip(rows, flags, strict=True)):
        row.update(no_target=bool(gt_nt), pred_no_target=bool(nt))
        if prob is not None:
            row["no_target_prob"] = round(float(prob[k]), 6)
    return rows


def _records(batch, inter, union, iou) -> list[dict[str, Any]]:
    rows = []
    for k, (i, u, v) in enumerate(zip(inter.tolist(), union.tolist(), iou.tolist(), strict=True)):
        rows.append(
            {
                "ref_id": batch["ref_ids"][k],
                "sent_id": batch["sent_ids"][k],
                "text": batch["texts"][k],
                "I": i,
                "U": u,
                "IoU": v,
            }
        )
    return rows


def _gather(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every process's records on every process, in (ref_id, sent_id) order."""
    return gather_records(records, key=lambda r: (r["ref_id"], r["sent_id"]))


def gather_records(
    records: list[dict[str, Any]], *, key: Callable[[dict[str, Any]], Any]
) -> list[dict[str, Any]]:
    """Every process's records on every process, sorted by ``key`` (as given when alone)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return records
    parts: list[Any] = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(parts, records)
    merged = [r for part in parts for r in part]
    return sorted(merged, key=key)
