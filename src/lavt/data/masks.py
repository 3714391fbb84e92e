"""COCO segmentations (polygons, RLE compressed or not) -> masks, and their checks.

Polygons are rasterised by pycocotools (the reference's rasteriser, so masks
match it pixel for pixel); run-length encodings are decoded here with numpy.
:func:`segmentation_problem` checks a segmentation without decoding it, so that
a malformed annotation file is reported when the index is loaded, naming the
annotation, instead of failing part-way through an evaluation.

COCO's run-length encoding: counts alternate background/object run lengths,
starting with background, over the pixels in column-major order; the
compressed form writes each count (after the third, as the difference to the
count two places before) in 5-bit groups, least significant first, as the
characters ``chr(48 + group)``, bit 0x20 meaning "more groups follow" and bit
0x10 of the last group the sign.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np


def decode_counts(text: str | bytes) -> list[int]:
    """Run lengths of a compressed COCO RLE string; ValueError if it is malformed."""
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    p = 0
    while p < len(data):
        value, shift, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError("ends in the middle of a number")
            group = data[p] - 48
            if not 0 <= group < 64:
                raise ValueError(f"character {chr(data[p])!r} is not part of an RLE string")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            p += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def counts_to_mask(counts: list[int], height: int, width: int) -> np.ndarray:
    """Uncompressed run lengths -> (H, W) uint8 mask (column-major runs, background first)."""
    values = np.arange(len(counts), dtype=np.uint8) % 2  # 0, 1, 0, ... per run
    flat = np.repeat(values, np.asarray(counts, dtype=np.int64))  # (H * W,)
    return np.ascontiguousarray(flat.reshape(width, height).T)  # (W, H) -> (H, W)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _counts_problem(counts: Any, height: int, width: int) -> str | None:
    if isinstance(counts, str | bytes):
        try:
            counts = decode_counts(counts)
        except (ValueError, UnicodeEncodeError) as err:
            return f"RLE counts are not a valid compressed string ({err})"
    elif not isinstance(counts, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in counts
    ):
        return "RLE counts must be a string or a list of integers"
    if any(c < 0 for c in counts):
        return "RLE counts hold a negative run length"
    if sum(counts) != height * width:
        pixels = height * width
        return f"RLE counts cover {sum(counts)} pixels, the {height}x{width} image has {pixels}"
    return None


def segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
    """What is wrong with a COCO segmentation for an image of (height, width), or None."""
    if isinstance(segmentation, list):
        for k, polygon in enumerate(segmentation):
            if not isinstance(polygon, list) or not all(_is_number(v) for v in polygon):
                return f"polygon #{k} is not a list of numbers"
            if len(polygon) % 2:
                return f"polygon #{k} has an odd number of coordinates"
        return None
    if isinstance(segmentation, dict) and "counts" in segmentation:
        size = segmentation.get("size")
        if list(size or ()) != [height, width]:
            return f"RLE size {size} differs from the image's [height, width] [{height}, {width}]"
        return _counts_problem(segmentation["counts"], height, width)
    return f"unsupported segmentation of type {type(segmentation).__name__}"


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """COCO polygons or RLE (compressed or not) -> (H, W) uint8 union of the parts.

    Expects a segmentation that :func:`segmentation_problem` accepts.
    """
    if isinstance(segmentation, list):  # polygons: [[x1, y1, ...], ...]
        from pycocotools import mask as mask_utils

        polygons = [[float(v) for v in p] for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), dtype=np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        counts = decode_counts(rle["counts"])
    elif isinstance(segmentation["counts"], list):  # uncompressed RLE
        counts = segmentation["counts"]
    else:
        counts = decode_counts(segmentation["counts"])
    return counts_to_mask(counts, height, width)


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) mask (non-zero = object) -> COCO RLE ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
