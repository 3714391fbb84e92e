"""benchmarks/gpu_check_summary.py on a made-up run: the side-by-side table and issue 25's
targets (ratios against the reference, peak-memory share, mask agreement)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_check_summary.py"


def _summary():
    spec = importlib.util.spec_from_file_location("gpu_check_summary", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(impl, mode, batch, samples, peak_mib, dtype="fp32", compiled=False):
    return {
        "impl": impl, "mode": mode, "batch_size": batch, "dtype": dtype, "compile": compiled,
        "channels_last": compiled, "median_ms": 1000 * batch / samples, "min_ms": 1.0,
        "max_ms": 2.0, "samples_per_s": samples, "peak_memory_mib": peak_mib,
    }  # fmt: skip


def test_side_by_side_targets(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    raw.mkdir()
    records = {
        "sbs_ref_train_b8": _record("reference", "train", 8, 10.0, 26000),
        "sbs_lavt_train_b8_bf16": _record("lavt", "train", 8, 25.0, 12000, "bf16"),
        "sbs_lavt_train_b8_bf16_compile_cl": _record("lavt", "train", 8, 35.0, 11000, "bf16", True),
        "sbs_ref_infer_b8": _record("reference", "infer", 8, 20.0, 5000),
        "sbs_lavt_infer_b8_bf16": _record("lavt", "infer", 8, 90.0, 3000, "bf16"),
        "sbs_lavt_infer_b8_fp32": _record("lavt", "infer", 8, 40.0, 3000),
    }
    steps = [{"name": "sbs_ref_infer_b1", "rc": 124, "seconds": 45}]
    for name, record in records.items():
        (raw / f"sbs_{name}.json").write_text(json.dumps(record))
        steps.append({"name": name, "rc": 0, "seconds": 30})
    (raw / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    load = {
        "clients": 32, "max_batch": 32,
        "runs": [{"requests_per_s": 300.0, "latency_p99_ms": 180.4, "errors": 0},
                 {"requests_per_s": 60.0, "latency_p99_ms": 90.0, "errors": 0}],
        "server_omp_threads": 1, "served_share_of_ceiling": {"1": 0.75, "16": 0.5},
        "ceiling_before": [{"threads": 1, "pairs_per_s": 400.0},
                           {"threads": 16, "pairs_per_s": 600.0}],
        "ceiling_after": [{"threads": 1, "pairs_per_s": 380.0}],
    }  # fmt: skip
    (raw / "serve_load.json").write_text(json.dumps(load))
    bulk = {
        "pairs": 800, "dtype": "bf16", "median_pairs_per_s": {"bulk": 350.0, "loop": 31.0},
        "bulk_share_of_model_rate": 0.7, "model_batch_size": 32, "model_alone_pairs_per_s": 500.0,
        "ratio_bulk_over_loop": 11.29,
    }  # fmt: skip
    (raw / "bulk_manifest.json").write_text(json.dumps(bulk))
    mask = np.zeros((8, 4, 4), dtype=np.uint8)
    np.save(raw / "mask_sbs_ref_infer_b8.npy", mask)
    mask[0, 0, :2] = 1  # 2 of 128 pixels differ
    np.save(raw / "mask_sbs_lavt_infer_b8_bf16.npy", mask)
    argv, sys.argv = sys.argv, ["gpu_check_summary.py", str(raw), str(out)]
    try:
        assert _summary().main() == 0
    finally:
        sys.argv = argv
    text = (out / "summary.md").read_text()
    assert "| sbs_ref_infer_b1 | timeout (124) |" in text
    targets = json.loads((out / "results.json").read_text())["targets"]
    assert targets == [
        "training batch 8 vs the reference (sbs_lavt_train_b8_bf16_compile_cl): 3.50x its "
        "samples/s (target >= 3.0x): met; peak 10.7 GiB = 42% of its 25.4 GiB (target <= 50%): met",
        "inference batch 8 vs the reference (sbs_lavt_infer_b8_bf16): 4.50x (target >= 5.0x): "
        "MISSED; pixel agreement with its mask 98.44%",
        "serving (32 clients, --max-batch 32): 300.0 requests/s (p99 180 ms, 0 errors; "
        "--max-batch 1: 60.0) = 75.0% of the batched rate 400.0 pairs/s (target >= 70%): met",
        "bulk (lavt predict --manifest, 800 pairs, bf16): 350.0 pairs/s = 70.0% of the model "
        "alone at batch 32 (500.0); 11.29x a Predictor loop (31.0)",
    ]
