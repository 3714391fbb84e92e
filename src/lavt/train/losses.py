"""Training losses: the published recipe's and its Dice variant (docs/training.md).

- ``ce``: cross-entropy over the two classes with class weights (0.9, 1.1),
  PyTorch's weighted mean over pixels (sum of w_y * loss / sum of w_y), as the
  reference computes it with ``F.cross_entropy(..., weight=...)``;
- ``dice``: the multi-class Dice loss, per sample and class
  ``2 sum(p t) / (sum(p^2 + t) + 1e-6)`` with ``p = softmax(logits)`` and ``t``
  the one-hot target, averaged over the batch and the two classes;
- ``ce+dice``: their sum.

A model with a no-target head (GRES, docs/gres.md) adds
:func:`no_target_loss`: cross-entropy of its 2 logits against "names no
object", weighted :data:`NO_TARGET_WEIGHT` (0.1, ReLA's weight for its
no-target loss), beside the mask loss; a no-target sample's mask target is all
background.

Losses are computed in float32 whatever the autocast dtype of the logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lavt.errors import InputError

CLASS_WEIGHTS = (0.9, 1.1)
DICE_EPS = 1e-6
LOSSES = ("ce", "dice", "ce+dice")
NO_TARGET_WEIGHT = 0.1

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weights: tuple[float, float] = CLASS_WEIGHTS,
) -> torch.Tensor:
    """Weighted cross-entropy.

    Args:
        logits: (B, 2, H, W), any float dtype.
        target: (B, H, W) int64 in {0, 1}.

    Returns:
        A float32 scalar: sum(w[t] * ce) / sum(w[t]), as ``F.cross_entropy(weight=...)``.
        The weights are picked from Python floats, so no weight tensor is copied to
        the device (a host synchronisation on CUDA) at every step.
    """
    per_pixel = F.cross_entropy(logits.float(), target, reduction="none")  # (B, H, W)
    weight = torch.where(target == 1, class_weights[1], class_weights[0])  # (B, H, W)
    return (per_pixel * weight).sum() / weight.sum()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = DICE_EPS) -> torch.Tensor:
    """Multi-class Dice loss: mean over batch and classes of ``1 - dice``.

    Args:
        logits: (B, K, H, W), any float dtype.
        target: (B, H, W) int64 in [0, K).

    Returns:
        A float32 scalar.
    """
    num_classes = logits.shape[1]
    prob = logits.float().softmax(dim=1)  # (B, K, H, W)
    onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(prob.dtype)  # -> (B, K, H, W)
    inter = (prob * onehot).sum(dim=(2, 3))  # (B, K)
    denom = (prob * prob + onehot).sum(dim=(2, 3)) + eps  # (B, K)
    dice = 2.0 * inter / denom
    return (1.0 - dice).mean()


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy plus Dice: (B, 2, H, W), (B, H, W) -> float32 scalar."""
    return cross_entropy_loss(logits, target) + dice_loss(logits, target)


def no_target_loss(no_target_logits: torch.Tensor, no_target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the no-target head: logits (B, 2), no_target (B,) bool -> float32 scalar."""
    return F.cross_entropy(no_target_logits.float(), no_target.long())


def build_loss(name: str) -> LossFn:
    """The loss function called ``name`` (one of :data:`LOSSES`)."""
    table: dict[str, LossFn] = {
        "ce": cross_entropy_loss,
        "dice": dice_loss,
        "ce+dice": ce_dice_loss,
    }
    if name not in table:
        raise InputError(f"loss {name!r}: must be one of {', '.join(LOSSES)}", param="loss")
    return table[name]
