"""Export a LAVT (BERT included) as one ONNX graph: image, token ids, mask in; logits out.

::

    lavt export refcoco.pth lavt.onnx --img-size 480

Uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``):
with torch 2.13 it traces the whole model, ``transformers``' BERT included, to
standard opset 17 operators. The dynamo exporter (``dynamo=True``, torch's
default) would add onnxscript as a dependency and was not needed.

The batch axis is dynamic; the image side and the token count are fixed at
export time. The image side cannot follow the input because Swin's geometry is
decided in Python from the feature-map sizes (Liu et al., ICCV 2021): each stage
pads its map to a multiple of the window, the shifted-window attention mask is
built for that padded size (which regions a cyclic shift brings together), and
the decoder upsamples to the next stage's size. The trace records them as
constants, so a graph exported at 480 computes exactly what PyTorch computes at
480 and nothing else. Sides must be multiples of 32 so that every stage halves
an even map (no patch padding hidden in the graph).

After tracing, the graph is simplified with ``onnxslim`` when it is installed
(constant folding, dead shape arithmetic removed; about 6x fewer nodes), kept
only if it still agrees with PyTorch; ``dtype="fp16"`` converts the weights and
activations with ``onnxconverter-common`` while inputs and outputs stay float32.
Every export is checked with ``onnx.checker`` and verified against the PyTorch
model on a batch of padded expressions before anything is written.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lavt.errors import CheckpointError, InputError
from lavt.export.metadata import INPUT_NAMES, OnnxMetadata
from lavt.modeling.lavt import LAVT
from lavt.runtime import atomic_path

log = logging.getLogger("lavt")

DEFAULT_OPSET = 17
MIN_OPSET = 17  # LayerNormalization
MAX_OPSET = 20  # the TorchScript exporter's newest
SIZE_MULTIPLE = 32  # patch 4 x three 2x2 merges
EXPORT_DTYPES = ("fp32", "fp16")
#: largest |onnxruntime - PyTorch| / max |PyTorch logit| an export may show
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}
PROTOBUF_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class ExportResult:
    path: Path
    metadata: OnnxMetadata
    opset: int
    simplified: bool
    num_nodes: int
    num_bytes: int
    max_relative_error: float  # vs PyTorch on the verification batch
    seconds: float


def export_onnx(
    source: str | os.PathLike | LAVT,
    output: str | os.PathLike,
    *,
    img_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    max_tokens: int | None = None,
    dynamic_batch: bool = True,
    dtype: str = "fp32",
    simplify: bool = True,
) -> ExportResult:
    """Export ``source`` (a checkpoint path or a LAVT) to ``output`` (.onnx), atomically.

    ``img_size`` (default: the model's) and ``max_tokens`` (default: its
    ``max_text_len``) are fixed in the graph; the batch axis is dynamic unless
    ``dynamic_batch`` is False (then it is 1). Raises :class:`InputError` for bad
    arguments and :class:`CheckpointError` for a checkpoint that cannot be read
    or exported; nothing is written then.
    """
    start = time.perf_counter()
    _require_packages()
    output = Path(output)
    if output.suffix != ".onnx":
        raise InputError(f"{output}: the output file must end in .onnx")
    if output.is_dir():
        raise InputError(f"{output}: is a directory")
    if dtype not in EXPORT_DTYPES:
        raise InputError(
            f"dtype {dtype!r}: expected one of {', '.join(EXPORT_DTYPES)}", param="dtype"
        )
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"opset {opset}: must be in {MIN_OPSET}..{MAX_OPSET}", param="opset")
    model, where = _load(source)
    config = model.config
    img_size = _check_img_size(config.img_size if img_size is None else img_size)
    max_tokens = _check_max_tokens(
        config.max_text_len if max_tokens is None else max_tokens,
        config.text.max_position_embeddings,
    )
    metadata = OnnxMetadata(
        config=config.replace(img_size=img_size, max_text_len=max_tokens),
        vocab=_vocabulary(model),
        img_size=img_size,
        max_tokens=max_tokens,
        dtype=dtype,
        dynamic_batch=dynamic_batch,
        source=where,
        producer=_producer(),
    )
    graph, error, simplified = _build_graph(model, metadata, opset=opset, simplify=simplify)
    for key, value in metadata.to_props().items():
        graph.metadata_props.add(key=key, value=value)
    _check(graph, where)
    with atomic_path(output) as tmp:
        _save(graph, tmp)
    result = ExportResult(
        path=output,
        metadata=metadata,
        opset=opset,
        simplified=simplified,
        num_nodes=len(graph.graph.node),
        num_bytes=output.stat().st_size,
        max_relative_error=error,
        seconds=time.perf_counter() - start,
    )
    log.info(
        "exported %s -> %s (%d nodes, %.1f MB, max rel. error %.2e, %.1f s)",
        where, output, result.num_nodes, result.num_bytes / 1e6, error, result.seconds,
    )  # fmt: skip
    return result


# ----------------------------------------------------------------------------- checks


def _require_packages() -> None:
    import importlib.util

    missing = [p for p in ("onnx", "onnxruntime") if importlib.util.find_spec(p) is None]
    if missing:
        raise InputError(f"ONNX export needs {' and '.join(missing)} (pip install 'lavt[onnx]')")


def _load(source: str | os.PathLike | LAVT) -> tuple[LAVT, str]:
    if isinstance(source, nn.Module):
        return source, type(source).__name__
    from lavt.checkpoint import load_model

    path = Path(source)
    if path.suffix == ".onnx":
        raise CheckpointError(f"{path}: is already an ONNX model; export needs a checkpoint")
    return load_model(path, device="cpu"), path.name


def _check_img_size(size: int) -> int:
    if size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
        raise InputError(
            f"img_size {size}: must be a positive multiple of {SIZE_MULTIPLE} "
            "(the four Swin stages halve the map three times after a 4x4 patch)",
            param="img_size",
        )
    return size


def _check_max_tokens(tokens: int, positions: int) -> int:
    if not 2 <= tokens <= positions:
        raise InputError(
            f"max_tokens {tokens}: must be in 2..{positions} (the text encoder's positions)",
            param="max_tokens",
        )
    return tokens


def _vocabulary(model: LAVT) -> list[str]:
    """The model's own vocabulary, or the bundled bert-base-uncased one it was built for."""
    if model.vocab is not None:
        return list(model.vocab)
    from lavt.assets import bert_vocab_path

    return bert_vocab_path().read_text(encoding="utf-8").splitlines()


