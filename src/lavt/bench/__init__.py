"""Benchmarks: latency, throughput, achieved FLOP/s and peak memory.

- :mod:`~lavt.bench.run`: :func:`run_benchmark`, argument checks, dispatch;
- :mod:`~lavt.bench.steps`: the model, inputs and timed steps of ``infer`` and
  ``train`` (:func:`~lavt.bench.steps.make_train_step` is where the trainer's
  step is plugged in);
- :mod:`~lavt.bench.loops`: ``eval`` and ``data`` modes on synthetic scenes;
- :mod:`~lavt.bench.timing`, :mod:`~lavt.bench.result`: timing, FLOPs, peak, results.

Imports run one way: run -> steps/loops -> result -> timing.
"""

from __future__ import annotations

from lavt.bench.result import COMPILE_MODES, MODES, BenchmarkResult, BenchSpec
from lavt.bench.run import check_request, run_benchmark

__all__ = [
    "COMPILE_MODES",
    "MODES",
    "BenchSpec",
    "BenchmarkResult",
    "check_request",
    "run_benchmark",
]
