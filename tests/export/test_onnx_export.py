"""ONNX export of the golden checkpoints: onnxruntime agrees with PyTorch, metadata round trip."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnxruntime")

import onnx
from onnx_helpers import assert_agrees, padded_batch, relative_error

from lavt.checkpoint import load_model
from lavt.cli import main
from lavt.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from lavt.export import FORMAT, export_onnx, load_onnx_model

GOLDEN = ("lavt_one_w7", "lavt_w12_mha2")
SIZE = 96  # maps 24, 12, 6, 3: every stage pads to the window and shifts


@pytest.fixture(scope="module", params=GOLDEN)
def exported(request, golden_dir, tmp_path_factory):
    checkpoint = golden_dir / f"{request.param}.pth"
    out = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    result = export_onnx(checkpoint, out, img_size=SIZE, simplify=False)
    return checkpoint, result


@pytest.mark.slow
def test_golden_checkpoints_agree_with_pytorch(exported):
    checkpoint, result = exported
    model = load_model(checkpoint)
    runner = load_onnx_model(result.path)
    assert_agrees(runner, model, batches=(1, 3))
    assert result.max_relative_error <= 1e-4
    graph = onnx.load(str(result.path))
    onnx.checker.check_model(graph, full_check=True)
    dims = [d.dim_param or d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, SIZE, SIZE]


@pytest.mark.slow
def test_metadata_makes_the_file_self_contained(exported, golden_dir):
    checkpoint, result = exported
    model = load_model(checkpoint)
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert props["lavt.format"] == FORMAT and props["lavt.format_version"] == "1"
    config = json.loads(props["lavt.config"])
    assert config == model.config.replace(img_size=SIZE).to_dict()
    assert json.loads(props["lavt.mean"]) == list(IMAGENET_MEAN)
    assert json.loads(props["lavt.std"]) == list(IMAGENET_STD)
    assert (props["lavt.img_size"], props["lavt.max_tokens"], props["lavt.dtype"]) == (
        str(SIZE),
        "20",
        "fp32",
    )
    vocab = json.loads(props["lavt.vocab"])  # released checkpoints: bert-base-uncased
    assert len(vocab) == 30522 and vocab[:2] == ["[PAD]", "[unused0]"]
    runner = load_onnx_model(result.path)
    assert runner.config == model.config.replace(img_size=SIZE)
    assert runner.vocab == vocab and runner.img_size == SIZE


@pytest.mark.slow
def test_static_batch_runs_row_by_row(golden_dir, tmp_path):
    checkpoint = golden_dir / "lavt_w12_mha2.pth"
    out = tmp_path / "static.onnx"
    export_onnx(checkpoint, out, img_size=64, max_tokens=12, dynamic_batch=False, simplify=False)
    graph = onnx.load(str(out))
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    runner = load_onnx_model(out)
    assert runner.config.max_text_len == 12
    assert_agrees(runner, load_model(checkpoint), batches=(1, 3))


@pytest.mark.slow
def test_simplified_and_fp16_graphs(golden_dir, tmp_path):
    checkpoint = golden_dir / "lavt_one_w7.pth"
    model = load_model(checkpoint)
    plain = export_onnx(model, tmp_path / "plain.onnx", img_size=64, simplify=False)
    slim = export_onnx(model, tmp_path / "slim.onnx", img_size=64)
    assert slim.simplified and slim.num_nodes < plain.num_nodes / 2
    assert_agrees(load_onnx_model(slim.path), model)
    half = export_onnx(model, tmp_path / "half.onnx", img_size=64, dtype="fp16")
    assert half.num_bytes < 0.6 * slim.num_bytes
    runner = load_onnx_model(half.path)
    assert runner.metadata.dtype == "fp16"
    inputs = padded_batch(3, 64, 20, model.config.text.vocab_size, seed=3)
    with torch.no_grad():
        expected = model(*inputs)
    got = runner(*inputs)
    assert got.dtype == torch.float32
    assert relative_error(got, expected) < 2e-2
    assert (got.argmax(1) == expected.argmax(1)).float().mean() > 0.99


@pytest.mark.slow
def test_cli_export(golden_dir, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    args = ["export", str(golden_dir / "lavt_one_w7.pth"), str(out), "--img-size", "64"]
    assert main([*args, "--max-tokens", "8", "--no-simplify", "--opset", "18"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "64x64, 8 tokens, fp32, batch dynamic, opset 18" in printed
    assert load_onnx_model(out).metadata.max_tokens == 8
    assert [p.name for p in tmp_path.iterdir()] == ["cli.onnx"]  # no temporary left behind


@pytest.mark.slow
def test_default_model_keeps_its_own_vocabulary(tmp_path):
    from lavt.assets import default_model_path
    from lavt.tokenizer import tokenizer_for_model

    model = load_model(default_model_path())
    result = export_onnx(default_model_path(), tmp_path / "default.onnx", simplify=False)
    runner = load_onnx_model(result.path)
    assert runner.vocab == model.vocab and len(runner.vocab) == model.config.text.vocab_size
    texts = ["the red circle", "the small blue square left of the green triangle"]
    ids, mask = tokenizer_for_model(runner)(texts)
    assert torch.equal(ids, tokenizer_for_model(model)(texts)[0])
    image = padded_batch(2, runner.img_size, 20, 10)[0]
    with torch.no_grad():
        expected = model(image, ids, mask)
    assert relative_error(runner(image, ids, mask), expected) <= 1e-4
