"""A synthetic referring-segmentation dataset in the exact refer layout.

Scenes of 3-5 coloured shapes on textured backgrounds, with expressions that
need the language to resolve:

- attributes: "the small red circle", "the blue one", "big green square";
- relations: "the square left of the blue triangle";
- ordinals: "second circle from the left", "the rightmost star";

several per object, worded in more than one way (synonyms, templates). Every
expression is checked against its scene: it matches exactly one object.
Within an image each (colour, shape) pair occurs once, and colours and shapes
repeat across objects, so neither the colour nor the shape alone picks the
object: a model that ignores the text cannot exceed about one third.

Splits are per image (all refs of an image share a split), like RefCOCO's:

- ``train`` / ``val``: every object of the image is referred to;
- ``testA``: only the *circles* of the image are referred to (the analogue of
  RefCOCO's testA, whose refs are all people); every testA image has a circle;
- ``testB``: only the non-circles are referred to (RefCOCO's testB: objects).

Occlusion: objects may overlap a little (the centre distance is at least 0.8
times the sum of the radii), later objects being drawn on top; an annotation's
polygon is the object's full outline, so a few occluded pixels of a mask may be
covered by a neighbour, as with amodal annotations.

The same seed gives byte-identical files.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lavt.errors import InputError

log = logging.getLogger("lavt")

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
SHAPE_WORDS = {
    "circle": ("circle", "disc", "round shape"),
    "square": ("square", "box"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "star": ("star",),
    "cross": ("cross", "plus sign"),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large")}
ORDINALS = ("first", "second", "third", "fourth", "fifth")
SPLIT_SHARES = (("train", 0.7), ("val", 0.1), ("testA", 0.1), ("testB", 0.1))
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TEMPLATE_WORDS = (
    "the a one object shape thing of to on in picture image from left right top bottom "
    "leftmost rightmost topmost bottommost above below under over next side"
)


@dataclass
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    polygon: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class SynthSummary:
    """What :func:`generate_dataset` wrote."""

    root: Path
    images: int
    refs_per_split: dict[str, int]
    sentences_per_split: dict[str, int]


# ----------------------------------------------------------------------------- geometry


def shape_polygon(
    shape: str, cx: float, cy: float, r: float, angle: float
) -> list[tuple[float, float]]:
    """Outline of a shape of circumradius ``r`` as (x, y) vertices."""
    if shape == "circle":
        points = [(r, 2 * math.pi * i / 32) for i in range(32)]
    elif shape == "square":
        points = [(r, angle + math.pi / 4 + i * math.pi / 2) for i in range(4)]
    elif shape == "diamond":
        points = [(r, i * math.pi / 2) for i in range(4)]
        points = [(rr * (1.0 if i % 2 else 0.65), a) for i, (rr, a) in enumerate(points)]
    elif shape == "triangle":
        points = [(r, -math.pi / 2 + i * 2 * math.pi / 3) for i in range(3)]
    elif shape == "star":
        points = [
            (r if i % 2 == 0 else 0.45 * r, -math.pi / 2 + i * math.pi / 5) for i in range(10)
        ]
    elif shape == "cross":
        w = r * 0.38
        corners = [
            (w, r),
            (w, w),
            (r, w),
            (r, -w),
            (w, -w),
            (w, -r),
            (-w, -r),
            (-w, -w),
            (-r, -w),
            (-r, w),
            (-w, w),
            (-w, r),
        ]
        return [(cx + x, cy + y) for x, y in corners]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(cx + rr * math.cos(a), cy + rr * math.sin(a)) for rr, a in points]


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    """A muted gradient with noise, far from the object colours."""
    np_rng = np.random.default_rng(rng.getrandbits(32))
    base = np.array([rng.randint(70, 190)] * 3, dtype=np.float32)
    base += np.array([rng.randint(-12, 12) for _ in range(3)], dtype=np.float32)
    tilt = rng.randint(-50, 50) + np.array([rng.randint(-8, 8) for _ in range(3)], dtype=np.float32)
    direction = rng.choice(("h", "v", "d", "flat"))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = {
        "h": xs / max(width - 1, 1),
        "v": ys / max(height - 1, 1),
        "d": (xs + ys) / max(width + height - 2, 1),
        "flat": np.zeros_like(xs),
    }[direction]
    image = base + ramp[..., None] * tilt  # (H, W, 3)
    image += np_rng.normal(0, rng.choice((0, 4, 10)), size=image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="RGB")


def _sample_scene(
    rng: random.Random, width: int, height: int, need: str | None
) -> list[SceneObject]:
    """3-5 objects, unique (colour, shape) pairs, repeated colours and shapes."""
    side = min(width, height)
    for _ in range(200):
        count = rng.randint(3, 5)
        shapes = rng.sample(SHAPES, rng.randint(2, 3))
        colours = rng.sample(list(COLOURS), rng.randint(2, 3))
        pairs = [(s, c) for s in shapes for c in colours]
        if len(pairs) < count:
            continue
        chosen = rng.sample(pairs, count)
        if need == "circle" and not any(s == "circle" for s, _ in chosen):
            continue
        if need == "other" and all(s == "circle" for s, _ in chosen):
            continue
        objects = _place(rng, chosen, width, height, side)
        if objects is not None:
            return objects
    raise RuntimeError("could not place the objects; use a larger --image-size")


def _place(rng, chosen, width, height, side) -> list[SceneObject] | None:
    objects: list[SceneObject] = []
    for shape, colour in chosen:
        size = rng.choice(("small", "big"))
        radius = side * (rng.uniform(0.09, 0.11) if size == "small" else rng.uniform(0.16, 0.19))
        for _ in range(100):
            cx = rng.uniform(radius, width - radius)
            cy = rng.uniform(radius, height - radius)
            if all(math.hypot(cx - o.cx, cy - o.cy) >= 0.8 * (radius + o.radius) for o in objects):
                break
        else:
            return None
        angle = rng.uniform(-0.3, 0.3)
        objects.append(
            SceneObject(
                shape, colour, size, cx, cy, radius, shape_polygon(shape, cx, cy, radius, angle)
            )
        )
    return objects


def render_scene(objects: list[SceneObject], background: Image.Image) -> Image.Image:
    image = background.copy()
    draw = ImageDraw.Draw(image)
    for obj in objects:
        draw.polygon(obj.polygon, fill=COLOURS[obj.colour])
    return image


# ----------------------------------------------------------------------------- expressions


def _attribute_matches(objects, target, keys) -> bool:
    return sum(all(getattr(o, k) == getattr(target, k) for k in keys) for o in objects) == 1


def _relation(a: SceneObject, b: SceneObject, margin: float) -> str | None:
    """How ``a`` lies relative to ``b`` when one axis clearly dominates."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) > abs(dy) + margin:
        return "left" if dx < 0 else "right"
    if abs(dy) > abs(dx) + margin:
        return "above" if dy < 0 else "below"
    return None


