"""What one benchmark run measures (:class:`BenchSpec`) and reports (:class:`BenchmarkResult`)."""

from __future__ import annotations

import resource
import statistics
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from lavt.bench.timing import measure_matmul_peak
from lavt.modeling.config import LAVTConfig
from lavt.precision import winograd_choice
from lavt.runtime import dtype_name

MODES = ("infer", "train", "eval", "data")
#: ``torch.compile`` modes (reduce-overhead replays CUDA graphs on a GPU)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class BenchSpec:
    """A validated benchmark request (see :func:`lavt.bench.run_benchmark`)."""

    mode: str
    preset: str
    config: LAVTConfig
    device: torch.device
    dtype: torch.dtype
    img_size: int
    batch_size: int
    expressions_per_image: int
    compile_model: bool
    channels_last: bool
    warmup: int
    repeats: int
    workers: int
    peak_matmul_size: int | None = None
    grad_checkpointing: bool = False
    compile_mode: str = "default"
    #: inference precision (lavt.precision: fp32, bf16, fp16, int8) and why it was chosen
    precision: str = "fp32"
    precision_reason: str = "requested"
    #: a loaded model to time instead of a random one built from ``config`` (--checkpoint)
    model: Any = field(default=None, repr=False, compare=False)

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype)


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
        """The figures as an aligned two-column text table."""
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


def _dtype_path(spec: BenchSpec) -> str:
    """How the model runs: the precision, how it is made, and why it was chosen."""
    how = {
        "fp32": "float32 weights",
        "bf16": "bf16 copy of the matmul weights (cast once), PWAMs float32, autocast",
        "bf16-all": "bf16 copy of every matmul weight (cast once), autocast",
        "fp16": "fp16 copy of the matmul weights (cast once), PWAMs float32, autocast",
        "int8": "int8 dynamic quantisation of the linear layers",
    }[spec.precision]
    if spec.mode == "train":
        how = f"float32 weights, autocast {spec.dtype_name}"
    elif spec.precision == "bf16" and spec.device.type == "cpu":
        width = spec.config.stage_dim(3) // 2  # the decoder's; its probe ran at the cast
        use, speedup = winograd_choice(width)
        convs = "Winograd" if use else "direct"
        how += (
            f", decoder 3x3 convolutions {convs} (probe: Winograd {speedup:.2f}x direct), "
            "window attention as batched products"
        )
    return f"{spec.precision}: {how} ({spec.precision_reason})"


def peak_memory_mib(device: torch.device) -> tuple[float, str]:
    """Peak memory so far and what it measures (GPU allocations or process RSS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "GPU max_memory_allocated"
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 2**10  # bytes on macOS, KiB on Linux
    return rss_kib * scale, "CPU peak RSS of the process"


def versions() -> dict[str, str]:
    """torch, Python, GPU and thread count, recorded with every result."""
    out = {"torch": torch.__version__, "python": sys.version.split()[0]}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
        out["cuda"] = str(torch.version.cuda)
    out["cpu_threads"] = str(torch.get_num_threads())
    return out


def make_result(
    spec: BenchSpec,
    times: list[float],
    *,
    flops: float = 0.0,
    pairs: float | None = None,
    device: torch.device | None = None,
    extra: dict[str, Any] | None = None,
) -> BenchmarkResult:
    """Summarise ``times`` (ms per batch); FLOP/s and share of peak when ``flops`` is known."""
    device = device or spec.device
    median = statistics.median(times)
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [median, median, median]
    pairs = pairs if pairs is not None else spec.batch_size * spec.expressions_per_image
    achieved = flops / (median / 1000) / 1e12 if flops else None
    peak = measure_matmul_peak(device, spec.dtype, size=spec.peak_matmul_size) if flops else None
    memory, memory_kind = peak_memory_mib(device)
    return BenchmarkResult(
        mode=spec.mode,
        preset=spec.preset,
        device=str(device),
        dtype=spec.precision,
        img_size=spec.img_size,
        batch_size=spec.batch_size,
        expressions_per_image=spec.expressions_per_image,
        compile=spec.compile_model,
        channels_last=spec.channels_last,
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
        extra={
            "dtype path": _dtype_path(spec),
            **({"grad_checkpointing": True} if spec.grad_checkpointing else {}),
            **({"compile_mode": spec.compile_mode} if spec.compile_model else {}),
            **(extra or {}),
        },
    )