def _producer() -> str:
    import onnx

    from lavt import __version__

    return f"lavt {__version__}, torch {torch.__version__}, onnx {onnx.__version__}"


# ----------------------------------------------------------------------------- graph


class _Exportable(nn.Module):
    """The traced function: float32 outputs whatever the model's own dtype.

    Mask logits (B, 2, H, W); with a no-target head also its logits (B, 2).
    """

    def __init__(self, model: LAVT) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, image: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.model.no_target_head is None:
            return self.model(image, input_ids, attention_mask).float()
        logits, no_target = self.model(image, input_ids, attention_mask, return_no_target=True)
        return logits.float(), no_target.float()


def example_inputs(
    batch: int, metadata: OnnxMetadata, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random image batch and token ids with a different padded length per row.

    Returns image (B, 3, S, S) float32, input_ids and attention_mask (B, N) int64.
    """
    generator = torch.Generator().manual_seed(seed)
    size, tokens = metadata.img_size, metadata.max_tokens
    image = torch.randn(batch, 3, size, size, generator=generator)
    vocab = metadata.config.text.vocab_size
    ids = torch.randint(1, vocab, (batch, tokens), generator=generator)
    lengths = [max(2, tokens - (row * 7) % (tokens - 1)) for row in range(batch)]
    mask = (torch.arange(tokens)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, N)
    return image, ids * mask, mask


def _trace(model: LAVT, metadata: OnnxMetadata, opset: int, path: Path) -> None:
    batch = 2 if metadata.dynamic_batch else 1  # 2: no size-1 specialisation in the trace
    dynamic = {name: {0: "batch"} for name in (*INPUT_NAMES, *metadata.output_names)}
    with warnings.catch_warnings():
        # size-dependent Python branches are expected: H, W and N are fixed by design
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Exportable(model).eval(),
            example_inputs(batch, metadata),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(metadata.output_names),
            dynamic_axes=dynamic if metadata.dynamic_batch else None,
            do_constant_folding=True,
        )


def _build_graph(model: LAVT, metadata: OnnxMetadata, *, opset: int, simplify: bool):
    """Traced (and maybe simplified, maybe fp16) graph, its verified error, and if simplified."""
    import tempfile

    import onnx

    from lavt.export.graph_tools import simplify_graph, to_float16

    model = _cpu_float32(model)
    with tempfile.TemporaryDirectory(prefix="lavt-export-") as folder:
        traced = Path(folder) / "traced.onnx"
        try:
            with torch.no_grad():
                _trace(model, metadata, opset, traced)
        except (RuntimeError, torch.onnx.errors.OnnxExporterError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"{metadata.source}: cannot be exported to ONNX ({first})"
            ) from None
        graph = onnx.load(str(traced))
    expected, feeds = _reference(model, metadata)
    candidates = [(graph, False)]
    if simplify:
        slim = simplify_graph(graph)
        if slim is not None:
            candidates.insert(0, (slim, True))
    tolerance = TOLERANCE[metadata.dtype]
    error = float("inf")
    for candidate, simplified in candidates:
        if metadata.dtype == "fp16":
            candidate = to_float16(candidate)
        error = _relative_error(candidate, feeds, expected)
        if error <= tolerance:
            return candidate, error, simplified
        log.warning("ONNX graph (simplified=%s) disagrees with PyTorch: %.2e", simplified, error)
    raise CheckpointError(
        f"{metadata.source}: the exported graph disagrees with PyTorch "
        f"(max relative error {error:.2e} > {tolerance:g})"
    )


def _cpu_float32(model: LAVT) -> LAVT:
    """The model in eval mode on the CPU in float32; a copy if it is elsewhere."""
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device.type != "cpu" or (t.is_floating_point() and t.dtype != torch.float32)
           for t in tensors):  # fmt: skip
        import copy

        model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    return model.eval()


def _reference(
    model: LAVT, metadata: OnnxMetadata
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """PyTorch outputs by name on a verification batch (3 rows if dynamic: not the
    traced size), and the feeds that gave them."""
    inputs = example_inputs(3 if metadata.dynamic_batch else 1, metadata, seed=1)
    with torch.no_grad():
        outputs = _Exportable(model)(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    expected = {name: t.numpy() for name, t in zip(metadata.output_names, outputs, strict=True)}
    return expected, {name: t.numpy() for name, t in zip(INPUT_NAMES, inputs, strict=True)}


def _relative_error(graph, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    """Largest |onnxruntime - PyTorch| / max |PyTorch| over the outputs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(
        graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    got = session.run(list(expected), feeds)
    errors = []
    for value, want in zip(got, expected.values(), strict=True):
        scale = max(float(np.abs(want).max()), 1e-12)
        errors.append(float(np.abs(value.astype(np.float32) - want).max()) / scale)
    return max(errors)


def _check(graph, where: str) -> None:
    import onnx

    if graph.ByteSize() > PROTOBUF_LIMIT:
        raise CheckpointError(f"{where}: the graph is over 2 GB, beyond one ONNX protobuf file")
    try:
        onnx.checker.check_model(graph, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{where}: the exported graph fails onnx.checker ({first})") from None


def _save(graph, path: Path) -> None:
    import onnx

    onnx.save_model(graph, str(path))
