#!/usr/bin/env python
"""Bulk inference: ``lavt predict --manifest`` against the loop a user writes today; its memory.

Throughput, on the same pairs (the bundled model; the rounds alternate, so that
other load on the machine weighs on both alike)::

    .venv/bin/python scripts/bench_manifest.py throughput --images 400 --repeats 3 \\
        --output benchmarks/manifest_throughput_cpu.json

- ``loop``: one process, :meth:`lavt.Predictor.predict` image by image, each mask
  RLE-encoded with :func:`lavt.predict.encode.encode_prediction`, one JSON line a pair;
- ``bulk``: ``python -m lavt predict --manifest`` with its defaults (or ``--bulk-args``);
- ``model``: the model alone on random inputs at ``--batch-size`` (the rate the
  issue's GPU target is a share of).

``--checkpoint`` and ``--dtype`` set the model of all three (on a GPU: issue 25,
``scripts/gpu_check.sh`` step ``bulk_manifest``, a random-weight Swin-B in bf16).

Each runs in a child process and times its own work after the model has loaded
(``summary.json``'s ``seconds`` for ``bulk``); the children's wall times are
kept too. Memory: the peak RSS of ``lavt predict --manifest`` on manifests of
each ``--lines`` length over four small images (flat means the same peak)::

    .venv/bin/python scripts/bench_manifest.py memory --lines 10000 100000 \\
        --output benchmarks/manifest_memory_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from load_test import cpu_model

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220)}
SHAPES = ("circle", "square")
PLACES = ("on the left", "on the right")


def write_pairs(folder: Path, images: int, lines: int, size: tuple[int, int], texts=(1, 2, 3)):
    """``images`` JPEG scenes (a disc and a square each) and a manifest of ``lines`` lines
    naming 1-3 expressions of scene ``n % images`` (the counts cycle through ``texts``)."""
    from PIL import Image, ImageDraw

    width, height = size
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    for n in range(images):
        image = Image.new("RGB", size, (235, 235, 235))
        draw = ImageDraw.Draw(image)
        left, right = COLOURS[names[n % 3]], COLOURS[names[(n + 1) % 3]]
        draw.ellipse((width // 10, height // 4, width * 4 // 10, height * 3 // 4), fill=left)
        draw.rectangle((width * 6 // 10, height // 4, width * 9 // 10, height * 3 // 4), fill=right)
        image.save(folder / "imgs" / f"{n}.jpg", quality=90)
    with open(folder / "manifest.jsonl", "w", encoding="utf-8") as f:
        for n in range(lines):
            k = n % images
            left, right = names[k % 3], names[(k + 1) % 3]
            said = [f"the {left} circle", f"the {right} square on the right", "the left one"]
            line = {"id": n, "image": f"imgs/{k}.jpg", "texts": said[: texts[n % len(texts)]]}
            f.write(json.dumps(line) + "\n")
    return folder / "manifest.jsonl"


def child(args: list[str], env: dict[str, str]) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout, wall


# ----------------------------------------------------------------------------- children


def _predictor(device: str, checkpoint: str, dtype: str):
    from lavt.predict import Predictor

    options = {"dtype": dtype} if dtype else {}  # "": the predictor's default
    return Predictor.from_checkpoint(checkpoint or None, device=device, **options)


def run_loop(manifest: Path, output: Path, device: str, checkpoint: str, dtype: str) -> None:
    """The user's loop: Predictor.predict one image at a time, RLE per mask, a JSON line each."""
    from lavt.predict.encode import encode_prediction

    predictor = _predictor(device, checkpoint, dtype)
    start, pairs = time.perf_counter(), 0
    with open(manifest, encoding="utf-8") as lines, open(output, "w", encoding="utf-8") as out:
        for line in lines:
            entry = json.loads(line)
            image = manifest.parent / entry["image"]
            for prediction in predictor.predict(image, entry["texts"]):
                result = encode_prediction(prediction)
                out.write(json.dumps({"id": entry["id"], "image": entry["image"], **result}) + "\n")
                pairs += 1
    print(json.dumps({"seconds": time.perf_counter() - start, "pairs": pairs}))


def run_model(device: str, batch_size: int, seconds: float, checkpoint: str, dtype: str) -> None:
    """The model alone: batches of random images and real token ids, for ``seconds``, in the
    predictor's precision."""
    import torch

    from lavt.runtime import autocast, synchronize

    predictor = _predictor(device, checkpoint, dtype)
    size = predictor.img_size
    pixels = torch.randn(batch_size, 3, size, size, device=predictor.device)
    ids, attention = predictor.tokenizer(["the red circle on the left"] * batch_size)
    ids, attention = ids.to(predictor.device), attention.to(predictor.device)
    with torch.inference_mode(), autocast(predictor.device, predictor.amp):
        for _ in range(3):
            predictor.model(pixels, ids, attention)
        synchronize(predictor.device)
        start, steps = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            predictor.model(pixels, ids, attention)
            steps += 1
        synchronize(predictor.device)
    print(json.dumps({"seconds": time.perf_counter() - start, "pairs": steps * batch_size}))


