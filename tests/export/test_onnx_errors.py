"""One-line errors for checkpoints that cannot be exported and ONNX files that are not ours."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("onnxruntime")

import onnx
from onnx import TensorProto, helper

from lavt.cli import main
from lavt.errors import CheckpointError, InputError
from lavt.export import load_for_runtime, load_onnx_model
from lavt.export.metadata import FORMAT


def _export(checkpoint, out, *extra):
    return main(["export", str(checkpoint), str(out), "--no-simplify", *extra])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--img-size", "100"], "--img-size 100: must be a positive multiple of 32"),
        (["--img-size", "16"], "--img-size 16: must be a positive multiple of 32"),
        (["--img-size", "0"], "--img-size 0: must be a positive multiple of 32"),
        (["--max-tokens", "1"], "--max-tokens 1: must be in 2..32"),
        (["--max-tokens", "33"], "--max-tokens 33: must be in 2..32"),
        (["--opset", "12"], "--opset 12: must be in 17..20"),
    ],
)
def test_bad_export_arguments(golden_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "m.onnx"
    assert _export(golden_dir / "lavt_one_w7.pth", out, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lavt export: error: {message}")
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["missing", "random", "empty", "onnx", "wrong_suffix", "dir"])
def test_checkpoints_that_cannot_be_exported(golden_dir, tmp_path, capsys, kind):
    checkpoint, out = tmp_path / "ck.pth", tmp_path / "out" / "m.onnx"
    if kind == "random":
        checkpoint.write_bytes(os.urandom(2048))
    elif kind == "empty":
        checkpoint.write_bytes(b"")
    elif kind == "onnx":
        checkpoint = tmp_path / "ck.onnx"
        checkpoint.write_bytes(b"x")
    elif kind == "wrong_suffix":
        checkpoint, out = golden_dir / "lavt_one_w7.pth", tmp_path / "out" / "m.pt"
    elif kind == "dir":
        checkpoint, out = golden_dir / "lavt_one_w7.pth", tmp_path / "out.onnx"
        out.mkdir()
    assert _export(checkpoint, out) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("lavt export: error: ")
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() or kind == "dir"


def _identity_model(path, props=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "ONNX model not found"),
        ("empty", "ONNX model file is empty"),
        ("random", "not a readable ONNX model"),
        ("checkpoint", "not a readable ONNX model"),
        ("foreign", "ONNX model without lavt metadata"),
        ("version", "lavt ONNX format version '99' is not supported"),
        ("malformed", "malformed lavt metadata"),
    ],
)
def test_onnx_files_that_are_not_ours(golden_dir, tmp_path, kind, message):
    path = tmp_path / "m.onnx"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "checkpoint":
        path = golden_dir / "lavt_one_w7.pth"
    elif kind == "foreign":
        _identity_model(path)
    elif kind == "version":
        _identity_model(path, {"lavt.format": FORMAT, "lavt.format_version": "99"})
    elif kind == "malformed":
        _identity_model(path, {"lavt.format": FORMAT, "lavt.format_version": "1"})
    with pytest.raises(CheckpointError, match=message) as info:
        load_onnx_model(path)
    assert "\n" not in str(info.value)


def test_cli_reports_a_foreign_onnx_file(tmp_path, capsys):
    path = _identity_model(tmp_path / "foreign.onnx")
    image = tmp_path / "i.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    args = ["predict", "--checkpoint", str(path), "--image", str(image), "--text", "a"]
    out = tmp_path / "out"
    assert main([*args, "--runtime", "onnxruntime", "--output", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"lavt predict: error: {path}: ONNX model without lavt metadata "
        "(not written by lavt export)"
    )
    assert not out.exists()


def test_runtime_choice_errors(tmp_path):
    with pytest.raises(InputError, match="runtime 'tensorrt': expected one of torch, onnxruntime"):
        load_for_runtime(tmp_path / "m.onnx", runtime="tensorrt")
    with pytest.raises(InputError, match=r"needs an exported \.onnx file"):
        load_for_runtime(None, runtime="onnxruntime")
    with pytest.raises(InputError, match="is an ONNX model"):
        load_for_runtime(tmp_path / "m.onnx", runtime="torch")


def test_malformed_metadata_values(tmp_path):
    props = {"lavt.format": FORMAT, "lavt.format_version": "1", "lavt.config": "{"}
    path = _identity_model(tmp_path / "m.onnx", props)
    with pytest.raises(CheckpointError, match="malformed lavt metadata"):
        load_onnx_model(path)
