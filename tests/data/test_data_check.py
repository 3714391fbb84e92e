"""lavt data check on synthetic (both layouts) data: figures, and lavt evaluate's errors."""

from __future__ import annotations

import json

from lavt.cli import main


def _check(capsys, *argv):
    capsys.readouterr()
    code = main(["data", "check", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_figures_of_lavt_synth_match_what_it_wrote(tmp_path, capsys):
    from lavt.data.synthetic import generate_dataset

    summary = generate_dataset(tmp_path, num_images=8, seed=2)
    code, out, _ = _check(capsys, tmp_path, "--dataset", "refcoco", "--json")
    assert code == 0
    report = json.loads(out)
    assert {s: f["objects"] for s, f in report.items()} == summary.refs_per_split
    assert {s: f["expressions"] for s, f in report.items()} == summary.sentences_per_split
    assert sum(f["images"] for f in report.values()) == summary.images
    words = report["train"]["expression_words"]
    assert 1 <= words["min"] <= words["median"] <= words["max"]
    assert 0 < report["train"]["mask_area"]["min"] <= report["train"]["mask_area"]["max"] < 1
    code, out, _ = _check(capsys, tmp_path, "--dataset", "refcoco")
    assert code == 0 and out.splitlines()[0].startswith("split") and "train" in out


def test_generalized_synth_counts_no_target_refs(tmp_path, capsys):
    from lavt.data.synthetic import generate_generalized_dataset

    generate_generalized_dataset(tmp_path, num_images=6, seed=1, no_target_fraction=0.3)
    code, out, _ = _check(capsys, tmp_path, "--dataset", "grefcoco", "--json")
    assert code == 0
    assert sum(f["no_target"] for f in json.loads(out).values()) > 0


def test_missing_image_and_wrong_split_by_fail_with_one_line(tmp_path, capsys):
    from lavt.data.synthetic import generate_dataset

    generate_dataset(tmp_path, num_images=4, seed=2)
    code, _, err = _check(capsys, tmp_path, "--dataset", "refcoco", "--splitBy", "umd")
    assert code != 0 and "comes with splitBy unc" in err and len(err.splitlines()) == 1
    image = next((tmp_path / "images" / "mscoco" / "images" / "train2014").glob("*.jpg"))
    image.unlink()
    code, _, err = _check(capsys, tmp_path, "--dataset", "refcoco")
    assert code != 0 and image.name in err and len(err.splitlines()) == 1
