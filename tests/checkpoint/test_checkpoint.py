"""Loading of released, project and safetensors checkpoints; refusal of bad files."""

from __future__ import annotations

import argparse
import os
import pathlib
import pickle
import shutil

import numpy as np
import pytest
import torch

from conftest import tiny_config
from lavt.checkpoint import (
    convert_to_safetensors,
    load_model,
    read_torch_file,
    save_checkpoint,
)
from lavt.errors import CheckpointError, InputError
from lavt.modeling import build_model


def _released(golden_dir, name="lavt_w12_mha2"):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(golden_dir / f"{name}.pth", weights_only=True)


def _logits(model, golden_dir, name="lavt_w12_mha2"):
    data = np.load(golden_dir / f"{name}.npz")
    inputs = [torch.from_numpy(data[f"in1_{k}"]) for k in ("image", "input_ids", "attention_mask")]
    with torch.no_grad():
        return model(*inputs), torch.from_numpy(data["out1_logits"])


def test_loaded_model_is_in_eval_mode(golden_dir):
    model = load_model(golden_dir / "lavt_one_w7.pth")
    assert not model.training and all(not m.training for m in model.modules())


def test_released_variants_with_prefix_and_pooler(golden_dir, tmp_path):
    """DDP ``module.`` prefixes and BERT pooler keys are accepted."""
    ck = _released(golden_dir)
    ck["model"] = {f"module.{k}": v for k, v in ck["model"].items()}
    ck["bert_model"] = {f"module.{k}": v for k, v in ck["bert_model"].items()}
    ck["bert_model"]["module.pooler.dense.weight"] = torch.zeros(128, 128)
    ck["bert_model"]["module.pooler.dense.bias"] = torch.zeros(128)
    path = tmp_path / "ddp.pth"
    torch.save(ck, path)
    got, expected = _logits(load_model(path), golden_dir)
    assert (got - expected).abs().max() < 1e-4


def test_lavt_one_layout_from_lavt_weights(golden_dir, tmp_path):
    """The same weights stored the `lavt_one` way give the same model."""
    ck = _released(golden_dir)
    bert = ck.pop("bert_model")
    ck["model"].update({f"text_encoder.{k}": v for k, v in bert.items()})
    path = tmp_path / "one.pth"
    torch.save(ck, path)
    got, expected = _logits(load_model(path), golden_dir)
    assert (got - expected).abs().max() < 1e-4


def test_project_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "circle"]
    model = build_model(tiny_config(), vocab=vocab)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, epoch=3)
    raw = torch.load(path, weights_only=True)  # no allow-list needed: plain data only
    assert raw["format"] == "lavt" and raw["epoch"] == 3 and isinstance(raw["config"], dict)
    loaded = load_model(path)
    assert loaded.config == model.config and loaded.vocab == vocab
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    st = tmp_path / "m.safetensors"
    convert_to_safetensors(path, st)
    again = load_model(st)
    assert again.config == model.config and again.vocab == vocab
    image, ids = torch.randn(1, 3, 32, 32), torch.randint(0, 7, (1, 20))
    mask = torch.ones(1, 20, dtype=torch.long)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(image, ids, mask), again(image, ids, mask))


