"""The README's quick start shows a real result: the named objects are found."""

from __future__ import annotations

import pytest

import lavt
from lavt.data.synthetic import generate_dataset

IMAGE = "images/mscoco/images/train2014/COCO_train2014_000000000001.jpg"


@pytest.mark.slow
def test_quick_start_expressions_segment_their_objects(tmp_path):
    generate_dataset(tmp_path, num_images=20, seed=0, image_size=(64, 64))  # lavt synth defaults
    predictor = lavt.Predictor.from_checkpoint(device="cpu")
    texts = ["the red circle", "the cross under the red circle"]
    results = predictor.predict(tmp_path / IMAGE, texts)
    fractions = [r.foreground_fraction for r in results]
    assert fractions == pytest.approx([0.036, 0.031], abs=0.006)  # as the README shows
    assert not (results[0].mask & results[1].mask).any()  # two different objects