RELATION_WORDS = {
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above", "over"),
    "below": ("below", "under"),
}


def _describe(rng, obj, keys) -> str:
    words = []
    if "size" in keys:
        words.append(rng.choice(SIZE_WORDS[obj.size]))
    if "colour" in keys:
        words.append(obj.colour)
    words.append(
        rng.choice(SHAPE_WORDS[obj.shape])
        if "shape" in keys
        else rng.choice(("one", "object", "shape", "thing"))
    )
    return " ".join(words)


def _attribute_expressions(rng, objects, target) -> list[str]:
    out = []
    for keys in (("colour",), ("colour", "shape"), ("size", "colour", "shape"), ("size", "shape")):
        if _attribute_matches(objects, target, keys):
            desc = _describe(rng, target, keys)
            out.append(rng.choice(("the {}", "{}", "the {} in the picture")).format(desc))
    return out


def _ordinal_expressions(rng, objects, target, side) -> list[str]:
    same = [o for o in objects if o.shape == target.shape]
    if len(same) < 2:
        return []
    out = []
    for axis, (low, high) in (("cx", ("left", "right")), ("cy", ("top", "bottom"))):
        ordered = sorted(same, key=lambda o: getattr(o, axis))
        gaps = [getattr(b, axis) - getattr(a, axis) for a, b in itertools.pairwise(ordered)]
        if min(gaps) < 0.12 * side:  # order not clear to a viewer
            continue
        index = ordered.index(target)
        word = rng.choice(SHAPE_WORDS[target.shape])
        for position, end in ((index, low), (len(ordered) - 1 - index, high)):
            if position == 0:
                extreme = {
                    "left": "leftmost",
                    "right": "rightmost",
                    "top": "topmost",
                    "bottom": "bottommost",
                }[end]
                out.append(rng.choice((f"the {extreme} {word}", f"the {word} on the {end}")))
            elif position < len(ORDINALS):
                out.append(f"{rng.choice(('the ', ''))}{ORDINALS[position]} {word} from the {end}")
    return out


