"""Scenes of the synthetic dataset: 3-5 coloured shapes on a textured background.

Within a scene each (colour, shape) pair occurs once and colours and shapes
repeat across objects, so neither alone picks an object. Objects may overlap a
little (centre distance at least 0.8 times the sum of the radii); later ones are
drawn on top.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from lavt.errors import InputError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")


@dataclass
class SceneObject:
    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    radius: float
    polygon: list[tuple[float, float]] = field(default_factory=list)


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
    rng: random.Random,
    width: int,
    height: int,
    need: str | None,
    *,
    count: tuple[int, int] = (3, 5),
    kinds: tuple[int, int] = (2, 3),
    param: str = "image_size",
) -> list[SceneObject]:
    """``count`` (3-5) objects, unique (colour, shape) pairs out of ``kinds`` (2-3) shapes
    and colours, so colours and shapes repeat; ``param`` is named when none fit."""
    side = min(width, height)
    for _ in range(200):
        count_ = rng.randint(*count)
        shapes = rng.sample(SHAPES, rng.randint(*kinds))
        colours = rng.sample(list(COLOURS), rng.randint(*kinds))
        pairs = [(s, c) for s in shapes for c in colours]
        if len(pairs) < count_:
            continue
        chosen = rng.sample(pairs, count_)
        if need == "circle" and not any(s == "circle" for s, _ in chosen):
            continue
        if need == "other" and all(s == "circle" for s, _ in chosen):
            continue
        objects = _place(rng, chosen, width, height, side)
        if objects is not None:
            return objects
    raise InputError(
        f"{param} {(width, height)}: could not place the objects; use a larger size",
        param=param,
    )


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


def render_scene(
    objects: list[SceneObject],
    background: Image.Image,
    palette: dict[str, tuple[int, int, int]] = COLOURS,
) -> Image.Image:
    """The objects' outlines filled with their ``palette`` colours, in order, on ``background``."""
    image = background.copy()
    draw = ImageDraw.Draw(image)
    for obj in objects:
        draw.polygon(obj.polygon, fill=palette[obj.colour])
    return image
