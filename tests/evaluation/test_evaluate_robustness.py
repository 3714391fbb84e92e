"""Bad datasets and reused output folders for `lavt evaluate`; the driver's Python API."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from lavt.checkpoint import save_checkpoint
from lavt.cli import main
from lavt.data.dataset import ReferEvalDataset
from lavt.data.refer import ReferIndex
from lavt.data.synthetic import generate_dataset
from lavt.errors import InputError
from lavt.modeling import build_model
from lavt.tokenizer import tokenizer_for_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(path, build_model(tiny_config(img_size=48)))
    return path


@pytest.fixture
def data(tmp_path):
    generate_dataset(tmp_path / "data", num_images=8, seed=2, image_size=(48, 48))
    return tmp_path / "data"


def _instances(root):
    return root / "refcoco" / "instances.json"


def _edit_instances(root, edit) -> int:
    """Apply ``edit(instances)``; returns the id of the first referred annotation."""
    index = ReferIndex(root, "refcoco", "unc")
    ann_id = index.refs[0].ann_id
    data = json.loads(_instances(root).read_text())
    edit(data, ann_id)
    _instances(root).write_text(json.dumps(data))
    return ann_id


def _annotation(data, ann_id):
    return next(a for a in data["annotations"] if a["id"] == ann_id)


def _args(model_path, data, out, *extra):
    return [
        "evaluate",
        "--checkpoint",
        str(model_path),
        "--data-root",
        str(data),
        "--split",
        "val",
        "--output",
        str(out),
        "--device",
        "cpu",
        *extra,
    ]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("lavt evaluate: error:"), err
    assert err.count("\n") == 1 and "Traceback" not in err and "DataLoader" not in err, err
    return err


@pytest.mark.parametrize(
    ("segmentation", "problem"),
    [
        ({"counts": "garbage", "size": [48, 48]}, "not a valid compressed string"),
        ({"counts": "0", "size": [48, 48]}, "cover 0 pixels"),
        ({"counts": [5, 5], "size": [48, 48]}, "cover 10 pixels"),
        ({"counts": [2304], "size": [10, 10]}, "RLE size"),
        ([["a", "b", "c", "d", "e", "f"]], "polygon #0 is not a list of numbers"),
        ([[1, 2, 3, 4, 5, 6, 7]], "odd number"),
        ("nonsense", "unsupported segmentation"),
    ],
)
def test_malformed_segmentations_are_reported_on_load(data, segmentation, problem):
    def damage(instances, ann_id):
        _annotation(instances, ann_id)["segmentation"] = segmentation

    ann_id = _edit_instances(data, damage)
    with pytest.raises(InputError, match=rf"instances.json: annotation {ann_id}: .*{problem}"):
        ReferIndex(data, "refcoco", "unc")


def test_malformed_segmentation_stops_the_cli_before_the_model(data, tmp_path, capsys):
    def damage(instances, ann_id):
        _annotation(instances, ann_id)["segmentation"] = {"counts": "garbage", "size": [48, 48]}

    _edit_instances(data, damage)
    out = tmp_path / "out"
    code = main(_args(tmp_path / "no-such-checkpoint.pt", data, out, "--workers", "0"))
    assert code == 2
    assert "annotation" in _one_line_error(capsys)  # reported before the checkpoint is opened
    assert not out.exists()


@pytest.mark.parametrize("name", ["../outside.jpg", "/etc/passwd", "a/../../b.jpg"])
def test_file_names_outside_the_image_folder_are_refused(data, name):
    def damage(instances, _):
        instances["images"][0]["file_name"] = name

    _edit_instances(data, damage)
    with pytest.raises(InputError, match="points outside the image folder"):
        ReferIndex(data, "refcoco", "unc")


def _shrink_first_image(data) -> str:
    index = ReferIndex(data, "refcoco", "unc")
    path = index.image_path(index.split("val")[0].image_id)
    with Image.open(path) as image:
        image.convert("RGB").resize((40, 44)).save(path)
    return path.name


@pytest.mark.parametrize("workers", ["0", "1"])
def test_image_size_disagreeing_with_instances_is_refused(
    model_path, data, tmp_path, capsys, workers
):
    name = _shrink_first_image(data)
    code = main(_args(model_path, data, tmp_path / "out", "--workers", workers))
    assert code == 2
    err = _one_line_error(capsys)  # the same clean line from a loader worker
    assert name in err and "40x44" in err and "48x48" in err


@pytest.mark.slow
def test_reused_output_has_no_stale_worst_overlays(model_path, data, tmp_path):
    out = tmp_path / "out"
    assert main(_args(model_path, data, out, "--workers", "0", "--save-worst", "3")) == 0
    assert len(list((out / "worst_val").glob("*.png"))) == 3
    (out / "worst_val" / "notes.txt").write_text("mine")  # not ours: kept
    assert main(_args(model_path, data, out, "--workers", "0", "--save-worst", "1")) == 0
    assert len(list((out / "worst_val").glob("*.png"))) == 1
    assert (out / "worst_val" / "notes.txt").exists()
    assert main(_args(model_path, data, out, "--workers", "0")) == 0
    assert not list((out / "worst_val").glob("*.png"))


def test_output_that_is_a_file_is_refused(model_path, data, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("x")
    assert main(_args(model_path, data, out, "--workers", "0")) == 2
    assert "--output" in _one_line_error(capsys)
    assert out.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_is_refused(model_path, data, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    assert main(_args(model_path, data, locked / "out", "--workers", "0")) == 2
    assert "not writable" in _one_line_error(capsys)


def test_run_evaluation_matches_the_cli(model_path, data, tmp_path):
    import lavt
    from lavt.evaluation import run_evaluation

    out = tmp_path / "out"
    assert main(_args(model_path, data, out, "--workers", "0")) == 0
    model = lavt.load_model(model_path)
    index = ReferIndex(data, "refcoco", "unc")
    dataset = ReferEvalDataset(
        index, index.split("val"), tokenizer=tokenizer_for_model(model), img_size=48
    )
    result = run_evaluation(model, dataset, device=torch.device("cpu"), batch_size=2)
    assert json.loads((out / "metrics.json").read_text())["val"] == result.summary()


def test_masks_decode_without_deprecation_warnings(data):
    from pycocotools import mask as mask_utils

    from lavt.data.masks import segmentation_to_mask

    index = ReferIndex(data, "refcoco", "unc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        polygon_mask = index.mask(index.refs[0].ann_id)
        rng = np.random.default_rng(0)
        truth = np.asfortranarray((rng.random((13, 17)) > 0.6).astype(np.uint8))
        rle = mask_utils.encode(truth)
        for counts in (rle["counts"], rle["counts"].decode()):
            decoded = segmentation_to_mask({"size": [13, 17], "counts": counts}, 13, 17)
            assert np.array_equal(decoded, truth)
    assert polygon_mask.dtype == np.uint8 and polygon_mask.any()