def _relation_expressions(rng, objects, target, side) -> list[str]:
    out = []
    for anchor in objects:
        if anchor is target:
            continue
        rel = _relation(target, anchor, 0.1 * side)
        if rel is None:
            continue
        anchor_keys = next(
            (
                k
                for k in (("shape",), ("colour", "shape"))
                if _attribute_matches(objects, anchor, k)
            ),
            None,
        )
        if anchor_keys is None:
            continue
        candidates = [
            o
            for o in objects
            if o.shape == target.shape
            and o is not anchor
            and _relation(o, anchor, 0.1 * side) == rel
        ]
        if candidates != [target]:
            continue
        word, phrase = rng.choice(SHAPE_WORDS[target.shape]), rng.choice(RELATION_WORDS[rel])
        out.append(f"the {word} {phrase} the {_describe(rng, anchor, anchor_keys)}")
    return out


def expressions_for(
    rng: random.Random, objects: list[SceneObject], target: SceneObject, side: int
) -> list[str]:
    """2-4 distinct expressions that each single out ``target`` in ``objects``."""
    pools = [
        _attribute_expressions(rng, objects, target),
        _ordinal_expressions(rng, objects, target, side),
        _relation_expressions(rng, objects, target, side),
    ]
    chosen: list[str] = []
    for pool in pools:  # one of each kind first, then fill up
        rng.shuffle(pool)
        if pool:
            chosen.append(pool.pop())
    rest = [e for pool in pools for e in pool]
    rng.shuffle(rest)
    for expression in rest:
        if len(chosen) >= 4:
            break
        chosen.append(expression)
    return list(dict.fromkeys(chosen))


EXPRESSION_KINDS = ("attribute", "ordinal", "relation")
_EXTREMES = ("leftmost", "rightmost", "topmost", "bottommost")


def expression_kind(expression: str) -> str:
    """Which template family wrote ``expression``: "attribute", "ordinal" or "relation".

    Relations name an anchor after a relation phrase ("... left of the ...");
    ordinals count from an end ("second ... from the left", "the leftmost ...",
    "the circle on the top"); everything else describes the object itself.
    """
    phrases = [p for synonyms in RELATION_WORDS.values() for p in synonyms]
    if any(f" {phrase} the " in f" {expression} " for phrase in phrases):
        return "relation"
    words = expression.split()
    if " from the " in expression or any(w in _EXTREMES for w in words):
        return "ordinal"
    if len(words) >= 3 and words[-3:-1] == ["on", "the"]:
        return "ordinal"
    return "attribute"


