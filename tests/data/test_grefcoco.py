"""gRefCOCO through the refer reader: no-target, multi-target, scalar/list ann_id, crowd."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lavt.data.dataset import ReferEvalDataset, ReferTrainDataset, collate_eval
from lavt.data.refer import ReferIndex
from lavt.errors import InputError
from lavt.tokenizer import Tokenizer

H, W = 40, 60


def _square(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _sentence(sid, text):
    return {"sent_id": sid, "raw": text, "sent": text, "tokens": text.split()}


def write_fixture(root, *, refs=None, pickled=False):
    """A gRefCOCO-layout folder: 2 images, 4 annotations (one crowd), 5 refs."""
    (root / "grefcoco").mkdir(parents=True)
    (root / "images" / "train2014").mkdir(parents=True)
    images = [
        {"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": H, "width": W}
        for i in (1, 2)
    ]
    for im in images:
        Image.new("RGB", (W, H), (90, 90, 90)).save(root / "images" / "train2014" / im["file_name"])
    annotations = [
        {"id": 10, "image_id": 1, "segmentation": _square(0, 0, 10, 10), "iscrowd": 0},
        {"id": 11, "image_id": 1, "segmentation": _square(30, 20, 50, 30), "iscrowd": 0},
        {"id": 12, "image_id": 1, "segmentation": _square(5, 5, 20, 20), "iscrowd": 0},
        {"id": 13, "image_id": 2, "segmentation": _square(0, 0, 59, 39), "iscrowd": 1},
    ]
    for a in annotations:
        a.update(category_id=1, bbox=[0, 0, 1, 1], area=1)
    instances = {"images": images, "annotations": annotations, "categories": [{"id": 1}]}
    (root / "grefcoco" / "instances.json").write_text(json.dumps(instances))
    if refs is None:
        refs = [  # file_name carries the gRefCOCO suffix: never opened
            {"ref_id": 0, "ann_id": 10, "category_id": 1, "split": "val", "image_id": 1,
             "file_name": "COCO_train2014_000000000001_10.jpg",
             "sentences": [_sentence(0, "left square")]},
            {"ref_id": 1, "ann_id": [10, 11, 12], "category_id": [1, 1, 1], "split": "val",
             "image_id": 1, "file_name": "x_1.jpg",
             "sentences": [_sentence(1, "all squares"), _sentence(2, "every square")]},
            {"ref_id": 2, "ann_id": [-1], "category_id": [-1], "split": "val", "image_id": 1,
             "file_name": "x_2.jpg", "sentences": [_sentence(3, "the giraffe")]},
            {"ref_id": 3, "ann_id": [11, 13], "split": "train", "image_id": 1,
             "sentences": [_sentence(4, "right square and crowd")]},
            {"ref_id": 4, "ann_id": [13], "split": "train", "image_id": 2,
             "sentences": [_sentence(5, "the crowd")]},
        ]  # fmt: skip
    if pickled:
        import pickle

        (root / "grefcoco" / "grefs(unc).p").write_bytes(pickle.dumps(refs))
    else:
        (root / "grefcoco" / "grefs(unc).json").write_text(json.dumps(refs))
    return root


@pytest.fixture
def gref_root(tmp_path):
    return write_fixture(tmp_path / "data")


def _box(x0, y0, x1, y1):
    from lavt.data.masks import segmentation_to_mask

    return segmentation_to_mask(_square(x0, y0, x1, y1), H, W).astype(bool)


def test_refs_targets_and_masks(gref_root, caplog):
    index = ReferIndex(gref_root, "grefcoco", "unc")
    refs = {r.ref_id: r for r in index.refs}
    assert sorted(refs) == [0, 1, 2, 3]  # ref 4 names only a crowd annotation: dropped
    assert "crowd" in caplog.text
    assert refs[0].ann_ids == (10,) and not refs[0].no_target  # scalar ann_id
    assert refs[1].ann_ids == (10, 11, 12)  # list ann_id
    assert refs[2].no_target and refs[2].ann_ids == () and refs[2].ann_id == -1
    assert refs[3].ann_ids == (11,)  # the crowd annotation is skipped
    union = _box(0, 0, 10, 10) | _box(30, 20, 50, 30) | _box(5, 5, 20, 20)
    mask = index.ref_mask(refs[1])
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}  # overlap stays 1
    assert np.array_equal(mask.astype(bool), union)
    assert not index.ref_mask(refs[2]).any() and index.ref_mask(refs[2]).shape == (H, W)
    assert np.array_equal(index.ref_mask(refs[3]).astype(bool), _box(30, 20, 50, 30))
    assert (
        index.image_path(1)
        == gref_root / "images" / "train2014" / "COCO_train2014_000000000001.jpg"
    )
    assert index.missing_images(index.split("val")) == []


def test_one_sample_per_sentence_with_no_target_flag(gref_root):
    index = ReferIndex(gref_root, "grefcoco", "unc")
    tok = Tokenizer()
    dataset = ReferEvalDataset(index, index.split("val"), tokenizer=tok, img_size=32)
    batch = collate_eval([dataset[i] for i in range(len(dataset))])
    assert batch["sent_ids"] == [0, 1, 2, 3]
    assert batch["no_target"].tolist() == [False, False, False, True]
    assert batch["targets"][2].sum() == 0 and batch["targets"][1].sum() > 0
    train = ReferTrainDataset(index, index.split("train"), tokenizer=tok, img_size=32)
    assert train[0]["no_target"].item() is False and train[0]["target"].sum() > 0


def test_pickled_grefs_are_read_first(tmp_path):
    root = write_fixture(tmp_path / "p", pickled=True)
    assert len(ReferIndex(root, "grefcoco", "unc").refs) == 4


@pytest.mark.parametrize(
    ("ann_id", "message"),
    [([99], "annotation 99"), ([-1, 10], "must be"), ([], "must be"), (["x"], "integer id")],
)
def test_bad_targets_are_refused(tmp_path, ann_id, message):
    refs = [{"ref_id": 7, "ann_id": ann_id, "split": "val", "image_id": 1,
             "sentences": [_sentence(0, "x")]}]  # fmt: skip
    root = write_fixture(tmp_path / "bad", refs=refs)
    with pytest.raises(InputError, match=rf"grefs\(unc\).json: ref 7.*{message}"):
        ReferIndex(root, "grefcoco", "unc")


def test_split_by_and_missing_files(gref_root):
    with pytest.raises(InputError, match="grefcoco comes with splitBy unc"):
        ReferIndex(gref_root, "grefcoco", "umd")
    (gref_root / "grefcoco" / "grefs(unc).json").unlink()
    with pytest.raises(InputError, match=r"grefs\(unc\).json: refs file not found"):
        ReferIndex(gref_root, "grefcoco", "unc")
