"""The project's own format: one JSON object per line, one line per referred object.

``{"image": "images/a.jpg", "mask": MASK, "expressions": ["the blue mug", ...],
"split": "train", "category": "mug"}`` (``split`` and ``category`` optional; docs/data.md).
``image`` is relative to the image folder (default: the JSONL file's folder);
``MASK`` is

- a PNG path, relative to the JSONL file's folder: non-zero pixels are the object
  (for colour images any non-zero colour channel; alpha is ignored);
- ``{"polygons": [[x1, y1, x2, y2, ...], ...]}`` in pixels;
- ``{"rle": {"size": [h, w], "counts": "..."}}``: COCO RLE (compressed string, or
  a list of run lengths);
- a list of these: several objects (a generalized dataset);
- ``null``: no object (a generalized dataset).

Lines are read one at a time; blank lines are skipped. Problems name the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from lavt.data.formats.base import (
    ImageSizes,
    ImportRecord,
    Problems,
    Target,
    expressions_problem,
    name_problem,
    split_problem,
    target_from,
    target_from_mask,
)
from lavt.data.masks import encode_rle

MASK_FORMS = 'a PNG path, {"polygons": ...}, {"rle": ...}, a list of these or null'


def read(src: Path, *, images: Path | None, problems: Problems) -> Iterator[ImportRecord]:
    """Records of the JSONL file ``src``; problems go to ``problems``."""
    if not src.is_file():
        problems.add(str(src), "JSONL file not found")
        return
    image_root = images if images is not None else src.parent
    sizes = ImageSizes()
    try:
        with open(src, encoding="utf-8-sig") as lines:  # a BOM is allowed
            for lineno, line in enumerate(lines, 1):
                if line.strip():
                    record = _record(
                        line, f"{src}:{lineno}", src.parent, image_root, sizes, problems
                    )
                    if record is not None:
                        yield record
    except UnicodeDecodeError as err:
        problems.add(str(src), f"not UTF-8 text ({err.reason} at byte {err.start})")


def _record(line, where, folder, image_root, sizes, problems) -> ImportRecord | None:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        problems.add(where, f"malformed JSON ({err.msg} at column {err.colno})")
        return None
    if not isinstance(item, dict):
        problems.add(where, f"expected a JSON object, found {type(item).__name__}")
        return None
    missing = [k for k in ("image", "mask", "expressions") if k not in item]
    problem = (
        f"lacks {', '.join(missing)}"
        if missing
        else name_problem(item["image"])
        or expressions_problem(item["expressions"])
        or split_problem(item.get("split"))
    )
    if problem is None and not isinstance(item.get("category", ""), str):
        problem = "category must be a string"
    if problem:
        problems.add(where, problem)
        return None
    path = image_root / item["image"]
    size = sizes.get(path)
    if isinstance(size, str):
        if sizes.first_report(path):  # once per image, at its first line
            problems.add(where, size)
        return None
    width, height = size
    targets = _targets(item["mask"], folder, height, width)
    if isinstance(targets, str):
        problems.add(where, targets)
        return None
    return ImportRecord(
        image=Path(item["image"]).as_posix(),
        image_path=path,
        height=height,
        width=width,
        targets=targets,
        expressions=[t.strip() for t in item["expressions"]],
        split=item.get("split"),
        category=item.get("category") or "object",
        where=where,
    )


def _targets(mask: Any, folder: Path, height: int, width: int) -> list[Target] | str:
    """The targets of a line's ``mask`` (empty for null), or the problem."""
    if mask is None:
        return []
    if isinstance(mask, list):
        if not mask:
            return "mask: an empty list (use null for no object)"
        out = []
        for k, part in enumerate(mask):
            if isinstance(part, list) or part is None:
                return f"mask #{k}: must be a PNG path, polygons or RLE"
            target = _target(part, folder, height, width)
            if isinstance(target, str):
                return f"mask #{k}: {target}"
            out.append(target)
        return out
    target = _target(mask, folder, height, width)
    return f"mask: {target}" if isinstance(target, str) else [target]


def _target(mask: Any, folder: Path, height: int, width: int) -> Target | str:
    if isinstance(mask, str):
        return _png_target(folder / mask, mask, height, width)
    if isinstance(mask, dict) and set(mask) == {"polygons"}:
        polygons = mask["polygons"]
        if not isinstance(polygons, list):
            return "polygons must be a list of [x1, y1, x2, y2, ...] lists"
        return target_from(polygons, height, width)
    if isinstance(mask, dict) and set(mask) == {"rle"}:
        rle = mask["rle"]
        if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
            return 'rle must be {"size": [h, w], "counts": ...}'
        return target_from({"size": rle["size"], "counts": rle["counts"]}, height, width)
    return f"must be {MASK_FORMS}"


def _png_target(path: Path, name: str, height: int, width: int) -> Target | str:
    """A mask image -> compressed RLE; its size must be the image's."""
    try:
        with Image.open(path) as image:
            if image.size != (width, height):
                w, h = image.size
                return f"mask {name} is {w}x{h}, the image is {width}x{height}"
            if image.mode in ("RGBA", "LA", "PA"):
                image = image.convert("RGB" if image.mode == "RGBA" else "L")
            pixels = np.asarray(image)  # (H, W) or (H, W, C)
    except FileNotFoundError:
        return f"mask file {name} not found"
    except (UnidentifiedImageError, OSError, ValueError) as err:
        return f"mask file {name} is not a readable image ({type(err).__name__})"
    mask = (pixels.reshape(height, width, -1) != 0).any(axis=2)  # (H, W) bool
    return target_from_mask(mask, encode_rle(mask))
