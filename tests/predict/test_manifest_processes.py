"""``lavt predict --manifest`` across processes: killed with SIGKILL and rerun; under torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from manifest_helpers import SRC, keys, read_lines, run, scenes_manifest

from conftest import lavt_torchrun

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _start_and_kill(manifest: Path, out: Path, after: int) -> None:
    """Run ``lavt predict --manifest`` (with a loader worker) and SIGKILL its whole process
    group once this run's part holds ``after`` lines (an earlier run's part is folded into
    predictions.jsonl first, so the count drops to 0 before it grows again)."""
    part = out / "parts" / "predictions-rank0.jsonl"
    fresh = _count_lines(part) == 0
    cmd = [sys.executable, "-m", "lavt", "predict", "--manifest", str(manifest)]
    cmd += ["--output", str(out), "--device", "cpu", "--workers", "1", "--batch-size", "2"]
    child = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            count = _count_lines(part)
            fresh = fresh or count == 0
            if fresh and count >= after:
                break
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.002)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def test_sigkill_then_rerun_gives_every_pair_once(tmp_path):
    manifest = scenes_manifest(tmp_path, 60, size=(160, 120))
    assert run(manifest, tmp_path / "ref", "--batch-size", "2") == 0
    reference = (tmp_path / "ref" / "predictions.jsonl").read_text()
    out = tmp_path / "out"
    _start_and_kill(manifest, out, after=8)
    assert not (out / "predictions.jsonl").exists()  # killed before the end
    _start_and_kill(manifest, out, after=8)  # the rerun (which folded the first part in) too
    first = read_lines(out / "predictions.jsonl")
    assert 8 <= len(first) < len(reference.splitlines())
    assert run(manifest, out, "--batch-size", "2") == 0
    assert (out / "predictions.jsonl").read_text() == reference
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs_skipped"] >= 16 and summary["pairs_total"] == len(reference.splitlines())


def test_torchrun_two_processes_resume_and_match_one(tmp_path):
    manifest = scenes_manifest(tmp_path, 13)
    lines = manifest.read_text().splitlines(keepends=True)
    lines[4] = "{broken\n"
    lines[9] = json.dumps({"image": "imgs/none.png", "text": "the red circle"}) + "\n"
    manifest.write_text("".join(lines))
    head = tmp_path / "head.jsonl"
    head.write_text("".join(lines[:3]))
    assert run(manifest, tmp_path / "one") == 1
    out = tmp_path / "two"
    assert run(head, out) == 0  # one process did the first lines
    done = len(read_lines(out / "predictions.jsonl"))
    cmd = lavt_torchrun("predict", "--manifest", str(manifest), "--output", str(out),
                        "--device", "cpu", "--workers", "1", "--batch-size", "4")  # fmt: skip
    finished = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 1, finished.stderr[-3000:]  # two lines failed
    for name in ("predictions.jsonl", "errors.jsonl"):
        assert (out / name).read_text() == (tmp_path / "one" / name).read_text(), name
    assert [e["line"] for e in read_lines(out / "errors.jsonl")] == [5, 10]
    assert (
        keys(read_lines(out / "predictions.jsonl"))[:done]
        == keys(read_lines(tmp_path / "one" / "predictions.jsonl"))[:done]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["processes"], summary["pairs_skipped"], summary["lines_failed"]) == (2, done, 2)
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == sorted(
        ["errors.jsonl", "predictions.jsonl", "summary.json"]
    )
