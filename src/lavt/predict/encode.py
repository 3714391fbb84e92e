"""A prediction -> its JSON result (lavt serve, bulk inference): COCO RLE, box, area, score, PNG."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from lavt.predict.predictor import Prediction


def mask_png(mask: np.ndarray) -> bytes:
    """(H, W) bool -> 8-bit grayscale PNG bytes (255 on the object)."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def encode_prediction(prediction: Prediction, *, return_png: bool = False) -> dict:
    """``{"text", "rle", "bbox", "area", "score", "found"[, "no_target_probability"][, "png"]}``
    at the image's own size.

    ``rle`` is COCO's compressed RLE (``pycocotools.mask.encode`` on the
    column-major mask) with ``counts`` as a string; ``bbox`` is ``[x, y, w, h]``;
    ``score`` is the mean foreground probability over the mask (0 when empty);
    ``found`` is false when the expression names no object (the mask is then
    empty); ``no_target_probability`` comes from a model's no-target head.
    """
    mask = prediction.mask  # (H, W) bool
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    result = {
        "text": prediction.text,
        "rle": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "bbox": [int(v) for v in mask_utils.toBbox(rle)],
        "area": int(mask_utils.area(rle)),
        "score": round(prediction.mean_foreground_probability, 6),
        "found": bool(prediction.found),
    }
    if prediction.no_target_probability is not None:
        result["no_target_probability"] = round(prediction.no_target_probability, 6)
    if return_png:
        result["png"] = base64.b64encode(mask_png(mask)).decode("ascii")
    return result
