"""COCO instances JSON whose referred annotations carry ``"expressions": [...]``.

``images`` (id, file_name, height, width, optional ``split``), ``annotations`` (id,
image_id, category_id, segmentation as polygons or RLE) and optional
``categories`` (their names become the dataset's categories). An annotation
without ``expressions`` is scenery: not referred, not imported. Image files are
under ``--images`` (default: the JSON file's folder) by ``file_name``. Problems name
the file and the image or annotation id. The JSON file is read whole (as COCO
tools do); masks are decoded one at a time, to be checked, and dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lavt.data.formats.base import (
    ImageSizes,
    ImportRecord,
    Problems,
    expressions_problem,
    is_number,
    name_problem,
    read_json_file,
    split_problem,
    target_from,
)


def read(src: Path, *, images: Path | None, problems: Problems) -> Iterator[ImportRecord]:
    """Records of the referred annotations of the COCO file ``src``."""
    data = _load(src, problems)
    if data is None:
        return
    image_root = images if images is not None else src.parent
    records = _images(data["images"], src, problems)
    names = {
        c.get("id"): str(c.get("name") or "object")
        for c in data.get("categories") or []
        if isinstance(c, dict)
    }
    sizes = ImageSizes()
    for position, ann in enumerate(data["annotations"]):
        if isinstance(ann, dict) and "expressions" not in ann:
            continue  # scenery
        where = f"{src}: annotation " + (
            str(ann["id"]) if isinstance(ann, dict) and "id" in ann else f"#{position}"
        )
        record = _record(ann, where, records, names, image_root, sizes, problems)
        if record is not None:
            yield record


def _load(src: Path, problems: Problems) -> dict | None:
    if not src.is_file():
        problems.add(str(src), "COCO file not found")
        return None
    data = read_json_file(src, problems)
    if data is None:
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations")
    ):
        problems.add(str(src), "expected a JSON object with 'images' and 'annotations' lists")
        return None
    return data


def _images(items: list, src: Path, problems: Problems) -> dict[Any, dict]:
    """Valid image records by id; the others are reported."""
    out: dict[Any, dict] = {}
    for position, image in enumerate(items):
        if not isinstance(image, dict) or "id" not in image:
            problems.add(f"{src}: image #{position}", "lacks an id")
            continue
        where = f"{src}: image {image['id']}"
        missing = [k for k in ("file_name", "height", "width") if k not in image]
        problem = f"lacks {', '.join(missing)}" if missing else name_problem(image["file_name"])
        for key in ("height", "width"):
            value = image.get(key)
            if problem is None and not (is_number(value) and int(value) == value and value > 0):
                problem = f"{key} {value!r} is not a positive integer"
        problem = problem or split_problem(image.get("split"))
        if problem is None and image["id"] in out:
            problem = "a second image with this id"
        if problem:
            problems.add(where, problem)
        else:
            out[image["id"]] = image
    return out


def _record(ann, where, images, names, image_root, sizes, problems) -> ImportRecord | None:
    if not isinstance(ann, dict):
        problems.add(where, "is not a JSON object")
        return None
    missing = [k for k in ("image_id", "segmentation") if k not in ann]
    problem = f"lacks {', '.join(missing)}" if missing else expressions_problem(ann["expressions"])
    if problem is None and ann["image_id"] not in images:
        problem = f"image_id {ann['image_id']!r} is not among the valid images"
    if problem:
        problems.add(where, problem)
        return None
    image = images[ann["image_id"]]
    height, width = int(image["height"]), int(image["width"])
    path = image_root / image["file_name"]
    size = sizes.get(path)
    problem = size if isinstance(size, str) else None
    if problem is None and size != (width, height):
        problem = (
            f"image {image['file_name']} is {size[0]}x{size[1]}, images[] says {width}x{height}"
        )
    if problem:
        if sizes.first_report(path):  # once per image, at its first referred annotation
            problems.add(where, problem)
        return None
    target = target_from(ann["segmentation"], height, width)
    if isinstance(target, str):
        problems.add(where, f"segmentation: {target}")
        return None
    return ImportRecord(
        image=Path(image["file_name"]).as_posix(),
        image_path=path,
        height=height,
        width=width,
        targets=[target],
        expressions=[t.strip() for t in ann["expressions"]],
        split=image.get("split"),
        category=names.get(ann.get("category_id"), "object"),
        where=where,
    )
