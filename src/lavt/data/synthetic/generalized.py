"""Generalized expressions of the synthetic scenes (GRES): several objects, or none.

Besides the single-object expressions of :mod:`~lavt.data.synthetic.expressions`,
a generalized scene gets

- multi-target expressions: a shape group ("both circles", "all the stars"), a
  colour group ("all red shapes", "the two blue ones"), a relation group ("the
  shapes left of the star": every other object lies clearly on that side or
  clearly not);
- no-target expressions: a colour/shape pair absent from the scene whose colour
  and shape both occur ("the green star" next to a green square and a red
  star), a shape absent from it ("the cross"), a colour absent from it.

Every expression is written from a :class:`Query` and checked against its scene
by :func:`resolve`: the objects it selects are exactly the intended ones (none
for no-target). Words outside the classic synthetic vocabulary (plurals, "both",
"all", ...) are listed in :func:`generalized_vocabulary`, which appends them to
the classic one so the classic token ids stay the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lavt.data.synthetic.expressions import RELATION_WORDS, SHAPE_WORDS, _describe, _relation
from lavt.data.synthetic.scenes import COLOURS, SHAPES, SceneObject

PLURAL_WORDS = {
    "circle": ("circles", "discs"),
    "square": ("squares", "boxes"),
    "triangle": ("triangles",),
    "diamond": ("diamonds",),
    "star": ("stars",),
    "cross": ("crosses",),
}
GROUP_NOUNS = ("shapes", "ones", "things", "objects")
COUNT_WORDS = {2: ("both", "the two"), 3: ("the three",)}
EXTRA_WORDS = ("all", "both", "two", "three", "ones", "things", "objects", "shapes")


@dataclass(frozen=True)
class Query:
    """What an expression asks for: attributes, and optionally a side of an anchor object."""

    colour: str | None = None
    shape: str | None = None
    relation: str | None = None  # left / right / above / below of ``anchor``
    anchor: int | None = None  # index of the anchor object


def resolve(query: Query, objects: list[SceneObject], side: int) -> set[int]:
    """Indices of the objects ``query`` selects in ``objects`` (the anchor never)."""
    out = set()
    for i, obj in enumerate(objects):
        if query.colour is not None and obj.colour != query.colour:
            continue
        if query.shape is not None and obj.shape != query.shape:
            continue
        if query.relation is not None:
            anchor = objects[query.anchor]
            if i == query.anchor or _relation(obj, anchor, 0.1 * side) != query.relation:
                continue
        out.add(i)
    return out


def _check(ok: bool, text: str) -> None:
    if not ok:  # a generator bug, never a user error
        raise RuntimeError(f"synthetic expression {text!r} does not match its scene")


def _count_phrase(rng: random.Random, n: int) -> str:
    return rng.choice((*COUNT_WORDS.get(n, ()), "all", "all the", "the"))


def _shape_groups(rng, objects, side) -> list[tuple[str, Query]]:
    out = []
    for shape in SHAPES:
        n = sum(o.shape == shape for o in objects)
        if n >= 2:
            text = f"{_count_phrase(rng, n)} {rng.choice(PLURAL_WORDS[shape])}"
            out.append((text, Query(shape=shape)))
    return out


def _colour_groups(rng, objects, side) -> list[tuple[str, Query]]:
    out = []
    for colour in COLOURS:
        n = sum(o.colour == colour for o in objects)
        if n >= 2:
            text = f"{_count_phrase(rng, n)} {colour} {rng.choice(GROUP_NOUNS)}"
            out.append((text, Query(colour=colour)))
    return out


def _relation_groups(rng, objects, side) -> list[tuple[str, Query]]:
    out = []
    for a, anchor in enumerate(objects):
        if sum(o.shape == anchor.shape for o in objects) != 1:
            continue  # the anchor must be named by its shape alone
        relations = [_relation(o, anchor, 0.1 * side) for o in objects if o is not anchor]
        if None in relations:
            continue  # some object is neither clearly on a side nor clearly not
        for rel in RELATION_WORDS:
            if relations.count(rel) >= 2:
                noun, phrase = rng.choice(GROUP_NOUNS), rng.choice(RELATION_WORDS[rel])
                anchor_text = _describe(rng, anchor, ("shape",))
                text = f"{rng.choice(('the', 'all', 'all the'))} {noun} {phrase} the {anchor_text}"
                out.append((text, Query(relation=rel, anchor=a)))
    return out


def multi_target_expressions(
    rng: random.Random, objects: list[SceneObject], side: int
) -> list[tuple[str, frozenset[int]]]:
    """(expression, the >= 2 objects it names), each checked with :func:`resolve`."""
    out = []
    for maker in (_shape_groups, _colour_groups, _relation_groups):
        for text, query in maker(rng, objects, side):
            chosen = resolve(query, objects, side)
            count = next((n for n, words in COUNT_WORDS.items() if text.startswith(words)), 0)
            _check(len(chosen) >= 2 and (not count or count == len(chosen)), text)
            out.append((text, frozenset(chosen)))
    return out


def no_target_expressions(rng: random.Random, objects: list[SceneObject], side: int) -> list[str]:
    """Expressions that name nothing in the scene, hardest first (checked with :func:`resolve`)."""
    colours = {o.colour for o in objects}
    shapes = {o.shape for o in objects}
    present = {(o.colour, o.shape) for o in objects}
    hard = [(c, s) for c in sorted(colours) for s in sorted(shapes) if (c, s) not in present]
    other_shapes = [s for s in SHAPES if s not in shapes]
    other_colours = [c for c in COLOURS if c not in colours]
    rng.shuffle(hard)
    rng.shuffle(other_shapes)
    rng.shuffle(other_colours)
    candidates: list[tuple[str, Query]] = []
    for colour, shape in hard:
        word = rng.choice(SHAPE_WORDS[shape])
        candidates.append((f"{rng.choice(('the ', ''))}{colour} {word}", Query(colour, shape)))
    for shape in other_shapes:
        word = rng.choice(SHAPE_WORDS[shape])
        candidates.append((f"the {word}{rng.choice(('', ' in the picture'))}", Query(shape=shape)))
    for colour in other_colours:
        candidates.append((f"the {colour} {rng.choice(('one', 'shape', 'thing'))}", Query(colour)))
    out = []
    for text, query in candidates:
        _check(not resolve(query, objects, side), text)
        out.append(text)
    return list(dict.fromkeys(out))


def generalized_vocabulary() -> list[str]:
    """The classic synthetic vocabulary with the generalized words appended
    (:func:`lavt.tokenizer.generalized_synthetic_vocabulary`, so that building a model
    does not import the generator); the tests check it covers these word lists."""
    from lavt.tokenizer import generalized_synthetic_vocabulary

    return generalized_synthetic_vocabulary()
