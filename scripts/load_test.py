#!/usr/bin/env python
"""Load test of ``lavt serve`` on loopback (not part of the test suite).

Starts two servers with the default model, or ``--checkpoint`` on ``--device``
(``--max-batch 16``, or ``--max-batch``, and ``--max-batch 1``), sends each
REQUESTS requests from CLIENTS concurrent clients (multipart, one bundled
example image and one of its expressions each), and reports errors, p50/p99
latency, requests/s, the server's CPU time per request (its model process
included), its RSS and the PSS of its
processes before and after, and the throughput ratio. The
rounds alternate between the two servers, so that other work on the machine
weighs on both alike. In the same run, before and after the servers, it
measures the ceiling: the same model's own forward rate at that batch size
(``lavt benchmark --checkpoint synthetic --batch-size 16``: no HTTP, decode or
encode) with the server's thread count and with all cores (on a GPU: once). On
the GPU (issue 25; ``scripts/gpu_check.sh`` step ``serve_load``)::

    python scripts/load_test.py --checkpoint DIR --device cuda --dtype bf16 \
        --max-batch 32 --clients 32 --requests 2000 --rounds 2 --output OUT.json

Writes the figures
as JSON::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/load_test.py \
        --requests 2000 --clients 16 --output benchmarks/serve_load_cpu.json
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
import tempfile
import time
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path

EXAMPLES = Path(str(resources.files("lavt.serve") / "static" / "examples"))


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``lavt serve``'s model process, multiprocessing's helper)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat", encoding="ascii") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


def memory_mb(pid: int) -> dict:
    """RSS of ``pid`` alone, and PSS (shared pages split between their users) of its tree."""
    rss = pss = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            with open(f"/proc/{member}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Rss:") and member == pid:
                        rss = int(line.split()[1]) / 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) / 1024
    return {"rss": round(rss, 1), "pss_tree": round(pss, 1)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of process ``pid`` and its descendants (all threads)."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{member}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def forward_rate(threads: int, args: argparse.Namespace) -> dict:
    """The model's own forward rate at the batched server's batch size (``lavt benchmark``),
    in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ceiling.json"
        command = [sys.executable, "-m", "lavt", "benchmark", "--checkpoint", args.checkpoint,
                   "--device", args.device, "--batch-size", str(args.max_batch),
                   "--dtype", args.dtype, "--threads", str(threads),
                   "--warmup", "3", "--repeats", str(args.ceiling_repeats),
                   "--json", str(out)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        result = json.loads(out.read_text())
    return {"threads": threads, "pairs_per_s": round(result["pairs_per_second"], 2),
            "latency_ms_median": round(result["latency_ms_median"], 2),
            "dtype_path": result["extra"].get("dtype path")}  # fmt: skip


def ceilings(args: argparse.Namespace) -> list[dict]:
    """On the CPU with the server's thread count and with all cores; on a GPU once."""
    counts = sorted({args.server_threads, os.cpu_count() or 1})
    if args.device != "cpu":
        counts = [args.server_threads]
    return [forward_rate(t, args) for t in counts]


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
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as reply:
                    if reply.status == 200:
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


def build_requests(url: str) -> list[bytes]:
    """One complete HTTP/1.1 multipart request per (example image, expression)."""
    port = urllib.parse.urlparse(url).port
    requests = []
    for name, data, text in workload():
        boundary = "lavtloadtest"
        disposition = f"--{boundary}\r\nContent-Disposition: form-data; name="
        image_head = f'{disposition}"image"; filename="{name}"\r\n\r\n'
        text_part = f'\r\n{disposition}"text"\r\n\r\n{text}\r\n--{boundary}--\r\n'
        body = image_head.encode() + data + text_part.encode()
        head = (
            f"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes):
    """Send one request on a kept-alive connection -> (status, body)."""
    writer.write(request)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def run_clients(url: str, requests: int, clients: int) -> tuple[list[float], dict, float]:
    """``requests`` requests from ``clients`` concurrent clients -> (latencies, errors, wall).

    A minimal HTTP/1.1 client over kept-alive loopback connections (prebuilt
    request bytes), so that the load generator takes little of the CPU the
    server needs.
    """
    prebuilt = build_requests(url)
    parsed = urllib.parse.urlparse(url)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(requests))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
        try:
            for k in counter:
                start = time.perf_counter()
                try:
                    status, body = await exchange(reader, writer, prebuilt[k % len(prebuilt)])
                    ok = status == 200 and len(json.loads(body)["results"]) == 1
                    key = None if ok else str(status)
                except (OSError, ValueError, asyncio.IncompleteReadError) as err:
                    key = type(err).__name__
                    writer.close()
                    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
                latencies.append(time.perf_counter() - start)
                if key:
                    errors[key] = errors.get(key, 0) + 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, time.perf_counter() - start


def summary(latencies: list[float], errors: dict, wall: float, clients: int) -> dict:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "clients": clients,
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(ordered) / wall, 2),
        "latency_p50_ms": round(1000 * percentile(ordered, 0.50), 2),
        "latency_p99_ms": round(1000 * percentile(ordered, 0.99), 2),
    }


