"""The "own data" example written as an annotation tool would: JSONL, COCO, LabelMe.

``lavt synth --own-data --format all --output DIR`` writes the same scenes, with the
same expressions and the same splits, three times (each folder stands alone, as an
export would)::

    DIR/jsonl/scenes.jsonl, images/scene_000001.png, masks/scene_000001_2.png ...
    DIR/coco/annotations.json, images/scene_000001.png ...
    DIR/labelme/scene_000001.json, scene_000001.png ...

- JSONL (docs/data.md): one line per object; the masks cycle through the three
  forms, a polygon, a PNG file, a compressed RLE (the PNG and RLE hold the
  polygon's pixels as pycocotools rasterises them, so all forms give one mask);
- COCO: polygons, ``annotations[].expressions`` and ``images[].split``;
- LabelMe: polygon shapes labelled with the shape name, the expressions one per
  line in ``description``; the split in the file's ``flags``, as ``{"split": "val"}``
  for even scenes and ``{"val": true}`` for odd ones (both spellings the importer reads).

Splits: 80/10/10 train/val/test per scene, at least one scene each. Same seed, same
bytes. Each format folder is written beside its final place and renamed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from lavt.data.masks import encode_rle, segmentation_to_mask
from lavt.data.synthetic.novel import NOVEL_SHAPES, NovelScene, novel_scene
from lavt.data.synthetic.writer import rounded_polygon
from lavt.errors import InputError
from lavt.runtime import atomic_directory

FORMATS = ("jsonl", "coco", "labelme")
NOVEL_SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
MASK_FORMS = ("polygons", "png", "rle")
#: written into each format folder, so that --overwrite replaces only these folders.
OWN_DATA_MARKER = ".lavt-own-data"


@dataclass
class NovelSummary:
    """What :func:`write_novel_dataset` wrote: per split scenes, objects, expressions."""

    folders: dict[str, Path]
    per_split: dict[str, dict[str, int]] = field(default_factory=dict)


def novel_split_plan(rng: random.Random, num_images: int) -> list[str]:
    """Split per scene: 80/10/10 train/val/test, at least one each, shuffled."""
    counts = {name: max(1, round(share * num_images)) for name, share in NOVEL_SPLITS}
    counts["train"] = num_images - counts["val"] - counts["test"]
    plan = [name for name, _ in NOVEL_SPLITS for _ in range(counts[name])]
    rng.shuffle(plan)
    return plan


class _Writers:
    """The per-format writers, fed one scene at a time."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders
        self.coco: dict = {
            "images": [],
            "annotations": [],
            "categories": [
                {"id": i + 1, "name": s, "supercategory": "shape"}
                for i, s in enumerate(NOVEL_SHAPES)
            ],
        }
        self.jsonl = None
        if "jsonl" in folders:
            (folders["jsonl"] / "masks").mkdir()
            self.jsonl = open(folders["jsonl"] / "scenes.jsonl", "w", encoding="utf-8")
        for fmt in ("jsonl", "coco"):
            if fmt in folders:
                (folders[fmt] / "images").mkdir()
        for folder in folders.values():
            (folder / OWN_DATA_MARKER).write_text("written by lavt synth --own-data\n")
        self.objects = 0

    def add(self, index: int, split: str, scene: NovelScene) -> None:
        stem = f"scene_{index + 1:06d}"
        width, height = scene.image.size
        polygons = [rounded_polygon(o.polygon) for o in scene.objects]
        for fmt in ("jsonl", "coco"):
            if fmt in self.folders:
                scene.image.save(self.folders[fmt] / "images" / f"{stem}.png")
        if self.jsonl is not None:
            for k, (flat, texts) in enumerate(zip(polygons, scene.expressions, strict=True)):
                form = MASK_FORMS[(self.objects + k) % len(MASK_FORMS)]
                mask = _mask_value(
                    form, flat, height, width, self.folders["jsonl"], f"{stem}_{k + 1}"
                )
                line = {"image": f"images/{stem}.png", "mask": mask, "expressions": texts}
                self.jsonl.write(json.dumps({**line, "split": split}) + "\n")
        if "coco" in self.folders:
            self._add_coco(index + 1, f"{stem}.png", split, scene, polygons)
        if "labelme" in self.folders:
            self._add_labelme(index, stem, split, scene, polygons)
        self.objects += len(scene.objects)

    def _add_coco(self, image_id, file_name, split, scene, polygons) -> None:
        width, height = scene.image.size
        self.coco["images"].append(
            {
                "id": image_id,
                "file_name": file_name,
                "height": height,
                "width": width,
                "split": split,
            }
        )
        for obj, flat, texts in zip(scene.objects, polygons, scene.expressions, strict=True):
            self.coco["annotations"].append(
                {
                    "id": len(self.coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": NOVEL_SHAPES.index(obj.shape) + 1,
                    "segmentation": [flat],
                    "iscrowd": 0,
                    "expressions": texts,
                }
            )

    def _add_labelme(self, index, stem, split, scene, polygons) -> None:
        folder = self.folders["labelme"]
        scene.image.save(folder / f"{stem}.png")
        shapes = [
            {
                "label": obj.shape,
                "points": [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)],
                "group_id": None,
                "description": "\n".join(texts),
                "shape_type": "polygon",
                "flags": {},
            }
            for obj, flat, texts in zip(scene.objects, polygons, scene.expressions, strict=True)
        ]
        width, height = scene.image.size
        record = {
            "version": "5.4.1",
            "flags": {"split": split} if index % 2 == 0 else {split: True},
            "shapes": shapes,
            "imagePath": f"{stem}.png",
            "imageData": None,
            "imageHeight": height,
            "imageWidth": width,
        }
        (folder / f"{stem}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")

    def finish(self) -> None:
        if self.jsonl is not None:
            self.jsonl.close()
        if "coco" in self.folders:
            text = json.dumps(self.coco)
            (self.folders["coco"] / "annotations.json").write_text(text, encoding="utf-8")

    def close(self) -> None:
        if self.jsonl is not None and not self.jsonl.closed:
            self.jsonl.close()