def test_save_refuses_non_finite_weights(tmp_path):
    model = build_model(tiny_config())
    with torch.no_grad():
        model.classifier.conv1_1.bias[0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(tmp_path / "bad.pt", model)
    assert not list(tmp_path.iterdir())


def test_strict_loading_lists_problems(golden_dir, tmp_path):
    ck = _released(golden_dir)
    del ck["model"]["classifier.conv1_1.bias"]
    ck["model"]["classifier.extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(ck, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "classifier.conv1_1.bias" in message and "classifier.extra.weight" in message
    assert "\n" not in message


def test_shape_mismatch_is_reported(tmp_path):
    model = build_model(tiny_config())
    path = tmp_path / "m.pt"
    save_checkpoint(path, model)
    raw = torch.load(path, weights_only=True)
    raw["model"]["classifier.conv1_1.bias"] = torch.zeros(3)
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"shape mismatches: classifier.conv1_1.bias \(3,\)"):
        load_model(path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# the hostile file is a protocol-4 pickle: torch's weights-only unpickler warns before refusing it
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_malicious_pickle_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "args": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load") as info:
        load_model(path)
    assert "system" in str(info.value)
    assert not marker.exists()
    # a plain (non-zip) pickle too
    legacy = tmp_path / "evil.pkl"
    legacy.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError):
        load_model(legacy)
    assert not marker.exists()


def test_other_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "obj.pth"
    torch.save({"model": {}, "args": pathlib.PurePosixPath("/x")}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_torch_file(path)


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated", "corrupt", "not_lavt", "dir"])
def test_bad_checkpoint_files(golden_dir, tmp_path, kind):
    path = tmp_path / "ck.pth"
    if kind == "empty":
        path.touch()
    elif kind == "truncated":
        data = (golden_dir / "lavt_one_w7.pth").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "corrupt":
        path.write_bytes(b"this is not a checkpoint at all" * 10)
    elif kind == "not_lavt":
        torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, path)
    elif kind == "dir":
        path.mkdir()
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_corrupt_safetensors(tmp_path, golden_dir):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(path)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(CheckpointError, match="no LAVT config"):
        load_model(path)


def test_convert_released_checkpoint(golden_dir, tmp_path):
    shutil.copy(golden_dir / "lavt_one_w7.pth", tmp_path / "in.pth")
    out = tmp_path / "out.safetensors"
    convert_to_safetensors(tmp_path / "in.pth", out)
    got, expected = _logits(load_model(out), golden_dir, "lavt_one_w7")
    assert (got - expected).abs().max() < 1e-4


def test_convert_to_float16_halves_the_file_and_loads_as_float32(golden_dir, tmp_path):
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    convert_to_safetensors(golden_dir / "lavt_one_w7.pth", full)
    convert_to_safetensors(golden_dir / "lavt_one_w7.pth", half, dtype="float16")
    assert half.stat().st_size < 0.55 * full.stat().st_size
    model = load_model(half)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    got, expected = _logits(model, golden_dir, "lavt_one_w7")
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    with pytest.raises(InputError, match="dtype"):
        convert_to_safetensors(golden_dir / "lavt_one_w7.pth", full, dtype="int8")


def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path):
    """Issue 11 item 12: a checkpoint with NaN/inf weights does not load silently."""
    model = build_model(tiny_config())
    path = tmp_path / "m.pt"
    save_checkpoint(path, model)
    raw = torch.load(path, weights_only=True)
    raw["model"]["classifier.conv1_1.bias"][0] = float("inf")
    raw["model"]["backbone.norm0.weight"][1] = float("nan")
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="non-finite") as info:
        load_model(path)
    message = str(info.value)
    assert "classifier.conv1_1.bias" in message and "backbone.norm0.weight" in message
    assert str(path) in message and "\n" not in message
    with pytest.raises(CheckpointError, match="non-finite"):
        convert_to_safetensors(path, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("content", [bytes(range(7, 256)) * 20, b'{"model": {}}'])
def test_random_bytes_and_json_get_a_plain_message(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        read_torch_file(path)
    message = str(info.value)
    assert "not a torch checkpoint" in message and "pickled an" not in message
    assert str(path) in message and "\n" not in message


def test_convert_refuses_a_directory_output(golden_dir, tmp_path, capsys):
    from lavt.cli import main

    folder = tmp_path / "out.safetensors"
    folder.mkdir()
    with pytest.raises(InputError, match="is a directory") as info:
        convert_to_safetensors(golden_dir / "lavt_one_w7.pth", folder)
    assert info.value.param == "output"
    code = main(["convert", str(golden_dir / "lavt_one_w7.pth"), str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("lavt convert: error: output ") and "directory" in err
    assert err.count("\n") == 1


def test_convert_refuses_an_output_below_a_file(golden_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write") as info:
        convert_to_safetensors(golden_dir / "lavt_one_w7.pth", tmp_path / "file" / "m.safetensors")
    assert info.value.param == "output"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_convert_refuses_an_unwritable_folder(golden_dir, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match="permission denied"):
            convert_to_safetensors(golden_dir / "lavt_one_w7.pth", locked / "sub" / "m.safetensors")
    finally:
        locked.chmod(0o700)


def test_written_files_follow_the_umask(golden_dir, tmp_path):
    """Issue 11 item 7: checkpoints and converted files are 0644 under umask 022, not 0600."""
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m.pt", build_model(tiny_config()))
        convert_to_safetensors(golden_dir / "lavt_one_w7.pth", tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    assert modes == {"m.pt": "0o644", "m.safetensors": "0o644"}


def test_one_mha_parser():
    from lavt.checkpoint import parse_mha

    assert parse_mha("") == (1, 1, 1, 1) and parse_mha("4-4-4-4") == (4, 4, 4, 4)
    for bad in ("4-4", "a-b-c-d", "0-1-1-1"):
        with pytest.raises(InputError, match="mha") as info:
            parse_mha(bad)
        assert info.value.param == "mha"
