#!/usr/bin/env python
"""onnxruntime vs PyTorch on this CPU, side by side in one process, plus export time.

    .venv/bin/python scripts/bench_onnx.py --threads 2 --out benchmarks/onnx_cpu.json
    .venv/bin/python scripts/bench_onnx.py --threads 1 --append --out benchmarks/onnx_cpu.json

Cases: a random-weight Swin-B + BERT-base LAVT at 480 px, fp32, batch 1 (the
published architecture), and the bundled default model at batch 32. The two
runtimes are interleaved (their order alternating per repeat) so that a
machine shared with other work slows both alike; medians and the spread are
reported. Both runtimes use the same number of threads (torch.get_num_threads()).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _stats(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "median_s": statistics.median(ordered),
        "min_s": ordered[0],
        "max_s": ordered[-1],
        "spread_pct": 100 * (ordered[-1] - ordered[0]) / statistics.median(ordered),
        "runs_s": [round(t, 4) for t in times],
    }


def _inputs(model, batch: int):
    from lavt.tokenizer import tokenizer_for_model

    size = model.config.img_size
    texts = ["the red circle on the left", "a small blue square", "the biggest object"]
    try:
        ids, mask = tokenizer_for_model(model)([texts[i % 3] for i in range(batch)])
    except Exception:  # a random model with a vocabulary the tokenizer does not fit
        ids = torch.randint(1, model.config.text.vocab_size, (batch, model.config.max_text_len))
        mask = torch.ones_like(ids)
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)), ids, mask


def bench_case(name: str, model, batch: int, repeats: int, folder: Path, simplify: bool) -> dict:
    from lavt.export import export_onnx, load_onnx_model

    start = time.perf_counter()
    result = export_onnx(model, folder / f"{name}.onnx", simplify=simplify)
    export_s = time.perf_counter() - start
    runner = load_onnx_model(result.path)
    inputs = _inputs(model, batch)
    runs = {"torch": lambda: model(*inputs), "onnxruntime": lambda: runner(*inputs)}
    with torch.inference_mode():
        outputs = {k: fn() for k, fn in runs.items()}  # warm-up
        times: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(repeats):
            for key in list(runs)[:: 1 if r % 2 == 0 else -1]:
                start = time.perf_counter()
                runs[key]()
                times[key].append(time.perf_counter() - start)
    scale = float(outputs["torch"].abs().max())
    error = float((outputs["onnxruntime"] - outputs["torch"]).abs().max()) / scale
    torch_s = _stats(times["torch"])
    onnx_s = _stats(times["onnxruntime"])
    return {
        "case": name,
        "config": {
            "img_size": model.config.img_size,
            "embed_dim": model.config.embed_dim,
            "depths": list(model.config.depths),
            "text_layers": model.config.text.num_layers,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "batch": batch,
        "dtype": "fp32",
        "repeats": repeats,
        "export": {
            "seconds": round(export_s, 2),
            "simplified": result.simplified,
            "nodes": result.num_nodes,
            "megabytes": round(result.num_bytes / 1e6, 1),
        },
        "max_relative_error": error,
        "torch": torch_s,
        "onnxruntime": onnx_s,
        "speedup_median": torch_s["median_s"] / onnx_s["median_s"],
        "images_per_s": {
            "torch": batch / torch_s["median_s"],
            "onnxruntime": batch / onnx_s["median_s"],
        },
    }


def _machine() -> dict:
    import onnxruntime

    cpu = platform.processor()
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(
            line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line
        )
        flags = next(line for line in text.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration, IndexError):
        pass
    return {
        "cpu": cpu,
        "amx": "amx_tile" in flags,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_start": os.getloadavg(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/onnx_cpu.json"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cases", default="default_b32,swin_base_480_b1")
    parser.add_argument("--no-simplify", dest="simplify", action="store_false")
    parser.add_argument("--note", default="", help="free text stored in the JSON (machine load)")
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    parser.add_argument("--append", action="store_true", help="add this run to --out's runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from lavt.assets import default_model_path
    from lavt.checkpoint import load_model
    from lavt.modeling import build_model
    from lavt.modeling.config import preset_config
    from lavt.runtime import atomic_write_text

    record = {"machine": _machine(), "note": args.note, "cases": []}
    with tempfile.TemporaryDirectory(prefix="lavt-bench-onnx-") as folder:
        for case in args.cases.split(","):
            if case == "default_b32":
                model, batch = load_model(default_model_path()), 32
            elif case == "swin_base_480_b1":
                torch.manual_seed(0)
                model = build_model(preset_config("base", img_size=480)).eval()
                batch = 1
            else:
                raise SystemExit(f"unknown case {case!r}")
            row = bench_case(case, model, batch, args.repeats, Path(folder), args.simplify)
            record["cases"].append(row)
            print(json.dumps({k: row[k] for k in ("case", "speedup_median", "export")}), flush=True)
            del model
    record["machine"]["load_average_end"] = os.getloadavg()
    runs = json.loads(args.out.read_text())["runs"] if args.append and args.out.exists() else []
    atomic_write_text(args.out, json.dumps({"runs": [*runs, record]}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
