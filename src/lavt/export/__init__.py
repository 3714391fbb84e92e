"""ONNX export of the whole LAVT and an onnxruntime runner with the model's interface.

- :func:`export_onnx`: checkpoint -> one ``.onnx`` graph (image, input_ids,
  attention_mask -> logits) with the config, vocabulary and normalisation in
  its metadata;
- :func:`load_onnx_model` / :class:`OnnxLAVT`: run such a graph where the
  predictor or the evaluator expects a model;
- :func:`load_for_runtime`: the loader for ``runtime="torch"`` or ``"onnxruntime"``.

onnx and onnxruntime are an optional extra (``pip install 'lavt[onnx]'``);
they are imported only when used.
"""

from lavt.export.metadata import FORMAT, OnnxMetadata
from lavt.export.onnx_export import ExportResult, export_onnx
from lavt.export.runner import RUNTIMES, OnnxLAVT, load_for_runtime, load_onnx_model

__all__ = [
    "FORMAT",
    "RUNTIMES",
    "ExportResult",
    "OnnxLAVT",
    "OnnxMetadata",
    "export_onnx",
    "load_for_runtime",
    "load_onnx_model",
]
