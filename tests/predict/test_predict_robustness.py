"""`lavt predict` on many images and expressions: memory, file names, errors, notices."""

from __future__ import annotations

import json
import logging
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
from lavt.errors import InputError
from lavt.modeling import LAVT, build_model
from lavt.predict import Predictor, notices

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(path, build_model(tiny_config()))
    return path


def _scene(path: Path, size=(90, 60)) -> Path:
    image = Image.new("RGB", size, (120, 120, 120))
    ImageDraw.Draw(image).ellipse((5, 5, 35, 35), fill=(220, 40, 40))
    image.save(path)
    return path


def _predict(checkpoint, images, texts, out, *extra) -> int:
    args = ["predict", "--checkpoint", str(checkpoint), "--image", *map(str, images)]
    return main([*args, "--text", *texts, "--output", str(out), "--device", "cpu", *extra])


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_names_are_unique_and_runs_add_to_the_folder(checkpoint, tmp_path):
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    images = [_scene(tmp_path / "d1" / "x.png"), _scene(tmp_path / "d2" / "x.png")]
    images.append(_scene(tmp_path / "x-1.png"))
    out = tmp_path / "out"
    assert _predict(checkpoint, images, ["a", "b"], out) == 0
    assert _predict(checkpoint, [_scene(tmp_path / "other.png")], ["a"], out) == 0
    assert _predict(checkpoint, images[:1], ["a"], out) == 0  # the same again: replaced
    lines = _lines(out)
    assert len(lines) == 7  # 3 x 2 + 1, the repeated pair listed once
    assert len({line["mask"] for line in lines}) == 7
    assert {(line["image"], line["text"]) for line in lines} == {
        *((str(i), t) for i in images for t in "ab"),
        (str(tmp_path / "other.png"), "a"),
    }
    assert all(Path(line["mask"]).is_file() for line in lines)
    assert len(list(out.glob("*_mask.png"))) == 7


def test_images_are_checked_first_and_decoded_one_at_a_time(checkpoint, tmp_path, monkeypatch):
    from lavt.predict import batch

    events = []
    real_load = batch.load_image
    monkeypatch.setattr(batch, "load_image", lambda p: events.append("load") or real_load(p))
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    images = [_scene(tmp_path / f"{k}.png") for k in range(3)]
    batch.predict_to_folder(
        predictor, images, ["a"], tmp_path / "out", report=lambda _: events.append("predict")
    )
    assert events == ["load", "predict"] * 3
    broken = tmp_path / "broken.png"
    broken.write_bytes(images[0].read_bytes()[:60])
    events.clear()
    with pytest.raises(InputError, match=r"broken\.png"):
        batch.predict_to_folder(predictor, [*images, broken], ["a"], tmp_path / "out2")
    assert events == [] and not (tmp_path / "out2").exists()  # nothing ran


def test_one_expression_at_a_time_at_full_size(checkpoint, tmp_path, monkeypatch):
    sizes = []
    real = LAVT.postprocess

    def spy(logits, size):
        sizes.append(logits.shape[0])
        return real(logits, size)

    monkeypatch.setattr(LAVT, "postprocess", staticmethod(spy))
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu", chunk_size=4)
    results = predictor.predict(_scene(tmp_path / "s.png", (300, 200)), [f"t{k}" for k in range(9)])
    assert sizes == [1] * 9
    for result in results:
        assert result.mask.dtype == np.bool_ and result.mask.shape == (200, 300)
        assert result.probability is None and 0.0 <= result.mean_foreground_probability <= 1.0


_MEASURE = """
import resource, sys
import numpy as np
import lavt
predictor = lavt.Predictor.from_checkpoint(sys.argv[1], device="cpu")
image = np.full((1500, 2000, 3), 90, dtype=np.uint8)
predictor.predict(image, ["x"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kept = [r.mask for r in predictor.iter_predict(image, [f"t{k}" for k in range(int(sys.argv[2]))])]
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_full_size_float_maps(checkpoint):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", _MEASURE, str(checkpoint), "40"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    grown_mib = int(done.stdout.split()[-1])
    # 40 boolean 3 MP masks are 115 MiB; 40 float maps (or all logits at once) would be > 900
    assert grown_mib < 400


def test_out_of_memory_is_a_one_line_error(checkpoint, tmp_path, capsys, monkeypatch):
    def fail(logits, size):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
            "you tried to allocate 38400000000 bytes."
        )

    monkeypatch.setattr(LAVT, "postprocess", staticmethod(fail))
    assert _predict(checkpoint, [_scene(tmp_path / "s.png")], ["a"], tmp_path / "out") != 0
    err = capsys.readouterr().err
    assert err.startswith("lavt predict: error: out of memory") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("device", "message"),
    [("banana", "--device 'banana': not a device name"), ("cuda", "no CUDA device")],
)
def test_bad_devices(checkpoint, tmp_path, capsys, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "out"
    code = _predict(checkpoint, [_scene(tmp_path / "s.png")], ["a"], out, "--device", device)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_output_that_is_a_file(checkpoint, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("x")
    assert _predict(checkpoint, [_scene(tmp_path / "s.png")], ["a"], taken) == 2
    err = capsys.readouterr().err
    assert "--output" in err and "not a folder" in err and err.count("\n") == 1


def test_library_errors_name_parameters(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(InputError, match=r"^texts: no expression given$") as info:
        predictor.predict(np.zeros((8, 8, 3), dtype=np.uint8), [])
    assert info.value.param == "texts"
    with pytest.raises(InputError, match=r"^img_size 8") as info:
        Predictor(lavt.load_model(checkpoint), device="cpu", img_size=8)
    assert info.value.param == "img_size"
    with pytest.raises(InputError) as info:
        Predictor(lavt.load_model(checkpoint), device="banana")
    assert info.value.param == "device"


def test_bundled_model_notices(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(notices, "_said", set())
    predictor = Predictor.from_checkpoint(device="cpu")
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)  # no flat background
    scene = np.full((64, 64, 3), 200, dtype=np.uint8)
    with caplog.at_level(logging.WARNING, logger="lavt"):
        predictor.predict(scene, ["the red circle"])
        assert not caplog.records
        predictor.predict(photo, ["the red circle", "the zebra"])
        predictor.predict(photo, ["the zebra"])
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # each notice once
    assert "photograph" in messages[0] and "released" in messages[0]
    assert "[UNK]" in messages[1] and "the zebra" in messages[1] and "released" in messages[1]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lavt"):
        predictor.predict(scene, [" ".join(["the big red circle"] * 10)])
    assert "cut" in caplog.records[0].getMessage()
