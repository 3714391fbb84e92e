"""``lavt data import``: JSONL, COCO or LabelMe annotations -> a refer-layout dataset.

The dataset ``NAME`` is written self-contained under ``ROOT/NAME/``::

    ROOT/NAME/instances.json
    ROOT/NAME/refs(unc).p            (--generalized: grefs(unc).json)
    ROOT/NAME/images/<image path as the source names it>
    ROOT/NAME/.lavt-import           (what wrote it, for --overwrite)

and read by ``lavt train/evaluate/data check --data-root ROOT --dataset NAME``
(splitBy ``unc``, the default, so no flag is needed).

Every record is parsed and checked first (:mod:`lavt.data.formats`); if anything is
wrong, nothing is written and :class:`ImportProblems` lists the first problems, one
line each with its file and line / annotation id / shape. Then the images are copied
(or hard-linked) and the annotation files written into a temporary folder beside
``ROOT/NAME``, which is renamed into place at the end.

Splits: a record's own split is kept; records without one get their image's split,
drawn from a hash of the image's path (deterministic, the same on every machine)
with ``split_ratios`` over train/val/test.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lavt.data.formats.base import ImportRecord, Problems
from lavt.data.refer_writer import ReferLayoutWriter
from lavt.errors import InputError
from lavt.runtime import atomic_directory

log = logging.getLogger("lavt")

FORMATS = ("jsonl", "coco", "labelme")
SPLIT_NAMES = ("train", "val", "test")
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
IMPORT_MARKER = ".lavt-import"
SPLIT_BY = "unc"
SHOWN_PROBLEMS = 5
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class ImportProblems(InputError):
    """The source has problems; the message holds the first few, one per line."""


@dataclass
class ImportSummary:
    """What :func:`import_dataset` wrote."""

    folder: Path
    images: int
    per_split: dict[str, dict[str, int]]


def hash_split(image: str, ratios: Sequence[float] = DEFAULT_RATIOS) -> str:
    """The split of an image without one: a SHA-256 of its relative path, read as a
    number in [0, 1), against the cumulative ``ratios`` of train/val/test."""
    digest = hashlib.sha256(image.encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    total = 0.0
    for name, ratio in zip(SPLIT_NAMES, ratios, strict=True):
        total += ratio / sum(ratios)
        if u < total:
            return name
    return SPLIT_NAMES[-1]


def parse_split_ratios(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> three non-negative shares (train, val, test) with a positive sum."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(not v >= 0 for v in values) or sum(values) <= 0:
        raise InputError(
            f"split_ratios {text!r}: expected three non-negative numbers train,val,test "
            "such as 0.8,0.1,0.1",
            param="split_ratios",
        )
    return values  # type: ignore[return-value]


def _check_target(root: Path, name: str, overwrite: bool) -> Path:
    if not _NAME.fullmatch(name):
        raise InputError(
            f"name {name!r}: use letters, digits, '.', '_', '+' or '-' (a folder name)",
            param="name",
        )
    if root.exists() and not root.is_dir():
        raise InputError(f"output {root}: exists and is not a folder", param="output")
    folder = root / name
    if folder.exists():
        if not overwrite:
            raise InputError(
                f"overwrite not set: {folder} already exists (pass --overwrite to replace "
                "a dataset lavt data import wrote)",
                param="overwrite",
            )
        if not (folder / IMPORT_MARKER).is_file():
            raise InputError(
                f"name {name}: {folder} was not written by lavt data import (no "
                f"{IMPORT_MARKER}); refusing to replace it",
                param="name",
            )
    return folder


def _collect(fmt: str, src: Path, images: Path | None, generalized: bool) -> list[ImportRecord]:
    reader = importlib.import_module(f"lavt.data.formats.{fmt}")
    problems = Problems()
    records = []
    for record in reader.read(src, images=images, problems=problems):
        if not generalized and len(record.targets) != 1:
            what = "no object (null)" if not record.targets else f"{len(record.targets)} objects"
            problems.add(record.where, f"{what}: only a generalized dataset (--generalized)")
            continue
        records.append(record)
    if not problems and not records:
        problems.add(str(src), "no referred object found")
    if problems:
        shown = problems.lines[:SHOWN_PROBLEMS]
        more = problems.count - len(shown)
        tail = [f"... and {more} more problems"] if more else []
        raise ImportProblems("\n".join(shown + tail))
    return records


def import_dataset(
    fmt: str,
    src: str | os.PathLike,
    *,
    output: str | os.PathLike,
    name: str,
    images: str | os.PathLike | None = None,
    split_ratios: Sequence[float] = DEFAULT_RATIOS,
    generalized: bool = False,
    link: bool = False,
    overwrite: bool = False,
) -> ImportSummary:
    """Import ``src`` (a ``fmt`` file or folder) as dataset ``name`` under ``output``."""
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r}: choose from {', '.join(FORMATS)}", param="format")
    root = Path(output)
    folder = _check_target(root, name, overwrite)
    image_dir = Path(images) if images is not None else None
    if image_dir is not None and not image_dir.is_dir():
        raise InputError(f"images {image_dir}: folder not found", param="images")
    records = _collect(fmt, Path(src), image_dir, generalized)
    categories = list(dict.fromkeys(r.category for r in records))
    layout = ReferLayoutWriter(categories)
    per_split: dict[str, dict[str, int]] = {}
    with atomic_directory(folder, replace=overwrite) as tmp:
        image_ids: dict[str, int] = {}
        seen_split: dict[tuple[str, int], bool] = {}
        for record in records:
            if record.image not in image_ids:
                _place_image(record.image_path, tmp / "images" / record.image, link)
                image_ids[record.image] = layout.add_image(
                    record.image, record.height, record.width
                )
            image_id = image_ids[record.image]
            split = record.split or hash_split(record.image, split_ratios)
            category = categories.index(record.category) + 1
            ann_ids = [
                layout.add_annotation(image_id, category, t.segmentation, t.bbox, t.area)
                for t in record.targets
            ]
            if generalized:
                cats = [category] * len(ann_ids)
                layout.add_gref(split, image_id, ann_ids, cats, record.expressions, record.image)
            else:
                layout.add_ref(
                    split, image_id, ann_ids[0], category, record.expressions, record.image
                )
            counts = per_split.setdefault(split, {"images": 0, "objects": 0, "expressions": 0})
            counts["images"] += not seen_split.setdefault((split, image_id), False)
            seen_split[(split, image_id)] = True
            counts["objects"] += 1
            counts["expressions"] += len(record.expressions)
        layout.write(tmp, split_by=SPLIT_BY, generalized=generalized)
        marker = {"written_by": "lavt data import", "format": fmt, "source": str(src)}
        (tmp / IMPORT_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    log.info("imported %d refs of %d images into %s", len(records), len(image_ids), folder)
    return ImportSummary(folder, len(image_ids), per_split)


def _place_image(source: Path, target: Path, link: bool) -> None:
    """Copy (or hard-link) a source image; the source is never moved or changed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, target)
            return
        except OSError as err:
            raise InputError(
                f"link: cannot hard-link {source} into {target.parent} ({err.strerror}); "
                "leave out --link to copy",
                param="link",
            ) from None
    shutil.copyfile(source, target)
