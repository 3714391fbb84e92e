"""End to end: synthesize a dataset, evaluate a tiny model, in one and two processes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import NODES_ENV, free_port, lavt_torchrun, lavt_torchrun_node, tiny_config
from lavt.checkpoint import save_checkpoint
from lavt.cli import main
from lavt.data.synthetic import generate_dataset
from lavt.modeling import build_model

SRC = str(Path(__file__).resolve().parents[2] / "src")
KEYS = {
    "precision@0.5",
    "precision@0.6",
    "precision@0.7",
    "precision@0.8",
    "precision@0.9",
    "overall_iou",
    "mean_iou",
    "num_expressions",
    "num_objects",
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    generate_dataset(root / "data", num_images=24, seed=2, image_size=(48, 48))
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.pt", build_model(tiny_config(img_size=48)))
    return root


def _args(setup, out, *extra):
    return [
        "evaluate",
        "--checkpoint",
        str(setup / "tiny.pt"),
        "--data-root",
        str(setup / "data"),
        "--split",
        "val,testA,testB",
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


def test_evaluate_writes_the_reports(setup, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(setup, out, "--save-worst", "2")) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"val", "testA", "testB"}
    for split, row in metrics.items():
        assert set(row) == KEYS
        lines = (out / f"{split}.jsonl").read_text().splitlines()
        assert len(lines) == row["num_expressions"] > 0
        record = json.loads(lines[0])
        assert set(record) == {"ref_id", "sent_id", "text", "I", "U", "IoU"}
        ious = [json.loads(line)["IoU"] for line in lines]
        assert row["mean_iou"] == pytest.approx(100 * sum(ious) / len(ious))
        assert len(list((out / f"worst_{split}").glob("*.png"))) == 2
    table = (out / "metrics.md").read_text()
    assert (
        table.splitlines()[0]
        == "| Split | P@0.5 | P@0.6 | P@0.7 | P@0.8 | P@0.9 | Overall IoU | Mean IoU |"
    )
    assert table.strip() in printed


def test_batch_size_does_not_change_results(setup, tmp_path):
    assert main(_args(setup, tmp_path / "a")) == 0
    args = _args(setup, tmp_path / "b")
    args[args.index("--batch-size") + 1] = "1"
    assert main(args) == 0
    assert (tmp_path / "a" / "metrics.json").read_text() == (
        tmp_path / "b" / "metrics.json"
    ).read_text()


def test_original_resolution_and_swapped_expressions(setup, tmp_path):
    assert main(_args(setup, tmp_path / "o", "--resolution", "original")) == 0
    assert main(_args(setup, tmp_path / "s", "--swap-expressions")) == 0
    for name in ("o", "s"):
        assert set(json.loads((tmp_path / name / "metrics.json").read_text())) == {
            "val",
            "testA",
            "testB",
        }


@pytest.mark.slow
def test_two_processes_match_one(setup, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_args(setup, one)) == 0
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = lavt_torchrun(*_args(setup, two))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((one / "metrics.json").read_text()) == json.loads(
        (two / "metrics.json").read_text()
    )
    for split in ("val", "testA", "testB"):
        first = sorted((one / f"{split}.jsonl").read_text().splitlines())
        assert first == sorted((two / f"{split}.jsonl").read_text().splitlines())


@pytest.mark.slow
def test_two_nodes_match_one(setup, tmp_path):
    """README's multi-node torchrun (two agents, one process each): the same bytes."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(_args(setup, one)) == 0
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", **NODES_ENV}
    cmd = lavt_torchrun_node(*_args(setup, two), port=free_port(), run_id="eval", restarts=0)
    logs = [(tmp_path / f"node{n}.err").open("w") for n in (0, 1)]
    nodes = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=f) for f in logs]
    try:
        codes = [node.wait(300) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    assert codes == [0, 0], (tmp_path / "node0.err").read_text()[-2000:]
    assert (one / "metrics.json").read_bytes() == (two / "metrics.json").read_bytes()
    assert (one / "metrics.md").read_bytes() == (two / "metrics.md").read_bytes()
    for split in ("val", "testA", "testB"):
        first = sorted((one / f"{split}.jsonl").read_text().splitlines())
        assert first == sorted((two / f"{split}.jsonl").read_text().splitlines())


def test_bad_arguments(setup, tmp_path, capsys):
    assert main(_args(setup, tmp_path / "x", "--batch-size", "0")) == 2
    assert main([*_args(setup, tmp_path / "x")[:-2], "--batch-size", "2", "--splitBy", "umd"]) == 2
    args = _args(setup, tmp_path / "x")
    args[args.index("--split") + 1] = "testC"
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("lavt evaluate: error:") == 3
    assert not (tmp_path / "x").exists()
