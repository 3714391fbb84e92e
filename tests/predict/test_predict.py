"""`lavt predict`, `lavt convert` and the Predictor API, including bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import lavt
from conftest import tiny_config
from lavt.checkpoint import save_checkpoint
from lavt.cli import main
from lavt.errors import CheckpointError
from lavt.evaluation.overlays import view_size
from lavt.modeling import build_model
from lavt.predict import Predictor

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(path, build_model(tiny_config()))
    return path


def _scene(path: Path, size=(90, 60)) -> Path:
    image = Image.new("RGB", size, (120, 120, 120))
    draw = ImageDraw.Draw(image)
    draw.ellipse((5, 5, 35, 35), fill=(220, 40, 40))
    draw.rectangle((50, 20, 80, 50), fill=(40, 80, 220))
    image.save(path)
    return path


def test_predict_end_to_end(checkpoint, tmp_path, capsys):
    first = _scene(tmp_path / "scene.png")
    other = tmp_path / "b"
    other.mkdir()
    second = _scene(other / "scene.png", size=(40, 70))  # same stem, other size
    out = tmp_path / "out"
    texts = ["the red circle", "the blue square"]
    args = ["predict", "--checkpoint", str(checkpoint), "--image", str(first), str(second)]
    assert main([*args, "--text", *texts, "--output", str(out), "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    assert {tuple(sorted(line)) for line in lines} == {
        (
            "foreground_fraction",
            "found",
            "image",
            "mask",
            "mean_foreground_probability",
            "no_target_probability",
            "overlay",
            "text",
        )
    }
    for line in lines:  # the bundled model has no head: the area rule decides
        assert line["no_target_probability"] is None
        assert line["found"] == (line["foreground_fraction"] > 0)
    sizes = {str(first): (90, 60), str(second): (40, 70)}
    for line in lines:
        with Image.open(line["mask"]) as mask, Image.open(line["overlay"]) as overlay:
            assert mask.size == sizes[line["image"]]
            view = view_size(*mask.size)  # overlays are drawn enlarged, with a legend below
            assert overlay.size[0] == view[0] and overlay.size[1] > view[1]
            values = np.asarray(mask)
            assert set(np.unique(values)) <= {0, 255}
            assert line["foreground_fraction"] == pytest.approx((values > 0).mean(), abs=1e-6)
        assert 0.0 <= line["mean_foreground_probability"] <= 1.0
    assert len({line["mask"] for line in lines}) == 4  # no overwritten outputs
    assert "the red circle" in capsys.readouterr().out


def test_expressions_are_batched_consistently(checkpoint, tmp_path):
    predictor = Predictor(lavt.load_model(checkpoint), device="cpu")
    image = Image.open(_scene(tmp_path / "s.png"))
    texts = ["the red circle", "a blue square on the right"]
    together = predictor.predict(image, texts, probability=True)
    alone = [predictor.predict(image, [t], probability=True)[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.probability, b.probability, atol=1e-5)
        assert a.mask.shape == (60, 90)


def test_predictor_accepts_arrays(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    result = predictor.predict(np.zeros((30, 20, 3), dtype=np.uint8), "anything", probability=True)[
        0
    ]
    assert result.mask.shape == (30, 20) and result.probability.dtype == np.float32


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_checkpoint(tmp_path: Path, kind: str, golden_dir: Path) -> Path:
    path = tmp_path / f"{kind}.pth"
    if kind == "missing":
        return path
    if kind == "truncated":
        data = (golden_dir / "lavt_one_w7.pth").read_bytes()
        path.write_bytes(data[:1000])
    elif kind == "corrupt":
        path.write_bytes(os.urandom(4096))
    elif kind == "not_lavt":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "malicious":
        torch.save({"model": {}, "args": _Evil(tmp_path / "pwned")}, path)
    elif kind == "small_vocab":
        return golden_dir / "lavt_one_w7.pth"  # its BERT has 1,000 tokens
    return path


@pytest.mark.parametrize(
    "kind", ["missing", "truncated", "corrupt", "not_lavt", "malicious", "small_vocab"]
)
def test_bad_checkpoints(tmp_path, golden_dir, capsys, kind):
    image = _scene(tmp_path / "s.png")
    ck = _bad_checkpoint(tmp_path, kind, golden_dir)
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            "--checkpoint",
            str(ck),
            "--image",
            str(image),
            "--text",
            "a",
            "--output",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert (
        err.startswith("lavt predict: error:") and err.count("\n") == 1 and "Traceback" not in err
    )
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "bomb"])
def test_bad_images(tmp_path, checkpoint, capsys, monkeypatch, kind):
    good = _scene(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    if kind == "empty":
        bad.touch()
    elif kind == "text":
        bad.write_text("hello")
    elif kind == "truncated":
        bad.write_bytes(good.read_bytes()[:100])
    elif kind == "bomb":
        bad = good
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(checkpoint), "--image", str(good), str(bad)]
    assert main([*args, "--text", "x", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_expression(tmp_path, checkpoint, capsys, text):
    image = _scene(tmp_path / "s.png")
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(checkpoint), "--image", str(image), "--text", "ok", text]
    assert main([*args, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--text #2" in err and "empty" in err
    assert not out.exists()


def test_small_vocabulary_is_a_clear_error(golden_dir):
    with pytest.raises(CheckpointError, match="1000 token embeddings"):
        Predictor(lavt.load_model(golden_dir / "lavt_one_w7.pth"), device="cpu")


def test_convert_cli_round_trip(tmp_path, golden_dir, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["convert", str(golden_dir / "lavt_w12_mha2.pth"), str(out)]) == 0
    assert "window 12" in capsys.readouterr().out
    data = np.load(golden_dir / "lavt_w12_mha2.npz")
    inputs = [torch.from_numpy(data[f"in0_{k}"]) for k in ("image", "input_ids", "attention_mask")]
    with torch.no_grad():
        a = lavt.load_model(out)(*inputs)
        b = lavt.load_model(golden_dir / "lavt_w12_mha2.pth")(*inputs)
    assert torch.equal(a, b)
    assert main(["convert", str(golden_dir / "lavt_w12_mha2.pth"), str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow
def test_module_entry_point(checkpoint, tmp_path):
    image = _scene(tmp_path / "s.png")
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [
        sys.executable,
        "-m",
        "lavt",
        "predict",
        "--checkpoint",
        str(checkpoint),
        "--image",
        str(image),
        "--text",
        "the red circle",
        "--output",
        str(tmp_path / "o"),
        "--device",
        "cpu",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "predictions.jsonl").is_file()
    bad = subprocess.run(
        [*cmd[:-4], "--text", " ", "--output", str(tmp_path / "p")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
