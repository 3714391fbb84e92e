"""``lavt predict --coco-results results.json``: the predictions as a COCO results file.

The standard list that ``pycocotools.coco.COCO.loadRes`` and FiftyOne read::

    [{"image_id": 42, "category_id": 1, "segmentation": {"size": [H, W], "counts": "..."},
      "score": 0.93, "text": "the red circle", "image": "photos/COCO_val2014_000000000042.jpg"}]

- ``segmentation``: COCO compressed RLE of the mask at the image's size
  (:func:`lavt.predict.encode.encode_prediction`, the encoder of ``lavt serve``);
- ``score``: the mean foreground probability over the mask;
- ``image_id``: the number that ends every image's file stem when all of them end in
  digits and those numbers differ (COCO's ``COCO_val2014_000000000042.jpg`` -> 42, so the
  file matches a COCO ground truth); otherwise the image's 1-based position in the run;
- ``category_id``: the expression's 1-based position among this run's expressions (the
  order of ``--text``): referring expressions have no COCO category, and one id per
  expression keeps their results apart. ``text`` names it;
- an expression for which nothing was found (empty mask) has no entry, as a detector
  writes no detection: an empty mask would count as a false positive of area 0.

Each mask is read back from the PNG ``lavt predict`` wrote, one at a time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lavt.predict.encode import encode_prediction
from lavt.predict.predictor import Prediction
from lavt.runtime import atomic_write_text

_TRAILING_NUMBER = re.compile(r"(\d+)$")


def image_ids(images: Sequence[str | os.PathLike]) -> dict[str, int]:
    """``{str(image): image_id}`` by the rule above (numbers from the stems, or positions)."""
    unique = list(dict.fromkeys(str(i) for i in images))
    found = [_TRAILING_NUMBER.search(Path(i).stem) for i in unique]
    numbers = [int(m.group(1)) for m in found if m is not None]
    if len(numbers) == len(unique) and len(set(numbers)) == len(numbers):
        return dict(zip(unique, numbers, strict=True))
    return {image: k + 1 for k, image in enumerate(unique)}


def coco_results(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``lavt predict``'s ``predictions.jsonl`` lines of one run -> COCO results."""
    ids = image_ids([line["image"] for line in lines])
    categories = {text: k + 1 for k, text in enumerate(dict.fromkeys(x["text"] for x in lines))}
    results = []
    for line in lines:
        if not line["found"]:
            continue
        with Image.open(line["mask"]) as png:
            mask = np.asarray(png.convert("L")) > 127  # (H, W) bool, as written
        if not mask.any():
            continue
        score = line["mean_foreground_probability"]
        encoded = encode_prediction(Prediction(line["text"], mask, score, found=True))
        results.append(
            {
                "image_id": ids[line["image"]],
                "category_id": categories[line["text"]],
                "segmentation": encoded["rle"],
                "score": encoded["score"],
                "text": line["text"],
                "image": line["image"],
            }
        )
    return results


def write_coco_results(path: str | os.PathLike, lines: Sequence[dict[str, Any]]) -> int:
    """Write the COCO results of ``lines`` to ``path`` atomically; returns their number."""
    results = coco_results(lines)
    atomic_write_text(path, json.dumps(results) + "\n")
    return len(results)
