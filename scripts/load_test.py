#!/usr/bin/env python
"""Load test of ``lavt serve`` on loopback (not part of the test suite).

Starts the server twice with the default model (``--max-batch 16``, then
``--max-batch 1``), sends REQUESTS requests from CLIENTS concurrent clients
(multipart, one bundled example image and one of its expressions each), and
reports errors, p50/p99 latency, requests/s and the server's RSS before and
after, plus the throughput ratio. Writes the figures as JSON::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/load_test.py \
        --requests 1000 --clients 16 --output benchmarks/serve_load_cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import httpx

EXAMPLES = Path(str(resources.files("lavt.serve") / "static" / "examples"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def server(flags: list[str], threads: int):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "lavt", "serve", "--port", str(port), *flags]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode())
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def workload() -> list[tuple[str, bytes, str]]:
    examples = json.loads((EXAMPLES / "examples.json").read_text())
    return [
        (e["file"], (EXAMPLES / e["file"]).read_bytes(), text)
        for e in examples
        for text in e["texts"]
    ]


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values (nearest rank)."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_clients(url: str, requests: int, clients: int) -> dict:
    items = workload()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for k in counter:
            name, data, text = items[k % len(items)]
            start = time.perf_counter()
            try:
                reply = await http.post(
                    f"{url}/v1/segment", files={"image": (name, data)}, data={"text": text}
                )
                ok = reply.status_code == 200 and len(reply.json()["results"]) == 1
                key = None if ok else str(reply.status_code)
            except httpx.HTTPError as err:
                key = type(err).__name__
            latencies.append(time.perf_counter() - start)
            if key:
                errors[key] = errors.get(key, 0) + 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": requests,
        "clients": clients,
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "wall_s": round(wall, 3),
        "requests_per_s": round(requests / wall, 2),
        "latency_p50_ms": round(1000 * percentile(latencies, 0.50), 2),
        "latency_p99_ms": round(1000 * percentile(latencies, 0.99), 2),
    }


def batch_stats(url: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "lavt_batch_size":
            values = {s.name.rsplit("_", 1)[-1]: s.value for s in family.samples
                      if s.name.endswith(("_count", "_sum"))}  # fmt: skip
            return {"forwards": int(values["count"]),
                    "mean_batch": round(values["sum"] / max(1, values["count"]), 2)}  # fmt: skip
    return {}


def measure(max_batch: int, args: argparse.Namespace) -> dict:
    flags = ["--device", "cpu", "--max-batch", str(max_batch),
             "--max-wait-ms", str(args.max_wait_ms), "--max-queue", "1024"]  # fmt: skip
    with server(flags, args.server_threads) as (url, pid):
        asyncio.run(run_clients(url, args.warmup, args.clients))  # warm up
        rss_before = rss_mb(pid)
        result = asyncio.run(run_clients(url, args.requests, args.clients))
        rss_after = rss_mb(pid)
        stats = batch_stats(url)
    return {"max_batch": max_batch, **result, **stats,
            "server_rss_mb_before": round(rss_before, 1),
            "server_rss_mb_after": round(rss_after, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--server-threads", type=int, default=1, help="server's OMP_NUM_THREADS")
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    runs = [measure(16, args), measure(1, args)]
    for run in runs:
        print(json.dumps(run))
    speedup = runs[0]["requests_per_s"] / runs[1]["requests_per_s"]
    print(f"throughput --max-batch 16 / --max-batch 1: {speedup:.2f}x")
    if args.output:
        import torch

        record = {
            "benchmark": "lavt serve load test (scripts/load_test.py)",
            "model": "bundled default (lavt_synthetic.safetensors)",
            "device": "cpu",
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "server_omp_threads": args.server_threads,
            "torch": torch.__version__,
            "max_wait_ms": args.max_wait_ms,
            "runs": runs,
            "batching_speedup": round(speedup, 2),
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0 if all(run["errors"] == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
