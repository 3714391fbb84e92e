"""Shared pieces of the export tests: padded token batches and the agreement measure."""

from __future__ import annotations

import numpy as np
import torch

TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| / max |PyTorch logit|


def padded_batch(batch: int, size: int, tokens: int, vocab: int, *, seed: int = 0):
    """image (B, 3, S, S) and ids/mask (B, N) whose rows have different padded lengths."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, size, size, generator=generator)
    lengths = torch.tensor([tokens, 3, tokens // 2 + 1][:batch])  # full, short, half
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).long()  # (B, N)
    ids = torch.randint(1, vocab, (batch, tokens), generator=generator) * mask
    return image, ids, mask


def relative_error(onnx_logits: torch.Tensor, torch_logits: torch.Tensor) -> float:
    scale = float(torch_logits.abs().max())
    return float((onnx_logits.float() - torch_logits.float()).abs().max()) / scale


def assert_agrees(runner, model, *, batches=(1, 3), tolerance: float = TOLERANCE) -> None:
    """The runner's logits match the model's for each batch size, padded rows included."""
    config = runner.config
    for batch in batches:
        inputs = padded_batch(batch, runner.img_size, config.max_text_len, config.text.vocab_size)
        with torch.no_grad():
            expected = model(*inputs)
        got = runner(*inputs)
        assert got.shape == expected.shape == (batch, 2, runner.img_size, runner.img_size)
        assert got.dtype == torch.float32
        error = relative_error(got, expected)
        assert error <= tolerance, f"batch {batch}: relative error {error:.2e}"
        assert np.isfinite(got.numpy()).all()
