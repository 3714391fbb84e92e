"""A2D-Sentences: the reader on a hand-made layout (h5 masks written with h5py), the
clips of the LAVT-RS protocol, and the metrics against a computation by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from video_sets import frame_image, labels, save_models

import lavt
from lavt.cli import main
from lavt.data.transforms import image_to_tensor
from lavt.data.video.a2d import A2DSample, load_mask, read_a2d
from lavt.evaluation.a2d_eval import clip_indices
from lavt.tokenizer import tokenizer_for_model

h5py = pytest.importorskip("h5py")

#: video -> (number of frames, {annotated frame (from 1): instance ids on it}, subset)
VIDEOS = {"vidA": (6, {2: [1, 2], 5: [1]}, 1), "vidB": (3, {1: [1]}, 1),
          "vidT": (2, {1: [1]}, 0), "vidM": (2, {1: [1]}, 1)}  # fmt: skip
SENTENCES = [("vidA", "1", "The  Red disc, rolling"), ("vidA", "2", "green disc"),
             ("vidA", "0 (1)", "a mistake"), ("vidB", "1", "a red ball"),
             ("vidT", "1", "train only"), ("vidM", "1", "missed")]  # fmt: skip
SEED = {"vidA": 0, "vidB": 1, "vidT": 0, "vidM": 0}


def write_a2d(root: Path) -> Path:
    release = root / "Release"
    release.mkdir(parents=True)
    rows = [f"{v},11,0,1,40,48,{n},{len(a)},{subset}" for v, (n, a, subset) in VIDEOS.items()]
    (release / "videoset.csv").write_text("\n".join(rows) + "\n")
    (release / "a2d_missed_videos.txt").write_text("vidM\n")
    lines = ["video_id,instance_id,query"] + [f'{v},{i},"{q}"' for v, i, q in SENTENCES]
    (release / "a2d_annotation.txt").write_text("\n".join(lines) + "\n")
    for video, (count, annotated, _) in VIDEOS.items():
        for t in range(count):
            path = release / "pngs320H" / video / f"{t + 1:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame_image(labels(t, SEED[video]), t).save(path)
        for frame, instances in annotated.items():
            lab = labels(frame - 1, SEED[video])
            masks = np.stack([(lab == i).T.astype(np.float64) for i in instances])  # (N, W, H)
            path = release / "a2d_annotation_with_instances" / video / f"{frame:05d}.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as f:
                f["instance"] = np.array(instances, dtype=np.float64)
                f["reMask"] = masks[0] if len(instances) == 1 else masks  # (W, H) when one
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("a2d")
    return {"a2d": write_a2d(root / "a2d"), **save_models(root)}


EXPECTED = [
    A2DSample("vidA", 2, 1, "the red disc, rolling"),
    A2DSample("vidA", 5, 1, "the red disc, rolling"),
    A2DSample("vidA", 2, 2, "green disc"),
    A2DSample("vidB", 1, 1, "a red ball"),
]


def test_reader_follows_the_authors_sample_list(data):
    split = read_a2d(data["a2d"], "test")  # ROOT/Release found
    assert list(split.samples) == EXPECTED
    assert split.num_frames == {"vidA": 6, "vidB": 3}
    for sample in split.samples:  # (W, H) masks transposed; one instance stored as 2-D
        want = labels(sample.frame - 1, SEED[sample.video]) == sample.instance
        np.testing.assert_array_equal(load_mask(split, sample), want)
    assert [s.video for s in read_a2d(data["a2d"] / "Release", "train").samples] == ["vidT"]


def test_clip_indices_by_hand():
    # frame 0 of 3, clip 4: [-2, -1, 0, 1] clamped
    assert clip_indices(0, 3, 4) == [0, 0, 0, 1]
    # frame 4 of 6, clip 16: -4 .. 11, four below 0 and six above 5
    assert clip_indices(4, 6, 16) == [0] * 4 + [0, 1, 2, 3, 4, 5] + [5] * 6
    assert clip_indices(2, 6, 3) == [1, 2, 3]
    assert clip_indices(2, 6, 0) == [0, 1, 2, 3, 4, 5]


def by_hand(model_path, root: Path, clip_length: int, video: bool) -> dict[str, float]:
    """The LAVT-RS A2D metrics of the model's masks, computed here with numpy."""
    model = lavt.load_model(model_path).eval()
    tokenizer = tokenizer_for_model(model)
    inters, unions, ious = [], [], []
    for s in EXPECTED:
        index = s.frame - 1
        count = VIDEOS[s.video][0]
        start = index - clip_length // 2
        clip = [min(max(i, 0), count - 1) for i in range(start, start + clip_length)]
        clip = clip if video else [index]
        path = root / "Release" / "pngs320H" / s.video
        pixels = torch.stack(
            [image_to_tensor(Image.open(path / f"{i + 1:05d}.png"), 32) for i in clip]
        )
        ids, attention = tokenizer([s.text])
        with torch.no_grad():
            logits = model(pixels[None] if video else pixels, ids, attention)
        pred = (logits[0, clip.index(index)] if video else logits[0]).argmax(0).numpy()
        gt = Image.fromarray((labels(index, SEED[s.video]) == s.instance).astype(np.uint8) * 255)
        gt = np.asarray(gt.resize((32, 32), Image.NEAREST)) > 0
        inter, union = int((pred.astype(bool) & gt).sum()), int((pred.astype(bool) | gt).sum())
        inters.append(inter)
        unions.append(union)
        ious.append(inter / union if inter and union else 0.0)
    out = {f"precision@{t}": 100 * np.mean([i >= t for i in ious]) for t in (0.5, 0.7, 0.9)}
    out.update(overall_iou=100 * sum(inters) / sum(unions), mean_iou=100 * np.mean(ious))
    return out


