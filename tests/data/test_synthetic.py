"""`lavt synth`: layout, determinism, masks, unambiguous expressions, splits."""

from __future__ import annotations

import json
import os
import pickle
import random

import numpy as np
import pytest
from PIL import Image

from lavt.cli import main
from lavt.data.synthetic import (
    COLOURS,
    EXPRESSION_KINDS,
    MARKER,
    SHAPES,
    SceneObject,
    expression_kind,
    expressions_for,
    generate_dataset,
    render_scene,
    shape_polygon,
    synthetic_vocabulary,
)
from lavt.data.synthetic.expressions import (
    _attribute_expressions,
    _ordinal_expressions,
    _relation_expressions,
    generator_vocabulary,
)
from lavt.data.synthetic.scenes import _sample_scene
from lavt.errors import InputError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    summary = generate_dataset(root, num_images=40, seed=3)
    refs = pickle.loads((root / "refcoco" / "refs(unc).p").read_bytes())
    instances = json.loads((root / "refcoco" / "instances.json").read_text())
    return root, summary, refs, instances


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout(dataset):
    root, summary, refs, instances = dataset
    assert summary.images == 40 == len(instances["images"])
    image_dir = root / "images" / "mscoco" / "images" / "train2014"
    for image in instances["images"]:
        with Image.open(image_dir / image["file_name"]) as im:
            assert im.format == "JPEG" and im.size == (image["width"], image["height"]) == (64, 64)
    ref = refs[0]
    assert set(ref) == {
        "ref_id",
        "ann_id",
        "image_id",
        "category_id",
        "split",
        "file_name",
        "sent_ids",
        "sentences",
    }
    assert set(ref["sentences"][0]) == {"sent_id", "raw", "sent", "tokens"}
    ann_ids = {a["id"] for a in instances["annotations"]}
    assert all(r["ann_id"] in ann_ids for r in refs)
    sent_ids = [s for r in refs for s in r["sent_ids"]]
    assert len(sent_ids) == len(set(sent_ids))


def test_same_seed_same_bytes(tmp_path):
    generate_dataset(tmp_path / "a", num_images=8, seed=5)
    generate_dataset(tmp_path / "b", num_images=8, seed=5)
    generate_dataset(tmp_path / "c", num_images=8, seed=6)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a") != _files(tmp_path / "c")


