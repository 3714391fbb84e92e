"""lavt data import options and outputs: splits, --link, --overwrite, --generalized,
other mask forms (PNG, RLE, LabelMe rectangle/circle/groups), and evaluation of an import."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lavt.cli import main
from lavt.data.importer import hash_split, import_dataset
from lavt.data.refer import ReferIndex

W, H = 16, 12
SQUARE = [2, 2, 10, 2, 10, 9, 2, 9]


def _images(folder, count):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (W, H), (10 * i % 255, 100, 60)).save(folder / f"im{i:03d}.png")


def _jsonl(folder, lines):
    path = folder / "scenes.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _line(i, **extra):
    return {
        "image": f"im{i:03d}.png",
        "mask": {"polygons": [SQUARE]},
        "expressions": ["x"],
        **extra,
    }


def test_missing_splits_follow_a_hash_of_the_image_path(tmp_path):
    _images(tmp_path / "src", 60)
    src = _jsonl(tmp_path / "src", [_line(i) for i in range(60)] + [_line(0, split="mine")])
    import_dataset("jsonl", src, output=tmp_path / "a", name="ds")
    import_dataset("jsonl", src, output=tmp_path / "b", name="ds", split_ratios=(1, 0, 0))
    index = ReferIndex(tmp_path / "a", "ds")
    splits = [r.split for r in index.refs]
    assert splits[:60] == [hash_split(f"im{i:03d}.png") for i in range(60)]
    assert splits[60] == "mine"  # a given split is kept
    assert {"train", "val", "test"} <= set(splits) and splits.count("train") > 35
    assert {r.split for r in ReferIndex(tmp_path / "b", "ds").refs} == {"train", "mine"}
    assert hash_split("im001.png") == hash_split("im001.png")


def test_link_overwrite_and_refusals(tmp_path, capsys):
    _images(tmp_path / "src", 2)
    src = _jsonl(tmp_path / "src", [_line(0), _line(1)])
    root = tmp_path / "root"
    argv = ["data", "import", "jsonl", str(src), "--output", str(root), "--name", "ds"]
    assert main([*argv, "--link"]) == 0
    copied = root / "ds" / "images" / "im000.png"
    assert copied.stat().st_ino == (tmp_path / "src" / "im000.png").stat().st_ino
    assert (tmp_path / "src" / "im000.png").is_file()  # never moved
    assert main(argv) != 0
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert copied.stat().st_ino != (tmp_path / "src" / "im000.png").stat().st_ino
    (root / "refcoco").mkdir()
    (root / "refcoco" / "instances.json").write_text("{}")
    other = ["data", "import", "jsonl", str(src), "--output", str(root), "--name", "refcoco"]
    assert main([*other, "--overwrite"]) != 0
    assert "not written by lavt data import" in capsys.readouterr().err
    assert (root / "refcoco" / "instances.json").read_text() == "{}"
    assert main([*argv[:-1], "../up", "--overwrite"]) != 0
    assert main([*argv, "--split-ratios", "1,x"]) != 0
    assert "--split-ratios" in capsys.readouterr().err


def test_generalized_import_png_rle_and_null_masks(tmp_path, capsys):
    from lavt.data.masks import encode_rle

    _images(tmp_path / "src", 2)
    mask = np.zeros((H, W), np.uint8)
    mask[1:5, 3:12] = 1
    Image.fromarray(mask * 200).convert("RGB").save(tmp_path / "src" / "m.png")
    lines = [
        {**_line(0), "mask": ["m.png", {"rle": encode_rle(mask[::-1].copy())}]},
        {**_line(0), "mask": None, "expressions": ["nothing here"]},
        {**_line(1), "mask": "m.png", "split": "val"},
    ]
    src = _jsonl(tmp_path / "src", lines)
    root = tmp_path / "root"
    assert main(["data", "import", "jsonl", str(src), "--output", str(root), "--name", "g",
                 "--generalized"]) == 0  # fmt: skip
    index = ReferIndex(root, "g")
    assert index.generalized
    two, none, one = index.refs
    np.testing.assert_array_equal(index.ref_mask(two), mask | mask[::-1])
    assert none.no_target and not index.ref_mask(none).any()
    np.testing.assert_array_equal(index.ref_mask(one), mask)
    capsys.readouterr()
    assert main(["data", "check", str(root), "--dataset", "g", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(s["no_target"] for s in report.values()) == 1
    assert report["val"]["objects"] == 1 and report["val"]["mask_area"]["max"] == mask.mean()


def test_labelme_rectangle_circle_and_group_parts(tmp_path):
    _images(tmp_path / "src", 1)
    shapes = [
        {"label": "box", "points": [[9, 1], [2, 6]], "shape_type": "rectangle",
         "description": "the box"},
        {"label": "ball", "points": [[12, 8], [15, 8]], "shape_type": "circle",
         "description": "the ball"},
        {"label": "pair", "points": [[0, 0], [2, 0], [2, 2], [0, 2]], "group_id": 1,
         "description": "both parts"},
        {"label": "pair", "points": [[13, 0], [15, 0], [15, 2], [13, 2]], "group_id": 1},
    ]  # fmt: skip
    record = {"imagePath": "im000.png", "imageHeight": H, "imageWidth": W,
              "flags": {"val": True}, "shapes": shapes}  # fmt: skip
    (tmp_path / "src" / "im000.json").write_text(json.dumps(record))
    import_dataset("labelme", tmp_path / "src", output=tmp_path / "root", name="lm")
    index = ReferIndex(tmp_path / "root", "lm")
    box, ball, pair = index.refs
    assert {r.split for r in index.refs} == {"val"}
    assert index.ref_mask(box)[1:6, 2:9].all() and index.ref_mask(box).sum() == 5 * 7
    assert 20 < index.ref_mask(ball).sum() < 36  # about pi * 3^2
    parts = index.ref_mask(pair)
    assert (
        parts[0:2, 0:2].all()
        and parts[0:2, 13:15].all()
        and [s.text for s in pair.sentences] == ["both parts"]
    )


@pytest.mark.slow
def test_evaluate_the_bundled_model_on_an_import(tmp_path):
    assert main(["synth", "--own-data", "--format", "labelme", "--output", str(tmp_path / "raw"),
                 "--images", "6"]) == 0  # fmt: skip
    root = tmp_path / "root"
    assert main(["data", "import", "labelme", str(tmp_path / "raw" / "labelme"),
                 "--output", str(root), "--name", "mine"]) == 0  # fmt: skip
    out = tmp_path / "eval"
    assert main(["evaluate", "--data-root", str(root), "--dataset", "mine", "--split", "test",
                 "--workers", "0", "--output", str(out)]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test" in json.dumps(metrics)
