"""The onnxruntime path of the predictor, ``lavt predict`` and ``lavt evaluate`` matches PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

pytest.importorskip("onnxruntime")

from conftest import tiny_config
from lavt.checkpoint import load_model, save_checkpoint
from lavt.cli import main
from lavt.data.synthetic import generate_dataset
from lavt.export import OnnxLAVT, export_onnx
from lavt.modeling import build_model
from lavt.predict import Predictor

SIZE = 64
TEXTS = ["the red circle", "a blue square on the right of the picture", "circle"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny checkpoint (full BERT vocabulary), its ONNX export and a synthetic dataset."""
    root = tmp_path_factory.mktemp("paths")
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.pt", build_model(tiny_config(img_size=SIZE)))
    export_onnx(root / "tiny.pt", root / "tiny.onnx", simplify=False)
    generate_dataset(root / "data", num_images=12, seed=4, image_size=(SIZE, SIZE))
    return root


def _scene(path, size=(90, 60)):
    image = Image.new("RGB", size, (120, 120, 120))
    draw = ImageDraw.Draw(image)
    draw.ellipse((5, 5, 35, 35), fill=(220, 40, 40))
    draw.rectangle((50, 20, 80, 50), fill=(40, 80, 220))
    image.save(path)
    return path


@pytest.mark.slow
def test_predictor_onnxruntime_matches_pytorch(files, tmp_path):
    image = Image.open(_scene(tmp_path / "scene.png"))
    onnx = Predictor.from_checkpoint(files / "tiny.onnx", device="cpu", runtime="onnxruntime")
    assert isinstance(onnx.model, OnnxLAVT)
    reference = Predictor(load_model(files / "tiny.pt"), device="cpu")
    pairs = zip(
        onnx.predict(image, TEXTS, probability=True),
        reference.predict(image, TEXTS, probability=True),
        strict=True,
    )
    for a, b in pairs:
        assert a.text == b.text and a.mask.shape == b.mask.shape == (60, 90)
        np.testing.assert_allclose(a.probability, b.probability, atol=1e-5)
        uncertain = np.abs(b.probability - 0.5) < 1e-4
        assert np.array_equal(a.mask[~uncertain], b.mask[~uncertain])


@pytest.mark.slow
def test_cli_predict_with_onnxruntime(files, tmp_path, capsys):
    image = _scene(tmp_path / "scene.png")
    outputs = {}
    for runtime, checkpoint in (("torch", "tiny.pt"), ("onnxruntime", "tiny.onnx")):
        out = tmp_path / runtime
        args = ["predict", "--checkpoint", str(files / checkpoint), "--image", str(image)]
        extra = ["--output", str(out), "--device", "cpu", "--runtime", runtime]
        assert main([*args, "--text", *TEXTS, *extra]) == 0
        lines = (out / "predictions.jsonl").read_text().splitlines()
        outputs[runtime] = [json.loads(line) for line in lines]
    for a, b in zip(outputs["torch"], outputs["onnxruntime"], strict=True):
        assert a["text"] == b["text"]
        assert a["foreground_fraction"] == pytest.approx(b["foreground_fraction"], abs=1e-3)
        assert a["mean_foreground_probability"] == pytest.approx(
            b["mean_foreground_probability"], abs=1e-4
        )


def _evaluate(files, out, checkpoint, *extra):
    args = ["evaluate", "--checkpoint", str(files / checkpoint), "--data-root"]
    args += [str(files / "data"), "--split", "val,testA", "--output", str(out)]
    return main([*args, "--workers", "0", "--device", "cpu", "--batch-size", "3", *extra])


@pytest.mark.slow
@pytest.mark.parametrize("resolution", ["model", "original"])
def test_evaluate_metrics_identical(files, tmp_path, resolution):
    torch_out, onnx_out = tmp_path / "torch", tmp_path / "onnx"
    assert _evaluate(files, torch_out, "tiny.pt", "--resolution", resolution) == 0
    extra = ["--resolution", resolution, "--runtime", "onnxruntime"]
    assert _evaluate(files, onnx_out, "tiny.onnx", *extra) == 0
    metrics = json.loads((torch_out / "metrics.json").read_text())
    assert metrics == json.loads((onnx_out / "metrics.json").read_text())
    assert all(row["num_expressions"] > 0 for row in metrics.values())
    for split in ("val", "testA"):
        records = (torch_out / f"{split}.jsonl").read_text()
        assert records == (onnx_out / f"{split}.jsonl").read_text()


@pytest.mark.slow
def test_onnxruntime_refuses_what_the_graph_cannot_do(files, tmp_path, capsys):
    runner = OnnxLAVT(files / "tiny.onnx")
    with pytest.raises(Exception, match="cannot be trained"):
        runner.train()
    extra = ["--runtime", "onnxruntime", "--amp", "bf16"]
    assert _evaluate(files, tmp_path / "a", "tiny.onnx", *extra) == 2
    extra = ["--runtime", "onnxruntime", "--img-size", "96"]
    assert _evaluate(files, tmp_path / "b", "tiny.onnx", *extra) == 2
    image = _scene(tmp_path / "scene.png")
    args = ["predict", "--checkpoint", str(files / "tiny.onnx"), "--image", str(image)]
    assert main([*args, "--text", "x", "--output", str(tmp_path / "c"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 3 and "Traceback" not in err
    assert "--dtype" in lines[0] and "runs the graph as exported" in lines[0]
    assert "--img-size" in lines[1] and "exported for (3, 64, 64)" in lines[1]
    assert "--runtime torch:" in lines[2] and "is an ONNX model" in lines[2]


def test_postprocess_is_the_models(files):
    from lavt.modeling.lavt import LAVT

    if not hasattr(LAVT, "postprocess"):
        pytest.skip("LAVT.postprocess comes with the predictor refactoring")
    logits = torch.randn(2, 2, SIZE, SIZE)
    runner = OnnxLAVT(files / "tiny.onnx")
    assert torch.equal(runner.postprocess(logits, (30, 40)), LAVT.postprocess(logits, (30, 40)))


@pytest.mark.slow
def test_no_target_head_is_exported(tmp_path):
    """A head model's graph has a second output; the predictor on onnxruntime decides
    "no object" as on PyTorch, with the same probabilities."""
    torch.manual_seed(0)
    model = build_model(tiny_config(img_size=SIZE, no_target_head=True))
    save_checkpoint(tmp_path / "head.pt", model)
    result = export_onnx(tmp_path / "head.pt", tmp_path / "head.onnx", simplify=False)
    assert result.metadata.output_names == ("logits", "no_target_logits")
    assert result.max_relative_error <= 1e-4
    image = Image.open(_scene(tmp_path / "scene.png"))
    onnx = Predictor.from_checkpoint(tmp_path / "head.onnx", device="cpu", runtime="onnxruntime")
    assert onnx.no_target_rule == "head"
    reference = Predictor(load_model(tmp_path / "head.pt"), device="cpu")
    for a, b in zip(onnx.predict(image, TEXTS), reference.predict(image, TEXTS), strict=True):
        assert a.no_target_probability == pytest.approx(b.no_target_probability, abs=1e-5)
        assert a.found == b.found
        if not a.found:
            assert not a.mask.any()
