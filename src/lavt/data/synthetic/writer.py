"""Writing a synthetic dataset in the refer layout (what ``lavt synth`` runs).

Splits are per image (all refs of an image share a split), like RefCOCO's:

- ``train`` / ``val``: every object of the image is referred to;
- ``testA``: only the *circles* of the image are referred to (the analogue of
  RefCOCO's testA, whose refs are all people); every testA image has a circle;
- ``testB``: only the non-circles are referred to (RefCOCO's testB: objects).

An annotation's polygon is the object's full outline, so a few occluded pixels
of a mask may be covered by a neighbour, as with amodal annotations. The same
seed gives byte-identical files.

Safety: the first thing written is a marker file (:data:`MARKER`); a folder that
already holds images or annotations without that marker (a real COCO tree whose
``COCO_train2014_<id>.jpg`` names would collide) is refused, ``overwrite`` or not.
The annotation files are written last and atomically (:mod:`lavt.runtime`), so an
interrupted run leaves no valid-looking dataset. Files get the permissions the
umask allows.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lavt.data.refer_writer import ReferLayoutWriter, polygon_geometry
from lavt.data.synthetic.expressions import expressions_for
from lavt.data.synthetic.scenes import SHAPES, SceneObject, _background, _sample_scene, render_scene
from lavt.errors import InputError
from lavt.runtime import atomic_write_text

#: written by :func:`generate_dataset` into the dataset root before anything else.
MARKER = ".lavt-synth"
IMAGE_SUBDIR = Path("images") / "mscoco" / "images" / "train2014"


SPLIT_SHARES = (("train", 0.7), ("val", 0.1), ("testA", 0.1), ("testB", 0.1))


@dataclass
class SynthSummary:
    """What :func:`generate_dataset` wrote."""

    root: Path
    images: int
    refs_per_split: dict[str, int]
    sentences_per_split: dict[str, int]


# ----------------------------------------------------------------------------- writing


def _split_plan(rng: random.Random, num_images: int) -> list[str]:
    counts = {name: max(1, round(share * num_images)) for name, share in SPLIT_SHARES}
    counts["train"] = num_images - sum(v for k, v in counts.items() if k != "train")
    plan = [name for name, _ in SPLIT_SHARES for _ in range(counts[name])]
    rng.shuffle(plan)
    return plan


def _referred(split: str, objects: list[SceneObject]) -> list[int]:
    if split == "testA":
        return [i for i, o in enumerate(objects) if o.shape == "circle"]
    if split == "testB":
        return [i for i, o in enumerate(objects) if o.shape != "circle"]
    return list(range(len(objects)))


def _check_arguments(num_images: int, image_size: tuple[int, int]) -> None:
    if num_images < 4:
        raise InputError(
            f"num_images {num_images}: must be at least 4 (one per split)", param="num_images"
        )
    if len(image_size) != 2 or min(image_size) < 32:
        raise InputError(
            f"image_size {tuple(image_size)}: must be two sides of at least 32 pixels",
            param="image_size",
        )


def _foreign_content(root: Path) -> str | None:
    """What in ``root`` looks like a dataset ``lavt synth`` did not write, or None."""
    if (root / MARKER).is_file():
        return None
    for image_dir in (root / IMAGE_SUBDIR, root / "images" / "train2014"):  # refer, gRefCOCO
        if image_dir.is_dir() and any(image_dir.iterdir()):
            return f"images in {image_dir}"
    for pattern in ("*/instances.json", "*/refs(*).p", "*/grefs(*).*"):
        found = next(iter(sorted(root.glob(pattern))), None)
        if found is not None:
            return f"annotations {found}"
    return None


def _prepare_root(root: Path, refs_path: Path, *, overwrite: bool) -> None:
    """Refuse a root we must not write into; then claim it with the marker file."""
    if root.exists() and not root.is_dir():
        raise InputError(f"root {root}: exists and is not a folder", param="root")
    foreign = _foreign_content(root) if root.is_dir() else None
    if foreign is not None:
        raise InputError(
            f"root {root}: holds {foreign} that lavt synth did not write (no {MARKER} "
            "marker); refusing to write into it, choose a new folder",
            param="root",
        )
    if refs_path.exists() and not overwrite:
        raise InputError(
            f"overwrite not set: {refs_path} already holds a synthetic dataset",
            param="overwrite",
        )
    try:
        atomic_write_text(root / MARKER, json.dumps({"written_by": "lavt synth"}) + "\n")
    except OSError as err:
        raise InputError(
            f"root {root}: cannot write there ({err.strerror})", param="root"
        ) from None


def generate_dataset(
    root: str | os.PathLike,
    *,
    num_images: int,
    seed: int = 0,
    image_size: tuple[int, int] = (64, 64),
    dataset: str = "refcoco",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write ``num_images`` scenes under ``root`` in the refer layout.

    ``root/images/mscoco/images/train2014/*.jpg``, ``root/<dataset>/instances.json``
    and ``root/<dataset>/refs(unc).p``. The annotation files are written last
    and atomically, so an interrupted run leaves no valid-looking dataset.
    """
    _check_arguments(num_images, image_size)
    root = Path(root)
    ann_dir = root / dataset
    refs_path = ann_dir / "refs(unc).p"
    _prepare_root(root, refs_path, overwrite=overwrite)
    rng = random.Random(seed)
    layout = synth_layout()
    side = min(image_size)
    need = {"testA": "circle", "testB": "other"}.get
    for split, image_id, objects, ann_ids in write_scenes(
        rng, root / IMAGE_SUBDIR, num_images, image_size, layout, need=need, progress=progress
    ):
        for i in _referred(split, objects):
            layout.add_ref(
                split,
                image_id,
                ann_ids[i],
                SHAPES.index(objects[i].shape) + 1,
                expressions_for(rng, objects, objects[i], side),
                f"COCO_train2014_{image_id:012d}_{ann_ids[i]}.jpg",
            )
    layout.write(ann_dir)
    return _summary(root, layout)