@pytest.mark.parametrize(("model", "clip"), [("video", 4), ("image", 16)])
def test_a2d_metrics_match_a_computation_by_hand(data, tmp_path, model, clip):
    args = ["evaluate", "--video-protocol", "a2d", "--checkpoint", str(data[model])]
    args += ["--data-root", str(data["a2d"]), "--output", str(tmp_path), "--device", "cpu"]
    assert main([*args, "--clip-length", str(clip)]) == 0  # split test
    got = json.loads((tmp_path / "metrics.json").read_text())["test"]
    want = by_hand(data[model], data["a2d"], clip, model == "video")
    assert 0 < want["overall_iou"] < 100
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert got["num_expressions"] == 4
    rows = [json.loads(line) for line in (tmp_path / "test.jsonl").read_text().splitlines()]
    assert sorted((r["video"], r["frame"], r["instance"]) for r in rows) == sorted(
        (s.video, s.frame, s.instance) for s in EXPECTED
    )
    assert (tmp_path / "metrics.md").read_text().startswith("| Split | P@0.5 |")


def _break(release: Path, how: str) -> str:
    if how == "no videoset":
        (release / "videoset.csv").unlink()
        return "videoset.csv: not found"
    if how == "bad header":
        (release / "a2d_annotation.txt").write_text("video,instance,text\nvidA,1,x\n")
        return "a2d_annotation.txt: expected the header video_id,instance_id,query"
    if how == "short row":
        (release / "videoset.csv").write_text("vidA,11,0\n")
        return "videoset.csv:1: 3 columns, expected 9"
    if how == "bad h5":
        path = release / "a2d_annotation_with_instances" / "vidB" / "00001.h5"
        with h5py.File(path, "w") as f:
            f["reMask"] = np.zeros((4, 4))
        return f"{path}: unreadable A2D annotation"
    for frame in (5, 6):  # "few frames"
        (release / "pngs320H" / "vidA" / f"{frame:05d}.png").unlink()
    return "vidA: 4 frames, but frame 5 is annotated"


@pytest.mark.parametrize("how", ["no videoset", "bad header", "short row", "bad h5", "few frames"])
def test_bad_a2d_layouts_are_one_line(data, tmp_path, capsys, how):
    import shutil

    root = tmp_path / "a2d"
    shutil.copytree(data["a2d"], root)
    named = _break(root / "Release", how)
    args = ["evaluate", "--video-protocol", "a2d", "--checkpoint", str(data["video"])]
    args += ["--data-root", str(root), "--output", str(tmp_path / "out"), "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err
    assert not (tmp_path / "out").exists()
