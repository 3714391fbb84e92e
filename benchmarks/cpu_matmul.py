"""CPU matrix-product rate in float32 and bfloat16, measured interleaved (same load for both).

    python benchmarks/cpu_matmul.py --threads 2 --n 2048 --reps 9 --out benchmarks/cpu_matmul.json

Each rep times one ``torch.mm`` of two n x n matrices in each dtype in turn; the
medians, spreads and the per-rep bf16/fp32 speed-ups are written as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    mats = {
        k: (torch.randn(a.n, a.n).to(d), torch.randn(a.n, a.n).to(d)) for k, d in dtypes.items()
    }
    for x, y in mats.values():  # warm-up (oneDNN kernels, AMX tile set-up)
        torch.mm(x, y)
        torch.mm(x, y)
    seconds: dict[str, list[float]] = {k: [] for k in dtypes}
    for _ in range(a.reps):
        for k, (x, y) in mats.items():
            t0 = time.perf_counter()
            torch.mm(x, y)
            seconds[k].append(time.perf_counter() - t0)
    flops = 2 * a.n**3
    rates = {k: [flops / s / 1e12 for s in v] for k, v in seconds.items()}
    speedups = [f / b for f, b in zip(seconds["fp32"], seconds["bf16"], strict=True)]
    result = {
        "command": " ".join(["python", *sys.argv]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": a.threads,
        "n": a.n,
        "load_average_1min": os.getloadavg()[0],
        "tflops": {
            k: {"median": statistics.median(v), "min": min(v), "max": max(v)}
            for k, v in rates.items()
        },
        "bf16_speedup": {
            "median": statistics.median(speedups),
            "min": min(speedups),
            "max": max(speedups),
        },
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
