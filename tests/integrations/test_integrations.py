"""supervision Detections and COCO results files against the predictor's own masks, with
the real libraries (supervision, pycocotools) (issue 23)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw

import lavt
from lavt.cli import main as cli_main
from lavt.predict.coco_results import image_ids

with warnings.catch_warnings():  # without OpenCV, supervision warns that it uses NumPy
    warnings.simplefilter("ignore")
    import supervision as sv

TEXTS = ["the red circle", "the blue square", "the green triangle"]


def _scene(path, shift=0):
    """Shapes on grey, like the scenes the bundled model was trained on (80 x 64)."""
    image = Image.new("RGB", (80, 64), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((6 + shift, 6, 30 + shift, 30), fill=(220, 30, 30))
    draw.rectangle((44, 30 - shift, 70, 56 - shift), fill=(30, 40, 220))
    image.save(path)
    return path


@pytest.fixture(scope="module")
def predictor():
    return lavt.Predictor.from_checkpoint(device="cpu")


def test_to_detections_matches_the_predictor(tmp_path, predictor):
    from lavt.integrations.supervision import to_detections

    image = _scene(tmp_path / "scene.png")
    predictions = predictor.predict(image, TEXTS)
    predictions[2].mask[:] = False  # an expression that found nothing
    kept = [k for k, p in enumerate(predictions) if p.mask.any()]
    assert kept and len(kept) < len(predictions)

    detections = to_detections(predictions)
    assert isinstance(detections, sv.Detections) and len(detections) == len(kept)
    assert detections.mask.dtype == bool
    assert np.array_equal(detections.mask, np.stack([predictions[k].mask for k in kept]))
    assert np.array_equal(detections.class_id, kept)
    assert list(detections.data["text"]) == [TEXTS[k] for k in kept]
    expected_scores = [predictions[k].mean_foreground_probability for k in kept]
    np.testing.assert_allclose(detections.confidence, expected_scores, rtol=1e-6)
    for box, k in zip(detections.xyxy, kept, strict=True):  # the mask's inclusive box
        ys, xs = np.nonzero(predictions[k].mask)
        assert list(box) == [xs.min(), ys.min(), xs.max(), ys.max()]

    every = to_detections(predictions, keep_empty=True)
    assert len(every) == len(predictions) and list(every.data["found"]).count(False) >= 1
    assert not every.mask[2].any() and list(every.xyxy[2]) == [0, 0, 0, 0]
    assert every.confidence[2] == 0
    assert len(to_detections([])) == 0

    # the README's example: back to an overlay with supervision's annotators
    scene = np.array(Image.open(image).convert("RGB"))
    annotated = sv.MaskAnnotator().annotate(scene.copy(), detections)
    labelled = sv.LabelAnnotator().annotate(
        annotated.copy(), detections, labels=list(detections.data["text"])
    )
    changed = (annotated != scene).any(axis=-1)
    assert changed.any() and not changed[~detections.mask.any(axis=0)].any()
    assert labelled.shape == scene.shape


def test_to_detections_refuses_masks_of_two_images(tmp_path, predictor):
    from lavt.integrations.supervision import to_detections

    a = predictor.predict(_scene(tmp_path / "a.png"), TEXTS[:1])
    b = predictor.predict(np.zeros((20, 30, 3), dtype=np.uint8), TEXTS[:1])
    with pytest.raises(lavt.LavtError, match="different sizes"):
        to_detections(a + b)


def test_coco_results_load_with_pycocotools_and_equal_the_masks(tmp_path, predictor, capsys):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    images = [_scene(tmp_path / f"COCO_val2014_{n:012d}.png", shift=s)
              for n, s in ((42, 0), (7, 4))]  # fmt: skip
    out = tmp_path / "results.json"
    argv = ["predict", "--image", *map(str, images), "--text", *TEXTS, "--device", "cpu"]
    assert cli_main([*argv, "--output", str(tmp_path / "out"), "--coco-results", str(out)]) == 0
    capsys.readouterr()
    results = json.loads(out.read_text())

    # a ground truth built from the same images: the predictor's masks as annotations
    gt = {"images": [], "annotations": [], "categories": []}
    gt["categories"] = [{"id": k + 1, "name": t} for k, t in enumerate(TEXTS)]
    expected = {}
    for image, image_id in zip(images, (42, 7), strict=True):
        width, height = Image.open(image).size
        gt["images"].append({"id": image_id, "width": width, "height": height})
        for k, p in enumerate(predictor.predict(image, TEXTS)):
            if p.mask.any():
                expected[(image_id, k + 1)] = p
                rle = mask_utils.encode(np.asfortranarray(p.mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                gt["annotations"].append(
                    {"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": k + 1,
                     "segmentation": rle, "area": float(p.mask.sum()), "iscrowd": 0}
                )  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    coco = COCO(str(tmp_path / "gt.json"))
    loaded = coco.loadRes(str(out))
    anns = loaded.loadAnns(loaded.getAnnIds())
    assert len(anns) == len(results) == len(expected) > 0
    for ann in anns:
        prediction = expected[(ann["image_id"], ann["category_id"])]
        assert ann["text"] == prediction.text
        assert np.array_equal(loaded.annToMask(ann).astype(bool), prediction.mask)
        assert ann["score"] == pytest.approx(prediction.mean_foreground_probability, abs=1e-6)

    # nothing found anywhere: no entries (an empty mask is not a detection)
    argv += ["--area-threshold", "100000000", "--output", str(tmp_path / "none")]
    assert cli_main([*argv, "--coco-results", str(out)]) == 0
    assert json.loads(out.read_text()) == []
    capsys.readouterr()


def test_coco_image_ids_from_stems_or_positions():
    assert image_ids(["a/COCO_val2014_000000000042.jpg", "b/x_7.png"]) == {
        "a/COCO_val2014_000000000042.jpg": 42,
        "b/x_7.png": 7,
    }
    assert image_ids(["a/1.png", "b/photo.png"]) == {"a/1.png": 1, "b/photo.png": 2}
    assert image_ids(["a/1.png", "b/1.png"]) == {"a/1.png": 1, "b/1.png": 2}  # clash


def test_coco_results_flag_refuses_a_folder_before_running(tmp_path, capsys):
    image = _scene(tmp_path / "s.png")
    argv = ["predict", "--image", str(image), "--text", TEXTS[0], "--output", str(tmp_path / "o")]
    assert cli_main([*argv, "--coco-results", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "--coco-results" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
