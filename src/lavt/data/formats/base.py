"""What every importer yields, and the checks they share (no format imports another).

A format module (``jsonl``, ``coco``, ``labelme``) has one function
``read(src, *, images, problems) -> Iterator[ImportRecord]``: it parses and checks
its files, reports every problem to ``problems`` with its location (file and line,
annotation id or shape index) and yields one :class:`ImportRecord` per referred
object (or group of objects, or none) whose checks passed. Masks are decoded only
to be checked and measured, then dropped: a record holds COCO polygons or a
compressed RLE string, never a decoded mask.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from lavt.data.masks import segmentation_problem, segmentation_to_mask
from lavt.data.refer_writer import mask_geometry

#: problems kept with their text (the rest are only counted).
KEEP_PROBLEMS = 50


@dataclass
class Target:
    """One object's mask as the refer layout stores it (COCO polygons or RLE)."""

    segmentation: list | dict
    bbox: list[float]
    area: float


@dataclass
class ImportRecord:
    """One ref: an image, its target objects (none: no target) and their expressions.

    ``image`` is the image's path relative to the image folder (POSIX), which is
    also its file name in the imported dataset; ``split`` None means "assign one".
    """

    image: str
    image_path: Path
    height: int
    width: int
    targets: list[Target]
    expressions: list[str]
    split: str | None
    category: str
    where: str


@dataclass
class Problems:
    """Problems found so far, each ``"<location>: <what>"``; the first few are kept."""

    lines: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, where: str, what: str) -> None:
        self.count += 1
        if len(self.lines) < KEEP_PROBLEMS:
            self.lines.append(f"{where}: {what}")

    def __bool__(self) -> bool:
        return self.count > 0


def read_json_file(path: Path, problems: Problems) -> Any:
    """The parsed JSON of ``path``; None (and a problem naming the file, with the line
    and column of a syntax error) when it cannot be read or parsed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data is None:
            problems.add(str(path), "holds JSON null, not an object")
        return data
    except json.JSONDecodeError as err:
        problems.add(
            str(path), f"malformed JSON ({err.msg} at line {err.lineno} column {err.colno})"
        )
    except (UnicodeDecodeError, OSError) as err:
        problems.add(str(path), f"unreadable ({err})")
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def name_problem(name: Any) -> str | None:
    """What is wrong with an image name that must stay inside its folder, or None."""
    if not isinstance(name, str) or not name.strip():
        return "the image name is not a non-empty string"
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in windows.parts:
        return f"image {name!r} points outside the image folder"
    return None


def expressions_problem(value: Any) -> str | None:
    """What is wrong with an expression list (a non-empty list of non-empty strings)."""
    if not isinstance(value, list):
        return "expressions must be a list of strings"
    if not value:
        return "the expression list is empty"
    for k, text in enumerate(value):
        if not isinstance(text, str) or not text.strip():
            return f"expression #{k} is not a non-empty string"
    return None


def split_problem(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() and "/" not in value):
        return None
    return f"split {value!r} is not a split name"


class ImageSizes:
    """(width, height) of source images, each opened once (header only)."""

    def __init__(self) -> None:
        self._sizes: dict[Path, tuple[int, int] | str] = {}
        self._reported: set[Path] = set()

    def first_report(self, path: Path) -> bool:
        """True the first time it is asked about ``path`` (report an image's problem once)."""
        first = path not in self._reported
        self._reported.add(path)
        return first

    def get(self, path: Path) -> tuple[int, int] | str:
        """The size, or what is wrong (missing, unreadable, not an image)."""
        if path not in self._sizes:
            self._sizes[path] = self._read(path)
        return self._sizes[path]

    @staticmethod
    def _read(path: Path) -> tuple[int, int] | str:
        if not path.is_file():
            return f"image {path} not found"
        try:
            with Image.open(path) as image:
                return image.size
        except (UnidentifiedImageError, OSError, ValueError) as err:
            return f"image {path} is not a readable image ({type(err).__name__})"


def polygons_problem(polygons: Any) -> str | None:
    """What is wrong with ``[[x1, y1, x2, y2, ...], ...]`` (pixels), or None."""
    if not isinstance(polygons, list) or not polygons:
        return "polygons must be a non-empty list of [x1, y1, x2, y2, ...] lists"
    for k, polygon in enumerate(polygons):
        if isinstance(polygon, list):
            bad = next((j for j, v in enumerate(polygon) if not is_number(v)), None)
            if bad is not None:
                return f"polygon #{k}: coordinate #{bad} ({polygon[bad]!r}) is not a number"
    problem = segmentation_problem(polygons, 1, 1)
    if problem:
        return problem
    short = next((k for k, p in enumerate(polygons) if len(p) < 6), None)
    if short is not None:
        return f"polygon #{short} has fewer than 3 points"
    return None


def target_from(segmentation: list | dict, height: int, width: int) -> Target | str:
    """A checked COCO segmentation (polygons or RLE) as a :class:`Target`, or the problem
    (invalid for an image of ``height`` x ``width``, or empty: no pixel inside the image)."""
    if isinstance(segmentation, list):
        problem = polygons_problem(segmentation)
    else:
        problem = segmentation_problem(segmentation, height, width)
    if problem:
        return problem
    mask = segmentation_to_mask(segmentation, height, width)  # (H, W) uint8, dropped here
    return target_from_mask(mask, segmentation)


def target_from_mask(mask: np.ndarray, segmentation: list | dict) -> Target | str:
    """``segmentation`` with the geometry of its decoded (H, W) ``mask``, or "empty"."""
    bbox, area = mask_geometry(mask)
    if area == 0:
        return "the mask is empty (no pixel of the object lies inside the image)"
    return Target(segmentation, bbox, area)
