"""Generalized referring segmentation metrics (GRES, Liu, Ding and Jiang, CVPR 2023).

An expression may name no object ("no-target") or several. Each sample carries a
predicted mask P, the ground-truth union mask G, and two flags: ``gt_nt`` (the
expression names no object) and ``pred_nt`` (the model says so). "Positive" means
no-target. Per sample (docs/gres.md, "Metrics"):

======  =======  =======  =========  ==========================  ==========
gt_nt   pred_nt  counter  I added    U added                     IoU_i
======  =======  =======  =========  ==========================  ==========
yes     yes      TP       0          0                           1
yes     no       FN       0          |P|                         0
no      yes      FP       0          |P or G| (P not zeroed)     0
no      no       TN       |P and G|  |P or G|                    I/U (0 if U=0)
======  =======  =======  =========  ==========================  ==========

Reported (all as percentages here; the GRES code prints N-acc/T-acc as fractions):

- cIoU = sum I / sum U over all samples (no-target ones included); 0 when sum U = 0;
- gIoU = mean of IoU_i over all samples;
- N-acc = TP / (TP + FN), T-acc = TN / (TN + FP); both 0 on a split with no
  no-target sample (as in the GRES code), T-acc 0 on one with only no-target samples;
- Pr@0.7/0.8/0.9 = share of *target* samples (gt_nt = no) with IoU_i >= X.

Whether a sample is "empty" is decided by ``pred_nt`` alone: an empty predicted
mask with ``pred_nt`` false still scores 0 on a no-target sample. Everything is
kept as integer sums (IoUs in fixed point), so processes merge exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch

from lavt.evaluation.metrics import IOU_SCALE, intersection_union, iou_from, markdown_table
from lavt.runtime import all_reduce_sum

GRES_THRESHOLDS = (0.7, 0.8, 0.9)


def gres_sample_stats(
    pred: torch.Tensor, target: torch.Tensor, pred_nt: torch.Tensor, gt_nt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-sample I, U and IoU_i of the GRES table.

    pred, target: (B, H, W) bool/0-1 masks; pred_nt, gt_nt: (B,) bool.
    Returns I, U: (B,) int64 and IoU: (B,) float64.
    """
    pred_nt = pred_nt.bool()
    gt_nt = gt_nt.bool()
    inter, union = intersection_union(pred, target)
    pred_area = pred.bool().flatten(1).sum(1, dtype=torch.int64)  # (B, H, W) -> (B,)
    zero = torch.zeros_like(inter)
    tp = gt_nt & pred_nt
    fn = gt_nt & ~pred_nt
    tn = ~gt_nt & ~pred_nt
    # FP keeps U = |P or G| with I forced to 0; TP adds nothing; FN adds |P|.
    inter_out = torch.where(tn, inter, zero)
    union_out = torch.where(tp, zero, torch.where(fn, pred_area, union))
    iou = torch.where(tn, iou_from(inter, union), torch.zeros_like(inter, dtype=torch.float64))
    iou = torch.where(tp, torch.ones_like(iou), iou)
    return inter_out, union_out, iou


@dataclass
class GresMetrics:
    """Running integer sums of the GRES metrics; ``merge`` and ``all_reduce`` are exact."""

    num_samples: int = 0
    num_target: int = 0
    cum_inter: int = 0
    cum_union: int = 0
    iou_sum: int = 0  # sum over all samples of round(IoU_i * IOU_SCALE)
    true_pos: int = 0  # no-target, predicted no-target
    false_neg: int = 0  # no-target, predicted target
    false_pos: int = 0  # target, predicted no-target
    true_neg: int = 0  # target, predicted target
    hits: list[int] = field(default_factory=lambda: [0] * len(GRES_THRESHOLDS))

    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        pred_nt: torch.Tensor,
        gt_nt: torch.Tensor,
    ) -> torch.Tensor:
        """Add a batch; pred, target (B, H, W); pred_nt, gt_nt (B,). Returns IoU_i (B,)."""
        pred_nt, gt_nt = pred_nt.bool(), gt_nt.bool()
        inter, union, iou = gres_sample_stats(pred, target, pred_nt, gt_nt)
        thresholds = torch.tensor(GRES_THRESHOLDS, dtype=torch.float64, device=iou.device)
        hits = ((iou[:, None] >= thresholds[None, :]) & ~gt_nt[:, None]).sum(0)  # (T,)
        counts = torch.stack(
            [
                torch.tensor(len(iou), device=iou.device),
                (~gt_nt).sum(),
                inter.sum(),
                union.sum(),
                torch.round(iou * IOU_SCALE).to(torch.int64).sum(),
                (gt_nt & pred_nt).sum(),
                (gt_nt & ~pred_nt).sum(),
                (~gt_nt & pred_nt).sum(),
                (~gt_nt & ~pred_nt).sum(),
            ]
        )
        values = torch.cat([counts, hits]).tolist()
        merged = self.merge(GresMetrics._from_list(values))
        for f in fields(self):
            setattr(self, f.name, getattr(merged, f.name))
        return iou

    @property
    def num_expressions(self) -> int:
        """The number of samples (sentences), as for the classic metrics."""
        return self.num_samples

    def _to_list(self) -> list[int]:
        return [getattr(self, f.name) for f in fields(self) if f.name != "hits"] + self.hits

    @classmethod
    def _from_list(cls, values: list[int]) -> GresMetrics:
        scalar_count = len(fields(cls)) - 1
        head = [int(v) for v in values[:scalar_count]]
        return cls(*head, hits=[int(v) for v in values[scalar_count:]])

    def merge(self, other: GresMetrics) -> GresMetrics:
        """The metrics of both sets of samples together."""
        return GresMetrics._from_list(
            [a + b for a, b in zip(self._to_list(), other._to_list(), strict=True)]
        )

    def all_reduce(self, device: torch.device | str = "cpu") -> GresMetrics:
        """Sum over all processes (no-op when not distributed)."""
        ints = torch.tensor(self._to_list(), dtype=torch.int64, device=device)
        return GresMetrics._from_list(all_reduce_sum(ints).tolist())

    def summary(self) -> dict[str, float]:
        """cIoU, gIoU, N-acc, T-acc, Pr@0.7/0.8/0.9 in percent, plus the sample counts."""

        def share(num: int, den: int) -> float:
            return 100.0 * num / den if den else 0.0

        # the GRES code: both accuracies are 0 on a split without no-target samples
        has_no_target = self.true_pos + self.false_neg > 0
        out = {
            "cIoU": share(self.cum_inter, self.cum_union),
            "gIoU": share(self.iou_sum, self.num_samples * IOU_SCALE),
            "N-acc": share(self.true_pos, self.true_pos + self.false_neg),
            "T-acc": share(self.true_neg, self.true_neg + self.false_pos) if has_no_target else 0.0,
        }
        for t, h in zip(GRES_THRESHOLDS, self.hits, strict=True):
            out[f"Pr@{t}"] = share(h, self.num_target)
        out["samples"] = float(self.num_samples)
        out["no_target_samples"] = float(self.num_samples - self.num_target)
        return out

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


GRES_TABLE_COLUMNS = ("cIoU", "gIoU", "N-acc", "T-acc", "Pr@0.7", "Pr@0.8", "Pr@0.9")


def format_gres_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per split, percentages with two decimals."""
    rows = {split: [row[c] for c in GRES_TABLE_COLUMNS] for split, row in results.items()}
    return markdown_table(GRES_TABLE_COLUMNS, rows)
