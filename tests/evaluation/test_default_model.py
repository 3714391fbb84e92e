"""The bundled default model: present, small, loadable, and it reads the text."""

from __future__ import annotations

import json

import pytest
import torch

import lavt
from lavt.assets import default_model_path
from lavt.cli import main


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Unseen scenes (a seed the model was not trained on), at the model's 64 px."""
    from lavt.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("scenes")
    generate_dataset(root, num_images=40, seed=777, image_size=(64, 64))
    return root


def _overall_iou(model, root, *, swap: bool) -> float:
    from lavt.data.dataset import ReferEvalDataset
    from lavt.data.refer import ReferIndex
    from lavt.evaluation import evaluate, make_eval_loader
    from lavt.tokenizer import tokenizer_for_model

    index = ReferIndex(root, "refcoco", "unc")
    refs = [ref for split in ("train", "val") for ref in index.split(split)]
    dataset = ReferEvalDataset(
        index,
        refs,
        tokenizer=tokenizer_for_model(model),
        img_size=model.config.img_size,
        swap_expressions=swap,
    )
    loader = make_eval_loader(dataset, batch_size=8, workers=0)
    result = evaluate(model, loader, device=torch.device("cpu"), keep_records=False)
    return result.metrics.summary()["overall_iou"]


@pytest.mark.slow
def test_default_model_is_bundled_and_small():
    path = default_model_path()
    assert path.suffix == ".safetensors"
    assert path.stat().st_size <= 10 * 2**20
    model = lavt.load_model(path)
    assert model.config.img_size == 64 and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.slow
def test_default_model_segments_unseen_scenes_by_their_text(scenes):
    model = lavt.load_model(default_model_path())
    plain = _overall_iou(model, scenes, swap=False)
    swapped = _overall_iou(model, scenes, swap=True)
    # measured for the shipped model: 72.4 / 1.8 (docs/synthetic.md, "The bundled default model")
    assert plain >= 65.0
    assert plain - swapped >= 50.0


def test_predict_without_checkpoint(scenes, tmp_path):
    from lavt.data.refer import ReferIndex

    index = ReferIndex(scenes, "refcoco", "unc")
    ref = index.split("val")[0]
    image = index.image_path(ref.image_id)
    out = tmp_path / "out"
    code = main(
        ["predict", "--image", str(image), "--text", ref.sentences[0].text, "--output", str(out)]
    )
    assert code == 0
    line = json.loads((out / "predictions.jsonl").read_text().splitlines()[0])
    assert 0.0 < line["foreground_fraction"] < 0.5
