"""Benchmarks: latency, throughput, achieved FLOP/s and peak memory.

Timing follows the usual rules: warm-up runs first, device synchronisation
around each timed region (CUDA events on the GPU), several repeats, and the
median with its spread reported. FLOPs are counted once with
``torch.utils.flop_counter.FlopCounterMode``; the device's peak is measured on
the spot with a large matrix product in the same dtype, so the share of peak is
relative to what this machine actually reaches.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from lavt.errors import InputError
from lavt.modeling import LAVT, build_model, preset_config

log = logging.getLogger("lavt")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("infer", "train", "eval", "data")


@dataclass
class BenchmarkResult:
    """Figures of one benchmark run (times in milliseconds, memory in MiB)."""

    mode: str
    preset: str
    device: str
    dtype: str
    img_size: int
    batch_size: int
    expressions_per_image: int
    compile: bool
    channels_last: bool
    repeats: int
    latency_ms_median: float
    latency_ms_min: float
    latency_ms_max: float
    latency_ms_iqr: float
    pairs_per_second: float
    gflops_per_batch: float | None
    achieved_tflops: float | None
    device_peak_tflops: float | None
    share_of_peak: float | None
    peak_memory_mib: float
    memory_kind: str
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        rows = [
            ("mode", self.mode),
            ("model", f"{self.preset} @ {self.img_size}, {self.dtype}, {self.device}"),
            ("batch", f"{self.batch_size} images x {self.expressions_per_image} expressions"),
            (
                "latency / batch",
                f"{self.latency_ms_median:.1f} ms (min {self.latency_ms_min:.1f}, "
                f"max {self.latency_ms_max:.1f}, IQR {self.latency_ms_iqr:.1f}; "
                f"{self.repeats} runs)",
            ),
            ("throughput", f"{self.pairs_per_second:.2f} image-expression pairs/s"),
        ]
        if self.achieved_tflops is not None:
            rows.append(
                (
                    "compute",
                    f"{self.gflops_per_batch:.1f} GFLOP/batch, {self.achieved_tflops:.3f} "
                    f"TFLOP/s = {100 * (self.share_of_peak or 0):.1f}% of the measured "
                    f"{self.device_peak_tflops:.3f} TFLOP/s matmul peak",
                )
            )
        rows.append((f"peak memory ({self.memory_kind})", f"{self.peak_memory_mib:.0f} MiB"))
        rows += [(k, str(v)) for k, v in self.extra.items()]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], Any], device: torch.device, *, warmup: int, repeats: int
) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t0))
    return times


def count_flops(fn: Callable[[], Any]) -> float:
    """Floating-point operations of one call (multiply-add = 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def measure_matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """TFLOP/s of a large square matrix product in ``dtype`` on ``device``."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_call(lambda: a @ b, device, warmup=2, repeats=5 if device.type == "cuda" else 3)
    return 2 * n**3 / (statistics.median(times) / 1000) / 1e12


def peak_memory_mib(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "GPU max_memory_allocated"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 2**10  # bytes on macOS, KiB on Linux
    return rss_kib * scale, "CPU peak RSS of the process"


def versions() -> dict[str, str]:
    out = {"torch": torch.__version__, "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
        out["cuda"] = str(torch.version.cuda)
    out["cpu_threads"] = str(torch.get_num_threads())
    return out


def _inputs(config, *, batch: int, per_image: int, img_size: int, device: torch.device):
    """B images each repeated for E expressions: (B*E, 3, S, S) and (B*E, N) ids/mask."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, img_size, img_size, generator=g)
    images = images.repeat_interleave(per_image, dim=0)  # (B, 3, S, S) -> (B*E, 3, S, S)
    n = config.max_text_len
    ids = torch.randint(1, min(config.text.vocab_size, 30522), (batch * per_image, n), generator=g)
    mask = torch.ones(batch * per_image, n, dtype=torch.long)
    mask[:, n // 2 :] = 0  # half-length expressions
    return images.to(device), ids.to(device), mask.to(device)


def _prepare_model(
    preset: str, *, device: torch.device, channels_last: bool, compile_model: bool, train: bool
) -> tuple[LAVT, Callable]:
    torch.manual_seed(0)
    model = build_model(preset_config(preset)).to(device)
    model.train(train)
    if channels_last:
        model.classifier.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if compile_model else model
    return model, runner


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def run_benchmark(
    *,
    mode: str = "infer",
    preset: str = "tiny",
    img_size: int = 480,
    batch_size: int = 1,
    expressions_per_image: int = 1,
    device: str = "cpu",
    dtype: str = "fp32",
    compile_model: bool = False,
    channels_last: bool = False,
    warmup: int = 2,
    repeats: int = 5,
    workers: int = 0,
) -> BenchmarkResult:
    """Time one mode; see the module docstring for the method."""
    if mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if dtype not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    for name, value in (
        ("--batch-size", batch_size),
        ("--img-size", img_size),
        ("--expressions-per-image", expressions_per_image),
        ("--repeats", repeats),
    ):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    torch_dtype = DTYPES[dtype]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    if mode in ("eval", "data"):
        from lavt.engine.bench_loops import run_loop_benchmark

        return run_loop_benchmark(
            mode=mode,
            preset=preset,
            img_size=img_size,
            batch_size=batch_size,
            expressions_per_image=expressions_per_image,
            device=dev,
            dtype=dtype,
            compile_model=compile_model,
            channels_last=channels_last,
            warmup=warmup,
            repeats=repeats,
            workers=workers,
        )
    model, runner = _prepare_model(
        preset,
        device=dev,
        channels_last=channels_last,
        compile_model=compile_model,
        train=mode == "train",
    )
    images, ids, mask = _inputs(
        model.config,
        batch=batch_size,
        per_image=expressions_per_image,
        img_size=img_size,
        device=dev,
    )
    if mode == "infer":
        step = _infer_step(runner, images, ids, mask, dev, torch_dtype)
    else:
        step = _train_step(model, runner, images, ids, mask, dev, torch_dtype)
    flops = (
        count_flops(step)
        if not compile_model
        else count_flops(
            _infer_step(model, images, ids, mask, dev, torch_dtype)
            if mode == "infer"
            else _train_step(model, model, images, ids, mask, dev, torch_dtype)
        )
    )
    times = time_call(step, dev, warmup=warmup, repeats=repeats)
    return _result(
        mode=mode,
        preset=preset,
        dev=dev,
        dtype=dtype,
        img_size=img_size,
        batch_size=batch_size,
        per_image=expressions_per_image,
        compile_model=compile_model,
        channels_last=channels_last,
        times=times,
        flops=flops,
        torch_dtype=torch_dtype,
    )


def _result(
    *,
    mode,
    preset,
    dev,
    dtype,
    img_size,
    batch_size,
    per_image,
    compile_model,
    channels_last,
    times,
    flops,
    torch_dtype,
    pairs=None,
    extra=None,
) -> BenchmarkResult:
    median = statistics.median(times)
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [median, median, median]
    pairs = pairs if pairs is not None else batch_size * per_image
    achieved = flops / (median / 1000) / 1e12 if flops else None
    peak = measure_matmul_peak(dev, torch_dtype) if flops else None
    memory, memory_kind = peak_memory_mib(dev)
    return BenchmarkResult(
        mode=mode,
        preset=preset,
        device=str(dev),
        dtype=dtype,
        img_size=img_size,
        batch_size=batch_size,
        expressions_per_image=per_image,
        compile=compile_model,
        channels_last=channels_last,
        repeats=len(times),
        latency_ms_median=median,
        latency_ms_min=min(times),
        latency_ms_max=max(times),
        latency_ms_iqr=q[2] - q[0],
        pairs_per_second=pairs / (median / 1000),
        gflops_per_batch=flops / 1e9 if flops else None,
        achieved_tflops=achieved,
        device_peak_tflops=peak,
        share_of_peak=achieved / peak if achieved and peak else None,
        peak_memory_mib=memory,
        memory_kind=memory_kind,
        versions=versions(),
        extra=extra or {},
    )


def _infer_step(runner, images, ids, mask, dev, torch_dtype) -> Callable[[], Any]:
    def step():
        with torch.inference_mode(), _autocast(dev, torch_dtype):
            return runner(images, ids, mask).argmax(1)

    return step


def _train_step(model, runner, images, ids, mask, dev, torch_dtype) -> Callable[[], Any]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=dev.type == "cuda")
    scaler = torch.amp.GradScaler(dev.type, enabled=torch_dtype == torch.float16)
    target = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.long, device=dev)
    target[:, : images.shape[-2] // 2] = 1
    class_weight = torch.tensor([0.9, 1.1], device=dev)  # the recipe's weighted cross-entropy

    def step():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(dev, torch_dtype):
            loss = F.cross_entropy(runner(images, ids, mask).float(), target, weight=class_weight)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step
