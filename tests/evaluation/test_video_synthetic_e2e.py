"""Offline video road, end to end: ``lavt synth --video`` -> ``lavt evaluate --video-protocol
ytvos`` -> ``lavt predict --video`` on the same frames, with the bundled image model."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from PIL import Image

from lavt.cli import main
from lavt.evaluation.video_metrics import VideoMetrics


@pytest.mark.slow
def test_synthetic_videos_through_evaluate_and_predict(tmp_path, capsys):
    root, evaluated = tmp_path / "videos", tmp_path / "eval"
    assert main(["synth", "--video", "--output", str(root), "--videos", "3", "--frames", "5"]) == 0
    args = ["--data-root", str(root), "--split", "valid", "--output", str(evaluated)]
    assert main(["evaluate", "--video-protocol", "ytvos", *args, "--device", "cpu"]) == 0
    records = [json.loads(line) for line in (evaluated / "valid.jsonl").read_text().splitlines()]
    summary = json.loads((evaluated / "metrics.json").read_text())["valid"]
    assert records and summary["num_expressions"] == len(records)
    # the bundled model finds the synthetic objects: far above an empty mask's J (0)
    assert summary["J"] > 40

    # lavt predict --video on one valid video with all its expressions: the masks score the
    # same J and F as the evaluation reported for those expressions
    video = records[0]["video"]
    mine = [r for r in records if r["video"] == video]
    texts = [arg for r in mine for arg in ("--text", r["text"])]
    frames_dir = root / "valid" / "JPEGImages" / video
    predicted = tmp_path / "pred"
    capsys.readouterr()
    assert main(["predict", "--video", str(frames_dir), *texts, "--output", str(predicted),
                 "--device", "cpu", "--clip-length", "0"]) == 0  # fmt: skip
    lines = [
        json.loads(line) for line in (predicted / "predictions.jsonl").read_text().splitlines()
    ]
    assert len(lines) == len(mine) * records[0]["frames"]
    frame_names = sorted(p.stem for p in frames_dir.iterdir())
    for index, record in enumerate(mine):
        rows = sorted((x for x in lines if x["text_index"] == index), key=lambda x: x["frame"])
        pred = np.stack([mask_utils.decode({**x["rle"], "counts": x["rle"]["counts"].encode()})
                         for x in rows])  # fmt: skip
        gt = np.stack([np.asarray(Image.open(root / "valid" / "Annotations" / video / f"{n}.png"))
                       == record["obj_id"] for n in frame_names])  # fmt: skip
        j, f = VideoMetrics().add(torch.from_numpy(pred), torch.from_numpy(gt))
        assert j == pytest.approx(record["J"], abs=1e-9)
        assert f == pytest.approx(record["F"], abs=1e-9)
