"""Scenes of a domain the bundled model has never seen (the "own data" worked example).

The bundled model (:mod:`lavt.assets`) was trained on ``lavt synth`` scenes:
circles, squares, triangles, diamonds, stars and crosses in red, green, blue,
yellow, purple and orange on smooth gradients, with words like "left of" and
"second". These scenes use none of that:

- shapes: hexagon, heart, arrow, moon (a crescent);
- colours: pink, cyan, brown, white, black;
- backgrounds: stripes, checkerboards and dots in muted two-tone textures;
- relation words: "west of", "east of", "north of", "south of".

2-4 objects per scene, no two with the same (colour, shape) and none touching
(so an object's outline is also its visible mask). Expressions name the colour
and shape, the shape alone or the colour alone where that is unique, or a
compass relation to an anchor; each is checked with
:func:`lavt.data.synthetic.generalized.resolve` to select exactly its object.
:mod:`~lavt.data.synthetic.novel_export` writes them as JSONL, COCO and LabelMe.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lavt.data.synthetic.expressions import _relation
from lavt.data.synthetic.generalized import Query, resolve
from lavt.data.synthetic.scenes import SceneObject, render_scene

NOVEL_COLOURS: dict[str, tuple[int, int, int]] = {
    "pink": (255, 110, 190),
    "cyan": (0, 215, 230),
    "brown": (130, 75, 25),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
NOVEL_SHAPES = ("hexagon", "heart", "arrow", "moon")
COMPASS = {"left": "west", "right": "east", "above": "north", "below": "south"}
COLOUR_NOUNS = ("item", "figure", "token")
TEXTURES = ("stripes", "checks", "dots")


@dataclass
class NovelScene:
    """One scene: its image and objects, and per object its checked expressions."""

    image: Image.Image
    objects: list[SceneObject]
    expressions: list[list[str]]


# ----------------------------------------------------------------------------- outlines


def novel_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Outline of a novel shape of about radius ``r`` as (x, y) vertices (y down)."""
    if shape == "hexagon":
        points = [(r * math.cos(a), r * math.sin(a)) for a in (i * math.pi / 3 for i in range(6))]
    elif shape == "heart":  # the classic parametric heart, scaled to radius r
        ts = [2 * math.pi * i / 28 for i in range(28)]
        points = [
            (
                r * (16 * math.sin(t) ** 3) / 17,
                -r
                * (13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
                / 17,
            )
            for t in ts
        ]
    elif shape == "arrow":  # pointing right
        h, s = 0.7 * r, 0.28 * r
        points = [
            (-r, -s),
            (0.1 * r, -s),
            (0.1 * r, -h),
            (r, 0),
            (0.1 * r, h),
            (0.1 * r, s),
            (-r, s),
        ]
    elif shape == "moon":  # the outer disc minus a disc shifted right: a crescent opening right
        d, inner = 0.5 * r, 0.85 * r
        x = (r * r - inner * inner + d * d) / (2 * d)
        y = math.sqrt(r * r - x * x)
        phi, psi = math.atan2(y, x), math.atan2(y, x - d)
        outer = [phi + (2 * math.pi - 2 * phi) * i / 20 for i in range(21)]
        back = [2 * math.pi - psi - (2 * math.pi - 2 * psi) * i / 14 for i in range(1, 14)]
        points = [(r * math.cos(a), r * math.sin(a)) for a in outer]
        points += [(d + inner * math.cos(a), inner * math.sin(a)) for a in back]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return [(cx + x, cy + y) for x, y in points]


def textured_background(rng: random.Random, width: int, height: int) -> Image.Image:
    """Two muted tones in stripes, checks or dots, with a little noise."""
    np_rng = np.random.default_rng(rng.getrandbits(32))
    base = np.array([rng.randint(85, 165) for _ in range(3)], dtype=np.float32)
    base = 0.6 * base + 0.4 * base.mean()  # muted: close to grey
    other = base + rng.choice((-1, 1)) * rng.randint(18, 32)
    period = rng.randint(6, 12)
    ys, xs = np.mgrid[0:height, 0:width]
    texture = rng.choice(TEXTURES)
    if texture == "stripes":
        coord = {"h": ys, "v": xs, "d": xs + ys}[rng.choice("hvd")]
        pattern = (coord // (period // 2 + 1)) % 2 == 0
    elif texture == "checks":
        pattern = (xs // period + ys // period) % 2 == 0
    else:
        pattern = ((xs % period) - period / 2) ** 2 + ((ys % period) - period / 2) ** 2 < (
            period / 4
        ) ** 2
    image = np.where(pattern[..., None], other, base)  # (H, W, 3)
    image = image + np_rng.normal(0, 3, size=image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="RGB")


# ----------------------------------------------------------------------------- scenes


def _place(rng: random.Random, chosen, width: int, height: int) -> list[SceneObject] | None:
    side = min(width, height)
    objects: list[SceneObject] = []
    for shape, colour in chosen:
        radius = side * rng.uniform(0.12, 0.17)
        for _ in range(100):
            cx = rng.uniform(radius + 1, width - radius - 1)
            cy = rng.uniform(radius + 1, height - radius - 1)
            if all(math.hypot(cx - o.cx, cy - o.cy) > radius + o.radius + 2 for o in objects):
                break
        else:
            return None
        polygon = novel_polygon(shape, cx, cy, radius)
        objects.append(SceneObject(shape, colour, "", cx, cy, radius, polygon))
    return objects


def sample_novel_scene(rng: random.Random, width: int, height: int) -> list[SceneObject]:
    """2-4 non-touching objects with distinct (colour, shape) pairs; colours and
    shapes repeat, so neither alone always picks an object."""
    pairs = [(s, c) for s in NOVEL_SHAPES for c in NOVEL_COLOURS]
    for _ in range(200):
        chosen = rng.sample(pairs, rng.randint(2, 4))
        objects = _place(rng, chosen, width, height)
        if objects is not None:
            return objects
    raise RuntimeError(f"could not place objects in a {width}x{height} scene")  # pragma: no cover


def _single(query: Query, objects: list[SceneObject], target: int, side: int) -> bool:
    return resolve(query, objects, side) == {target}


def novel_expressions(
    rng: random.Random, objects: list[SceneObject], target: int, side: int
) -> list[str]:
    """1-4 distinct expressions, each selecting exactly ``objects[target]``."""
    obj = objects[target]
    out = [f"the {obj.colour} {obj.shape}"]  # (colour, shape) pairs are unique per scene
    if _single(Query(shape=obj.shape), objects, target, side):
        out.append(f"the {obj.shape}")
    if _single(Query(colour=obj.colour), objects, target, side):
        out.append(f"the {obj.colour} {rng.choice(COLOUR_NOUNS)}")
    relations = []
    for a, anchor in enumerate(objects):
        rel = _relation(obj, anchor, 0.1 * side) if a != target else None
        if rel is None or not _single(
            Query(shape=obj.shape, relation=rel, anchor=a), objects, target, side
        ):
            continue
        named = f"{anchor.colour} {anchor.shape}"
        if _single(Query(shape=anchor.shape), objects, a, side):
            named = rng.choice((named, anchor.shape))
        relations.append(f"the {obj.shape} {COMPASS[rel]} of the {named}")
    rng.shuffle(relations)
    out += relations[:2]
    return list(dict.fromkeys(out))


def novel_scene(rng: random.Random, width: int, height: int) -> NovelScene:
    """A rendered scene with the expressions of every object."""
    objects = sample_novel_scene(rng, width, height)
    image = render_scene(objects, textured_background(rng, width, height), NOVEL_COLOURS)
    side = min(width, height)
    expressions = [novel_expressions(rng, objects, i, side) for i in range(len(objects))]
    return NovelScene(image, objects, expressions)


def novel_vocabulary() -> list[str]:
    """Every word the novel expressions use (sorted)."""
    words = {"the", "of", *NOVEL_COLOURS, *NOVEL_SHAPES, *COMPASS.values(), *COLOUR_NOUNS}
    return sorted(words)
