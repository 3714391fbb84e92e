"""``run_benchmark``: check a request, then time one mode.

Modes: ``infer`` (forward + argmax), ``train`` (one optimisation step), ``eval``
(the evaluation loop, batched and one expression at a time) and ``data`` (the
training data loader). Latency is the median of several repeats after warm-up,
with its spread; FLOPs are counted once and compared with a matrix-product peak
measured on the spot in the same dtype, so the share of peak is relative to what
this machine actually reaches.
"""

from __future__ import annotations

import logging

import torch

from lavt.bench.result import COMPILE_MODES, MODES, BenchmarkResult, BenchSpec, make_result
from lavt.bench.timing import count_flops, time_call
from lavt.errors import InputError
from lavt.modeling import PRESETS, preset_config
from lavt.modeling.config import LAVTConfig
from lavt.precision import canonical_dtype, choose_precision
from lavt.runtime import select_device

log = logging.getLogger("lavt")

#: the backbone downsamples by 4 (patches) and 2 three times: sides are multiples of this.
SIZE_MULTIPLE = 32
#: peak-rate dtype of each precision (int8 runs float32 activations)
_PEAK_DTYPES = {
    "fp32": torch.float32, "bf16": torch.bfloat16, "bf16-all": torch.bfloat16,
    "fp16": torch.float16, "int8": torch.float32,
}  # fmt: skip


def _at_least(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or value < low:
        raise InputError(f"{name} {value}: must be an integer of at least {low}", param=name)


def check_request(
    *,
    mode: str,
    img_size: int,
    batch_size: int = 1,
    expressions_per_image: int = 1,
    warmup: int = 0,
    repeats: int = 1,
    workers: int = 0,
    preset: str | None = None,
) -> None:
    """Refuse a bad request before anything is built; errors name the parameter."""
    if mode not in MODES:
        raise InputError(f"mode {mode!r}: expected one of {', '.join(MODES)}", param="mode")
    if preset is not None and preset not in PRESETS:
        raise InputError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}", param="preset")
    _at_least("img_size", img_size, SIZE_MULTIPLE)
    if img_size % SIZE_MULTIPLE:
        raise InputError(
            f"img_size {img_size}: must be a multiple of {SIZE_MULTIPLE} (the backbone's stride)",
            param="img_size",
        )
    _at_least("batch_size", batch_size, 1)
    _at_least("expressions_per_image", expressions_per_image, 1)
    _at_least("warmup", warmup, 0)
    _at_least("repeats", repeats, 1)
    _at_least("workers", workers, 0)


def run_benchmark(
    *,
    mode: str = "infer",
    preset: str = "tiny",
    img_size: int | None = None,
    batch_size: int = 1,
    expressions_per_image: int = 1,
    device: str = "cpu",
    dtype: str = "fp32",
    compile_model: bool = False,
    compile_mode: str = "default",
    channels_last: bool = False,
    grad_checkpointing: bool = False,
    warmup: int = 2,
    repeats: int = 5,
    workers: int = 0,
    config: LAVTConfig | None = None,
    peak_matmul_size: int | None = None,
    checkpoint: str | None = None,
) -> BenchmarkResult:
    """Time one mode; see the module docstring for the method.

    ``config`` replaces the preset's architecture (the result still names
    ``preset``; tests use a tiny config); ``checkpoint`` (a bundled or registered
    name, or a file) times that model instead, at its own ``img_size`` unless one
    is given; ``peak_matmul_size`` sets the side of the matrix product that
    measures the device's peak. ``dtype`` is a :mod:`lavt.precision` name
    (``auto`` and ``int8`` for inference); training autocasts a float32 model.
    """
    if compile_mode not in COMPILE_MODES:
        raise InputError(
            f"compile_mode {compile_mode!r}: expected one of {', '.join(COMPILE_MODES)}",
            param="compile_mode",
        )
    label = preset if config is None else f"{preset} (custom config)"
    if checkpoint is not None:
        label = f"checkpoint {checkpoint}"
    check_request(
        mode=mode,
        preset=preset if checkpoint is None else None,
        img_size=img_size if img_size is not None else 480,
        batch_size=batch_size,
        expressions_per_image=expressions_per_image,
        warmup=warmup,
        repeats=repeats,
        workers=workers,
    )
    if mode == "train" and canonical_dtype(dtype) in ("auto", "int8"):
        raise InputError(f"dtype {dtype}: train mode takes fp32, bf16 or fp16", param="dtype")
    model = None
    if checkpoint is not None:
        from lavt.checkpoint import load_model

        model = load_model(checkpoint, device="cpu")
        config = model.config
        if img_size is None:
            img_size = config.img_size
            check_request(mode=mode, img_size=img_size)
    config = config if config is not None else preset_config(preset)
    device = select_device(device)
    precision = choose_precision(dtype, device, embed_dim=config.embed_dim)
    log.info("benchmark dtype %s (%s)", precision.name, precision.reason)
    spec = BenchSpec(
        mode=mode,
        preset=label,
        config=config,
        device=device,
        dtype=_PEAK_DTYPES[precision.name],
        precision=precision.name,
        precision_reason=precision.reason,
        model=model,
        img_size=img_size if img_size is not None else 480,
        batch_size=batch_size,
        expressions_per_image=expressions_per_image,
        compile_model=compile_model,
        compile_mode=compile_mode,
        channels_last=channels_last,
        warmup=warmup,
        repeats=repeats,
        workers=workers,
        peak_matmul_size=peak_matmul_size,
        grad_checkpointing=grad_checkpointing,
    )
    if spec.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(spec.device)
    if mode in ("eval", "data"):
        from lavt.bench.loops import run_loop_benchmark

        return run_loop_benchmark(spec)
    return _time_step(spec)


def _time_step(spec: BenchSpec) -> BenchmarkResult:
    from lavt.bench.steps import make_step

    step, uncompiled = make_step(spec)
    flops = count_flops(uncompiled)
    extra = {}
    if spec.compile_model:  # the first call compiles: timed apart from the runs
        extra["compile_s (first call)"] = round(
            time_call(step, spec.device, warmup=0, repeats=1)[0] / 1000, 1
        )
    times = time_call(step, spec.device, warmup=spec.warmup, repeats=spec.repeats)
    return make_result(spec, times, flops=flops, extra=extra)
