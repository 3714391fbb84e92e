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
    ((rle, bbox, area),) = encode_masks(np.asfortranarray(mask.astype(np.uint8))[:, :, None])
    result = result_fields(
        prediction.text, rle, bbox, area, prediction.mean_foreground_probability,
        prediction.found, prediction.no_target_probability,
    )  # fmt: skip
    if return_png:
        result["png"] = base64.b64encode(mask_png(mask)).decode("ascii")
    return result


def encode_masks(masks: np.ndarray) -> list[tuple[dict, list[int], int]]:
    """(H, W, E) uint8 masks in Fortran (column-major) order -> for each: its COCO
    compressed RLE ``{"size": [H, W], "counts": str}``, ``[x, y, w, h]`` and area.

    One call encodes them all (``pycocotools.mask.encode`` takes the E masks at once).
    """
    rles = mask_utils.encode(masks)
    boxes, areas = mask_utils.toBbox(rles), mask_utils.area(rles)
    return [
        (
            {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            [int(v) for v in box],
            int(area),
        )
        for rle, box, area in zip(rles, boxes, areas, strict=True)
    ]


def result_fields(
    text: str,
    rle: dict,
    bbox: list[int],
    area: int,
    score: float,
    found: bool | None,
    no_target_probability: float | None,
) -> dict:
    """The result's fields, in their order, with the score and probability rounded."""
    result = {"text": text, "rle": rle, "bbox": bbox, "area": area}
    result |= {"score": round(score, 6), "found": bool(found)}
    if no_target_probability is not None:
        result["no_target_probability"] = round(no_target_probability, 6)
    return result