def synthetic_vocabulary() -> list[str]:
    """WordPiece vocabulary covering every word the generator writes ([PAD] = 0)."""
    words: set[str] = set(TEMPLATE_WORDS.split())
    words |= set(COLOURS) | set(ORDINALS)
    for synonyms in (*SHAPE_WORDS.values(), *SIZE_WORDS.values(), *RELATION_WORDS.values()):
        for phrase in synonyms:
            words |= set(phrase.split())
    return [*SPECIAL_TOKENS, *sorted(words)]


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
        raise InputError(f"--images must be at least 4 (one per split), got {num_images}")
    if len(image_size) != 2 or min(image_size) < 32:
        raise InputError(f"--image-size must be two sides of at least 32 pixels, got {image_size}")


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
    if refs_path.exists() and not overwrite:
        raise InputError(
            f"{refs_path}: a dataset is already there (pass --overwrite to replace it)"
        )
    image_dir = root / "images" / "mscoco" / "images" / "train2014"
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    width, height = image_size
    rng = random.Random(seed)
    plan = _split_plan(rng, num_images)
    images, annotations, refs = [], [], []
    for index, split in enumerate(plan):
        image_id = index + 1
        need = {"testA": "circle", "testB": "other"}.get(split)
        objects = _sample_scene(rng, width, height, need)
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        picture = render_scene(objects, _background(rng, width, height))
        picture.save(image_dir / file_name, format="JPEG", quality=95)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        ann_ids = _add_annotations(annotations, objects, image_id)
        for i in _referred(split, objects):
            sentences = expressions_for(rng, objects, objects[i], min(width, height))
            _add_ref(
                refs, split, image_id, ann_ids[i], SHAPES.index(objects[i].shape) + 1, sentences
            )
        if progress is not None:
            progress(index + 1)
    categories = [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]
    instances = {"images": images, "annotations": annotations, "categories": categories}
    _write_atomic(ann_dir / "instances.json", json.dumps(instances, sort_keys=True).encode())
    _write_atomic(refs_path, pickle.dumps(refs, protocol=2))
    return _summary(root, images, refs)


def _add_annotations(annotations: list, objects: list[SceneObject], image_id: int) -> list[int]:
    ids = []
    for obj in objects:
        ann_id = len(annotations) + 1
        xs = [round(x, 2) for x, _ in obj.polygon]
        ys = [round(y, 2) for _, y in obj.polygon]
        flat = [v for xy in zip(xs, ys, strict=True) for v in xy]
        annotations.append(
            {
                "id": ann_id,
                "image_id": image_id,
                "category_id": SHAPES.index(obj.shape) + 1,
                "segmentation": [flat],
                "iscrowd": 0,
                "bbox": [
                    min(xs),
                    min(ys),
                    round(max(xs) - min(xs), 2),
                    round(max(ys) - min(ys), 2),
                ],
                "area": round(_polygon_area(xs, ys), 2),
            }
        )
        ids.append(ann_id)
    return ids


def _polygon_area(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


def _add_ref(
    refs: list, split: str, image_id: int, ann_id: int, category: int, sentences: list[str]
) -> None:
    # sentence ids run on across refs (the last one used, without a quadratic sum)
    first_sent = next((r["sent_ids"][-1] for r in reversed(refs) if r["sent_ids"]), 0) + 1
    sent_ids = list(range(first_sent, first_sent + len(sentences)))
    refs.append(
        {
            "ref_id": len(refs),
            "ann_id": ann_id,
            "image_id": image_id,
            "category_id": category,
            "split": split,
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
            "sent_ids": sent_ids,
            "sentences": [
                {"sent_id": sid, "raw": text, "sent": text.lower(), "tokens": text.lower().split()}
                for sid, text in zip(sent_ids, sentences, strict=True)
            ],
        }
    )


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _summary(root: Path, images: list, refs: list) -> SynthSummary:
    refs_per_split: dict[str, int] = {}
    sentences_per_split: dict[str, int] = {}
    for ref in refs:
        refs_per_split[ref["split"]] = refs_per_split.get(ref["split"], 0) + 1
        sentences_per_split[ref["split"]] = sentences_per_split.get(ref["split"], 0) + len(
            ref["sentences"]
        )
    return SynthSummary(root, len(images), refs_per_split, sentences_per_split)


def remove_dataset(root: str | os.PathLike, dataset: str = "refcoco") -> None:
    """Delete what :func:`generate_dataset` wrote under ``root``."""
    root = Path(root)
    shutil.rmtree(root / dataset, ignore_errors=True)
    shutil.rmtree(root / "images", ignore_errors=True)
