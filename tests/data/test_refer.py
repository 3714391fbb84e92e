"""The refer layout: golden pipeline outputs, split rules, masks, bad files."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from lavt.data.dataset import ReferEvalDataset, ReferTrainDataset, collate_eval
from lavt.data.refer import ReferIndex, segmentation_to_mask, split_matches
from lavt.errors import InputError
from lavt.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def mini(golden_dir):
    return ReferIndex(golden_dir / "refer_mini", "refcoco", "unc")


def _parts_overlap(index, ref, size):
    """Pixels covered by two or more polygon parts, resized like the target."""
    ann = index.annotations[ref.ann_id]
    image = index.images[ref.image_id]
    parts = np.stack(
        [segmentation_to_mask([p], image["height"], image["width"]) for p in ann["segmentation"]],
        axis=-1,
    )
    overlap = (parts.sum(-1) >= 2).astype(np.uint8)
    return np.asarray(Image.fromarray(overlap).resize((size, size), Image.NEAREST)).astype(bool)


def test_golden_pipeline(mini, golden_dir):
    expected = np.load(golden_dir / "refer_mini_expected.npz")
    tok = Tokenizer()
    checked = differing = 0
    for split in ("train", "val", "testA", "testB"):
        dataset = ReferEvalDataset(mini, mini.split(split), tokenizer=tok, img_size=64)
        for item_index in range(len(dataset)):
            item = dataset[item_index]
            key = f"{split}_ref{item['ref_id']}"
            assert np.abs(item["image"].numpy() - expected[f"{key}_image"]).max() < 1e-6
            ids = item["input_ids"].T.numpy()[None]  # (E, N) -> (1, N, E), the reference's layout
            assert np.array_equal(ids, expected[f"{key}_input_ids"])
            assert np.array_equal(
                item["attention_mask"].T.numpy()[None], expected[f"{key}_attention_mask"]
            )
            ours, theirs = item["target"].numpy(), expected[f"{key}_target"]
            diff = ours != theirs
            if (
                diff.any()
            ):  # only where parts overlap: the reference drops those pixels, we keep them
                differing += 1
                ref = dataset.items[item_index][0]
                assert (diff <= _parts_overlap(mini, ref, 64)).all()
                assert (ours[diff] == 1).all() and (theirs[diff] == 0).all()
            checked += 1
    assert checked == 4 and differing >= 1


@pytest.mark.parametrize(
    ("query", "split", "expected"),
    [
        ("testA", "testA", True),
        ("testA", "testB", False),
        ("testB", "testAB", True),
        ("test", "testA", True),
        ("test", "test", True),
        ("test", "val", False),
        ("val", "val", True),
        ("val", "valA", False),
        ("train", "train", True),
    ],
)
def test_split_rules(query, split, expected):
    assert split_matches(query, split) is expected


def test_polygon_union_and_rle():
    square = [[0, 0, 6, 0, 6, 6, 0, 6]]
    overlapping = [[0, 0, 6, 0, 6, 6, 0, 6], [3, 3, 9, 3, 9, 9, 3, 9]]
    single = segmentation_to_mask(square, 10, 10)
    union = segmentation_to_mask(overlapping, 10, 10)
    assert single.sum() > 0 and union.sum() > single.sum()
    assert (union >= single).all()
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(union))
    compressed = {"size": rle["size"], "counts": rle["counts"].decode()}
    assert np.array_equal(segmentation_to_mask(compressed, 10, 10), union)
    # uncompressed RLE: column-major run lengths starting with zeros
    flat = np.asfortranarray(union).flatten(order="F")
    runs, current, count = [], 0, 0
    for v in flat:
        if v == current:
            count += 1
        else:
            runs.append(count)
            current, count = v, 1
    runs.append(count)
    assert np.array_equal(segmentation_to_mask({"size": [10, 10], "counts": runs}, 10, 10), union)


def test_train_dataset_is_reproducible(mini):
    tok = Tokenizer()
    ds = ReferTrainDataset(mini, mini.split("train"), tokenizer=tok, img_size=32, seed=1)
    draws = {}
    for epoch in range(12):
        ds.set_epoch(epoch)
        draws[epoch] = ds.sentence_index(0)
        item = ds[0]
        assert item["image"].shape == (3, 32, 32) and item["input_ids"].shape == (20,)
    assert len(set(draws.values())) == 2  # both expressions of the object get drawn
    again = ReferTrainDataset(mini, mini.split("train"), tokenizer=tok, img_size=32, seed=1)
    for epoch, value in draws.items():
        again.set_epoch(epoch)
        assert again.sentence_index(0) == value


def test_collate_flattens_expressions(mini):
    ds = ReferEvalDataset(mini, mini.refs, tokenizer=Tokenizer(), img_size=32)
    batch = collate_eval([ds[i] for i in range(len(ds))])
    total = sum(len(r.sentences) for r in mini.refs)
    assert batch["input_ids"].shape == (total, 20) and batch["images"].shape[0] == 4
    assert batch["image_index"].tolist() == [
        i for i, r in enumerate(mini.refs) for _ in r.sentences
    ]
    assert len(batch["texts"]) == len(batch["sent_ids"]) == total


def test_swap_expressions_uses_another_object(tmp_path):
    from lavt.data.synthetic import generate_dataset

    generate_dataset(tmp_path, num_images=6, seed=0)
    index = ReferIndex(tmp_path, "refcoco", "unc")
    refs = index.split("train")
    swapped = ReferEvalDataset(
        index, refs, tokenizer=Tokenizer(), img_size=32, swap_expressions=True
    )
    for ref, sentences in swapped.items:
        own = {s.text for s in ref.sentences}
        assert not own & {s.text for s in sentences}
        donors = {
            s.text for r in index.refs_of_image(ref.image_id) if r is not ref for s in r.sentences
        }
        assert {s.text for s in sentences} <= donors


# ----------------------------------------------------------------------------- bad files


@pytest.fixture
def copy_mini(golden_dir, tmp_path):
    shutil.copytree(golden_dir / "refer_mini", tmp_path / "data")
    return tmp_path / "data"


def _load(root):
    return ReferIndex(root, "refcoco", "unc")


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_malicious_refs_pickle_does_not_run(copy_mini, tmp_path):
    marker = tmp_path / "pwned"
    (copy_mini / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps([_Evil(marker)]))
    with pytest.raises(InputError, match=r"refs\(unc\).p: not a plain refs pickle"):
        _load(copy_mini)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no_refs", r"refs\(unc\).p: refs file not found"),
        ("no_instances", "instances.json: instances file not found"),
        ("bad_json", "instances.json: malformed JSON"),
        ("json_no_annotations", "expected 'images' and 'annotations'"),
        ("truncated_pickle", "unreadable pickle"),
        ("not_a_list", "expected a list of refs"),
        ("ref_without_key", "lacks sentences"),
        ("missing_annotation", "points to annotation 100"),
        ("missing_image_record", "points to image 500"),
        ("bad_splitby", "split_by umd"),
        ("no_root", "data_root"),
    ],
)
def test_bad_files(copy_mini, damage, message):
    refs_path = copy_mini / "refcoco" / "refs(unc).p"
    inst_path = copy_mini / "refcoco" / "instances.json"
    refs = pickle.loads(refs_path.read_bytes())
    inst = json.loads(inst_path.read_text())
    dataset, split_by, root = "refcoco", "unc", copy_mini
    if damage == "no_refs":
        refs_path.unlink()
    elif damage == "no_instances":
        inst_path.unlink()
    elif damage == "bad_json":
        inst_path.write_text("{not json")
    elif damage == "json_no_annotations":
        inst_path.write_text(json.dumps({"images": []}))
    elif damage == "truncated_pickle":
        refs_path.write_bytes(refs_path.read_bytes()[:50])
    elif damage == "not_a_list":
        refs_path.write_bytes(pickle.dumps({"a": 1}))
    elif damage == "ref_without_key":
        del refs[0]["sentences"]
        refs_path.write_bytes(pickle.dumps(refs))
    elif damage == "missing_annotation":
        inst["annotations"] = [a for a in inst["annotations"] if a["id"] != 100]
        inst_path.write_text(json.dumps(inst))
    elif damage == "missing_image_record":
        inst["images"] = [i for i in inst["images"] if i["id"] != 500]
        inst_path.write_text(json.dumps(inst))
    elif damage == "bad_splitby":
        split_by = "umd"
    elif damage == "no_root":
        root = copy_mini / "nowhere"
    with pytest.raises(InputError, match=message) as info:
        ReferIndex(root, dataset, split_by)
    assert "\n" not in str(info.value)


def test_missing_images_are_counted(copy_mini):
    image = (
        copy_mini / "images" / "mscoco" / "images" / "train2014" / "COCO_train2014_000000000501.jpg"
    )
    image.unlink()
    index = _load(copy_mini)
    refs = index.refs
    with pytest.raises(
        InputError, match=r"1 image files are missing .*000000000501.jpg.*--skip-missing"
    ):
        index.check_images(refs, skip_missing=False)
    kept = index.check_images(refs, skip_missing=True)
    assert len(kept) == len(refs) - 1 and all(r.image_id != 501 for r in kept)


def test_unknown_split_is_reported(mini):
    with pytest.raises(InputError, match="split testC"):
        mini.split("testC")


def test_golden_masks_are_binary(mini):
    for ref in mini.refs:
        mask = mini.mask(ref.ann_id)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        assert torch.from_numpy(mask).sum() > 0
