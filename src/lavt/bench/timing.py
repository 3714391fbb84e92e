"""Timing, FLOP counting and the device's measured matrix-product peak.

Warm-up calls first, device synchronisation around each timed region (CUDA
events on the GPU, ``perf_counter`` on the CPU), several repeats; FLOPs counted
once with ``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from lavt.runtime import synchronize


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


def measure_matmul_peak(
    device: torch.device, dtype: torch.dtype, *, size: int | None = None
) -> float:
    """TFLOP/s of a square ``size`` x ``size`` matrix product in ``dtype`` on ``device``.

    ``size`` defaults to 8192 on a GPU and 2048 on the CPU.
    """
    n = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_call(lambda: a @ b, device, warmup=2, repeats=5 if device.type == "cuda" else 3)
    return 2 * n**3 / (statistics.median(times) / 1000) / 1e12
