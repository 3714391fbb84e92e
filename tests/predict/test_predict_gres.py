"""Predictor and `lavt predict` say whether an object was found (head or area rule)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from lavt.checkpoint import save_checkpoint
from lavt.cli import main
from lavt.errors import InputError
from lavt.modeling import build_model
from lavt.predict import Predictor

TEXTS = ["the red circle", "all squares"]


def _model(head: bool, no_object_bias: float = 0.0):
    torch.manual_seed(0)
    model = build_model(tiny_config(img_size=32, no_target_head=head)).eval()
    if head:
        last = model.no_target_head.mlp[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([0.0, no_object_bias]))
    return model


def _image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)


def test_head_decides_and_empties_the_mask():
    image = _image()
    rejected = Predictor(_model(True, 20.0), device="cpu").predict(image, TEXTS)
    accepted = Predictor(_model(True, -20.0), device="cpu").predict(image, TEXTS)
    plain = Predictor(_model(False), device="cpu", no_target_rule="area")
    for no, yes, base in zip(rejected, accepted, plain.predict(image, TEXTS), strict=True):
        assert not no.found and not no.mask.any() and no.no_target_probability > 0.99
        assert no.mean_foreground_probability == 0.0
        assert yes.found and yes.no_target_probability < 0.01
        assert np.array_equal(yes.mask, base.mask)  # same weights apart from the head


def test_area_rule():
    image = _image()
    model = _model(False)
    default = Predictor(model, device="cpu").predict(image, TEXTS)
    assert all(p.found == bool(p.mask.any()) and p.no_target_probability is None for p in default)
    everything = Predictor(model, device="cpu", area_threshold=32 * 32).predict(image, TEXTS)
    assert all(not p.found and not p.mask.any() for p in everything)
    head_model = _model(True, 20.0)
    by_area = Predictor(head_model, device="cpu", no_target_rule="area").predict(image, TEXTS)
    assert all(p.found == bool(p.mask.any()) for p in by_area)
    with pytest.raises(InputError, match="no no-target head"):
        Predictor(model, device="cpu", no_target_rule="head")


def test_cli_reports_no_object(tmp_path, capsys):
    save_checkpoint(tmp_path / "head.pt", _model(True, 20.0))
    Image.fromarray(_image()).save(tmp_path / "scene.png")
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(tmp_path / "head.pt"), "--image"]
    args += [str(tmp_path / "scene.png"), "--text", *TEXTS, "--output", str(out)]
    assert main([*args, "--device", "cpu"]) == 0
    assert capsys.readouterr().out.count("no object found") == 2
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["found"] for line in lines] == [False, False]
    assert all(line["no_target_probability"] > 0.99 for line in lines)
    for line in lines:
        with Image.open(line["mask"]) as mask:
            assert not np.asarray(mask).any()
        assert (out / line["overlay"]).is_file()
    assert main([*args, "--no-target-rule", "area", "--area-threshold", "-3"]) == 2
    assert "--area-threshold -3: must be >= 0" in capsys.readouterr().err
