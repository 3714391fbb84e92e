"""Run the reference side-by-side harness several times and keep its figures as JSON.

The harness (outside this repository: it drives the GPLv3 reference code, which is not
part of lavt) only prints. This wrapper runs it ``--runs`` times in fresh processes,
parses the printed medians, and writes them with the machine's description:

    LAVT_REF_DIR=/work/lavt-ref .venv/bin/python benchmarks/cpu_side_by_side.py \\
        --harness /work/shared/reference/harness/side_by_side.py --runs 3 \\
        --out benchmarks/cpu_side_by_side.json -- --reps 5 --threads 2 --bf16

The fast paths of ``lavt.precision`` (bf16 policy, bf16-all, int8, compiled) with ``--harness
benchmarks/side_by_side_fast.py`` (its docstring has the command).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

LINE = re.compile(
    r"^(?P<name>.+?)\s+(?P<med>[\d.]+) s \(median of (?P<reps>\d+); "
    r"min (?P<min>[\d.]+), max (?P<max>[\d.]+)\)$"
)
AGREE = re.compile(
    r"^pixel agreement (?P<name>.+?): (?P<ref>[\d.]+) with the reference fp32, "
    r"(?P<ours>[\d.]+) with lavt fp32$"
)
COMPILE = re.compile(r"^compile (?P<name>.+?): (?P<s>[\d.]+) s \(first call\)$")
AUTO = re.compile(r"^lavt --dtype auto picks (?P<choice>.+)$")
DIFF = re.compile(
    r"fp32 max \|diff\| / max \|logit\| = (?P<err>\S+?)(; bf16 pixel agreement (?P<agree>\S+))?$"
)


# The reference's BERT imports ``requests`` at module level for downloads it never makes
# here; an empty stand-in lets it import without adding a dependency.
LAUNCH = (
    "import runpy, sys, types; sys.modules.setdefault('requests', types.ModuleType('requests'));"
    " sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def cpu_description() -> dict[str, str]:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {
        "model": fields.get("Model name", "?").strip(),
        "cpus": fields.get("CPU(s)", "?").strip(),
        "hypervisor": fields.get("Hypervisor vendor", "none").strip(),
        "bf16_flags": " ".join(f for f in flags if f in ("amx_bf16", "amx_tile", "avx512_bf16")),
    }


def parse(text: str) -> dict:
    run: dict = {"timings_s": {}}
    for line in text.splitlines():
        if m := LINE.match(line.strip()):
            run["timings_s"][m["name"]] = {
                "median": float(m["med"]),
                "min": float(m["min"]),
                "max": float(m["max"]),
                "reps": int(m["reps"]),
            }
        elif m := DIFF.match(line.strip()):
            run["fp32_max_rel_diff"] = float(m["err"])
            if m["agree"]:
                run["bf16_pixel_agreement"] = float(m["agree"])
        elif m := AGREE.match(line.strip()):
            run.setdefault("pixel_agreement", {})[m["name"]] = {
                "with_reference_fp32": float(m["ref"]),
                "with_lavt_fp32": float(m["ours"]),
            }
        elif m := COMPILE.match(line.strip()):
            run.setdefault("compile_s", {})[m["name"]] = float(m["s"])
        elif m := AUTO.match(line.strip()):
            run["dtype_auto"] = m["choice"]
    return run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--harness", type=Path, required=True)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("harness_args", nargs="*")
    a = p.parse_args()
    import torch

    runs = []
    for i in range(a.runs):
        load_before = os.getloadavg()
        proc = subprocess.run(
            [sys.executable, "-c", LAUNCH, str(a.harness.resolve()), *a.harness_args],
            capture_output=True,
            text=True,
            check=False,
            cwd=a.harness.parent,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout + proc.stderr)
            return proc.returncode
        run = parse(proc.stdout)
        run["load_average_1min_before_after"] = [load_before[0], os.getloadavg()[0]]
        run["stdout"] = proc.stdout
        runs.append(run)
        print(f"run {i + 1}/{a.runs}:\n{proc.stdout}", flush=True)
    names = list(runs[0]["timings_s"])
    ref = "reference fp32"
    ratios = {
        n: [r["timings_s"][ref]["median"] / r["timings_s"][n]["median"] for r in runs]
        for n in names
        if n != ref
    }
    summary = {
        f"{n} / reference (speed-up)": {
            "median": statistics.median(v),
            "min": min(v),
            "max": max(v),
            "per_run": v,
        }
        for n, v in ratios.items()
    }
    result = {
        "command": " ".join(
            [
                "LAVT_REF_DIR=" + os.environ.get("LAVT_REF_DIR", "?"),
                "python",
                str(a.harness),
                *a.harness_args,
            ]
        ),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_description(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "note": "ratios are from interleaved calls; each run records the 1-minute load average",
        "summary": summary,
        "runs": runs,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
