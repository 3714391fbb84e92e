"""bf16 autocast vs float32 inference on the CPU, calls interleaved in one process.

    python benchmarks/cpu_dtype_ab.py PRESET|default IMG_SIZE BATCH THREADS REPS

``default`` is the bundled model (lavt.assets). Prints one JSON line: medians, minima,
per-rep bf16 speed-ups and the share of pixels where the two masks agree.
"""

import json
import statistics
import sys
import time

import torch

from lavt.modeling import build_model, preset_config

preset, size, batch, threads, reps = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(threads)
torch.manual_seed(0)
if preset == "default":
    from lavt import load_model
    from lavt.assets import default_model_path

    model = load_model(default_model_path()).eval()
else:
    model = build_model(preset_config(preset)).eval()
g = torch.Generator().manual_seed(0)
image = torch.randn(batch, 3, size, size, generator=g)
ids = torch.randint(1, min(model.config.text.vocab_size, 30000), (batch, 20), generator=g)
mask = torch.ones(batch, 20, dtype=torch.long)
mask[:, 10:] = 0


def run(bf16: bool):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        t0 = time.perf_counter()
        out = model(image, ids, mask)
        return time.perf_counter() - t0, out.float().argmax(1)


run(False)
run(True)
times = {"fp32": [], "bf16": []}
for _ in range(reps):
    for name in times:
        times[name].append(run(name == "bf16")[0])
agree = float((run(False)[1] == run(True)[1]).float().mean())
speedups = [f / b for f, b in zip(times["fp32"], times["bf16"], strict=True)]
print(
    json.dumps(
        {
            "model": preset,
            "img_size": size,
            "batch": batch,
            "threads": threads,
            "median_s": {k: statistics.median(v) for k, v in times.items()},
            "min_s": {k: min(v) for k, v in times.items()},
            "bf16_speedup_per_rep": speedups,
            "bf16_speedup_median": statistics.median(speedups),
            "mask_pixel_agreement": agree,
        }
    )
)
