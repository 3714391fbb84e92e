"""`lavt synth --generalized`: gRefCOCO layout, multi-target and no-target expressions."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lavt.cli import main
from lavt.data.refer import ReferIndex
from lavt.data.synthetic import (
    COLOURS,
    SHAPES,
    generalized_vocabulary,
    generate_generalized_dataset,
    multi_target_expressions,
    no_target_expressions,
    synthetic_vocabulary,
)
from lavt.data.synthetic.expressions import SHAPE_WORDS
from lavt.data.synthetic.generalized import EXTRA_WORDS, PLURAL_WORDS
from lavt.data.synthetic.scenes import _sample_scene
from lavt.errors import InputError


@pytest.fixture(scope="module")
def gres_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gsynth")
    generate_generalized_dataset(root, num_images=40, seed=5, no_target_fraction=0.25)
    return root


def _words_named(text):
    """(colour, shape) an expression names, read independently of the generator."""
    colour = next((c for c in COLOURS if f" {c} " in f" {text} "), None)
    shape = None
    for name in SHAPES:
        words = (*SHAPE_WORDS[name], *PLURAL_WORDS[name])
        if any(f" {w} " in f" {text} " for w in words):
            shape = name
    return colour, shape


def test_layout_and_reader(gres_root):
    assert (gres_root / "grefcoco" / "grefs(unc).json").is_file()
    assert (gres_root / "images" / "train2014" / "COCO_train2014_000000000001.jpg").is_file()
    index = ReferIndex(gres_root, "grefcoco", "unc")
    sentences = [(r, s) for r in index.refs for s in r.sentences]
    no_target = sum(r.no_target for r, _ in sentences)
    multi = sum(len(r.ann_ids) >= 2 for r, _ in sentences)
    assert 0.18 < no_target / len(sentences) < 0.32  # asked for 0.25
    assert multi / len(sentences) > 0.05
    for split in ("train", "val", "testA", "testB"):
        assert any(r.no_target for r in index.split(split))
    assert index.missing_images(index.refs) == []
    multi_ref = next(r for r in index.refs if len(r.ann_ids) >= 2)
    union = np.zeros_like(index.mask(multi_ref.ann_ids[0]), dtype=bool)
    for ann_id in multi_ref.ann_ids:
        union |= index.mask(ann_id).astype(bool)
    assert np.array_equal(index.ref_mask(multi_ref).astype(bool), union)
    assert not index.ref_mask(next(r for r in index.refs if r.no_target)).any()


def test_every_expression_matches_its_scene(gres_root):
    """Colour and shape groups name exactly their refs' objects; no-target ones name none."""
    raw = json.loads((gres_root / "grefcoco" / "grefs(unc).json").read_text())
    instances = json.loads((gres_root / "grefcoco" / "instances.json").read_text())
    shape_of = {a["id"]: SHAPES[a["category_id"] - 1] for a in instances["annotations"]}
    by_image: dict[int, list] = {}
    for a in instances["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a["id"])
    checked = 0
    for ref in raw:
        for sentence in ref["sentences"]:
            colour, shape = _words_named(sentence["raw"])
            if ref["ann_id"] == [-1]:
                # nothing in the image has both named attributes (colour from the ref list)
                named = [a for a in by_image[ref["image_id"]] if shape in (None, shape_of[a])]
                assert colour is not None or shape is not None
                if colour is None:
                    assert not named, sentence["raw"]
                checked += 1
            elif len(ref["ann_id"]) >= 2 and shape is not None and colour is None:
                if " of " not in sentence["raw"] and not any(
                    w in sentence["raw"] for w in ("above", "below", "over", "under")
                ):
                    same = [a for a in by_image[ref["image_id"]] if shape_of[a] == shape]
                    assert sorted(same) == sorted(ref["ann_id"]), sentence["raw"]
                    checked += 1
    assert checked > 20


def test_generator_checks_on_random_scenes():
    rng = random.Random(0)
    for _ in range(200):
        objects = _sample_scene(rng, 64, 64, None)
        for text, chosen in multi_target_expressions(rng, objects, 64):
            assert len(chosen) >= 2
            colour, shape = _words_named(text)
            if " the " in text.split(" ", 1)[-1]:
                continue  # relation groups: checked by the generator's resolver
            named = {
                i
                for i, o in enumerate(objects)
                if colour in (None, o.colour) and shape in (None, o.shape)
            }
            assert named == chosen, text
            if text.startswith(("both", "the two")):
                assert len(chosen) == 2
        for text in no_target_expressions(rng, objects, 64):
            colour, shape = _words_named(text)
            assert not any(
                colour in (None, o.colour) and shape in (None, o.shape) for o in objects
            ), text


def test_vocabulary_extends_the_classic_one(gres_root):
    from tokenizers import BertWordPieceTokenizer

    vocab = generalized_vocabulary()
    classic = synthetic_vocabulary()
    assert vocab[: len(classic)] == classic and len(set(vocab)) == len(vocab)
    generator_words = set(EXTRA_WORDS) | {w for ws in PLURAL_WORDS.values() for w in ws}
    assert generator_words <= set(vocab)
    tok = BertWordPieceTokenizer({t: i for i, t in enumerate(vocab)}, lowercase=True)
    unk = vocab.index("[UNK]")
    for ref in json.loads((gres_root / "grefcoco" / "grefs(unc).json").read_text()):
        for sentence in ref["sentences"]:
            assert unk not in tok.encode(sentence["raw"]).ids, sentence["raw"]


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        generate_generalized_dataset(tmp_path / name, num_images=6, seed=9)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_cli(tmp_path, capsys):
    out = tmp_path / "g"
    args = ["synth", "--output", str(out), "--images", "8", "--generalized"]
    assert main([*args, "--no-target-fraction", "0"]) == 0
    index = ReferIndex(out, "grefcoco")
    assert not any(r.no_target for r in index.refs)
    assert main([*args, "--no-target-fraction", "1"]) == 2
    assert "--no-target-fraction 1.0: must be in [0, 1)" in capsys.readouterr().err
    plain = ["synth", "--output", str(tmp_path / "p"), "--images", "4"]
    assert main([*plain, "--no-target-fraction", "0.2"]) == 2
    assert "--no-target-fraction: only with --generalized" in capsys.readouterr().err


def test_refuses_a_foreign_gres_folder(tmp_path):
    image_dir = tmp_path / "coco" / "images" / "train2014"
    image_dir.mkdir(parents=True)
    (image_dir / "COCO_train2014_000000000001.jpg").write_bytes(b"a real photo")
    with pytest.raises(InputError, match="did not write"):
        generate_generalized_dataset(tmp_path / "coco", num_images=4, overwrite=True)
    assert (image_dir / "COCO_train2014_000000000001.jpg").read_bytes() == b"a real photo"
