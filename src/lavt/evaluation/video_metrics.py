"""J, F and J&F: the region and boundary measures of the DAVIS 2017 evaluation.

Definitions (Perazzi et al., CVPR 2016; Pont-Tuset et al., arXiv:1704.00675;
github.com/davisvideochallenge/davis2017-evaluation, ``davis2017/metrics.py``),
implemented here from their description:

- J, region similarity: |pred AND gt| / |pred OR gt| per frame, 1 when both
  are empty; void pixels (DAVIS's 255) count in neither.
- F, boundary F-measure per frame: the thin boundary map of each mask
  (:func:`boundary_map`: a pixel is on the boundary when it differs from its
  right, lower or lower-right neighbour, so boundaries are one pixel wide and
  sit half a pixel towards the origin), each map dilated by a disk of radius
  ``ceil(bound_th * image diagonal)`` pixels (``bound_th`` 0.008; a value >= 1
  is a radius in pixels). Precision: the share of predicted boundary pixels
  within the dilated ground-truth boundary; recall: the share of ground-truth
  boundary pixels within the dilated predicted one; F = 2PR / (P + R), 0 when
  P + R = 0. With no predicted boundary P = 1, with no ground-truth boundary
  R = 1 (so two empty masks score 1, one empty mask 0).
- Per object (a referring expression over a video): the mean over its frames;
  the dataset's J and F: the mean over objects; J&F = (J + F) / 2.

Sums are kept in fixed point (``IOU_SCALE``), so results of several processes
merge exactly in any order, as :class:`~lavt.evaluation.metrics.SegmentationMetrics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lavt.evaluation.metrics import IOU_SCALE
from lavt.runtime import all_reduce_sum

BOUND_TH = 0.008  # DAVIS's boundary tolerance: a share of the image diagonal


def _frames(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) or (T, H, W) -> (T, H, W) bool."""
    if mask.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (T, H, W) masks, got shape {tuple(mask.shape)}")
    return (mask if mask.ndim == 3 else mask[None]).bool()


def _check(pred: torch.Tensor, gt: torch.Tensor, void: torch.Tensor | None) -> None:
    if pred.shape != gt.shape or (void is not None and void.shape != gt.shape):
        shapes = [tuple(t.shape) for t in (pred, gt, void) if t is not None]
        raise ValueError(f"masks of different shapes: {shapes}")


def region_similarity(
    pred: torch.Tensor, gt: torch.Tensor, void: torch.Tensor | None = None
) -> torch.Tensor:
    """J per frame: pred, gt, void (T, H, W) or (H, W) -> (T,) float64."""
    _check(pred, gt, void)
    pred, gt = _frames(pred), _frames(gt)
    keep = ~_frames(void) if void is not None else torch.ones_like(gt)
    inter = (pred & gt & keep).flatten(1).sum(1, dtype=torch.int64)
    union = ((pred | gt) & keep).flatten(1).sum(1, dtype=torch.int64)
    return torch.where(union > 0, inter.double() / union.clamp(min=1).double(), 1.0)


