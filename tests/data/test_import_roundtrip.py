"""lavt synth --own-data -> lavt data import {jsonl,coco,labelme} -> the same dataset.

The three raw formats of one generated set must import to the same refs, splits
and masks (compared in pixels), readable by ReferIndex under any name.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from lavt.cli import main

SCENES = 8


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """The example's raw files (3 formats) and their three imports under one root."""
    base = tmp_path_factory.mktemp("own")
    raw, root = base / "raw", base / "root"
    assert main(["synth", "--own-data", "--output", str(raw), "--images", str(SCENES)]) == 0
    sources = {
        "jsonl": ["jsonl", str(raw / "jsonl" / "scenes.jsonl")],
        "coco": [
            "coco",
            str(raw / "coco" / "annotations.json"),
            "--images",
            str(raw / "coco" / "images"),
        ],
        "labelme": ["labelme", str(raw / "labelme")],
    }
    for name, args in sources.items():
        assert main(["data", "import", *args, "--output", str(root), "--name", name]) == 0
    return raw, root


def _refs_by_key(root, name):
    from lavt.data.refer import ReferIndex

    index = ReferIndex(root, name)  # default splitBy: no flag needed for any name
    out = {}
    for ref in index.refs:
        image = index.images[ref.image_id]["file_name"].rsplit("/", 1)[-1]
        out[(image, tuple(s.text for s in ref.sentences))] = (ref.split, index.ref_mask(ref))
    return out


def test_three_formats_give_the_same_refs_splits_and_masks(own):
    _, root = own
    jsonl = _refs_by_key(root, "jsonl")
    assert len(jsonl) >= 2 * SCENES
    for name in ("coco", "labelme"):
        other = _refs_by_key(root, name)
        assert other.keys() == jsonl.keys(), name
        for key, (split, mask) in jsonl.items():
            assert other[key][0] == split, (name, key)
            assert mask.any()
            np.testing.assert_array_equal(other[key][1], mask, err_msg=f"{name} {key}")


def test_check_figures_agree_across_formats(own, capsys):
    _, root = own
    reports = {}
    for name in ("jsonl", "coco", "labelme"):
        capsys.readouterr()
        assert main(["data", "check", str(root), "--dataset", name, "--json"]) == 0
        reports[name] = json.loads(capsys.readouterr().out)
    assert set(reports["jsonl"]) == {"train", "val", "test"}
    assert reports["coco"] == reports["jsonl"] == reports["labelme"]


def test_jsonl_uses_every_mask_form_and_labelme_both_split_spellings(own):
    raw, _ = own
    lines = [json.loads(x) for x in (raw / "jsonl" / "scenes.jsonl").read_text().splitlines()]
    forms = {
        "png" if isinstance(m, str) else next(iter(m)) for m in (line["mask"] for line in lines)
    }
    assert forms == {"png", "polygons", "rle"}
    flags = [json.loads(p.read_text())["flags"] for p in sorted((raw / "labelme").glob("*.json"))]
    assert any("split" in f for f in flags) and any("split" not in f for f in flags)


def test_generator_is_deterministic_and_writes_only_the_asked_format(own, tmp_path):
    raw, _ = own
    argv = ["synth", "--own-data", "--format", "jsonl", "--output", str(tmp_path)]
    assert main([*argv, "--images", str(SCENES)]) == 0
    digest = [
        hashlib.sha256((d / "jsonl" / "scenes.jsonl").read_bytes()).hexdigest()
        for d in (raw, tmp_path)
    ]
    assert digest[0] == digest[1]
    assert not (tmp_path / "coco").exists()


def test_own_data_words_are_new_to_the_bundled_model():
    from lavt.data.synthetic.novel import COMPASS, NOVEL_COLOURS, NOVEL_SHAPES
    from lavt.tokenizer import generalized_synthetic_vocabulary

    known = set(generalized_synthetic_vocabulary())
    new = {*NOVEL_SHAPES, *NOVEL_COLOURS, *COMPASS.values()}
    assert not new & known


def test_every_expression_selects_exactly_its_object():
    import random

    from lavt.data.synthetic.generalized import resolve
    from lavt.data.synthetic.novel import COMPASS, novel_scene

    direction = {word: rel for rel, word in COMPASS.items()}
    rng = random.Random(5)
    for _ in range(30):
        scene = novel_scene(rng, 64, 64)
        for i, texts in enumerate(scene.expressions):
            for text in texts:
                words = text.split()
                query = _parse(words, scene.objects, direction)
                assert resolve(query, scene.objects, 64) == {i}, text


def _parse(words, objects, direction):
    """Query of "the [colour] shape", "the colour noun", "the shape DIR of the ANCHOR"."""
    from lavt.data.synthetic.generalized import Query
    from lavt.data.synthetic.novel import NOVEL_COLOURS, NOVEL_SHAPES

    if len(words) > 3 and words[2] in direction:
        anchor_words = words[5:]
        anchor = [
            k
            for k, o in enumerate(objects)
            if o.shape == anchor_words[-1]
            and (len(anchor_words) == 1 or o.colour == anchor_words[0])
        ]
        assert len(anchor) == 1
        return Query(shape=words[1], relation=direction[words[2]], anchor=anchor[0])
    colour = next((w for w in words if w in NOVEL_COLOURS), None)
    shape = next((w for w in words if w in NOVEL_SHAPES), None)
    return Query(colour=colour, shape=shape)


def test_synth_layout_bytes_unchanged_by_the_shared_writer(tmp_path):
    """Annotation files of lavt synth as written before the writer moved (golden hashes)."""
    from lavt.data.synthetic import generate_dataset, generate_generalized_dataset

    generate_dataset(tmp_path / "a", num_images=12, seed=3)
    generate_generalized_dataset(tmp_path / "g", num_images=12, seed=3)
    expected = {
        "a/refcoco/instances.json": "73c9d7bb4becd4bac36a92c34b21464b",
        "a/refcoco/refs(unc).p": "fd9bdc0898fa9784fcf2c23765713f77",
        "g/grefcoco/grefs(unc).json": "7976e8a0a81bf69a3d5c8ca194f59ff9",
        "g/grefcoco/instances.json": "ea017de12c12071f3ed008004d04ed54",
    }
    for path, digest in expected.items():
        assert hashlib.sha256((tmp_path / path).read_bytes()).hexdigest()[:32] == digest, path


def test_generator_replaces_only_its_own_folders(tmp_path, capsys):
    argv = ["synth", "--own-data", "--format", "coco", "--output", str(tmp_path), "--images", "3"]
    assert main(argv) == 0
    assert main(argv) != 0 and "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    (tmp_path / "labelme").mkdir()
    (tmp_path / "labelme" / "mine.json").write_text("{}")
    labelme = [*argv[:3], "labelme", *argv[4:], "--overwrite"]
    assert main(labelme) != 0 and "not written by lavt synth" in capsys.readouterr().err
    assert (tmp_path / "labelme" / "mine.json").read_text() == "{}"
