"""The reference side by side with every `lavt` inference path, in one process (calls interleaved).

Like ../shared/reference/harness/side_by_side.py (same model, seed, weights and input:
Swin-B lavt_one at 480x480, batch 1, random weights built by the reference code and
loaded by `lavt` from the released checkpoint format), plus the paths of
`lavt.precision`: the bf16 copy (matrix-product weights cast once, under autocast),
optionally int8 dynamic quantisation. Prints the harness's lines, so
benchmarks/cpu_side_by_side.py runs and parses it like the harness:

    LAVT_REF_DIR=/work/lavt-ref .venv/bin/python benchmarks/cpu_side_by_side.py \\
        --harness benchmarks/side_by_side_fast.py --runs 3 \\
        --out benchmarks/cpu_side_by_side_fast.json -- --reps 5 --threads 2 \\
        --official /work/shared/reference/harness
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

import lavt  # first: the harness stubs modules that transformers probes at import
from lavt.precision import cast_for_inference, choose_precision
from lavt.runtime import autocast


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--official", default="/work/shared/reference/harness", help="harness folder")
    p.add_argument("--int8", action="store_true", help="also time int8 dynamic quantisation")
    p.add_argument("--no-autocast", action="store_true", help="skip the plain bf16 autocast path")
    a = p.parse_args()
    from transformers import BertConfig, BertModel  # noqa: F401  (probe before the stubs)
    from transformers.utils import import_utils

    for probe in ("is_torchvision_available", "is_timm_available", "is_vision_available"):
        getattr(import_utils, probe, lambda: None)()
    sys.path.insert(0, a.official)
    import official as ref

    torch.set_num_threads(a.threads)
    torch.manual_seed(1234)
    model, _ = ref.build("lavt_one", swin="base", window=12)
    model.eval()
    args = ref.official_args(model="lavt_one", swin_type="base", window12=True)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "lavt_one_base.pth")
        torch.save(ref.checkpoint_dict(model, None, args), path)
        ours = lavt.load_model(path, device="cpu").eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 480, 480, generator=gen)
    ids = torch.randint(1000, 30000, (1, 20), generator=gen)
    mask = torch.ones(1, 20, dtype=torch.long)
    mask[:, 11:] = 0

    def under(m, dtype):
        def call():
            with autocast("cpu", dtype):
                return m(x, ids, mask)

        return call

    auto = choose_precision("auto", "cpu", embed_dim=ours.config.embed_dim)
    print(f"lavt --dtype auto picks {auto.name} ({auto.reason})")
    runs = {"reference fp32": lambda: model(x, ids, mask), "lavt fp32": lambda: ours(x, ids, mask)}
    if not a.no_autocast:
        runs["lavt bf16 autocast"] = under(ours, torch.bfloat16)
    runs["lavt bf16 copy"] = under(cast_for_inference(ours, "bf16"), torch.bfloat16)
    if a.int8:
        runs["lavt int8 dynamic"] = under(cast_for_inference(ours, "int8"), None)
    with torch.inference_mode():
        want = model(x, ids, mask)
        err = float((ours(x, ids, mask) - want).abs().max() / want.abs().max())
        target, ours32 = want.argmax(1), ours(x, ids, mask).argmax(1)
        agree = {}
        for name, fn in runs.items():
            if name.startswith("lavt") and name != "lavt fp32":
                got = fn().float().argmax(1)
                agree[name] = (
                    float((got == target).float().mean()),
                    float((got == ours32).float().mean()),
                )
        times = {k: [] for k in runs}
        for _ in range(a.reps):
            for k, fn in runs.items():
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(
            f"{k:22s} {v:.3f} s (median of {a.reps}; "
            f"min {min(times[k]):.3f}, max {max(times[k]):.3f})"
        )
    bf16 = agree.get("lavt bf16 copy", (float("nan"),))[0]
    print(f"fp32 max |diff| / max |logit| = {err:.1e}; bf16 pixel agreement {bf16:.4f}")
    for name, (vs_ref, vs_fp32) in agree.items():
        print(
            f"pixel agreement {name}: {vs_ref:.4f} with the reference fp32, "
            f"{vs_fp32:.4f} with lavt fp32"
        )
    for k in med:
        if k != "reference fp32":
            print(f"{k}: {med['reference fp32'] / med[k]:.2f}x the reference")


if __name__ == "__main__":
    main()
