"""Every bad input of lavt data import: one line naming the file and the line / annotation
id / shape, a non-zero exit, and nothing under ROOT/NAME (nor a temporary folder)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from PIL import Image

from lavt.cli import main

W, H = 16, 12
SQUARE = [2, 2, 10, 2, 10, 9, 2, 9]


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (W, H), (90, 120, 60)).save(src / "img.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(src / "small.png")
    return src


def _import(capsys, fmt, src, root, *extra):
    capsys.readouterr()
    code = main(["data", "import", fmt, str(src), "--output", str(root), "--name", "ds", *extra])
    err = [line for line in capsys.readouterr().err.splitlines() if " INFO " not in line]
    return code, err


def _assert_refused(code, err, root, *needles):
    assert code != 0
    assert len(err) == 1, err
    assert err[0].startswith("lavt data: error: ")
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    assert not (root / "ds").exists()
    assert not root.exists() or list(root.iterdir()) == []


GOOD_LINE = {"image": "img.png", "mask": {"polygons": [SQUARE]}, "expressions": ["the square"]}

JSONL_CASES = {
    "malformed": ('{"image": "img.png", "mask": null', "malformed JSON"),
    "missing image": ({**GOOD_LINE, "image": "nope.png"}, "not found"),
    "outside the folder": ({**GOOD_LINE, "image": "../img.png"}, "outside the image folder"),
    "mask size": ({**GOOD_LINE, "mask": "small.png"}, "small.png is 8x8, the image is 16x12"),
    "odd polygon": ({**GOOD_LINE, "mask": {"polygons": [SQUARE[:-1]]}}, "odd number"),
    "non-number": (
        {**GOOD_LINE, "mask": {"polygons": [[2, 2, "x", 2, 10, 9]]}},
        "coordinate #2 ('x') is not a number",
    ),
    "empty expressions": ({**GOOD_LINE, "expressions": []}, "expression list is empty"),
    "undecodable rle": (
        {**GOOD_LINE, "mask": {"rle": {"size": [H, W], "counts": "\x7f\x7f"}}},
        "not a valid compressed string",
    ),
    "rle size": (
        {**GOOD_LINE, "mask": {"rle": {"size": [8, 8], "counts": "0`1"}}},
        "differs from the image's",
    ),
    "null mask": ({**GOOD_LINE, "mask": None}, "only a generalized dataset"),
    "several masks": (
        {**GOOD_LINE, "mask": [{"polygons": [SQUARE]}, {"polygons": [[1, 1, 3, 1, 3, 3]]}]},
        "only a generalized dataset",
    ),
    "empty mask": (
        {**GOOD_LINE, "mask": {"polygons": [[40, 40, 50, 40, 50, 50]]}},
        "the mask is empty",
    ),
    "unknown mask": ({**GOOD_LINE, "mask": {"box": [1, 2]}}, "must be a PNG path"),
}


@pytest.mark.parametrize("case", list(JSONL_CASES))
def test_jsonl_problem_names_file_and_line(capsys, folder, tmp_path, case):
    bad, needle = JSONL_CASES[case]
    lines = [json.dumps(GOOD_LINE), bad if isinstance(bad, str) else json.dumps(bad)]
    src = folder / "scenes.jsonl"
    src.write_text("\n".join(lines) + "\n")
    code, err = _import(capsys, "jsonl", src, tmp_path / "root")
    _assert_refused(code, err, tmp_path / "root", f"{src}:2: ", needle)


def test_jsonl_reports_several_problems_one_line_each(capsys, folder, tmp_path):
    src = folder / "scenes.jsonl"
    src.write_text("not json\n" * 8)
    code, err = _import(capsys, "jsonl", src, tmp_path / "root")
    assert code != 0
    out = capsys.readouterr()
    assert not (tmp_path / "root" / "ds").exists()
    text = "\n".join(err)
    assert f"{src}:1: malformed JSON" in text and f"{src}:5: malformed JSON" in text
    assert "... and 3 more problems" in text and f"{src}:6:" not in text, out


def _coco(folder, **changes):
    data = {
        "images": [{"id": 7, "file_name": "img.png", "height": H, "width": W}],
        "annotations": [
            {"id": 42, "image_id": 7, "category_id": 1, "segmentation": [SQUARE],
             "expressions": ["the square"]},
            {"id": 43, "image_id": 7, "category_id": 1, "segmentation": "scenery: not read"},
        ],
        "categories": [{"id": 1, "name": "square"}],
    }  # fmt: skip
    for path, value in changes.items():
        section, key = path.split(".")
        data[section][0][key] = value
    path = folder / "annotations.json"
    path.write_text(json.dumps(data))
    return path


COCO_CASES = {
    "missing image": ({"images.file_name": "nope.png"}, "not found"),
    "declared size": ({"images.height": 20}, "img.png is 16x12, images[] says 16x20"),
    "undecodable rle": (
        {"annotations.segmentation": {"size": [H, W], "counts": "\x7f"}},
        "segmentation: RLE counts are not a valid compressed string",
    ),
    "odd polygon": ({"annotations.segmentation": [SQUARE[:-1]]}, "odd number"),
    "empty expressions": ({"annotations.expressions": []}, "expression list is empty"),
    "unknown image": ({"annotations.image_id": 8}, "image_id 8"),
}


@pytest.mark.parametrize("case", list(COCO_CASES))
def test_coco_problem_names_file_and_annotation(capsys, folder, tmp_path, case):
    changes, needle = COCO_CASES[case]
    src = _coco(folder, **changes)
    code, err = _import(capsys, "coco", src, tmp_path / "root")
    _assert_refused(code, err, tmp_path / "root", f"{src}: annotation 42: ", needle)


def test_coco_malformed_json(capsys, folder, tmp_path):
    src = folder / "annotations.json"
    src.write_text('{"images": [}')
    code, err = _import(capsys, "coco", src, tmp_path / "root")
    _assert_refused(code, err, tmp_path / "root", f"{src}: malformed JSON", "line 1")


LABELME = {
    "version": "5.4.1",
    "flags": {},
    "imagePath": "img.png",
    "imageData": None,
    "imageHeight": H,
    "imageWidth": W,
    "shapes": [
        {"label": "bg", "points": [[0, 0]], "shape_type": "point", "description": ""},
        {"label": "square", "points": [[2, 2], [10, 2], [10, 9], [2, 9]],
         "shape_type": "polygon", "description": "the square\nthe green one"},
    ],
}  # fmt: skip

LABELME_CASES = {
    "two points": ({"points": [[2, 2], [10, 2]]}, "shape #1: a polygon needs 3 or more points"),
    "non-number": ({"points": [[2, 2], [10, "x"], [3, 9]]}, "shape #1: points must be"),
    "line shape": ({"shape_type": "line"}, "shape #1: shape_type 'line' cannot be a mask"),
}


@pytest.mark.parametrize("case", list(LABELME_CASES))
def test_labelme_problem_names_file_and_shape(capsys, folder, tmp_path, case):
    change, needle = LABELME_CASES[case]
    record = copy.deepcopy(LABELME)
    record["shapes"][1].update(change)
    (folder / "a.json").write_text(json.dumps(record))
    code, err = _import(capsys, "labelme", folder, tmp_path / "root")
    _assert_refused(code, err, tmp_path / "root", f"{folder / 'a.json'}: ", needle)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"imageHeight": 20}, "img.png is 16x12, imageWidth x imageHeight say 16x20"),
        ({"imagePath": "nope.png"}, "not found"),
        ({"imagePath": "../img.png"}, "lies outside"),
        ({"flags": {"val": True, "test": True}}, "several splits"),
    ],
)
def test_labelme_file_problems(capsys, folder, tmp_path, change, needle):
    (folder / "a.json").write_text(json.dumps({**LABELME, **change}))
    code, err = _import(capsys, "labelme", folder, tmp_path / "root")
    _assert_refused(code, err, tmp_path / "root", f"{folder / 'a.json'}: ", needle)


def test_labelme_malformed_json(capsys, folder, tmp_path):
    (folder / "a.json").write_text("{")
    code, err = _import(capsys, "labelme", folder, tmp_path / "root")
    _assert_refused(code, err, tmp_path / "root", f"{folder / 'a.json'}: malformed JSON")
