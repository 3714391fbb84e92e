"""``lavt evaluate --video-protocol ytvos|davis``: J, F and J&F against the metrics applied
by hand to the inference core's masks, the submission zip, bad layouts, two processes."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from video_sets import VIDEOS, H, W, labels, save_labels, save_models, write_davis, write_ytvos

import lavt
from conftest import lavt_torchrun
from lavt.cli import main
from lavt.data.video.davis import read_davis
from lavt.evaluation.video_metrics import VideoMetrics
from lavt.imageio import load_image
from lavt.predict.video import segment_frames
from lavt.tokenizer import tokenizer_for_model

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_eval")
    return {
        "ytvos": write_ytvos(root / "ytvos"),
        "valid": write_ytvos(root / "valid_only", "valid", masks=False),
        "davis": write_davis(root / "davis"),
        **save_models(root),
    }


def evaluate(data, out, *extra, model="video", root="ytvos", protocol="ytvos"):
    args = ["evaluate", "--video-protocol", protocol, "--checkpoint", str(data[model])]
    args += ["--data-root", str(data[root]), "--output", str(out), "--device", "cpu", *extra]
    return main(args)


def by_hand(model_path, videos, *, scored=slice(None), clip_length=0):
    """{(video, exp_id): (J, F)} and the summary, from segment_frames and VideoMetrics.

    ``videos``: [(name, [frame paths], [(exp_id, text, obj_id)], seed of the labels)].
    """
    model = lavt.load_model(model_path).eval()
    tokenizer = tokenizer_for_model(model)
    metrics, per = VideoMetrics(), {}
    for name, paths, expressions, seed in videos:
        ids, attention = tokenizer([text for _, text, _ in expressions])
        frames = [load_image(p) for p in paths]
        masks = segment_frames(model, frames, ids, attention, img_size=32, clip_length=clip_length)
        pred = torch.stack(list(masks)) > 0  # (T, E, H, W)
        for e, (exp_id, _, obj) in enumerate(expressions):
            gt = torch.stack([torch.from_numpy(labels(t, seed) == obj) for t in range(len(paths))])
            per[(name, exp_id)] = metrics.add(pred[scored, e], gt[scored])
    return per, metrics.summary()


def ytvos_videos(root, split="train"):
    out = []
    for seed, (name, (count, expressions)) in enumerate(VIDEOS.items()):
        paths = [root / split / "JPEGImages" / name / f"{5 * t:05d}.jpg" for t in range(count)]
        exps = [(k, text, obj) for k, (text, obj) in sorted(expressions.items())]
        out.append((name, paths, exps, seed))
    return out


def check_against(out, split, per, summary):
    metrics = json.loads((out / "metrics.json").read_text())[split]
    assert metrics["num_expressions"] == len(per) and metrics["num_videos"] == 2
    for key in ("J", "F", "J&F"):
        assert metrics[key] == pytest.approx(summary[key], abs=1e-9)
    rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
    assert [(r["video"], r["exp_id"]) for r in rows] == sorted(per)
    for row in rows:
        j, f = per[(row["video"], row["exp_id"])]
        assert (row["J"], row["F"]) == (pytest.approx(j), pytest.approx(f))
        assert row["J&F"] == pytest.approx((j + f) / 2)
    table = (out / "metrics.md").read_text().splitlines()
    assert table[0] == "| Split | J&F | J | F |"


@pytest.mark.parametrize(("model", "clip"), [("video", 0), ("video", 2), ("image", 0)])
def test_ytvos_j_and_f_are_the_metrics_of_the_core_masks(data, tmp_path, model, clip):
    extra = ["--split", "train"] + (["--clip-length", str(clip)] if clip else [])
    assert evaluate(data, tmp_path, *extra, model=model) == 0
    per, summary = by_hand(data[model], ytvos_videos(data["ytvos"]), clip_length=clip)
    assert 0 < summary["J&F"] < 100  # neither trivially empty nor full
    check_against(tmp_path, "train", per, summary)
    assert not (tmp_path / "submission.zip").exists()


def test_davis_protocol_scores_all_frames_but_the_first_and_last(data, tmp_path):
    assert evaluate(data, tmp_path, "--split", "train", protocol="davis") == 0
    per, summary = by_hand(data["video"], ytvos_videos(data["ytvos"]), scored=slice(1, -1))
    check_against(tmp_path, "train", per, summary)
    assert {r["frames"] for r in map(json.loads, (tmp_path / "train.jsonl").open())} == {2, 3}


def test_raw_davis_layout(data, tmp_path):
    split = read_davis(data["davis"], "val")
    assert [(e.video, e.exp_id, e.text, e.obj_id) for e in split.expressions] == [
        ("motorbike", "annot1-1", "red one", 1),
        ("motorbike", "annot2-2", "the green one", 2),
        ("vid_a", "annot1-1", "the red disc", 1),
        ("vid_a", "annot1-2", "a green disc", 2),
        ("vid_a", "annot2-1", "le disque rouge à gauche", 1),
    ]
    assert evaluate(data, tmp_path, root="davis", protocol="davis") == 0  # split val
    videos = []
    for seed, name in enumerate(("vid_a", "motorbike")):
        paths = sorted((data["davis"] / "JPEGImages" / "480p" / name).glob("*.jpg"))
        exps = [(e.exp_id, e.text, e.obj_id) for e in split.expressions if e.video == name]
        videos.append((name, paths, exps, seed))
    per, summary = by_hand(data["video"], videos, scored=slice(1, -1))
    metrics = json.loads((tmp_path / "metrics.json").read_text())["val"]
    assert metrics["J&F"] == pytest.approx(summary["J&F"], abs=1e-9)
    assert metrics["num_expressions"] == 5


def _zip_masks(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as z:
        return {n: np.array(Image.open(io.BytesIO(z.read(n)))) for n in z.namelist()}


def test_split_without_masks_writes_the_submission(data, tmp_path):
    assert evaluate(data, tmp_path, root="valid") == 0  # split valid
    expected = {
        f"Annotations/{name}/{k}/{5 * t:05d}.png"
        for name, (count, exps) in VIDEOS.items()
        for k in exps
        for t in range(count)
    }
    masks = _zip_masks(tmp_path / "submission.zip")
    assert set(masks) == expected
    assert all(m.shape == (H, W) and set(np.unique(m)) <= {0, 255} for m in masks.values())
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")}
    assert on_disk == expected
    # the masks are the core's, 255 on the object
    model = lavt.load_model(data["video"]).eval()
    ids, attention = tokenizer_for_model(model)(["the red disc", "the green disc on the right"])
    folder = data["valid"] / "valid" / "JPEGImages" / "vid_a"
    paths = [folder / f"{5 * t:05d}.jpg" for t in range(5)]
    core = list(segment_frames(model, [load_image(p) for p in paths], ids, attention, img_size=32))
    for t in range(5):
        got = masks[f"Annotations/vid_a/1/{5 * t:05d}.png"]
        np.testing.assert_array_equal(got, (core[t][1] > 0).numpy().astype(np.uint8) * 255)
    metrics = json.loads((tmp_path / "metrics.json").read_text())["valid"]
    assert metrics == {"num_expressions": 3, "num_videos": 2, "submission": "submission.zip"}
    assert not list(tmp_path.glob(".*"))  # no staging folder left


def test_submission_flag_on_a_split_with_masks(data, tmp_path):
    assert evaluate(data, tmp_path, "--split", "train", "--submission") == 0
    assert len(_zip_masks(tmp_path / "submission.zip")) == 5 + 5 + 4
    assert "J&F" in json.loads((tmp_path / "metrics.json").read_text())["train"]


def _break(root: Path, how: str) -> str:
    """Damage a copy of the Refer-YouTube-VOS set; returns what the error must name."""
    meta = root / "meta_expressions" / "train" / "meta_expressions.json"
    frame = root / "train" / "JPEGImages" / "vid_b" / "00010.jpg"
    mask = root / "train" / "Annotations" / "vid_b" / "00010.png"
    data = json.loads(meta.read_text())
    if how == "no meta":
        meta.unlink()
        return f"{meta}: not found"
    if how == "bad json":
        meta.write_text('{"videos": ')
        return f"{meta}: malformed JSON"
    if how in ("no exp", "bad obj_id", "bad name"):
        exps = data["videos"]["vid_b"]["expressions"]
        if how == "no exp":
            del exps["0"]["exp"]
        elif how == "bad obj_id":
            exps["0"]["obj_id"] = "red"
        else:
            data["videos"]["../vid_c"] = data["videos"]["vid_b"]
        meta.write_text(json.dumps(data))
        return {"no exp": '"exp" is not', "bad obj_id": "obj_id 'red' is not a number",
                "bad name": "video name '../vid_c' is not a plain file name"}[how]  # fmt: skip
    if how == "no frame":
        frame.unlink()
        return f"{frame}: frame not found"
    if how == "no mask":
        mask.unlink()
        return f"{mask}: mask not found"
    if how == "mask size":
        save_labels(np.zeros((10, 12), dtype=np.uint8), mask)
        return f"{mask}: mask of 12x10 pixels for a frame of 48x40"
    Image.new("RGB", (W, H)).save(mask)  # "rgb mask"
    return f"{mask}: a RGB image, not a palette or greyscale mask"


BREAKS = ["no meta", "bad json", "no exp", "bad obj_id", "bad name", "no frame", "no mask",
          "mask size", "rgb mask"]  # fmt: skip


@pytest.mark.parametrize("how", BREAKS)
def test_bad_layouts_are_one_line(data, tmp_path, capsys, how):
    root = tmp_path / "data"
    shutil.copytree(data["ytvos"], root)
    named = _break(root, how)
    out = tmp_path / "out"
    args = ["evaluate", "--video-protocol", "ytvos", "--checkpoint", str(data["video"])]
    args += ["--data-root", str(root), "--split", "train", "--output", str(out)]
    assert main([*args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lavt evaluate: error: ")
    assert named in err
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--clip-length", "-1"], "--clip-length -1: must be 0"),
        (["--split", "train,valid"], "--split: one split at a time"),
        (["--save-worst", "2"], "--save-worst: not used with --video-protocol"),
        (["--workers", "4"], "--workers: not used with --video-protocol"),
        (["--dataset", "refcocog"], "--dataset: not used with --video-protocol"),
        (["--skip-missing"], "--skip-missing: not used with --video-protocol"),
        (["--submission", "--video-protocol", "a2d"], "--submission: only for ytvos and davis"),
    ],
)
def test_bad_arguments_are_one_line(data, tmp_path, capsys, extra, named):
    assert evaluate(data, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err


@pytest.mark.slow
def test_two_processes_match_one(data, tmp_path):
    """Expressions split between two gloo processes: the same metrics, records and zip."""
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ["--split", "train", "--submission", "--batch-size", "1"]
    assert evaluate(data, one, *extra) == 0
    args = ["evaluate", "--video-protocol", "ytvos", "--checkpoint", str(data["video"])]
    args += ["--data-root", str(data["ytvos"]), "--output", str(two), "--device", "cpu", *extra]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = lavt_torchrun(*args)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("metrics.json", "train.jsonl", "metrics.md"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    first, second = _zip_masks(one / "submission.zip"), _zip_masks(two / "submission.zip")
    assert set(first) == set(second)
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_a_failure_leaves_no_half_written_submission(data, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(data["valid"], root)
    broken = root / "valid" / "JPEGImages" / "vid_b" / "00005.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated: found only when decoded
    out = tmp_path / "out"
    args = ["evaluate", "--video-protocol", "ytvos", "--checkpoint", str(data["video"])]
    assert main([*args, "--data-root", str(root), "--output", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(broken) in err
    assert not out.exists() or not any(out.iterdir())
