"""Summarise a ``scripts/gpu_check.sh`` run: one table of every figure, the issue's targets.

    python benchmarks/gpu_check_summary.py RAW_DIR OUT_DIR

Reads RAW_DIR/steps.jsonl (name, command, exit code, seconds of each step), the
``lavt benchmark --json`` files RAW_DIR/bench_<name>.json, the side-by-side records
RAW_DIR/sbs_<name>.json with their masks mask_<name>.npy, scripts/load_test.py's
serve_load.json and scripts/bench_manifest.py's bulk_manifest.json, the GPU tests' figures
(gpu_tests.jsonl), versions.json and profile.json; writes OUT_DIR/summary.md and
OUT_DIR/results.json (all of it in one file) and prints the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# issue 10's targets (Swin-B lavt_one at 480)
H100_INFER_PAIRS_PER_S = 600.0
SHARE_OF_BF16_PEAK = 0.30
TRAIN_BF16_SPEEDUP = 3.0
TRAIN_PEAK_GIB = 13.0
EVAL_SPEEDUP = 5.0


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _row(name: str, step: dict, bench: dict) -> str:
    rc = step.get("rc")
    status = {0: "ok", 124: "timeout"}.get(rc, rc if isinstance(rc, str) else "failed")
    if not bench:
        return f"| {name} | {status} ({rc}) | | | | | | {step.get('seconds', '')} |"
    share = bench.get("share_of_peak")
    extra = bench.get("extra") or {}
    speed = f"{bench['pairs_per_second']:.2f}"
    if bench["mode"] == "eval":
        batched, single = (extra.get(f"expressions/s ({k})") for k in ("batched", "one at a time"))
        speed = f"{batched} (1-by-1 {single})"
    return (
        f"| {name} | {status} | {bench['latency_ms_median']:.1f} "
        f"({bench['latency_ms_min']:.1f}-{bench['latency_ms_max']:.1f}) | {speed} | "
        f"{'' if share is None else f'{100 * share:.1f}%'} | "
        f"{bench['peak_memory_mib'] / 1024:.2f} | {bench['batch_size']} | "
        f"{step.get('seconds', '')} |"
    )


def _targets(benches: dict[str, dict]) -> list[str]:
    out = []
    b32 = benches.get("infer_bf16_b32_compile") or benches.get("infer_bf16_b32")
    if b32:
        share = b32.get("share_of_peak") or 0.0
        out.append(
            f"inference bf16 batch 32: {b32['pairs_per_second']:.1f} pairs/s, "
            f"{100 * share:.1f}% of the bf16 matmul rate (targets: >= {H100_INFER_PAIRS_PER_S:.0f} "
            f"on an H100, >= {100 * SHARE_OF_BF16_PEAK:.0f}%): "
            f"{'met' if share >= SHARE_OF_BF16_PEAK else 'MISSED'}"
        )
    fp32, bf16 = benches.get("train_fp32_b8"), benches.get("train_bf16_b8_compile_cl")
    bf16 = bf16 or benches.get("train_bf16_b8")
    if fp32 and bf16:
        ratio = bf16["pairs_per_second"] / fp32["pairs_per_second"]
        peak = bf16["peak_memory_mib"] / 1024
        out.append(
            f"training batch 8: bf16 {ratio:.2f}x fp32 eager (target >= {TRAIN_BF16_SPEEDUP}x): "
            f"{'met' if ratio >= TRAIN_BF16_SPEEDUP else 'MISSED'}; peak {peak:.1f} GiB "
            f"(target <= {TRAIN_PEAK_GIB} GB): {'met' if peak <= TRAIN_PEAK_GIB else 'MISSED'}"
        )
    ev = benches.get("eval_bf16")
    if ev:
        speedup = (ev.get("extra") or {}).get("speed-up over one at a time") or 0.0
        out.append(
            f"evaluation: {speedup}x one expression at a time (target >= {EVAL_SPEEDUP}x): "
            f"{'met' if speedup >= EVAL_SPEEDUP else 'MISSED'}"
        )
    return out


# issue 25's targets against the reference on the same device (benchmarks/gpu_side_by_side.py)
REF_TRAIN_SPEEDUP = 3.0
REF_TRAIN_MEMORY_SHARE = 0.5
REF_INFER_SPEEDUP = 5.0


def _sbs_row(name: str, step: dict, r: dict) -> str:
    rc = step.get("rc")
    status = {0: "ok", 124: "timeout"}.get(rc, rc if isinstance(rc, str) else "failed")
    if not r:
        return f"| {name} | {status} ({rc}) | | | | | | | {step.get('seconds', '')} |"
    how = r["dtype"] + (" compiled" if r["compile"] else "") + (" CL" if r["channels_last"] else "")
    return (
        f"| {name} | {status} | {r['impl']} {r['mode']} | {how} | {r['batch_size']} | "
        f"{r['median_ms']:.1f} ({r['min_ms']:.1f}-{r['max_ms']:.1f}) | {r['samples_per_s']:.2f} | "
        f"{r['peak_memory_mib'] / 1024:.2f} | {step.get('seconds', '')} |"
    )


def _agreement(raw: Path, name: str, reference: str) -> float | None:
    """Share of pixels where the masks saved by two side-by-side steps agree."""
    import numpy as np

    a, b = raw / f"mask_{name}.npy", raw / f"mask_{reference}.npy"
    if not (a.exists() and b.exists()):
        return None
    return float((np.load(a) == np.load(b)).mean())


def _sbs_targets(raw: Path, sbs: dict[str, dict]) -> list[str]:
    def best(*names: str) -> tuple[str, dict] | None:
        found = [(n, sbs[n]) for n in names if n in sbs]
        return max(found, key=lambda nr: nr[1]["samples_per_s"]) if found else None

    out = []
    ref, ours = (
        sbs.get("sbs_ref_train_b8"),
        best("sbs_lavt_train_b8_bf16", "sbs_lavt_train_b8_bf16_compile_cl"),
    )
    if ref and ours:
        name, r = ours
        speed = r["samples_per_s"] / ref["samples_per_s"]
        share = r["peak_memory_mib"] / ref["peak_memory_mib"]
        out.append(
            f"training batch 8 vs the reference ({name}): {speed:.2f}x its samples/s "
            f"(target >= {REF_TRAIN_SPEEDUP}x): {'met' if speed >= REF_TRAIN_SPEEDUP else 'MISSED'}"
            f"; peak {r['peak_memory_mib'] / 1024:.1f} GiB = {100 * share:.0f}% of its "
            f"{ref['peak_memory_mib'] / 1024:.1f} GiB (target <= "
            f"{100 * REF_TRAIN_MEMORY_SHARE:.0f}%): "
            f"{'met' if share <= REF_TRAIN_MEMORY_SHARE else 'MISSED'}"
        )
    for batch in (1, 8):
        ref = sbs.get(f"sbs_ref_infer_b{batch}")
        ours = best(f"sbs_lavt_infer_b{batch}_bf16", f"sbs_lavt_infer_b{batch}_fp32")
        if ref and ours:
            name, r = ours
            speed = r["samples_per_s"] / ref["samples_per_s"]
            agree = _agreement(raw, name, f"sbs_ref_infer_b{batch}")
            line = f"inference batch {batch} vs the reference ({name}): {speed:.2f}x"
            if batch == 8:
                line += (
                    f" (target >= {REF_INFER_SPEEDUP}x): "
                    f"{'met' if speed >= REF_INFER_SPEEDUP else 'MISSED'}"
                )
            if agree is not None:
                line += f"; pixel agreement with its mask {100 * agree:.2f}%"
            out.append(line)
    return out


SERVE_SHARE = 0.70  # issue 25: served pairs/s against the batched inference rate


def _serve_targets(load: dict) -> list[str]:
    """scripts/load_test.py's record (serve_load.json) against issue 25's serving target."""
    if not load:
        return []
    batched, single = load["runs"][0], load["runs"][1]
    threads = load.get("server_omp_threads", 1)  # the ceiling at the server's thread count
    share = load["served_share_of_ceiling"][str(threads)]
    rows = load["ceiling_before"] + load["ceiling_after"]
    ceiling = max(r["pairs_per_s"] for r in rows if r.get("threads", threads) == threads)
    return [
        f"serving ({load['clients']} clients, --max-batch {load['max_batch']}): "
        f"{batched['requests_per_s']:.1f} requests/s (p99 {batched['latency_p99_ms']:.0f} ms, "
        f"{batched['errors']} errors; --max-batch 1: {single['requests_per_s']:.1f}) = "
        f"{100 * share:.1f}% of the batched rate {ceiling:.1f} pairs/s (target >= "
        f"{100 * SERVE_SHARE:.0f}%): {'met' if share >= SERVE_SHARE else 'MISSED'}"
    ]


def _bulk_line(bulk: dict) -> list[str]:
    """scripts/bench_manifest.py's throughput record (bulk_manifest.json)."""
    if not bulk:
        return []
    rate, loop = bulk["median_pairs_per_s"]["bulk"], bulk["median_pairs_per_s"]["loop"]
    return [
        f"bulk (lavt predict --manifest, {bulk['pairs']} pairs, {bulk['dtype']}): {rate:.1f} "
        f"pairs/s = {100 * bulk['bulk_share_of_model_rate']:.1f}% of the model alone at batch "
        f"{bulk['model_batch_size']} ({bulk['model_alone_pairs_per_s']:.1f}); "
        f"{bulk['ratio_bulk_over_loop']:.2f}x a Predictor loop ({loop:.1f})"
    ]