def synth_layout() -> ReferLayoutWriter:
    """The writer of a synthetic dataset: one category per shape."""
    return ReferLayoutWriter(SHAPES, supercategory="shape")


def write_scenes(
    rng: random.Random,
    image_dir: Path,
    num_images: int,
    image_size: tuple[int, int],
    layout: ReferLayoutWriter,
    *,
    need: Callable[[str], str | None] = lambda split: None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[str, int, list[SceneObject], list[int]]]:
    """The scene loop of both layouts: per image, sample, render and save the scene,
    record it and its objects in ``layout``, and yield (split, image_id, objects,
    annotation ids) for the caller to add its refs (with the same ``rng``, so a seed
    gives the same bytes). ``need(split)`` asks for a circle/non-circle in the scene.
    """
    width, height = image_size
    image_dir.mkdir(parents=True, exist_ok=True)
    for index, split in enumerate(_split_plan(rng, num_images)):
        objects = _sample_scene(rng, width, height, need(split))
        file_name = f"COCO_train2014_{index + 1:012d}.jpg"
        render_scene(objects, _background(rng, width, height)).save(
            image_dir / file_name, format="JPEG", quality=95
        )
        image_id = layout.add_image(file_name, height, width)
        ann_ids = [
            layout.add_annotation(
                image_id, SHAPES.index(obj.shape) + 1, [flat], *polygon_geometry([flat])
            )
            for obj in objects
            for flat in [rounded_polygon(obj.polygon)]
        ]
        yield split, image_id, objects, ann_ids
        if progress is not None:
            progress(index + 1)


def rounded_polygon(points: list[tuple[float, float]]) -> list[float]:
    """An outline as a flat COCO polygon [x1, y1, x2, y2, ...] rounded to 2 decimals."""
    return [round(v, 2) for xy in points for v in xy]


def _summary(root: Path, layout: ReferLayoutWriter) -> SynthSummary:
    refs_per_split: dict[str, int] = {}
    sentences_per_split: dict[str, int] = {}
    for ref in layout.refs:
        refs_per_split[ref["split"]] = refs_per_split.get(ref["split"], 0) + 1
        sentences_per_split[ref["split"]] = sentences_per_split.get(ref["split"], 0) + len(
            ref["sentences"]
        )
    return SynthSummary(root, len(layout.images), refs_per_split, sentences_per_split)
