"""LAVT.postprocess: the one place logits become masks and probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lavt.modeling import LAVT


def test_same_size_is_argmax_exactly():
    logits = torch.randn(3, 2, 16, 16)
    logits[0, :, 0, 0] = 1.5  # a tie is background, as with argmax
    out = LAVT.postprocess(logits, (16, 16))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert torch.equal(out > 0, logits.argmax(1) == 1)
    assert torch.allclose(out.sigmoid(), logits.softmax(1)[:, 1], atol=1e-6)


def test_resized_matches_resizing_both_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 12, 12)
    resized = F.interpolate(logits, size=(30, 50), mode="bilinear", align_corners=False)
    out = LAVT.postprocess(logits, (30, 50))
    assert out.shape == (2, 30, 50)
    assert torch.allclose(out.sigmoid(), resized.softmax(1)[:, 1], atol=1e-5)
    agree = ((out > 0) == (resized.argmax(1) == 1)).float().mean()
    assert agree > 0.999
