"""The body of a ``POST /v1/segment`` answer, built off the event loop.

One call per request in a worker thread does all the per-request work after the
forward: masks at the image's size (:meth:`ModelAdapter.postprocess`), their
encoding (:func:`lavt.predict.encode.encode_prediction`: COCO RLE, box, PNG only
when asked) and the JSON text, so that the event loop only writes bytes. The
bytes are those Starlette's ``JSONResponse`` renders for the same content
(compact separators, UTF-8, no NaN). Upsampling, PIL's PNG encoder and the image
decoder release the GIL; the RLE encoder and ``json`` are a few microseconds a
mask at the bundled model's sizes, so a faster JSON library does not pay.
"""

from __future__ import annotations

import json

import torch

from lavt.predict.encode import encode_prediction
from lavt.serve.adapter import ModelAdapter, PreparedImage


def render_json(content: dict) -> bytes:
    """``content`` as Starlette's ``JSONResponse`` renders it."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def segment_body(
    adapter: ModelAdapter,
    outputs: tuple[torch.Tensor, torch.Tensor | None],
    prepared: PreparedImage,
    *,
    return_png: bool = False,
) -> bytes:
    """(mask logits (E, 2, S, S), no-target logits (E, 2) or None) of one request ->
    its JSON answer ``{width, height, model, results}`` as bytes; each result also
    names the expression's ``unknown_words`` (outside the model's vocabulary)."""
    predictions = adapter.postprocess(outputs, prepared.texts, prepared.height, prepared.width)
    return render_json(
        {
            "width": prepared.width,
            "height": prepared.height,
            "model": adapter.name,
            "results": [
                {**encode_prediction(p, return_png=return_png), "unknown_words": words}
                for p, words in zip(predictions, prepared.unknown_words, strict=True)
            ],
        }
    )
