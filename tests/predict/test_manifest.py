"""``lavt predict --manifest``: results, PNGs, bad lines, --max-errors, resume, repair, memory."""

from __future__ import annotations

import json
import shutil
import tracemalloc

import numpy as np
import pytest
from filelock import FileLock
from manifest_helpers import decode, keys, read_lines, run, scene, scenes_manifest, write_manifest
from PIL import Image

from lavt.assets import generalized_model_path
from lavt.predict import Predictor
from lavt.predict.manifest import read_manifest
from lavt.predict.store import DoneCursor

SERVE_FIELDS = {"text", "rle", "bbox", "area", "score", "found"}


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_checkpoint(device="cpu")


def test_results_match_the_predictor(tmp_path, predictor):
    first = scene(tmp_path / "imgs" / "a.png", (90, 60))
    second = scene(tmp_path / "far" / "b.png", (40, 70), seed=3)
    rows = [
        {"id": "x1", "image": "imgs/a.png", "texts": ["the red circle", "the blue square"]},
        {"image": str(second), "text": "the blue square"},  # absolute path, default id
        {"image": "imgs/a.png", "texts": ["big red disc", "the red circle", "small blue one"]},
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    assert run(manifest, tmp_path / "out", "--batch-size", "4") == 0
    lines = read_lines(tmp_path / "out" / "predictions.jsonl")
    assert keys(lines) == [(1, 0), (1, 1), (2, 0), (3, 0), (3, 1), (3, 2)]
    assert [line["id"] for line in lines] == ["x1", "x1", 2, 3, 3, 3]
    expected = {1: (first, rows[0]["texts"]), 2: (second, ["the blue square"])}
    expected[3] = (first, rows[2]["texts"])
    for line in lines:
        image, texts = expected[line["line"]]
        prediction = predictor.predict(image, texts)[line["text_index"]]
        assert SERVE_FIELDS <= set(line) and "no_target_probability" not in line
        assert line["image"] == rows[line["line"] - 1]["image"]
        assert line["text"] == prediction.text
        assert (line["width"], line["height"]) == Image.open(image).size
        mask = decode(line["rle"])
        np.testing.assert_array_equal(mask, prediction.mask)
        assert line["area"] == int(prediction.mask.sum()) and line["found"] == prediction.found
        assert line["score"] == round(prediction.mean_foreground_probability, 6)  # serve's bytes
        if line["area"]:
            ys, xs = np.nonzero(mask)
            assert line["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
    assert sum(line["area"] > 0 for line in lines) >= 3  # real masks, not all empty
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["pairs_written"], summary["lines_failed"], summary["lines"]) == (6, 0, 3)
    assert (tmp_path / "out" / "errors.jsonl").read_text() == ""
    assert not (tmp_path / "out" / "parts").exists()


def test_workers_and_pngs_give_the_same_lines(tmp_path):
    manifest = scenes_manifest(tmp_path, 9)
    assert run(manifest, tmp_path / "plain", "--batch-size", "3") == 0
    assert run(manifest, tmp_path / "png", "--workers", "2", "--threads", "3", "--save-png") == 0
    plain = read_lines(tmp_path / "plain" / "predictions.jsonl")
    with_png = read_lines(tmp_path / "png" / "predictions.jsonl")
    for line in with_png:
        mask = np.asarray(Image.open(tmp_path / "png" / line.pop("mask"))) > 127
        np.testing.assert_array_equal(mask, decode(line["rle"]))
        overlay = Image.open(tmp_path / "png" / line.pop("overlay"))
        assert overlay.width >= line["width"]
    assert with_png == plain  # batch size, workers and threads change nothing


def test_bad_lines_go_to_errors_and_the_exit_status(tmp_path, capsys):
    scene(tmp_path / "ok.png", (50, 40))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rows = [
        {"image": "ok.png", "text": "the red circle"},
        '{"image": "ok.png", "text": ',
        {"image": "missing.png", "text": "x"},
        {"image": "broken.png", "texts": ["the red circle"]},
        {"image": "ok.png", "texts": []},
        {"image": "ok.png", "texts": ["the red circle", "  "]},
        "[1, 2]",
        {"text": "no image"},
        "",
        {"image": "ok.png", "text": "a", "texts": ["b"]},
        {"image": "ok.png", "texts": ["the blue square"]},
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    assert run(manifest, tmp_path / "out") == 1
    errors = read_lines(tmp_path / "out" / "errors.jsonl")
    reasons = {e["line"]: e["reason"] for e in errors}
    assert list(reasons) == [2, 3, 4, 5, 6, 7, 8, 10]  # line 9 is blank: skipped
    assert reasons[2].startswith("not JSON")
    assert "missing.png: image not found" in reasons[3]
    assert "broken.png" in reasons[4] and "image" in reasons[4]
    assert reasons[5].startswith("texts: must be a non-empty list")
    assert reasons[6] == "texts[1]: the expression is empty"
    assert reasons[7].startswith("not a JSON object")
    assert reasons[8].startswith("image: missing")
    assert reasons[10] == 'give "text" or "texts", not both'
    assert errors[1]["image"] == "missing.png" and errors[1]["id"] == 3
    assert keys(read_lines(tmp_path / "out" / "predictions.jsonl")) == [(1, 0), (11, 0)]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["lines_failed"], summary["pairs_written"], summary["lines"]) == (8, 2, 10)
    assert "8 line(s) failed" in capsys.readouterr().err


def test_max_errors_stops_early(tmp_path):
    scene(tmp_path / "ok.png", (50, 40))
    rows: list[dict | str] = []
    for n in range(12):
        rows.append({"image": "ok.png", "text": "the red circle"} if n % 2 == 0 else "bad")
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    assert run(manifest, tmp_path / "out", "--max-errors", "1") == 1
    assert [e["line"] for e in read_lines(tmp_path / "out" / "errors.jsonl")] == [2, 4]
    assert keys(read_lines(tmp_path / "out" / "predictions.jsonl")) == [(1, 0), (3, 0)]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["stopped_early"]
    assert run(manifest, tmp_path / "all") == 1  # no limit: every line is tried
    assert len(read_lines(tmp_path / "all" / "predictions.jsonl")) == 6


def test_resume_skips_done_pairs_and_refuses_a_changed_manifest(tmp_path, capsys):
    manifest = scenes_manifest(tmp_path, 8)
    head = tmp_path / "head.jsonl"
    head.write_text("".join(manifest.read_text().splitlines(keepends=True)[:5]))
    checkpoint = ["--checkpoint", str(generalized_model_path())]  # a model with a head
    out = tmp_path / "out"
    assert run(head, out, *checkpoint) == 0
    first = (out / "predictions.jsonl").read_text()
    done = len(first.splitlines())
    shutil.copy(manifest, head)  # the manifest grew: the rerun does only the new pairs
    assert run(head, out, *checkpoint) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs_skipped"] == done and summary["pairs_written"] > 0
    assert (out / "predictions.jsonl").read_text().startswith(first)
    assert run(manifest, tmp_path / "fresh", *checkpoint) == 0
    assert (out / "predictions.jsonl").read_text() == (
        tmp_path / "fresh" / "predictions.jsonl"
    ).read_text()
    assert all("no_target_probability" in line for line in read_lines(out / "predictions.jsonl"))
    rows = read_lines(manifest)
    rows[0]["texts"][0] = "something else"
    write_manifest(head, rows)
    capsys.readouterr()
    assert run(head, out, *checkpoint) == 2
    err = capsys.readouterr().err
    assert "the manifest changed" in err and "Traceback" not in err


def test_a_cut_tail_and_a_half_finished_merge_are_repaired(tmp_path):
    manifest = scenes_manifest(tmp_path, 6)
    assert run(manifest, tmp_path / "ref") == 0
    lines = (tmp_path / "ref" / "predictions.jsonl").read_text().splitlines(keepends=True)
    out = tmp_path / "out"
    (out / "parts").mkdir(parents=True)
    (out / "predictions.jsonl").write_text("".join(lines[:4]))
    # a killed rank: its part repeats a merged line (killed before the parts were removed)
    # and ends in a line cut in the middle
    part = "".join(lines[3:7]) + lines[7][: len(lines[7]) // 2]
    (out / "parts" / "predictions-rank0.jsonl").write_text(part)
    assert run(manifest, out) == 0
    assert (out / "predictions.jsonl").read_text() == "".join(lines)
    assert json.loads((out / "summary.json").read_text())["pairs_written"] == len(lines) - 7


def test_bad_arguments(tmp_path, capsys):
    manifest = scenes_manifest(tmp_path, 2)
    out = tmp_path / "out"
    assert run(manifest, out, "--text", "x") == 2
    assert run(manifest, out, "--batch-size", "0") == 2
    assert run(tmp_path / "nope.jsonl", out) == 2
    (tmp_path / "file").write_text("x")
    assert run(manifest, tmp_path / "file") == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "predictions.jsonl").write_text('{"image": "a", "mask": "b"}\n')
    assert run(manifest, tmp_path / "other") == 2  # a folder of `lavt predict --image`
    busy = tmp_path / "busy"
    busy.mkdir()
    with FileLock(str(busy / ".lock")):  # another run is writing there
        assert run(manifest, busy) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("lavt predict: error:") == 6
    assert "--output " + str(busy) + ": another lavt predict --manifest is writing" in err
    assert not (busy / "predictions.jsonl").exists() and not (busy / "parts").exists()
    assert "--batch-size 0" in err and "nope.jsonl: manifest not found" in err
    assert not out.exists()


def test_reading_is_a_stream(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for n in range(20000):
            f.write(json.dumps({"id": n, "image": f"i{n}.png", "texts": ["a", "b"]}) + "\n")
    done = tmp_path / "predictions.jsonl"
    with open(done, "w") as f:
        for n in range(1, 20001, 2):
            f.write(json.dumps({"line": n, "text_index": 0, "text": "a"}) + "\n")
    tracemalloc.start()
    cursor, count, hits = DoneCursor(done), 0, 0
    for entry in read_manifest(path, rank=1, world_size=2):
        count += 1
        hits += cursor.text((entry.line, 0)) == "a"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (count, hits) == (10000, 0)  # rank 1 reads lines 2, 4, ...: none done
    assert peak < 512 * 1024, peak  # the file is ~1.2 MB and the done list ~0.4 MB
