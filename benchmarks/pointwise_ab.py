"""Interleaved A/B in one process: PWAM 1x1 convolutions as matmul (PointwiseConv1d) vs
nn.Conv1d's forward, on the same modules and weights.

    python benchmarks/pointwise_ab.py PRESET|default IMG_SIZE fp32|bf16 THREADS REPS

Prints one JSON line (medians, minima, per-rep speed-ups, max logit difference).
"""

import json
import statistics
import sys
import time

import torch
from torch import nn

from lavt.modeling import build_model, preset_config
from lavt.modeling.fusion import PointwiseConv1d

preset, size, dtype, threads, reps = (
    sys.argv[1],
    int(sys.argv[2]),
    sys.argv[3],
    int(sys.argv[4]),
    int(sys.argv[5]),
)
torch.set_num_threads(threads)
torch.manual_seed(0)
if preset == "default":
    from lavt import load_model
    from lavt.assets import default_model_path

    m = load_model(default_model_path()).eval()
    batch = 32
else:
    m = build_model(preset_config(preset)).eval()
    batch = 1
g = torch.Generator().manual_seed(0)
x = torch.randn(batch, 3, size, size, generator=g)
ids = torch.randint(1, min(m.config.text.vocab_size, 30000), (batch, 20), generator=g)
mask = torch.ones(batch, 20, dtype=torch.long)
mask[:, 10:] = 0
dt = {"fp32": None, "bf16": torch.bfloat16}[dtype]
matmul_fwd = PointwiseConv1d.forward


def run(fwd):
    PointwiseConv1d.forward = fwd
    with (
        torch.inference_mode(),
        torch.autocast("cpu", dtype=dt or torch.float32, enabled=dt is not None),
    ):
        t = time.perf_counter()
        out = m(x, ids, mask)
        return time.perf_counter() - t, out


run(matmul_fwd)
run(nn.Conv1d.forward)
times = {"matmul": [], "conv1d": []}
for _ in range(reps):
    for k, f in (("matmul", matmul_fwd), ("conv1d", nn.Conv1d.forward)):
        s, out = run(f)
        times[k].append(s)
a = run(matmul_fwd)[1].float()
b = run(nn.Conv1d.forward)[1].float()
ratio = [c / mm for c, mm in zip(times["conv1d"], times["matmul"], strict=True)]
print(
    json.dumps(
        {
            "preset": preset,
            "img_size": size,
            "batch": batch,
            "dtype": dtype,
            "threads": threads,
            "median_s": {k: statistics.median(v) for k, v in times.items()},
            "min_s": {k: min(v) for k, v in times.items()},
            "speedup_per_rep": ratio,
            "speedup_median": statistics.median(ratio),
            "max_abs_logit_diff": float((a - b).abs().max()),
        }
    )
)
