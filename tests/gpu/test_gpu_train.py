"""Training with --amp bf16 / fp16 through ``python -m lavt train``: it learns, fp16 does not
keep overflowing, and a killed run resumed with ``--resume auto`` continues with the same losses.

The resumed run is compared with the killed run itself over the steps both computed from
the same checkpoint (the checkpoint's step up to the kill): the first of them starts from
identical weights, optimizer state, random state and batch, so its loss is held to 1e-4.
What can still differ on a GPU afterwards: the backward passes of the bias-table gather,
the embedding and bilinear upsampling accumulate with atomic adds in no fixed order, so
weights after a step agree only to rounding, and bf16/fp16 rounding of activations lets
that grow over later steps (a looser bound, the largest difference reported). The
uninterrupted run differs from both by the same effect over all steps before the
checkpoint as well: its distance is reported, and only its final losses are compared.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from gpu_support import DEVICE, DRY_RUN, MARKS, REPO, report, run_lavt, synthetic_dataset

pytestmark = [*MARKS, pytest.mark.slow]

STEPS = 24 if DRY_RUN else 100
BATCH = 4 if DRY_RUN else 8
CHECKPOINT_EVERY = 8 if DRY_RUN else 30
RESUME_TOLERANCE = 1e-4  # the first step after the checkpoint
LOOSE_TOLERANCE = 5e-2  # the later steps the killed run also computed
INITIAL_SCALE = 2.0**16  # GradScaler's default; it halves on every skipped step


def _config(tmp: Path, data: Path, amp: str) -> Path:
    """A run of the tiny synthetic architecture, one epoch of about STEPS steps."""
    lines = [
        "model: lavt_one",
        "dataset: refcoco",
        "splitBy: unc",
        f"data_root: {data}",
        f"output_dir: {tmp / 'runs'}",
        "img_size: 64",
        "arch: {embed_dim: 16, depths: [1, 1, 2, 1], num_heads: [1, 2, 4, 8], window_size: 4,"
        " text: {hidden_size: 64, num_layers: 1, num_heads: 1, intermediate_size: 256,"
        " max_position_embeddings: 32}, vocab: synthetic}",
        "drop_path: 0.0",
        "text_trainable: all",
        f"batch_size: {BATCH}",
        "val_batch_size: 16",
        "lr: 5.0e-4",
        "warmup_iters: 10",
        "epochs: 1",
        "loss: ce+dice",
        f"device: {DEVICE}",
        "threads: 1",
        "workers: 0",
        "seed: 0",
        "log_every: 1",
        f"checkpoint_every: {CHECKPOINT_EVERY}",
        f"amp: {amp}",
        "progress: false",
    ]
    path = tmp / f"{amp}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _losses(run_dir: Path) -> dict[int, float]:
    """iteration -> loss of the train records of metrics.jsonl (a half-written line skipped)."""
    records = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return {r["iteration"]: r["loss"] for r in records if r.get("type") == "train"}


def _scale(run_dir: Path) -> float:
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    return float((ckpt.get("scaler") or {}).get("scale", INITIAL_SCALE))


def _train(config: Path, model_id: str, *extra: str) -> None:
    args = ["train", "--config", str(config), "--model_id", model_id, *extra]
    run_lavt(args, cwd=REPO, timeout=900)


def _kill_after(config: Path, model_id: str, run_dir: Path, iteration: int) -> int:
    """Start a run, SIGKILL it once its metrics pass ``iteration``; the last.pt iteration."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lavt", "train", "--config", str(config), "--model_id", model_id],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            path = run_dir / "metrics.jsonl"
            if path.exists() and max(_losses(run_dir), default=0) > iteration:
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{err[-2000:]}"
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    return int(ckpt["iteration"])


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_training_learns_and_resumes(tmp_path, tmp_path_factory, amp):
    data = synthetic_dataset(tmp_path_factory)
    config = _config(tmp_path, data, amp)
    _train(config, "whole")
    whole = _losses(tmp_path / "runs" / "whole")
    steps = max(whole)
    assert steps >= STEPS // 2, f"only {steps} steps: the synthetic set is too small"
    values = [whole[i] for i in sorted(whole)]
    assert all(math.isfinite(v) for v in values), f"{amp}: non-finite loss {values}"
    head = sum(values[:5]) / 5
    tail = sum(values[-5:]) / 5
    skipped = math.log2(INITIAL_SCALE / _scale(tmp_path / "runs" / "whole"))

    killed_dir = tmp_path / "runs" / "killed"
    resumed_at = _kill_after(config, "killed", killed_dir, CHECKPOINT_EVERY + 1)
    before_kill = _losses(killed_dir)
    scale_at_kill = _scale(killed_dir)
    _train(config, "killed", "--resume", "auto")
    resumed = _losses(killed_dir)
    assert sorted(resumed) == sorted(whole), "the resumed run logged other iterations"
    overlap = [i for i in sorted(before_kill) if i > resumed_at]
    assert overlap, "the run was killed before a step after its checkpoint was logged"
    same_start = [abs(resumed[i] - before_kill[i]) for i in overlap]
    drift = [abs(resumed[i] - whole[i]) for i in sorted(whole) if i > resumed_at]
    resumed_tail = sum(resumed[i] for i in sorted(resumed)[-5:]) / 5
    report(
        f"train --amp {amp}",
        steps=steps,
        loss_first5=head,
        loss_last5=tail,
        fp16_overflow_skips=skipped,
        resumed_at=resumed_at,
        steps_compared_with_killed_run=len(overlap),
        first_step_loss_diff=same_start[0],
        max_loss_diff_vs_killed_run=max(same_start),
        max_loss_diff_vs_uninterrupted_run=max(drift),
        loss_last5_resumed=resumed_tail,
    )
    assert tail < 0.9 * head, f"{amp}: loss did not go down ({head:.4f} -> {tail:.4f})"
    if amp == "fp16":
        # no growth within 2000 steps: each halving of the scale is one skipped step
        assert _scale(killed_dir) == scale_at_kill, "fp16 steps skipped after the first checkpoint"
        assert skipped <= 8, f"{skipped:.0f} fp16 steps skipped for overflow"
    assert same_start[0] <= RESUME_TOLERANCE, f"first step after resume differs: {same_start}"
    assert max(same_start) <= LOOSE_TOLERANCE, f"resume drifts: {same_start}"
    assert abs(resumed_tail - tail) <= 0.1 * tail, f"final losses {resumed_tail} vs {tail}"
