"""Synthetic videos: 1-3 of the synthetic scenes' shapes moving over a still background.

Each object keeps its shape, colour, size and outline and moves in a straight
line, a constant step per kept frame, bouncing off the frame's edges (its
centre stays at least one radius inside). Objects may pass over one another;
later ones are drawn on top, so a mask holds the pixels one sees (an object
hidden for a frame or two has no pixels there).

Expressions, each checked on every frame to pick out exactly one object:

- attributes, as the image scenes': "the red circle", "the small square";
- position, when it holds on every frame: "the leftmost circle", "the square
  above the blue star";
- motion: "the circle moving left", when that object moves left on every
  frame (no bounce along that axis) and no other object the words fit moves left.

The scenes' style (colours, shapes, sizes, background) is the image set's
(:mod:`~lavt.data.synthetic.scenes`), so an image model trained on it finds the
objects frame by frame; the motion words are new to it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lavt.data.synthetic.expressions import (
    RELATION_WORDS,
    SHAPE_WORDS,
    _attribute_expressions,
    _attribute_matches,
    _describe,
    _relation,
)
from lavt.data.synthetic.scenes import SceneObject, _sample_scene

#: the directions the motion expressions name ("the circle moving left")
DIRECTIONS = ("left", "right", "up", "down")
_EXTREMES = {
    "cx": ("leftmost", "rightmost", "left", "right"),
    "cy": ("topmost", "bottommost", "top", "bottom"),
}


@dataclass
class MovingObject:
    """An object of a synthetic video: as drawn on frame 0, and its step per frame."""

    start: SceneObject
    vx: float  # pixels per kept frame
    vy: float


def _bounce(start: float, step: float, t: int, low: float, high: float) -> float:
    """Position at frame ``t`` of a point moving ``step`` a frame from ``start`` inside
    [low, high], reflected at both ends."""
    span = high - low
    if span <= 0:
        return start
    u = (start - low + step * t) % (2 * span)  # one period: out and back
    return low + u if u <= span else low + 2 * span - u


def frame_objects(
    objects: list[MovingObject], t: int, width: int, height: int
) -> list[SceneObject]:
    """The objects as drawn on frame ``t`` (outlines moved to their positions there)."""
    out = []
    for obj in objects:
        o = obj.start
        cx = _bounce(o.cx, obj.vx, t, o.radius, width - o.radius)
        cy = _bounce(o.cy, obj.vy, t, o.radius, height - o.radius)
        polygon = [(x + cx - o.cx, y + cy - o.cy) for x, y in o.polygon]
        out.append(SceneObject(o.shape, o.colour, o.size, cx, cy, o.radius, polygon))
    return out


def motion_direction(obj: MovingObject, num_frames: int, width: int, height: int) -> str | None:
    """The direction (one of :data:`DIRECTIONS`) the object clearly moves in from the
    first frame to the last (its main axis at least twice the other, no bounce along
    it), else None."""
    o = obj.start
    if abs(obj.vx) >= 2 * abs(obj.vy):
        start, step, high, words = o.cx, obj.vx, width - o.radius, DIRECTIONS[:2]
    elif abs(obj.vy) >= 2 * abs(obj.vx):
        start, step, high, words = o.cy, obj.vy, height - o.radius, DIRECTIONS[2:]
    else:
        return None
    end = start + step * (num_frames - 1)  # unreflected: no bounce when still inside
    if step == 0 or not o.radius <= end <= high:
        return None
    return words[0] if step < 0 else words[1]


def sample_video(rng: random.Random, width: int, height: int) -> list[MovingObject]:
    """1-3 objects with distinct (colour, shape) pairs, placed apart on frame 0, each
    with a speed of 4-10% of the shorter side a frame in a random direction."""
    side = min(width, height)
    placed = _sample_scene(rng, width, height, None, count=(1, 3), kinds=(1, 2), param="size")
    objects = []
    for obj in placed:
        speed = side * rng.uniform(0.04, 0.10)
        main, cross = speed * rng.choice((-1, 1)), speed * rng.uniform(-0.35, 0.35)
        vx, vy = (main, cross) if rng.random() < 0.5 else (cross, main)
        objects.append(MovingObject(obj, vx, vy))
    return objects


# ----------------------------------------------------------------------------- expressions


def _stable(frames: list[list[SceneObject]], test) -> bool:
    return all(test(objects) for objects in frames)


def _position_expressions(rng, frames, index, side) -> list[str]:
    """ "the leftmost circle" when the target is the extreme one of its shape on every frame,
    by a clear margin (12% of the shorter side, as the image scenes' ordinals)."""
    target = frames[0][index]
    same = [i for i, o in enumerate(frames[0]) if o.shape == target.shape]
    if len(same) < 2:
        return []
    out = []
    for axis, (low_word, high_word, low_end, high_end) in _EXTREMES.items():
        for sign, extreme, end in ((1, low_word, low_end), (-1, high_word, high_end)):

            def first(objects, sign=sign, axis=axis):
                mine = sign * getattr(objects[index], axis)
                others = [sign * getattr(objects[i], axis) for i in same if i != index]
                return min(others) - mine >= 0.12 * side

            if _stable(frames, first):
                word = rng.choice(SHAPE_WORDS[target.shape])
                out.append(rng.choice((f"the {extreme} {word}", f"the {word} on the {end}")))
    return out


def _relation_expressions(rng, frames, index, side) -> list[str]:
    """ "the circle left of the blue square" when that holds, and fits only the target,
    on every frame."""
    target = frames[0][index]
    out = []
    for a, anchor in enumerate(frames[0]):
        if a == index:
            continue
        keys = next(
            (
                k
                for k in (("shape",), ("colour", "shape"))
                if _attribute_matches(frames[0], anchor, k)
            ),
            None,
        )
        relations = {_relation(objects[index], objects[a], 0.1 * side) for objects in frames}
        if keys is None or len(relations) != 1 or None in relations:
            continue
        (rel,) = relations

        def only_target(objects, a=a, rel=rel):
            fits = [
                i
                for i, o in enumerate(objects)
                if o.shape == target.shape
                and i != a
                and _relation(o, objects[a], 0.1 * side) == rel
            ]
            return fits == [index]

        if _stable(frames, only_target):
            word, phrase = rng.choice(SHAPE_WORDS[target.shape]), rng.choice(RELATION_WORDS[rel])
            out.append(f"the {word} {phrase} the {_describe(rng, frames[0][a], keys)}")
    return out


def _motion_expressions(rng, objects, directions, index) -> list[str]:
    """ "the circle moving left" / "the one moving up" when the target is the only object
    those words fit that moves that way, and every other they fit clearly moves otherwise."""
    direction = directions[index]
    if direction is None:
        return []
    target = objects[index]
    out = []
    for noun_fits, noun in (
        (lambda o: o.shape == target.shape, rng.choice(SHAPE_WORDS[target.shape])),
        (lambda o: True, rng.choice(("one", "object", "shape", "thing"))),
    ):
        others = [
            d
            for i, (o, d) in enumerate(zip(objects, directions, strict=True))
            if i != index and noun_fits(o)
        ]
        if all(d is not None and d != direction for d in others):
            out.append(f"the {noun} moving {direction}")
    return out


def video_expressions(
    rng: random.Random,
    objects: list[MovingObject],
    index: int,
    frames: list[list[SceneObject]],
    directions: list[str | None],
    side: int,
) -> list[str]:
    """1-3 distinct expressions for ``objects[index]``, one of each kind first (attribute,
    position, motion), each true of that object alone on every one of ``frames``."""
    pools = [
        _attribute_expressions(rng, frames[0], frames[0][index]),
        _position_expressions(rng, frames, index, side)
        + _relation_expressions(rng, frames, index, side),
        _motion_expressions(rng, frames[0], directions, index),
    ]
    chosen: list[str] = []
    for pool in pools:
        rng.shuffle(pool)
        if pool:
            chosen.append(pool.pop())
    rest = [e for pool in pools for e in pool]
    rng.shuffle(rest)
    chosen.extend(rest[: max(0, 3 - len(chosen))])
    return list(dict.fromkeys(chosen))[:3]