def _mask_value(form: str, flat: list[float], height: int, width: int, folder: Path, stem: str):
    if form == "polygons":
        return {"polygons": [flat]}
    mask = segmentation_to_mask([flat], height, width)  # (H, W) uint8
    if form == "rle":
        return {"rle": encode_rle(mask)}
    Image.fromarray(mask * 255).save(folder / "masks" / f"{stem}.png")
    return f"masks/{stem}.png"


def write_novel_dataset(
    output: str | os.PathLike,
    *,
    formats: Sequence[str] = FORMATS,
    num_images: int = 1000,
    seed: int = 0,
    image_size: tuple[int, int] = (64, 64),
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> NovelSummary:
    """Write ``num_images`` novel scenes under ``output/<format>/`` for each of ``formats``."""
    if num_images < 3:
        raise InputError(f"num_images {num_images}: at least 3 (one per split)", param="num_images")
    if len(image_size) != 2 or min(image_size) < 32:
        raise InputError(
            f"image_size {tuple(image_size)}: must be two sides of at least 32 pixels",
            param="image_size",
        )
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(
            f"formats {list(formats)}: choose from {', '.join(FORMATS)}", param="formats"
        )
    output = Path(output)
    targets = {fmt: output / fmt for fmt in dict.fromkeys(formats)}
    for target in targets.values():
        if target.exists() and not overwrite:
            raise InputError(
                f"overwrite not set: {target} already exists; choose another --output",
                param="overwrite",
            )
        if target.exists() and not (target / OWN_DATA_MARKER).is_file():
            raise InputError(
                f"output {output}: {target} was not written by lavt synth --own-data (no "
                f"{OWN_DATA_MARKER}); refusing to replace it",
                param="output",
            )
    summary = NovelSummary(dict(targets))
    width, height = image_size
    with contextlib.ExitStack() as stack:  # all folders renamed into place on success
        folders = {
            f: stack.enter_context(atomic_directory(t, replace=overwrite))
            for f, t in targets.items()
        }
        writers = _Writers(folders)
        try:
            rng = random.Random(seed)
            for index, split in enumerate(novel_split_plan(rng, num_images)):
                scene = novel_scene(rng, width, height)
                writers.add(index, split, scene)
                counts = summary.per_split.setdefault(
                    split, {"images": 0, "objects": 0, "expressions": 0}
                )
                counts["images"] += 1
                counts["objects"] += len(scene.objects)
                counts["expressions"] += sum(len(e) for e in scene.expressions)
                if progress is not None:
                    progress(index + 1)
            writers.finish()
        finally:
            writers.close()
    return summary