def test_scenes_and_splits(dataset):
    _, summary, refs, instances = dataset
    per_image: dict[int, list] = {}
    for ann in instances["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    assert min(len(v) for v in per_image.values()) >= 3
    assert set(summary.refs_per_split) == {"train", "val", "testA", "testB"}
    splits_of_image: dict[int, set] = {}
    circle = next(c["id"] for c in instances["categories"] if c["name"] == "circle")
    for ref in refs:
        splits_of_image.setdefault(ref["image_id"], set()).add(ref["split"])
        if ref["split"] == "testA":
            assert ref["category_id"] == circle
        if ref["split"] == "testB":
            assert ref["category_id"] != circle
        assert len(ref["sentences"]) >= 2
        assert len({s["sent"] for s in ref["sentences"]}) == len(ref["sentences"])
    assert all(len(s) == 1 for s in splits_of_image.values())


@pytest.mark.parametrize("shape", SHAPES)
def test_polygons_match_the_drawn_pixels(shape):
    """The annotation polygon, rasterized as evaluation does, is the drawn object."""
    from lavt.data.masks import segmentation_to_mask

    obj = SceneObject(
        shape, "red", "big", 32.3, 30.7, 14.2, shape_polygon(shape, 32.3, 30.7, 14.2, 0.2)
    )
    picture = render_scene([obj], Image.new("RGB", (64, 64), (128, 128, 128)))
    drawn = np.abs(np.asarray(picture, dtype=int) - COLOURS["red"]).sum(-1) < 100
    flat = [v for xy in obj.polygon for v in xy]
    mask = segmentation_to_mask([flat], 64, 64).astype(bool)
    iou = (mask & drawn).sum() / (mask | drawn).sum()
    assert iou > 0.85, iou  # thin star points rasterize a little differently


def test_annotations_are_inside_their_images(dataset):
    _, _, _, instances = dataset
    for ann in instances["annotations"]:
        xs, ys = ann["segmentation"][0][0::2], ann["segmentation"][0][1::2]
        assert 0 <= min(xs) and max(xs) <= 64 and 0 <= min(ys) and max(ys) <= 64
        assert ann["area"] > 20


def test_expressions_are_unambiguous():
    """Each kind of expression is checked against a hand-made scene."""
    side = 100

    def obj(shape, colour, size, x, y):
        r = 8 if size == "small" else 15
        return SceneObject(shape, colour, size, x, y, r, shape_polygon(shape, x, y, r, 0))

    scene = [
        obj("circle", "red", "small", 15, 50),
        obj("circle", "blue", "big", 50, 50),
        obj("circle", "green", "small", 85, 50),
        obj("square", "red", "big", 50, 85),
    ]
    rng = random.Random(0)
    seen = set()
    for _ in range(30):
        seen |= set(expressions_for(rng, scene, scene[1], side))
    assert "the red one" not in seen and "red" not in " ".join(seen)
    assert any("second" in e and "from the" in e for e in seen)
    assert any("blue" in e for e in seen)
    for _ in range(30):
        for expression in expressions_for(rng, scene, scene[0], side):
            assert "rightmost" not in expression and "green" not in expression


def test_expression_kind_names_the_template_family():
    rng = random.Random(3)
    counts = dict.fromkeys(EXPRESSION_KINDS, 0)
    for _ in range(300):
        objects = _sample_scene(rng, 96, 96, None)
        target = rng.choice(objects)
        families = {
            "attribute": _attribute_expressions(rng, objects, target),
            "ordinal": _ordinal_expressions(rng, objects, target, 96),
            "relation": _relation_expressions(rng, objects, target, 96),
        }
        for kind, expressions in families.items():
            for expression in expressions:
                assert expression_kind(expression) == kind, expression
                counts[kind] += 1
    assert min(counts.values()) > 50


def test_vocabulary_covers_every_word(dataset):
    from tokenizers import BertWordPieceTokenizer

    _, _, refs, _ = dataset
    vocab = synthetic_vocabulary()
    assert vocab[0] == "[PAD]" and len(vocab) == len(set(vocab)) < 200
    tok = BertWordPieceTokenizer({t: i for i, t in enumerate(vocab)}, lowercase=True)
    unk = vocab.index("[UNK]")
    for ref in refs:
        for sentence in ref["sentences"]:
            assert unk not in tok.encode(sentence["raw"]).ids, sentence["raw"]


def test_bundled_vocabulary_is_the_generators_and_the_default_models():
    from lavt.assets import default_model_path
    from lavt.checkpoint import read_model_weights

    assert synthetic_vocabulary() == generator_vocabulary()
    assert read_model_weights(default_model_path())[2] == synthetic_vocabulary()


def test_building_a_model_does_not_import_the_generator():
    import subprocess
    import sys

    code = (
        "import sys, lavt.tokenizer, lavt.checkpoint, lavt.modeling;"
        "lavt.tokenizer.synthetic_vocabulary();"
        "print(any(m.startswith('lavt.data') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("content", ["images", "annotations"])
def test_refuses_a_folder_it_did_not_write(tmp_path, capsys, content):
    """A real COCO tree (COCO_train2014_<id>.jpg) must never be overwritten (issue 11 item 11)."""
    root = tmp_path / "refer"
    if content == "images":
        image_dir = root / "images" / "mscoco" / "images" / "train2014"
        image_dir.mkdir(parents=True)
        (image_dir / "COCO_train2014_000000000001.jpg").write_bytes(b"a real photo")
    else:
        (root / "refcocog").mkdir(parents=True)
        (root / "refcocog" / "instances.json").write_text("{}")
    before = _snapshot(root)
    for overwrite in (False, True):
        with pytest.raises(InputError, match="did not write") as info:
            generate_dataset(root, num_images=4, overwrite=overwrite)
        assert info.value.param == "root"
    assert _snapshot(root) == before
    code = main(["synth", "--output", str(root), "--images", "4", "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("lavt synth: error: --output ") and err.count("\n") == 1
    assert _snapshot(root) == before


def test_writes_into_an_empty_folder_and_marks_it(tmp_path):
    generate_dataset(tmp_path, num_images=4)
    assert (tmp_path / MARKER).is_file()
    generate_dataset(tmp_path, num_images=4, overwrite=True)  # its own dataset: allowed


def test_files_follow_the_umask(tmp_path):
    """Issue 11 item 7: 0644 under umask 022, not mkstemp's private 0600."""
    old = os.umask(0o022)
    try:
        generate_dataset(tmp_path, num_images=4)
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 4
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}


def test_cli(tmp_path, capsys):
    assert (
        main(["synth", "--output", str(tmp_path), "--images", "6", "--image-size", "80", "48"]) == 0
    )
    assert "wrote 6 images" in capsys.readouterr().out
    with Image.open(next((tmp_path / "images").rglob("*.jpg"))) as im:
        assert im.size == (80, 48)
    # refuses to overwrite without --overwrite
    assert main(["synth", "--output", str(tmp_path), "--images", "6"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lavt synth: error: --overwrite not set: ")
    assert main(["synth", "--output", str(tmp_path), "--images", "6", "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("images", "size", "param"), [(3, (64, 64), "num_images"), (10, (16, 64), "image_size")]
)
def test_bad_arguments(tmp_path, images, size, param):
    with pytest.raises(InputError, match=rf"^{param} ") as info:
        generate_dataset(tmp_path, num_images=images, image_size=size)
    assert info.value.param == param
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("flag", "value"), [("--images", "3"), ("--image-size", "16 64")])
def test_cli_bad_arguments_name_the_flag(tmp_path, capsys, flag, value):
    code = main(["synth", "--output", str(tmp_path / "d"), flag, *value.split()])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"lavt synth: error: {flag} ")
