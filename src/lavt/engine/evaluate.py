"""Evaluation with the published protocol, many expressions per forward pass.

Single process::

    lavt evaluate --checkpoint refcoco.pth --data-root ./refer/data --dataset refcoco \\
        --splitBy unc --split val,testA,testB

Several GPUs (results identical to one process)::

    torchrun --nproc_per_node 4 -m lavt evaluate --checkpoint refcoco.pth ...

Each process evaluates a disjoint shard of the objects (no padding, so nothing
is counted twice); the integer sums of :class:`SegmentationMetrics` are then
all-reduced, and the per-expression records gathered on rank 0.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from lavt.data.dataset import ReferEvalDataset, collate_eval
from lavt.engine.metrics import SegmentationMetrics, intersection_union

log = logging.getLogger("lavt")


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: disjoint shards that together cover all items once."""

    def __init__(self, length: int, *, rank: int, world_size: int) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))


@dataclass
class EvalResult:
    metrics: SegmentationMetrics
    records: list[dict[str, Any]] = field(default_factory=list)
    num_objects: int = 0


def make_eval_loader(
    dataset: ReferEvalDataset,
    *,
    batch_size: int,
    workers: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
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


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def predict_masks(
    model: nn.Module,
    batch: dict[str, Any],
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Logits (E, 2, S, S) for the E expressions of a collated batch."""
    images = batch["images"].to(device, non_blocking=True)
    index = batch["image_index"].to(device, non_blocking=True)
    ids = batch["input_ids"].to(device, non_blocking=True)
    attention = batch["attention_mask"].to(device, non_blocking=True)
    with _autocast(device, amp_dtype):
        return model(images[index], ids, attention).float()  # (E, 2, S, S)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    resolution: str = "model",
    amp_dtype: torch.dtype | None = None,
    keep_records: bool = True,
    progress: bool = False,
) -> EvalResult:
    """Evaluate ``model`` over ``loader`` (this process's shard), then merge across processes.

    ``resolution="model"`` is the reference protocol (prediction and ground
    truth at img_size x img_size); ``"original"`` resizes the logits back to
    each image's size and compares with the full-resolution mask.
    """
    if resolution not in ("model", "original"):
        raise ValueError(f"resolution must be 'model' or 'original', got {resolution!r}")
    was_training = model.training
    model.eval()
    metrics, records, objects = SegmentationMetrics(), [], 0
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="evaluate", unit="batch", leave=False, disable=None)
    for batch in batches:
        logits = predict_masks(model, batch, device, amp_dtype=amp_dtype)
        inter, union = _compare(logits, batch, device, resolution)
        iou = metrics.update(inter, union)
        objects += batch["images"].shape[0]
        if keep_records:
            records += _records(batch, inter, union, iou)
    model.train(was_training)
    return EvalResult(
        metrics=metrics.all_reduce(device),
        records=_gather(records),
        num_objects=_sum(objects, device),
    )


def _compare(logits, batch, device, resolution) -> tuple[torch.Tensor, torch.Tensor]:
    index = batch["image_index"].to(device)
    if resolution == "model":
        targets = batch["targets"].to(device, non_blocking=True)[index]  # (E, S, S)
        return intersection_union(logits.argmax(1), targets)
    inters, unions = [], []
    for e in range(logits.shape[0]):
        target = batch["original_targets"][int(batch["image_index"][e])].to(device)  # (H, W)
        resized = F.interpolate(
            logits[e : e + 1], size=target.shape, mode="bilinear", align_corners=False
        )
        i, u = intersection_union(resized.argmax(1), target[None])
        inters.append(i)
        unions.append(u)
    return torch.cat(inters), torch.cat(unions)


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


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _gather(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not _distributed():
        return records
    import torch.distributed as dist

    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, records)
    merged = [r for part in parts for r in part]
    return sorted(merged, key=lambda r: (r["ref_id"], r["sent_id"]))


def _sum(value: int, device: torch.device) -> int:
    if not _distributed():
        return value
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor)
    return int(tensor.item())
