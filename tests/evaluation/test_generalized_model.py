"""The bundled generalized model (no-target head): present, small, loadable by name,
and on unseen generalized scenes it finds the referred objects, says "no object" when
there is none, and fails when the expressions are swapped (it reads the text)."""

from __future__ import annotations

import json

import pytest
import torch

import lavt
from lavt.assets import generalized_model_path
from lavt.cli import main


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Unseen generalized scenes (a seed the model was not trained on), at its 64 px."""
    from lavt.data.synthetic.gres_writer import generate_generalized_dataset

    root = tmp_path_factory.mktemp("gscenes")
    generate_generalized_dataset(root, num_images=60, seed=777, image_size=(64, 64))
    return root


def _metrics(scenes, out, *extra) -> dict:
    args = ["evaluate", "--checkpoint", "synthetic-generalized", "--data-root", str(scenes)]
    args += ["--dataset", "grefcoco", "--split", "train", "--output", str(out)]
    args += ["--workers", "0", "--device", "cpu", *extra]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())["train"]


@pytest.mark.slow
def test_generalized_model_is_bundled_and_small():
    path = generalized_model_path()
    assert path.suffix == ".safetensors" and path.stat().st_size <= 10 * 2**20
    model = lavt.load_model("synthetic-generalized")
    assert model.no_target_head is not None and model.config.img_size == 64
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.slow
def test_generalized_model_on_unseen_scenes(scenes, tmp_path):
    plain = _metrics(scenes, tmp_path / "plain")
    swapped = _metrics(scenes, tmp_path / "swapped", "--swap-expressions")
    assert plain["no_target_rule"] == "head" and plain["no_target_samples"] > 0
    # measured for the shipped model on these scenes: gIoU 70.59, N-acc 99.51, swapped
    # gIoU 8.45 (1017 expressions; docs/gres.md, "The bundled generalized model")
    assert plain["gIoU"] >= 65.0 and plain["N-acc"] >= 80.0, plain
    assert swapped["gIoU"] <= plain["gIoU"] - 30, (plain["gIoU"], swapped["gIoU"])
