"""A folder of LabelMe JSON files (one per image; subfolders included).

Each file: ``imagePath`` (relative to the JSON file's folder), ``imageHeight``,
``imageWidth``, ``flags`` and ``shapes``. A shape with a ``description`` is a
referred object; its expressions are the description's non-empty lines. Shapes
without one are scenery. Supported mask shapes: ``polygon`` (3 or more points),
``rectangle`` (two opposite corners) and ``circle`` (centre, then a point on the
circle; drawn as a 32-gon). Shapes sharing a ``group_id`` (and label) are the parts
of one object, as LabelMe means it; their descriptions are joined.

The split comes from the file's ``flags``: ``{"split": "val"}``, or one true
boolean flag named after a split (``{"val": true}``); neither: assigned on import.

The image's name in the dataset is its path relative to SRC (it must lie inside
SRC); with ``--images DIR`` the image is ``DIR/<file name of imagePath>``.
Problems name the file and the shape index.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath
from typing import Any

from lavt.data.formats.base import (
    ImageSizes,
    ImportRecord,
    Problems,
    Target,
    is_number,
    name_problem,
    read_json_file,
    split_problem,
    target_from,
)

SPLIT_FLAGS = ("train", "val", "test", "testA", "testB", "testC")
CIRCLE_POINTS = 32


def read(src: Path, *, images: Path | None, problems: Problems) -> Iterator[ImportRecord]:
    """Records of the described shapes of every ``*.json`` under the folder ``src``."""
    if not src.is_dir():
        problems.add(str(src), "LabelMe folder not found")
        return
    files = sorted(src.rglob("*.json"))
    if not files:
        problems.add(str(src), "holds no LabelMe .json file")
    sizes = ImageSizes()
    for path in files:
        yield from _file_records(path, src, images, sizes, problems)


def _load(path: Path, problems: Problems) -> dict | None:
    data = read_json_file(path, problems)
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        problems.add(str(path), "not a LabelMe file (no 'shapes' list)")
        return None
    return data


def _image(data: dict, path: Path, src: Path, images: Path | None) -> tuple[str, Path] | str:
    """(name in the dataset, file) of a LabelMe file's image, or the problem."""
    given = data.get("imagePath")
    if not isinstance(given, str) or not given.strip():
        return "imagePath is missing (an embedded imageData alone is not read)"
    if images is not None:
        name = PureWindowsPath(given).name  # the last part, whatever the separator
        return name, images / name
    joined = os.path.normpath(path.parent / given.replace("\\", "/"))
    name = Path(os.path.relpath(joined, src)).as_posix()
    problem = name_problem(name)
    if problem:
        return f"imagePath {given!r} lies outside {src}; pass --images DIR"
    return name, Path(joined)


def _split(flags: Any) -> str | None:
    """The split the flags give (or None), or raises ValueError with the problem."""
    if flags is None:
        return None
    if not isinstance(flags, dict):
        raise ValueError("flags must be an object")
    if "split" in flags:
        problem = split_problem(flags["split"])
        if problem:
            raise ValueError(f"flags: {problem}")
        return flags["split"]
    chosen = [k for k in SPLIT_FLAGS if flags.get(k) is True]
    if len(chosen) > 1:
        raise ValueError(f"flags name several splits ({', '.join(chosen)})")
    return chosen[0] if chosen else None


def _file_records(path, src, images, sizes, problems) -> Iterator[ImportRecord]:
    data = _load(path, problems)
    if data is None:
        return
    image = _image(data, path, src, images)
    try:
        split = _split(data.get("flags"))
    except ValueError as err:
        problems.add(str(path), str(err))
        return
    if isinstance(image, str):
        problems.add(str(path), image)
        return
    name, image_path = image
    size = sizes.get(image_path)
    if isinstance(size, str):
        problems.add(str(path), size)
        return
    declared = (data.get("imageWidth"), data.get("imageHeight"))
    if declared != (None, None) and declared != size:
        problems.add(
            str(path),
            f"image {name} is {size[0]}x{size[1]}, imageWidth x imageHeight say "
            f"{declared[0]}x{declared[1]}",
        )
        return
    width, height = size
    for where, label, polygons, expressions in _objects(data["shapes"], path, problems):
        target = target_from(polygons, height, width)
        if isinstance(target, Target):
            yield ImportRecord(
                name, image_path, height, width, [target], expressions, split, label, where
            )
        else:
            problems.add(where, target)


def _objects(shapes: list, path: Path, problems: Problems):
    """(location, label, polygons, expressions) per described object, groups merged."""
    groups: dict[tuple, list] = {}
    order: list[tuple] = []
    for k, shape in enumerate(shapes):
        where = f"{path}: shape #{k}"
        if not isinstance(shape, dict):
            problems.add(where, "is not a JSON object")
            continue
        description = shape.get("description") or ""
        if not isinstance(description, str):
            problems.add(where, "description must be a string (expressions, one per line)")
            continue
        expressions = [line.strip() for line in description.splitlines() if line.strip()]
        label = str(shape.get("label") or "object")
        group = shape.get("group_id")
        key = ("group", group, label) if group is not None else ("shape", k)
        if not expressions and key not in groups and group is None:
            continue  # scenery
        polygon = _polygon(shape)
        if isinstance(polygon, str):
            if expressions or group is not None:
                problems.add(where, polygon)
            continue
        if key not in groups:
            groups[key] = [where, label, [], []]
            order.append(key)
        groups[key][2].append(polygon)
        groups[key][3].extend(expressions)
    for key in order:
        where, label, polygons, expressions = groups[key]
        if expressions:  # a group none of whose shapes is described is scenery
            yield where, label, polygons, list(dict.fromkeys(expressions))


def _polygon(shape: dict) -> list[float] | str:
    """A shape's outline as a flat polygon [x1, y1, ...], or the problem."""
    kind = shape.get("shape_type") or "polygon"
    points = shape.get("points")
    if not isinstance(points, list) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and all(is_number(v) for v in p) for p in points
    ):
        return "points must be a list of [x, y] number pairs"
    if kind == "polygon":
        if len(points) < 3:
            return f"a polygon needs 3 or more points, found {len(points)}"
        return [float(v) for p in points for v in p]
    if kind == "rectangle":
        if len(points) < 2:
            return "a rectangle needs two corner points"
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        return [x0, y0, x1, y0, x1, y1, x0, y1]
    if kind == "circle":
        if len(points) != 2:
            return "a circle needs its centre and a point on it"
        (cx, cy), (px, py) = points
        r = math.hypot(px - cx, py - cy)
        angles = [2 * math.pi * i / CIRCLE_POINTS for i in range(CIRCLE_POINTS)]
        return [v for a in angles for v in (cx + r * math.cos(a), cy + r * math.sin(a))]
    return f"shape_type {kind!r} cannot be a mask (polygon, rectangle, circle)"
