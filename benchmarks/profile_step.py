"""``torch.profiler`` summary of one inference step and one training step of a preset.

    python benchmarks/profile_step.py --device cuda --preset base --img-size 480 \\
        --batch-size 8 --dtype bf16 --out DIR

Writes ``DIR/profile_infer.txt`` and ``DIR/profile_train.txt`` (``key_averages``
tables, the top ops by self time on the device, or on the CPU without one) and
``DIR/profile.json`` (which scaled-dot-product-attention kernels ran, the share of
self time per op for both steps). Used by ``scripts/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _inputs(batch: int, size: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, size, size, generator=g)
    ids = torch.randint(1000, 30000, (batch, 20), generator=g)
    mask = torch.ones(batch, 20, dtype=torch.long)
    mask[:, 10:] = 0
    target = torch.zeros(batch, size, size, dtype=torch.long)
    target[:, : size // 2] = 1
    return [t.to(device) for t in (image, ids, mask, target)]


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


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


def main() -> int:
    from lavt.modeling import build_model, preset_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--preset", default="base")
    p.add_argument("--img-size", type=int, default=480)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dtype", choices=tuple(DTYPES), default="bf16")
    p.add_argument("--rows", type=int, default=40)
    p.add_argument("--steps", default="infer,train", help="which steps to profile")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    device, dtype = torch.device(a.device), DTYPES[a.dtype]
    if a.threads:
        torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model(preset_config(a.preset)).to(device)
    image, ids, mask, target = _inputs(a.batch_size, a.img_size, device)

    def infer():
        with torch.inference_mode(), _autocast(device, dtype):
            return model(image, ids, mask).argmax(1)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")

    def train():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, dtype):
            logits = model(image, ids, mask)
        F.cross_entropy(logits.float(), target).backward()
        optimizer.step()

    record = {"device": str(device), "preset": a.preset, "img_size": a.img_size}
    record.update(batch_size=a.batch_size, dtype=a.dtype, torch=torch.__version__)
    for name, fn, train_mode in (("infer", infer, False), ("train", train, True)):
        if name not in a.steps.split(","):
            continue
        model.train(train_mode)
        table, info = _summary(_profile(fn, device), device, a.rows)
        (a.out / f"profile_{name}.txt").write_text(
            f"# {name} step: {a.preset} @ {a.img_size}, batch {a.batch_size}, {a.dtype}, "
            f"{device}\n{table}\n"
        )
        record[name] = info
    (a.out / "profile.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