def boundary_radius(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """Dilation radius in pixels: ``bound_th`` when >= 1, else ceil(bound_th * diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(height, width))


def boundary_map(mask: torch.Tensor) -> torch.Tensor:
    """Thin boundary of a mask: (T, H, W) or (H, W) -> the same shape, bool.

    A pixel is on the boundary when it differs from its right, lower or
    lower-right neighbour; in the last row only the right neighbour counts,
    in the last column only the lower one, and the bottom-right pixel is never
    on it (David Martin's ``seg2bmap``, as DAVIS uses it).
    """
    seg = mask.bool()
    right = torch.zeros_like(seg)
    right[..., :, :-1] = seg[..., :, 1:]
    below = torch.zeros_like(seg)
    below[..., :-1, :] = seg[..., 1:, :]
    diagonal = torch.zeros_like(seg)
    diagonal[..., :-1, :-1] = seg[..., 1:, 1:]
    edge = (seg ^ right) | (seg ^ below) | (seg ^ diagonal)
    edge[..., -1, :] = seg[..., -1, :] ^ right[..., -1, :]
    edge[..., :, -1] = seg[..., :, -1] ^ below[..., :, -1]
    edge[..., -1, -1] = False
    return edge


def dilate_disk(bmap: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary dilation by the disk {(dy, dx): dy^2 + dx^2 <= r^2}: (T, H, W) bool -> bool.

    One horizontal max-pool per disk row (half-width isqrt(r^2 - dy^2)), shifted
    by dy; nothing comes in from outside the image.
    """
    x = bmap.to(torch.float32).unsqueeze(1)  # (T, H, W) -> (T, 1, H, W)
    H = x.shape[-2]
    out = torch.zeros_like(x)
    for dy in range(-radius, radius + 1):
        if abs(dy) >= H:
            continue
        half = math.isqrt(radius * radius - dy * dy)
        row = F.max_pool2d(x, (1, 2 * half + 1), stride=1, padding=(0, half))  # (T, 1, H, W)
        # out[y] |= row[y - dy]
        dst = slice(max(dy, 0), H + min(dy, 0))
        src = slice(max(-dy, 0), H - max(dy, 0))
        out[..., dst, :] = torch.maximum(out[..., dst, :], row[..., src, :])
    return out.squeeze(1) > 0


def boundary_f_measure(
    pred: torch.Tensor,
    gt: torch.Tensor,
    void: torch.Tensor | None = None,
    bound_th: float = BOUND_TH,
) -> torch.Tensor:
    """F per frame: pred, gt, void (T, H, W) or (H, W) -> (T,) float64."""
    _check(pred, gt, void)
    pred, gt = _frames(pred), _frames(gt)
    if void is not None:
        keep = ~_frames(void)
        pred, gt = pred & keep, gt & keep
    radius = boundary_radius(*pred.shape[-2:], bound_th)
    pred_edge, gt_edge = boundary_map(pred), boundary_map(gt)
    pred_hit = (pred_edge & dilate_disk(gt_edge, radius)).flatten(1).sum(1, dtype=torch.int64)
    gt_hit = (gt_edge & dilate_disk(pred_edge, radius)).flatten(1).sum(1, dtype=torch.int64)
    n_pred = pred_edge.flatten(1).sum(1, dtype=torch.int64)
    n_gt = gt_edge.flatten(1).sum(1, dtype=torch.int64)
    precision = torch.where(n_pred > 0, pred_hit.double() / n_pred.clamp(min=1).double(), 1.0)
    recall = torch.where(n_gt > 0, gt_hit.double() / n_gt.clamp(min=1).double(), 1.0)
    precision = torch.where((n_pred > 0) & (n_gt == 0), 0.0, precision)  # DAVIS: P 0, R 1
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp(min=1e-300), 0.0)


@dataclass
class VideoMetrics:
    """Running sums over objects (expressions x videos): J and F means in fixed point."""

    num_objects: int = 0
    j_sum: int = 0  # sum over objects of round(mean J * IOU_SCALE)
    f_sum: int = 0

    def add(
        self,
        pred: torch.Tensor,
        gt: torch.Tensor,
        void: torch.Tensor | None = None,
        bound_th: float = BOUND_TH,
    ) -> tuple[float, float]:
        """Add one object's (T, H, W) masks; returns its J and F (means over the frames)."""
        j = float(region_similarity(pred, gt, void).mean())
        f = float(boundary_f_measure(pred, gt, void, bound_th).mean())
        return self.add_scores(j, f)

    def add_scores(self, j: float, f: float) -> tuple[float, float]:
        """Add one object's J and F (means over its frames, computed frame by frame)."""
        self.num_objects += 1
        self.j_sum += round(j * IOU_SCALE)
        self.f_sum += round(f * IOU_SCALE)
        return j, f

    def merge(self, other: VideoMetrics) -> VideoMetrics:
        """The metrics of both sets of objects together."""
        return VideoMetrics(
            self.num_objects + other.num_objects,
            self.j_sum + other.j_sum,
            self.f_sum + other.f_sum,
        )

    def all_reduce(self, device: torch.device | str = "cpu") -> VideoMetrics:
        """Sum over all processes of the default group (no-op when not distributed)."""
        ints = torch.tensor(
            [self.num_objects, self.j_sum, self.f_sum], dtype=torch.int64, device=device
        )
        return VideoMetrics(*all_reduce_sum(ints).tolist())

    def summary(self) -> dict[str, float]:
        """Percentages: J, F and J&F = (J + F) / 2 (means over objects)."""
        n = max(self.num_objects, 1)
        j = 100.0 * self.j_sum / IOU_SCALE / n
        f = 100.0 * self.f_sum / IOU_SCALE / n
        return {"J": j, "F": f, "J&F": (j + f) / 2}