def run_rss(command: list[str]) -> None:
    """Run ``command``; print its peak RSS (MiB, the largest of its processes) and wall time."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_rss_mib": round(peak, 1), "seconds": time.perf_counter() - start}))


# ----------------------------------------------------------------------------- drivers


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
    }


def throughput(args: argparse.Namespace, env: dict[str, str]) -> dict:
    me = [sys.executable, str(Path(__file__).resolve())]
    rounds = {"loop": [], "bulk": []}
    model = [args.checkpoint, args.dtype]  # "" = the default
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_pairs(Path(tmp), args.images, args.images, tuple(args.size))
        for r in range(args.repeats):
            out, wall = child(
                [*me, "_loop", str(manifest), f"{tmp}/loop{r}.jsonl", args.device, *model], env
            )
            rounds["loop"].append({**json.loads(out), "wall_s": wall})
            bulk_out = Path(tmp) / f"bulk{r}"
            cmd = [sys.executable, "-m", "lavt", "predict", "--manifest", str(manifest)]
            cmd += ["--output", str(bulk_out), "--device", args.device, *args.bulk_args.split()]
            cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
            cmd += ["--dtype", args.dtype] if args.dtype else []
            _, wall = child(cmd, env)
            summary = json.loads((bulk_out / "summary.json").read_text())
            pairs = summary["pairs_written"]
            rounds["bulk"].append({"seconds": summary["seconds"], "pairs": pairs, "wall_s": wall})
            loop = rounds["loop"][-1]
            rates = (
                f"loop {loop['pairs'] / loop['seconds']:.1f}, bulk {pairs / summary['seconds']:.1f}"
            )
            print(f"round {r + 1}: {rates} pairs/s", file=sys.stderr)
        out, _ = child([*me, "_model", args.device, str(args.batch_size), "10", *model], env)
        alone = json.loads(out)
    rates = {name: [r["pairs"] / r["seconds"] for r in runs] for name, runs in rounds.items()}
    median = {name: statistics.median(values) for name, values in rates.items()}
    model_rate = alone["pairs"] / alone["seconds"]
    return {
        "what": "pairs/s on the same manifest: Predictor.predict loop vs lavt predict --manifest",
        "images": args.images,
        "size": args.size,
        "pairs": rounds["bulk"][0]["pairs"],
        "device": args.device,
        "checkpoint": args.checkpoint or "default",
        "dtype": args.dtype or "default",
        "bulk_args": args.bulk_args,
        "rounds": rounds,
        "pairs_per_s": {name: [round(v, 2) for v in values] for name, values in rates.items()},
        "median_pairs_per_s": {name: round(v, 2) for name, v in median.items()},
        "ratio_bulk_over_loop": round(median["bulk"] / median["loop"], 3),
        "model_alone_pairs_per_s": round(model_rate, 2),
        "model_batch_size": args.batch_size,
        "bulk_share_of_model_rate": round(median["bulk"] / model_rate, 3),
    }


def memory(args: argparse.Namespace, env: dict[str, str]) -> dict:
    me = [sys.executable, str(Path(__file__).resolve())]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for lines in args.lines:
            folder = Path(tmp) / f"m{lines}"
            manifest = write_pairs(
                folder, 4, lines, (64, 48), texts=(1,)
            )  # 4 images, again and again
            cmd = [sys.executable, "-m", "lavt", "predict", "--manifest", str(manifest)]
            cmd += [
                "--output",
                str(folder / "out"),
                "--device",
                args.device,
                *args.bulk_args.split(),
            ]
            out, _ = child([*me, "_rss", *cmd], env)
            result = json.loads(out)
            summary = json.loads((folder / "out" / "summary.json").read_text())
            runs.append({"lines": lines, "pairs": summary["pairs_total"], **result})
            print(f"{lines} lines: peak RSS {result['peak_rss_mib']} MiB", file=sys.stderr)
    return {"what": "peak RSS of lavt predict --manifest (largest process)", "runs": runs,
            "device": args.device, "bulk_args": args.bulk_args}  # fmt: skip


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):  # a child's own job
        job, rest = sys.argv[1], sys.argv[2:]
        if job == "_loop":
            run_loop(Path(rest[0]), Path(rest[1]), *rest[2:5])
        elif job == "_model":
            run_model(rest[0], int(rest[1]), float(rest[2]), *rest[3:5])
        else:
            run_rss(rest)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("throughput", "memory"))
    parser.add_argument(
        "--images", type=int, default=400, help="throughput: manifest lines (default: %(default)s)"
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=[320, 240],
        help="throughput: image W H (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds of loop, bulk (default: %(default)s)"
    )
    parser.add_argument(
        "--lines",
        type=int,
        nargs="+",
        default=[10000, 100000],
        help="memory: manifest lengths (default: %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="(default: %(default)s)")
    parser.add_argument(
        "--checkpoint", default="", help="throughput: the model (default: the bundled one)"
    )
    parser.add_argument(
        "--dtype", default="", help="throughput: the --dtype of all three (default: each's own)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="model alone: batch (default: %(default)s)"
    )
    parser.add_argument(
        "--bulk-args",
        default="",
        help="extra lavt predict flags, e.g. '--workers 4' (default: none)",
    )
    parser.add_argument("--output", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    result = throughput(args, env) if args.mode == "throughput" else memory(args, env)
    result = {"machine": machine(), **result}
    text = json.dumps(result, indent=2)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
