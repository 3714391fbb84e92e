"""`lavt evaluate --dataset grefcoco`: GRES metrics through the shared driver and outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from lavt.checkpoint import save_checkpoint
from lavt.cli import main
from lavt.data.synthetic import generate_generalized_dataset
from lavt.modeling import build_model

SRC = str(Path(__file__).resolve().parents[2] / "src")
GRES_KEYS = {"cIoU", "gIoU", "N-acc", "T-acc", "Pr@0.7", "Pr@0.8", "Pr@0.9"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("geval")
    generate_generalized_dataset(root / "data", num_images=24, seed=4, image_size=(48, 48))
    for head in (False, True):
        torch.manual_seed(0)
        model = build_model(tiny_config(img_size=48, no_target_head=head))
        save_checkpoint(root / f"tiny_head{int(head)}.pt", model)
    return root


def _args(setup, out, *extra, head=False):
    return [
        "evaluate",
        "--checkpoint",
        str(setup / f"tiny_head{int(head)}.pt"),
        "--data-root",
        str(setup / "data"),
        "--dataset",
        "grefcoco",
        "--split",
        "val,testA",
        "--output",
        str(out),
        "--workers",
        "0",
        "--device",
        "cpu",
        "--batch-size",
        "3",
        *extra,
    ]


def _records(out, split):
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def test_area_rule_without_head(setup, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(setup, out, "--save-worst", "1")) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"val", "testA"}
    for split, row in metrics.items():
        assert GRES_KEYS <= set(row)
        assert row["no_target_rule"] == "area" and row["area_threshold"] == 0
        records = _records(out, split)
        assert len(records) == row["num_expressions"] == row["samples"] > 0
        assert {"no_target", "pred_no_target", "I", "U", "IoU"} <= set(records[0])
        assert "no_target_prob" not in records[0]
        # the table's figures follow from the per-sample records
        assert row["gIoU"] == pytest.approx(100 * sum(r["IoU"] for r in records) / len(records))
        nt = [r for r in records if r["no_target"]]
        assert row["no_target_samples"] == len(nt) > 0
        hits = sum(r["pred_no_target"] for r in nt)
        assert row["N-acc"] == pytest.approx(100 * hits / len(nt))
        for r in records:  # area rule, tau = 0: no-target iff the mask is empty
            area_empty = r["U"] - r["I"] == 0 and r["I"] == 0 and r["no_target"]
            if r["pred_no_target"] and not r["no_target"]:
                assert r["IoU"] == 0
            if area_empty:
                assert r["pred_no_target"]
    table = (out / "metrics.md").read_text()
    assert "| Split | cIoU | gIoU | N-acc | T-acc |" in table and "tau = 0" in table
    assert "gIoU" in printed
    assert len(list((out / "worst_val").glob("*.png"))) == 1


def test_everything_rejected_scores_the_no_target_share(setup, tmp_path):
    """tau = every pixel: all samples predicted no-target (the table's TP and FP rows)."""
    out = tmp_path / "all"
    assert main(_args(setup, out, "--area-threshold", str(48 * 48))) == 0
    row = json.loads((out / "metrics.json").read_text())["val"]
    share = 100 * row["no_target_samples"] / row["samples"]
    assert row["gIoU"] == pytest.approx(share)
    assert row["N-acc"] == 100 and row["T-acc"] == 0 and row["cIoU"] == 0
    assert row["Pr@0.7"] == 0


def test_head_rule_and_its_probability(setup, tmp_path):
    out = tmp_path / "head"
    assert main(_args(setup, out, head=True)) == 0
    row = json.loads((out / "metrics.json").read_text())["val"]
    assert row["no_target_rule"] == "head"
    records = _records(out, "val")
    assert all((r["no_target_prob"] > 0.5) == r["pred_no_target"] for r in records)
    area = tmp_path / "area"
    assert main(_args(setup, area, "--no-target-rule", "area", head=True)) == 0
    assert json.loads((area / "metrics.json").read_text())["val"]["no_target_rule"] == "area"


def test_original_resolution_keeps_the_decisions(setup, tmp_path):
    """The decision is made at the model's size; only the masks change resolution."""
    model, original = tmp_path / "m", tmp_path / "o"
    assert main(_args(setup, model, "--area-threshold", "5")) == 0
    assert main(_args(setup, original, "--area-threshold", "5", "--resolution", "original")) == 0
    for split in ("val", "testA"):
        first, second = _records(model, split), _records(original, split)
        assert [r["pred_no_target"] for r in first] == [r["pred_no_target"] for r in second]
        assert all(r["IoU"] == 1.0 for r in second if r["no_target"] and r["pred_no_target"])


def test_head_rule_needs_a_head(setup, tmp_path, capsys):
    assert main(_args(setup, tmp_path / "x", "--no-target-rule", "head")) == 2
    err = capsys.readouterr().err
    assert "--no-target-rule head: this model has no no-target head" in err
    assert main(_args(setup, tmp_path / "y", "--area-threshold", "-1")) == 2
    assert "--area-threshold -1: must be >= 0" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_match_one(setup, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_args(setup, one, head=True)) == 0
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", "2", "-m", "lavt", *_args(setup, two, head=True)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((one / "metrics.json").read_text()) == json.loads(
        (two / "metrics.json").read_text()
    )
    for split in ("val", "testA"):  # the probability may differ in the last float bits
        first, second = _records(one, split), _records(two, split)
        probs = [
            (a.pop("no_target_prob"), b.pop("no_target_prob"))
            for a, b in zip(first, second, strict=True)
        ]
        assert first == second
        assert all(a == pytest.approx(b, abs=1e-4) for a, b in probs)
