"""A full-size LAVT (random Swin-B + BERT-base) at 480 exports exactly."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")

from onnx_helpers import assert_agrees

from lavt.export import export_onnx, load_onnx_model
from lavt.modeling import build_model
from lavt.modeling.config import preset_config


@pytest.mark.slow
def test_swin_base_bert_base_480(tmp_path):
    torch.manual_seed(0)
    model = build_model(preset_config("base", window_size=12, img_size=480)).eval()
    result = export_onnx(model, tmp_path / "base.onnx", simplify=False)
    assert result.max_relative_error <= 1e-4
    runner = load_onnx_model(result.path)
    assert runner.img_size == 480 and runner.config.depths == (2, 2, 18, 2)
    assert_agrees(runner, model, batches=(1, 3))
