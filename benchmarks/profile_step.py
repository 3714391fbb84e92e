"""``torch.profiler`` summary of one inference step and one training step of a preset.

    python benchmarks/profile_step.py --device cuda --preset base --img-size 480 \\
        --batch-size 8 --dtype bf16 --out DIR

Writes ``DIR/profile_infer.txt`` and ``DIR/profile_train.txt`` (``key_averages``
tables, the top ops by self time on the device, or on the CPU without one) and
``DIR/profile.json`` (which scaled-dot-product-attention kernels ran, the share of
self time per op for both steps, and on CUDA the source lines of any host
synchronisation inside a step). It profiles the steps ``lavt benchmark`` times.
Used by ``scripts/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from pathlib import Path

import torch


def _profile(fn, device: torch.device, warmup: int = 2):
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        fn()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    with profile(activities=activities, record_shapes=False) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return prof


def _summary(prof, device: torch.device, rows: int) -> tuple[str, dict]:
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    table = events.table(sort_by=attr, row_limit=rows)
    total = sum(getattr(e, attr) for e in events) or 1.0
    shares = sorted(
        ((e.key, getattr(e, attr) / total) for e in events), key=lambda kv: kv[1], reverse=True
    )
    sdpa = sorted({e.key for e in events if "attention" in e.key and e.key.startswith("aten::")})
    return table, {
        "sort_by": attr,
        "total_self_time_us": total,
        "top_ops": [{"op": k, "share": round(v, 4)} for k, v in shares[:25]],
        "attention_ops": sdpa,
    }


def _host_syncs(fn, device: torch.device) -> list[str] | None:
    """Where one call of ``fn`` makes the host wait for the GPU (CUDA sync debug mode).

    Each entry is the innermost ``lavt`` source line (or the innermost frame) of a
    synchronizing operation; an empty list means the step runs without a host sync.
    """
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    found: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-2] if "warnings" not in f.filename]
        if frames and "set_sync_debug_mode" in (frames[-1].line or ""):
            return  # switching the mode back reports itself: not a sync of the step
        ours = [f for f in frames if "/lavt/" in f.filename] or frames
        where = ours[-1]
        found.append(f"{where.filename.rsplit('/', 2)[-1]}:{where.lineno} {where.line}")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return found


def main() -> int:
    from lavt.bench import BenchSpec
    from lavt.bench.steps import make_step
    from lavt.modeling import preset_config
    from lavt.runtime import parse_dtype

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--preset", default="base")
    p.add_argument("--img-size", type=int, default=480)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="bf16")
    p.add_argument("--rows", type=int, default=40)
    p.add_argument("--steps", default="infer,train", help="which steps to profile")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    device = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    record = {"device": str(device), "preset": a.preset, "img_size": a.img_size}
    record.update(batch_size=a.batch_size, dtype=a.dtype, torch=torch.__version__)
    for mode in a.steps.split(","):
        spec = BenchSpec(
            mode=mode, preset=a.preset, config=preset_config(a.preset), device=device,
            dtype=parse_dtype(a.dtype), img_size=a.img_size, batch_size=a.batch_size,
            expressions_per_image=1, compile_model=False, channels_last=False,
            warmup=2, repeats=1, workers=0,
        )  # fmt: skip
        step, _ = make_step(spec)  # what `lavt benchmark --mode MODE` times
        table, info = _summary(_profile(step, device), device, a.rows)
        try:
            info["host_syncs"] = _host_syncs(step, device)
        except Exception as exc:  # a figure missing, not the profile lost
            info["host_syncs"] = f"not measured: {type(exc).__name__}: {exc}"
        (a.out / f"profile_{mode}.txt").write_text(
            f"# {mode} step: {a.preset} @ {a.img_size}, batch {a.batch_size}, {a.dtype}, "
            f"{device}\n{table}\n"
        )
        record[mode] = info
    (a.out / "profile.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