def batch_stats(url: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "lavt_batch_size":
            values = {s.name.rsplit("_", 1)[-1]: s.value for s in family.samples
                      if s.name.endswith(("_count", "_sum"))}  # fmt: skip
            return {"forwards": int(values["count"]),
                    "mean_batch": round(values["sum"] / max(1, values["count"]), 2)}  # fmt: skip
    return {}


def measure(args: argparse.Namespace) -> list[dict]:
    """Both servers (``--max-batch`` and 1) up at once; rounds alternate between them,
    so that a machine shared with other work loads both configurations alike."""
    batches = (args.max_batch, 1)
    with contextlib.ExitStack() as stack:
        servers = {}
        for max_batch in batches:
            flags = ["--checkpoint", args.checkpoint, "--device", args.device,
                     "--max-batch", str(max_batch), "--dtype", args.dtype,
                     "--max-wait-ms", str(args.max_wait_ms), "--max-queue", "1024",
                     "--model-process", args.model_process]  # fmt: skip
            servers[max_batch] = stack.enter_context(server(flags, args.server_threads))
        for url, _ in servers.values():
            asyncio.run(run_clients(url, args.warmup, args.clients))
        memory_before = {b: memory_mb(pid) for b, (_, pid) in servers.items()}
        cpu_before = {b: cpu_seconds(pid) for b, (_, pid) in servers.items()}
        totals = {b: ([], {}, 0.0) for b in batches}
        per_round = args.requests // args.rounds
        for _ in range(args.rounds):
            for b, (url, _) in servers.items():
                latencies, errors, wall = asyncio.run(run_clients(url, per_round, args.clients))
                all_latencies, all_errors, all_wall = totals[b]
                all_latencies.extend(latencies)
                for key, count in errors.items():
                    all_errors[key] = all_errors.get(key, 0) + count
                totals[b] = (all_latencies, all_errors, all_wall + wall)
        runs = []
        for b, (url, pid) in servers.items():
            cpu_ms = 1000 * (cpu_seconds(pid) - cpu_before[b]) / max(1, len(totals[b][0]))
            memory_after = memory_mb(pid)
            runs.append({"max_batch": b, **summary(*totals[b], args.clients), **batch_stats(url),
                         "server_cpu_ms_per_request": round(cpu_ms, 3),
                         "server_processes": len(process_tree(pid)),
                         "server_rss_mb_before": memory_before[b]["rss"],
                         "server_rss_mb_after": memory_after["rss"],
                         "server_pss_mb_before": memory_before[b]["pss_tree"],
                         "server_pss_mb_after": memory_after["pss_tree"]})  # fmt: skip
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="alternations between servers")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--server-threads", type=int, default=1, help="server's OMP_NUM_THREADS")
    parser.add_argument("--dtype", default="auto", help="the servers' and the ceiling's --dtype")
    parser.add_argument("--model-process", default="auto", choices=("auto", "on", "off"),
                        help="the servers' --model-process")  # fmt: skip
    parser.add_argument("--ceiling-repeats", type=int, default=20, help="timed forwards")
    parser.add_argument("--checkpoint", default="synthetic", help="the servers' and the ceiling's")
    parser.add_argument("--device", default="cpu", help="the servers' and the ceiling's")
    parser.add_argument("--max-batch", type=int, default=16,
                        help="the batched server's, and the ceiling's batch size")  # fmt: skip
    parser.add_argument("--output", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    before = ceilings(args)
    cpu_start = time.process_time()
    runs = measure(args)
    client_cpu = time.process_time() - cpu_start
    after = ceilings(args)
    for run in runs:
        print(json.dumps(run))
    speedup = runs[0]["requests_per_s"] / runs[1]["requests_per_s"]
    print(f"throughput --max-batch {args.max_batch} / --max-batch 1: {speedup:.2f}x")
    ceiling = {}
    for row in before + after:
        best = ceiling.get(row["threads"])
        if best is None or row["pairs_per_s"] > best["pairs_per_s"]:
            ceiling[row["threads"]] = row
    shares = {t: runs[0]["requests_per_s"] / row["pairs_per_s"] for t, row in ceiling.items()}
    for t, row in sorted(ceiling.items()):
        seen = [r["pairs_per_s"] for r in before + after if r["threads"] == t]
        print(f"ceiling, forward at batch {args.max_batch} with {t} thread(s) on {args.device}: "
              f"{row['pairs_per_s']:.1f} pairs/s (before, after the servers: {seen}); "
              f"served --max-batch {args.max_batch} = {100 * shares[t]:.1f}% of it")  # fmt: skip
    total = sum(run["requests"] for run in runs)
    print(f"load generator CPU: {1000 * client_cpu / total:.2f} ms per request")
    if args.output:
        import torch

        record = {
            "benchmark": "lavt serve load test (scripts/load_test.py)",
            "model": args.checkpoint,
            "device": args.device,
            "device_name": torch.cuda.get_device_name() if args.device != "cpu" else "cpu",
            "clients": args.clients,
            "max_batch": args.max_batch,
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "server_omp_threads": args.server_threads,
            "torch": torch.__version__,
            "max_wait_ms": args.max_wait_ms,
            "model_process": args.model_process,
            "rounds": args.rounds,
            "note": "client and servers on the same loopback host; rounds alternate configs",
            "runs": runs,
            "batching_speedup": round(speedup, 2),
            "ceiling_before": before,
            "ceiling_after": after,
            "served_share_of_ceiling": {str(t): round(v, 4) for t, v in shares.items()},
            "load_average_1min_end": os.getloadavg()[0],
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0 if all(run["errors"] == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
