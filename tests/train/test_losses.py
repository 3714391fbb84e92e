"""Losses of the published recipe against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from lavt.errors import InputError
from lavt.train.losses import build_loss, ce_dice_loss, cross_entropy_loss, dice_loss


def _two_pixels():
    # pixel 0: logits (0, 0), target 1; pixel 1: logits (0, ln 3), target 0
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3.0)]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])  # (1, 1, 2)
    return logits, target


def test_weighted_cross_entropy_by_hand():
    logits, target = _two_pixels()
    # -log p_y: ln 2 (class 1, weight 1.1) and ln 4 (class 0, weight 0.9); weighted mean
    expected = (1.1 * math.log(2) + 0.9 * math.log(4)) / (1.1 + 0.9)
    assert cross_entropy_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_dice_by_hand():
    logits, target = _two_pixels()
    # p = (0.5, 0.5) and (0.25, 0.75); t = class 1 then class 0
    dice0 = 2 * 0.25 / (0.5**2 + 0.25**2 + 1 + 1e-6)
    dice1 = 2 * 0.5 / (0.5**2 + 0.75**2 + 1 + 1e-6)
    expected = ((1 - dice0) + (1 - dice1)) / 2
    assert dice_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_dice_is_per_sample_mean():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 5, 4)
    target = torch.randint(0, 2, (3, 5, 4))
    per_sample = [dice_loss(logits[i : i + 1], target[i : i + 1]) for i in range(3)]
    assert dice_loss(logits, target).item() == pytest.approx(
        torch.stack(per_sample).mean().item(), rel=1e-6
    )


def test_perfect_prediction_has_near_zero_dice_loss():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = 1
    logits = torch.stack([(1 - target) * 50.0, target * 50.0], dim=1).float()  # (1, 2, 8, 8)
    assert dice_loss(logits, target).item() < 1e-5
    assert cross_entropy_loss(logits, target).item() < 1e-5


def test_combined_loss_and_dtype():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 6, 6, dtype=torch.bfloat16, requires_grad=True)
    target = torch.randint(0, 2, (2, 6, 6))
    loss = build_loss("ce+dice")(logits, target)
    assert loss.dtype == torch.float32
    expected = cross_entropy_loss(logits, target) + dice_loss(logits, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert ce_dice_loss(logits, target).item() == pytest.approx(loss.item())
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_unknown_loss_is_refused():
    assert build_loss("ce") is cross_entropy_loss
    assert build_loss("dice") is dice_loss
    with pytest.raises(InputError, match="loss '"):
        build_loss("focal")
