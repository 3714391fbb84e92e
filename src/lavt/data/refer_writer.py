"""Writing the refer layout: one writer for ``lavt synth`` and ``lavt data import``.

A :class:`ReferLayoutWriter` collects image, annotation and ref records in memory
(segmentations as polygons or compressed RLE strings, never decoded masks) and
writes them with :meth:`ReferLayoutWriter.write`:

- classic: ``<ann_dir>/instances.json`` and ``<ann_dir>/refs(<splitBy>).p`` (a
  pickled list of plain dicts, protocol 2, as the ``refer`` toolkit reads);
- generalized: ``instances.json`` and ``<ann_dir>/grefs(<splitBy>).json`` whose
  refs carry a list ``ann_id`` (``[-1]``: no target), as gRefCOCO's.

Both files are written atomically, the refs file last, so an interrupted run
leaves no valid-looking dataset. Records are written with sorted JSON keys and a
fixed dict order in the pickle: the same records give the same bytes.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lavt.runtime import atomic_write_bytes

NO_TARGET = -1


def polygon_geometry(polygons: Sequence[Sequence[float]]) -> tuple[list[float], float]:
    """COCO ``bbox`` [x, y, w, h] and ``area`` (shoelace, summed over the parts) of polygons
    ``[[x1, y1, x2, y2, ...], ...]``, rounded to 2 decimals."""
    xs = [float(v) for p in polygons for v in p[0::2]]
    ys = [float(v) for p in polygons for v in p[1::2]]
    area = sum(_polygon_area(list(p[0::2]), list(p[1::2])) for p in polygons)
    bbox = [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]
    return bbox, round(area, 2)


def mask_geometry(mask: np.ndarray) -> tuple[list[float], float]:
    """COCO ``bbox`` and ``area`` (pixel count) of an (H, W) mask; [0, 0, 0, 0] when empty."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0], 0.0
    x0, y0 = int(cols.min()), int(rows.min())
    bbox = [float(x0), float(y0), float(cols.max() - x0 + 1), float(rows.max() - y0 + 1)]
    return bbox, float(rows.size)


def _polygon_area(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


def sentence_records(refs: list, sentences: Sequence[str]) -> dict:
    """``sent_ids`` and ``sentences`` of a new ref, the ids running on across ``refs``."""
    # the last id used, without a quadratic sum over all refs
    first = next((r["sent_ids"][-1] for r in reversed(refs) if r["sent_ids"]), 0) + 1
    sent_ids = list(range(first, first + len(sentences)))
    return {
        "sent_ids": sent_ids,
        "sentences": [
            {"sent_id": sid, "raw": text, "sent": text.lower(), "tokens": text.lower().split()}
            for sid, text in zip(sent_ids, sentences, strict=True)
        ],
    }


class ReferLayoutWriter:
    """Image, annotation and ref records of one dataset, written in the refer layout.

    ``categories``: category names (ids 1, 2, ... in this order) with their
    ``supercategory``. Ids of images, annotations and sentences start at 1, ref
    ids at 0, as in the published files.
    """

    def __init__(self, categories: Sequence[str], supercategory: str = "object") -> None:
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.refs: list[dict] = []
        self.categories = [
            {"id": i + 1, "name": name, "supercategory": supercategory}
            for i, name in enumerate(categories)
        ]

    def add_image(self, file_name: str, height: int, width: int) -> int:
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": file_name, "height": height, "width": width}
        )
        return image_id

    def add_annotation(
        self,
        image_id: int,
        category_id: int,
        segmentation: list | dict,
        bbox: list[float],
        area: float,
    ) -> int:
        """A non-crowd annotation (COCO polygons or RLE); returns its id."""
        ann_id = len(self.annotations) + 1
        self.annotations.append(
            {
                "id": ann_id,
                "image_id": image_id,
                "category_id": category_id,
                "segmentation": segmentation,
                "iscrowd": 0,
                "bbox": bbox,
                "area": area,
            }
        )
        return ann_id

    def add_ref(
        self,
        split: str,
        image_id: int,
        ann_id: int,
        category_id: int,
        sentences: Sequence[str],
        file_name: str,
    ) -> None:
        """A RefCOCO ref: one object and its expressions."""
        self.refs.append(
            {
                "ref_id": len(self.refs),
                "ann_id": ann_id,
                "image_id": image_id,
                "category_id": category_id,
                "split": split,
                "file_name": file_name,
                **sentence_records(self.refs, sentences),
            }
        )

    def add_gref(
        self,
        split: str,
        image_id: int,
        targets: Sequence[int],
        categories: Sequence[int],
        sentences: Sequence[str],
        file_name: str,
    ) -> None:
        """A gRefCOCO ref: ``targets`` are annotation ids; empty means no target."""
        self.refs.append(
            {
                "ref_id": len(self.refs),
                "ann_id": list(targets) or [NO_TARGET],
                "category_id": list(categories) or [NO_TARGET],
                "image_id": image_id,
                "split": split,
                "file_name": file_name,
                **sentence_records(self.refs, sentences),
            }
        )

    def write(self, ann_dir: Path, *, split_by: str = "unc", generalized: bool = False) -> Path:
        """``instances.json`` and the refs file into ``ann_dir``, last and atomically;
        returns the refs file's path."""
        ann_dir.mkdir(parents=True, exist_ok=True)
        instances = {
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }
        atomic_write_bytes(
            ann_dir / "instances.json", json.dumps(instances, sort_keys=True).encode()
        )
        if generalized:
            refs_path = ann_dir / f"grefs({split_by}).json"
            atomic_write_bytes(refs_path, json.dumps(self.refs, sort_keys=True).encode())
        else:
            refs_path = ann_dir / f"refs({split_by}).p"
            atomic_write_bytes(refs_path, pickle.dumps(self.refs, protocol=2))
        return refs_path
