"""Inference precision: which dtype runs the model, and the model copy that runs it.

``--dtype`` of ``lavt predict``/``evaluate``/``serve`` and ``lavt benchmark``:

- ``float32`` (``fp32``): the model as loaded;
- ``bfloat16``/``float16`` (``bf16``/``fp16``): a copy whose matrix-product
  weights (``nn.Linear``, ``nn.Conv1d``/``Conv2d``) are cast once, run under
  autocast, except in the float32 islands: the pixel-word attention modules
  (every stage's PWAM, :data:`FLOAT32_MODULES`) keep float32 weights and run with
  autocast off. Norms, embeddings, the relative-position tables and BatchNorm
  statistics stay float32 (shared with the caller's model, not copied), and
  autocast keeps its own float32 ops (InstanceNorm, the final upsampling). The
  weights are not re-cast at every call (autocast's cast cache is off under
  ``inference_mode``). The PWAMs are about 1% of Swin-B's FLOPs; in float32 they
  lift the mask's pixel agreement with float32 on the side-by-side's random-weight
  Swin-B from 98.73% to 99.66% (docs/cpu_inference.md). On a CPU the bf16 copy
  also computes the decoder's 3x3 convolutions by Winograd's F(2x2, 3x3)
  (:mod:`lavt.winograd`: 2.25x fewer FLOPs in the layers that hold 58% of
  Swin-B's) where a one-off probe finds it faster than the direct bf16
  convolution (:func:`winograd_speedup`), and bf16 window attention runs as batched products
  (:func:`lavt.modeling.window.windowed_softmax_attention`);
- ``bf16-all`` (``bfloat16-all``): the same without islands, every matrix
  product in bf16 (its outputs are those of the plain autocast path);
- ``int8``: dynamic int8 quantisation of the ``nn.Linear`` layers (weights int8,
  activations quantised per call; ``torch.ao.quantization.quantize_dynamic``),
  CPU only;
- ``auto``: bf16 on a CPU whose bf16 matrix products pay (the ``amx_bf16`` or
  ``avx512_bf16`` flag, confirmed by a one-off matmul probe) for a model whose
  matrices are large enough (Swin ``embed_dim`` >= 64: the bundled 16-wide model
  ran 0.59x as fast in bf16, Swin-T 1.5x faster: BENCHMARKS.md), float32
  otherwise, and float32 on GPUs (pass ``bf16`` there). The choice and its reason
  are logged.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lavt import winograd
from lavt.errors import InputError
from lavt.modeling.decoder import SimpleDecoder
from lavt.modeling.fusion import PWAM
from lavt.modeling.video_fusion import SpatioTemporalPWAM

log = logging.getLogger("lavt")

#: accepted ``--dtype`` names (``none`` is the old ``--amp none``: float32).
INFERENCE_DTYPES = (
    "auto", "float32", "fp32", "bfloat16", "bf16", "bfloat16-all", "bf16-all", "float16", "fp16",
    "int8", "none",
)  # fmt: skip
_CANONICAL = {
    "float32": "fp32", "fp32": "fp32", "none": "fp32", "bfloat16": "bf16", "bf16": "bf16",
    "bfloat16-all": "bf16-all", "bf16-all": "bf16-all", "float16": "fp16", "fp16": "fp16",
    "int8": "int8",
}  # fmt: skip
_AMP = {"bf16": torch.bfloat16, "bf16-all": torch.bfloat16, "fp16": torch.float16}
#: low-precision paths with float32 islands (``bf16-all`` has none)
_WITH_ISLANDS = ("bf16", "fp16")
#: CPU flags (``/proc/cpuinfo``) of a bf16 matrix unit: Intel AMX, AVX512-BF16 (Intel, AMD Zen 4+).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: bf16 must beat fp32 by this factor in the probe for ``auto`` to pick it.
MIN_PROBE_SPEEDUP = 1.3
#: Winograd must beat the direct bf16 convolution by this factor in :func:`winograd_speedup`
MIN_WINOGRAD_SPEEDUP = 1.1
#: smallest Swin ``embed_dim`` for which ``auto`` picks bf16 (measured: 16 loses, 96 gains).
MIN_EMBED_DIM = 64
#: modules whose weights feed matrix products (autocast runs them in the low dtype).
MATMUL_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d)
#: modules the bf16/fp16 paths run in float32 (weights and activations): the PWAMs. Chosen by
#: measurement on the side-by-side's Swin-B (docs/cpu_inference.md, "Agreement").
FLOAT32_MODULES = (PWAM, SpatioTemporalPWAM)  # their island classes: FLOAT32_ISLANDS


@dataclass(frozen=True)
class Precision:
    """What runs the model: ``name`` (fp32, bf16, fp16, int8) and why it was chosen."""

    name: str
    reason: str

    @property
    def amp(self) -> torch.dtype | None:
        """The autocast dtype (None: no autocast)."""
        return _AMP.get(self.name)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _speedup(slow, fast, *, reps: int, warmup: int) -> float:
    """Median time of ``slow()`` over median time of ``fast()``, calls interleaved, after
    ``warmup`` calls of each (oneDNN builds its kernels on the first call)."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(warmup + reps):
        for fn, kept in zip((slow, fast), times, strict=True):
            start = time.perf_counter()
            fn()
            if i >= warmup:
                kept.append(time.perf_counter() - start)
    slow_s, fast_s = (sorted(t)[len(t) // 2] for t in times)
    return slow_s / max(fast_s, 1e-9)


@functools.cache
def bf16_matmul_speedup(size: int = 512, reps: int = 5) -> float:
    """bf16 over fp32 rate of a (size x size) @ (size x size) product on the CPU.

    Measured once per process (interleaved, median of ``reps``); about 20 ms.
    """
    g = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(size, size, generator=g), torch.randn(size, size, generator=g)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    return _speedup(lambda: torch.mm(a32, b32), lambda: torch.mm(a16, b16), reps=reps, warmup=2)


@functools.cache
def winograd_speedup(channels: int, size: int = 60, reps: int = 3) -> float:
    """Direct bf16 convolution time over :class:`lavt.winograd.WinogradConv2d`'s for a
    3x3 (channels -> channels) convolution of a (1, channels, size, size) input: the
    decoder's middle level of a 480 model. Measured once per process and width
    (interleaved, median of ``reps``); about 0.3 s at 512 channels on a 2-core AMD
    EPYC, where it gives 1.34-1.38x (384 channels 1.16x, 256 0.92-0.96x, 64 0.3x).
    """
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(channels, channels, 3, 3, generator=g) * channels**-0.5
    x = torch.randn(1, channels, size, size, generator=g).bfloat16()
    direct_weight = weight.bfloat16()
    fast = winograd.WinogradConv2d(weight, None, torch.bfloat16)
    with torch.inference_mode():
        direct = lambda: F.conv2d(x, direct_weight, padding=1)
        return _speedup(direct, lambda: fast(x), reps=reps, warmup=1)


def winograd_choice(width: int) -> tuple[bool, float]:
    """Whether the bf16 copy computes a ``width``-channel decoder's 3x3 convolutions by
    Winograd on this CPU, and the probe's figure (:func:`winograd_speedup`)."""
    speedup = winograd_speedup(width)
    return speedup >= MIN_WINOGRAD_SPEEDUP, speedup


def canonical_dtype(name: str | torch.dtype | None, *, param: str = "dtype") -> str:
    """``"bfloat16"``/``torch.bfloat16`` -> ``"bf16"``; ``None`` -> ``"fp32"``; ``auto`` kept."""
    if name is None:
        return "fp32"
    if isinstance(name, torch.dtype):
        name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(
            name, str(name)
        )
    key = str(name).lower()
    if key == "auto":
        return key
    if key not in _CANONICAL:
        raise InputError(
            f"{param} {name!r}: expected one of {', '.join(INFERENCE_DTYPES)}", param=param
        )
    return _CANONICAL[key]


def choose_precision(
    name: str | torch.dtype | None,
    device: torch.device | str,
    *,
    embed_dim: int | None = None,
    param: str = "dtype",
) -> Precision:
    """Resolve ``name`` (``auto`` included) for ``device`` and a model of Swin width
    ``embed_dim``."""
    device = torch.device(device)
    key = canonical_dtype(name, param=param)
    if key == "int8" and device.type != "cpu":
        raise InputError(f"{param} int8: dynamic quantisation runs on the CPU only", param=param)
    if key != "auto":
        return Precision(key, "requested")
    if device.type != "cpu":
        return Precision("fp32", f"auto on {device.type}: float32 (pass bf16 for speed)")
    present = sorted(cpu_flags() & set(BF16_FLAGS))
    capability = torch.backends.cpu.get_cpu_capability()
    if not present:
        return Precision("fp32", f"auto: the CPU ({capability}) has no amx_bf16/avx512_bf16")
    if embed_dim is not None and embed_dim < MIN_EMBED_DIM:
        return Precision(
            "fp32",
            f"auto: embed_dim {embed_dim} < {MIN_EMBED_DIM}: matrices too small for bf16 to pay",
        )
    speedup = bf16_matmul_speedup()
    probe = f"{'/'.join(present)}, {capability}; bf16 matmul {speedup:.1f}x fp32"
    if speedup < MIN_PROBE_SPEEDUP:
        return Precision("fp32", f"auto: {probe} (< {MIN_PROBE_SPEEDUP}x)")
    return Precision("bf16", f"auto: {probe}")


def cast_for_inference(model: nn.Module, precision: str, *, copy_model: bool = True) -> nn.Module:
    """The model that runs ``precision`` (fp32, bf16, bf16-all, fp16 or int8; see the module
    docstring).

    With ``copy_model`` the caller's model is left untouched: bf16/fp16 copies
    share every tensor they keep in float32 with it (only the matrix-product
    weights are new); int8 copies the model. Without it, ``model`` itself is cast.
    """
    if precision == "fp32":
        return model
    with torch.inference_mode(False):  # normal tensors even when called under inference mode
        return _cast(model, precision, copy_model=copy_model)


class _Float32Island:
    """Mixin of a module that runs in float32 inside a low-precision model: floating
    inputs cast to float32, autocast off; the output stays float32."""

    def forward(self, *args: object, **kwargs: object) -> object:
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        args = tuple(_as_float32(a) for a in args)
        kwargs = {k: _as_float32(v) for k, v in kwargs.items()}
        with torch.autocast(device, enabled=False):
            return super().forward(*args, **kwargs)


def _as_float32(value: object) -> object:
    """A floating tensor as float32; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()
    return value


class Float32PWAM(_Float32Island, PWAM):
    """A PWAM run in float32 inside a bf16/fp16 model."""


class Float32SpatioTemporalPWAM(_Float32Island, SpatioTemporalPWAM):
    """A video PWAM run in float32 inside a bf16/fp16 model."""


#: the float32 island class of each module type the bf16/fp16 paths keep in float32
FLOAT32_ISLANDS: dict[type, type] = {
    PWAM: Float32PWAM,
    SpatioTemporalPWAM: Float32SpatioTemporalPWAM,
}


def runs_in_float32(module: nn.Module) -> bool:
    """Whether ``module`` is a float32 island of a bf16/fp16 model."""
    return isinstance(module, _Float32Island)


def _cast(model: nn.Module, precision: str, *, copy_model: bool) -> nn.Module:
    if precision == "int8":
        # torch.ao's eager quantisation is deprecated in favour of torchao (not a dependency);
        # it still ships and works in torch 2.13
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r".*(torch\.ao\.quantization|quantize_per)", Warning)
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=not copy_model)
    dtype = _AMP[precision]
    fast_convs = _winograd_convolutions(model, precision)  # built from the float32 weights
    islands = [
        name
        for name, m in model.named_modules()
        if precision in _WITH_ISLANDS and (type(m) in FLOAT32_MODULES or runs_in_float32(m))
    ]
    kept = {id(m) for name in islands for m in model.get_submodule(name).modules()}
    kept |= {id(model.get_submodule(name)) for name in fast_convs}  # replaced below
    cast = [m for m in model.modules() if isinstance(m, MATMUL_MODULES) and id(m) not in kept]
    if copy_model:
        low = {id(p) for m in cast for p in m.parameters(recurse=False)}
        memo: dict[int, object] = {}
        for tensor in [*model.parameters(), *model.buffers()]:  # kept float32: shared, not copied
            if id(tensor) in low:
                memo[id(tensor)] = nn.Parameter(tensor.detach().to(dtype), requires_grad=False)
            else:
                memo[id(tensor)] = tensor
        model = copy.deepcopy(model, memo)
    else:
        for module in cast:
            module.to(dtype)
    for name in islands:
        island = model.get_submodule(name)
        island.__class__ = FLOAT32_ISLANDS.get(type(island), type(island))
    for name, conv in fast_convs.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, conv)
    return model


def _winograd_convolutions(model: nn.Module, precision: str) -> dict[str, nn.Module]:
    """The decoder's 3x3 convolutions in Winograd form (:mod:`lavt.winograd`), by
    module name, for the bf16 policy on a CPU; none otherwise (a GPU's convolution
    library chooses its own algorithm; ``bf16-all`` stays plain autocast)."""
    if precision != "bf16":
        return {}
    out = {}
    for name, decoder in model.named_modules():
        if not isinstance(decoder, SimpleDecoder) or decoder.conv2_2.weight.device.type != "cpu":
            continue
        width = decoder.conv2_2.out_channels
        use, speedup = winograd_choice(width)
        log.info(
            "decoder 3x3 convolutions: %s (probe, %d channels: Winograd %.2fx the direct bf16 "
            "convolution)", "Winograd F(2x2, 3x3)" if use else "direct", width, speedup,
        )  # fmt: skip
        for child, conv in decoder.named_children() if use else ():
            if winograd.supports(conv):
                key = f"{name}.{child}" if name else child
                out[key] = winograd.WinogradConv2d.from_conv(conv, _AMP[precision])
    return out


def check_dtype(dtype: str | torch.dtype | None, *, runtime: str = "torch") -> str:
    """The canonical name of ``dtype``; an exported graph (``runtime`` other than
    torch) takes only ``auto`` and float32. Raises :class:`InputError` naming ``dtype``."""
    key = canonical_dtype(dtype)
    if runtime != "torch" and key not in ("auto", "fp32"):
        raise InputError(
            f"dtype {dtype}: runtime {runtime} runs the graph as exported (float32 or auto; "
            "export with --dtype fp16 for a half-precision graph)",
            param="dtype",
        )
    return key


def prepare_for_inference(
    model: nn.Module,
    device: torch.device,
    dtype: str | torch.dtype | None = None,
    *,
    amp: torch.dtype | None = None,
    copy_model: bool = True,
) -> tuple[nn.Module, Precision]:
    """The model to call for ``dtype`` on ``device`` (logged), and its :class:`Precision`.

    ``dtype`` None keeps the model as given, autocast to ``amp`` (the older
    interface; not with ``dtype``). A model of another runtime (an exported graph)
    takes only ``auto``/``float32``. The returned model is on ``device`` in eval
    mode; call it under ``lavt.runtime.autocast(device, precision.amp)``.
    """
    if dtype is not None and amp is not None:
        raise InputError("give dtype or amp, not both", param="dtype")
    runtime = getattr(model, "runtime", "torch")
    check_dtype(dtype, runtime=runtime)
    if dtype is None or runtime != "torch":
        precision = Precision(canonical_dtype(amp), "autocast around the model as given")
        return model.to(device).eval(), precision
    config = getattr(model, "config", None)
    precision = choose_precision(dtype, device, embed_dim=getattr(config, "embed_dim", None))
    # a low-precision path is announced; float32, the unsurprising case, with --verbose
    level = logging.DEBUG if precision.name == "fp32" else logging.INFO
    log.log(level, "inference dtype %s (%s)", precision.name, precision.reason)
    model = model.to(device).eval()
    return cast_for_inference(model, precision.name, copy_model=copy_model).eval(), precision


def compile_for_inference(
    model: nn.Module, *, freezing: bool = True, mode: str = "default"
) -> nn.Module:
    """``torch.compile`` (inductor) of an inference model (``--compile``).

    With ``freezing`` the weights become constants of the graph (inductor's
    ``freezing``: constant folding, oneDNN weight prepacking on the CPU); it
    applies to calls without gradients (the predictor's ``inference_mode``), and a
    weight changed afterwards is not seen. Shapes are static: each new input shape
    (batch size, image side) compiles once more, which for Swin-B takes minutes on
    a 2-core CPU. Attributes (``config``, ``vocab``) read through to ``model``.
    ``mode`` is torch.compile's (``reduce-overhead``: CUDA graphs on a GPU).
    """
    if not freezing:
        return torch.compile(model, mode=mode, dynamic=False)
    # torch.compile takes a mode or options, not both: the mode's options plus freezing
    options = {**torch._inductor.list_mode_options(mode), "freezing": True}
    return torch.compile(model, dynamic=False, options=options)
