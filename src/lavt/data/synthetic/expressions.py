"""Referring expressions of the synthetic scenes: attributes, ordinals, relations.

Each expression is checked against its scene: it matches exactly one object.
The words used here are exactly those of the bundled synthetic vocabulary
(:func:`lavt.tokenizer.synthetic_vocabulary`); :func:`generator_vocabulary`
rebuilds it from these lists, and a test keeps the two equal.
"""

from __future__ import annotations

import itertools
import random

from lavt.data.synthetic.scenes import COLOURS, SceneObject

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
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TEMPLATE_WORDS = (
    "the a one object shape thing of to on in picture image from left right top bottom "
    "leftmost rightmost topmost bottommost above below under over next side"
)


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


def generator_vocabulary() -> list[str]:
    """The vocabulary these word lists need ([PAD] = 0); equals the bundled one."""
    words: set[str] = set(TEMPLATE_WORDS.split())
    words |= set(COLOURS) | set(ORDINALS)
    for synonyms in (*SHAPE_WORDS.values(), *SIZE_WORDS.values(), *RELATION_WORDS.values()):
        for phrase in synonyms:
            words |= set(phrase.split())
    return [*SPECIAL_TOKENS, *sorted(words)]