def main() -> int:
    raw, out = Path(sys.argv[1]), Path(sys.argv[2])
    steps = _jsonl(raw / "steps.jsonl")
    benches = {s["name"]: _json(raw / f"bench_{s['name']}.json") for s in steps}
    benches = {k: v for k, v in benches.items() if v}
    sbs = {s["name"]: _json(raw / f"sbs_{s['name']}.json") for s in steps}
    sbs = {k: v for k, v in sbs.items() if v}
    tests = _jsonl(raw / "gpu_tests.jsonl")
    versions = _json(raw / "versions.json")
    profile = _json(raw / "profile.json")
    lines = [
        f"# gpu_check: {versions.get('device', '?')}",
        "",
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "| step | status | latency ms median (min-max) | pairs/s | share of matmul peak "
        "| peak memory GiB | batch | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        if not step["name"].startswith("sbs_"):
            lines.append(_row(step["name"], step, benches.get(step["name"], {})))
    lines += ["", "## Targets (issue 10)", *[f"- {t}" for t in _targets(benches)]]
    sbs_steps = [step for step in steps if step["name"].startswith("sbs_")]
    if sbs_steps:
        lines += [
            "",
            "## Side by side with the reference (benchmarks/gpu_side_by_side.py)",
            "",
            "| step | status | side | dtype | batch | step ms median (min-max) | samples/s "
            "| peak memory GiB | wall s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [_sbs_row(st["name"], st, sbs.get(st["name"], {})) for st in sbs_steps]
    load = _json(raw / "serve_load.json")
    bulk = _json(raw / "bulk_manifest.json")
    issue25 = _sbs_targets(raw, sbs) + _serve_targets(load) + _bulk_line(bulk)
    if issue25:
        lines += ["", "## Targets (issue 25)", *[f"- {t}" for t in issue25]]
    if tests:
        lines += ["", "## GPU test figures"]
        lines += [f"- {json.dumps(t)}" for t in tests]
    if profile:
        lines += ["", "## Profile (top self time)"]
        for step in ("infer", "train"):
            info = profile.get(step) or {}
            top = ", ".join(
                f"{o['op']} {100 * o['share']:.1f}%" for o in info.get("top_ops", [])[:8]
            )
            lines.append(f"- {step}: attention kernels {info.get('attention_ops')}; {top}")
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    results = {
        "versions": versions,
        "steps": steps,
        "benchmarks": benches,
        "side_by_side": sbs,
        "serve_load": load,
        "bulk_manifest": bulk,
        "gpu_tests": tests,
        "profile": profile,
        "targets": _targets(benches) + issue25,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
