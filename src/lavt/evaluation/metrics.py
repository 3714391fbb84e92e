"""Referring-segmentation metrics of the published protocol (the LAVT paper, CVPR 2022).

Per expression: I = |pred AND gt|, U = |pred OR gt|, IoU = I / U (0 when U = 0).
Reported: precision@{0.5..0.9} (share of expressions with IoU >= t), overall IoU
(sum I / sum U) and mean IoU. Everything is accumulated as integer sums (the IoUs
in fixed point, 2^-40 steps), so results from several processes merge exactly,
in any order (torchvision's ``ConfusionMatrix`` reduces the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lavt.runtime import all_reduce_sum

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
IOU_SCALE = 2**40  # fixed point for the sum of IoUs: exact in int64 up to 8M expressions


def intersection_union(
    pred: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """pred, target: (B, H, W) bool/0-1 -> I, U: (B,) int64, computed on their device."""
    pred = pred.bool().flatten(1)  # (B, H, W) -> (B, HW)
    target = target.bool().flatten(1)  # (B, H, W) -> (B, HW)
    inter = (pred & target).sum(1, dtype=torch.int64)
    union = (pred | target).sum(1, dtype=torch.int64)
    return inter, union


def iou_from(inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    """IoU per expression (float64), 0 where the union is empty."""
    return torch.where(union > 0, inter.double() / union.clamp(min=1).double(), 0.0)


@dataclass
class SegmentationMetrics:
    """Running integer sums: counts per threshold, cumulative I and U, IoUs in fixed point."""

    num_expressions: int = 0
    cum_inter: int = 0
    cum_union: int = 0
    iou_sum: int = 0  # sum of round(IoU * IOU_SCALE)
    hits: list[int] = field(default_factory=lambda: [0] * len(THRESHOLDS))

    def update(self, inter: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
        """Add a batch of per-expression I, U; returns their IoUs (float64)."""
        iou = iou_from(inter, union)
        thresholds = torch.tensor(THRESHOLDS, dtype=torch.float64, device=iou.device)
        hits = (iou[:, None] >= thresholds[None, :]).sum(0)  # (T,)
        fixed = torch.round(iou * IOU_SCALE).to(torch.int64).sum()
        count = torch.tensor(len(iou), device=iou.device)
        stats = torch.cat([torch.stack([inter.sum(), union.sum(), count, fixed]), hits]).tolist()
        self.cum_inter += int(stats[0])
        self.cum_union += int(stats[1])
        self.num_expressions += int(stats[2])
        self.iou_sum += int(stats[3])
        self.hits = [a + int(b) for a, b in zip(self.hits, stats[4:], strict=True)]
        return iou

    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """The metrics of both sets of expressions together."""
        return SegmentationMetrics(
            num_expressions=self.num_expressions + other.num_expressions,
            cum_inter=self.cum_inter + other.cum_inter,
            cum_union=self.cum_union + other.cum_union,
            iou_sum=self.iou_sum + other.iou_sum,
            hits=[a + b for a, b in zip(self.hits, other.hits, strict=True)],
        )

    def all_reduce(self, device: torch.device | str = "cpu") -> SegmentationMetrics:
        """Sum over all processes of the default group (no-op when not distributed)."""
        ints = torch.tensor(
            [self.num_expressions, self.cum_inter, self.cum_union, self.iou_sum, *self.hits],
            dtype=torch.int64,
            device=device,
        )
        n, inter, union, iou_sum, *hits = all_reduce_sum(ints).tolist()
        return SegmentationMetrics(n, inter, union, iou_sum, hits)

    @property
    def overall_iou(self) -> float:
        return self.cum_inter / self.cum_union if self.cum_union else 0.0

    @property
    def mean_iou(self) -> float:
        return self.iou_sum / IOU_SCALE / self.num_expressions if self.num_expressions else 0.0

    def summary(self) -> dict[str, float]:
        """Percentages (two decimals are what the table shows)."""
        n = max(self.num_expressions, 1)
        out = {f"precision@{t}": 100.0 * h / n for t, h in zip(THRESHOLDS, self.hits, strict=True)}
        out["overall_iou"] = 100.0 * self.overall_iou
        out["mean_iou"] = 100.0 * self.mean_iou
        return out


TABLE_COLUMNS = ("P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "Overall IoU", "Mean IoU")


def format_table(results: dict[str, dict[str, float]]) -> str:
    """The markdown metrics table: one row per split, percentages with two decimals."""
    keys = [f"precision@{t}" for t in THRESHOLDS] + ["overall_iou", "mean_iou"]
    return markdown_table(
        TABLE_COLUMNS, {split: [row[k] for k in keys] for split, row in results.items()}
    )


def markdown_table(columns: tuple[str, ...], rows: dict[str, list[float]]) -> str:
    """``| Split | columns... |`` and one row per split, values with two decimals."""
    lines = ["| Split | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for split, values in rows.items():
        lines.append(f"| {split} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines)
