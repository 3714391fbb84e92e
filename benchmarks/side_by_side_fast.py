"""The reference side by side with every `lavt` inference path, in one process (calls interleaved).

Like ../shared/reference/harness/side_by_side.py (same model, seed, weights and input:
Swin-B lavt_one at 480x480, batch 1, random weights built by the reference code and
loaded by `lavt` from the released checkpoint format), plus the paths of
`lavt.precision`: the bf16 policy (`--dtype bf16`: matrix-product weights cast once,
the PWAMs in float32), bf16-all (no float32 islands, = plain autocast), optionally
int8 dynamic quantisation and the compiled forms (inductor, frozen weights, as
`lavt predict --compile`) of the bf16 policy (`--compile`) and of float32
(`--compile-fp32`). Every variant's mask is compared pixel by pixel with the reference's
float32 mask and with lavt's. Compile times are printed apart (the first call of a
compiled variant, before the timed calls). Prints the harness's lines, so
benchmarks/cpu_side_by_side.py runs and parses it like the harness:

    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) LAVT_REF_DIR=/work/lavt-ref \\
        .venv/bin/python benchmarks/cpu_side_by_side.py \\
        --harness benchmarks/side_by_side_fast.py --runs 3 \\
        --out benchmarks/cpu_side_by_side_fast_amd.json -- --reps 5 --threads 2 \\
        --compile --official /work/shared/reference/harness

Estimated on an idle 2-core AMD EPYC (from runs under load): about 2 minutes a run
plus the compile, about 2 minutes in the first run and 1 in the next ones (they reuse
inductor's on-disk cache; the fresh TORCHINDUCTOR_CACHE_DIR makes the first one cold):
about 9 minutes in all. Without --compile about 6.
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
from lavt.precision import cast_for_inference, choose_precision, compile_for_inference
from lavt.runtime import autocast


def import_reference(harness: str):
    """The harness's ``official`` module (the reference code, from $LAVT_REF_DIR), imported
    after transformers has probed the optional packages the harness stubs."""
    from transformers import BertConfig, BertModel  # noqa: F401  (probe before the stubs)
    from transformers.utils import import_utils

    for probe in ("is_torchvision_available", "is_timm_available", "is_vision_available"):
        getattr(import_utils, probe, lambda: None)()
    sys.path.insert(0, harness)
    import official

    return official


def reference_and_lavt(ref, swin: str = "base"):
    """The harness's model (``lavt_one``, window 12, random weights of seed 1234) and `lavt`'s
    load of it from the released checkpoint format, both in eval mode on the CPU."""
    torch.manual_seed(1234)
    model, _ = ref.build("lavt_one", swin=swin, window=12)
    args = ref.official_args(model="lavt_one", swin_type=swin, window12=True)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"lavt_one_{swin}.pth")
        torch.save(ref.checkpoint_dict(model, None, args), path)
        ours = lavt.load_model(path, device="cpu")
    return model.eval(), ours.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--official", default="/work/shared/reference/harness", help="harness folder")
    p.add_argument("--int8", action="store_true", help="also time int8 dynamic quantisation")
    p.add_argument("--no-autocast", action="store_true", help="skip the plain bf16 autocast path")
    p.add_argument("--compile", action="store_true", help="also time the compiled bf16 policy")
    p.add_argument("--compile-fp32", action="store_true", help="also time the compiled fp32")
    a = p.parse_args()
    ref = import_reference(a.official)
    torch.set_num_threads(a.threads)
    model, ours = reference_and_lavt(ref)
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
    bf16 = cast_for_inference(ours, "bf16")
    runs = {"reference fp32": lambda: model(x, ids, mask), "lavt fp32": lambda: ours(x, ids, mask)}
    if not a.no_autocast:
        runs["lavt bf16 autocast"] = under(ours, torch.bfloat16)
    runs["lavt bf16-all copy"] = under(cast_for_inference(ours, "bf16-all"), torch.bfloat16)
    runs["lavt bf16 policy"] = under(bf16, torch.bfloat16)
    if a.int8:
        runs["lavt int8 dynamic"] = under(cast_for_inference(ours, "int8"), None)
    if a.compile_fp32:
        runs["lavt fp32 compiled"] = under(compile_for_inference(ours), None)
    if a.compile:
        runs["lavt bf16 policy compiled"] = under(compile_for_inference(bf16), torch.bfloat16)
    with torch.inference_mode():
        want = model(x, ids, mask)
        err = float((ours(x, ids, mask) - want).abs().max() / want.abs().max())
        target, ours32 = want.argmax(1), ours(x, ids, mask).argmax(1)
        agree = {}
        for name, fn in runs.items():
            if name.startswith("lavt") and name != "lavt fp32":
                start = time.perf_counter()
                got = fn().float().argmax(1)  # a compiled variant compiles here
                if name.endswith("compiled"):
                    print(f"compile {name}: {time.perf_counter() - start:.1f} s (first call)")
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
            f"{k:26s} {v:.3f} s (median of {a.reps}; "
            f"min {min(times[k]):.3f}, max {max(times[k]):.3f})"
        )
    policy = agree["lavt bf16 policy"][0]
    print(f"fp32 max |diff| / max |logit| = {err:.1e}; bf16 pixel agreement {policy:.4f}")
    agree["lavt fp32"] = (float((ours32 == target).float().mean()), 1.0)
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
