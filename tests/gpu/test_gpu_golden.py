"""Golden equivalence on the test device: float32 with TF32 off, the CPU tests' tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gpu_support import DEVICE, MARKS, strict_fp32

pytestmark = MARKS

GOLDEN_CASES = ["lavt_one_w7", "lavt_w12_mha2"]
TOLERANCE = 1e-4  # max abs error, as in tests/test_model.py::test_golden_outputs


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_outputs_on_device(golden_dir, name):
    from lavt import load_model

    model = load_model(golden_dir / f"{name}.pth", device=DEVICE)
    data = np.load(golden_dir / f"{name}.npz")
    for case in (0, 1):
        inputs = [
            torch.from_numpy(data[f"in{case}_{k}"]).to(DEVICE)
            for k in ("image", "input_ids", "attention_mask")
        ]
        with strict_fp32(), torch.no_grad():
            out = model.forward_intermediates(*inputs)
        recorded = {
            "text_features": out["text_features"],
            "decoder": out["decoder"],
            "logits": out["logits"],
            **{f"stage{s}": out["stages"][s] for s in range(4)},
        }
        for key, value in recorded.items():
            expected = torch.from_numpy(data[f"out{case}_{key}"])
            assert value.shape == expected.shape, (name, key)
            err = (value.float().cpu() - expected).abs().max().item()
            assert err < TOLERANCE, f"{name} input {case} {key}: max abs error {err:.2e}"
