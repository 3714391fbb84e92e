"""Writing a synthetic *generalized* dataset in the gRefCOCO layout (``lavt synth --generalized``).

``<root>/grefcoco/grefs(unc).json`` (a JSON list of refs whose ``ann_id`` is a
list: one id, several, or ``[-1]`` for no target), ``<root>/grefcoco/instances.json``
and the scenes under ``<root>/images/train2014/``; read back with
``ReferIndex(root, "grefcoco")``. Per image (splits per image, as for ``lavt synth``):

- one ref per object with its single-object expressions;
- one ref per group of >= 2 objects that some multi-target expression names
  (all its expressions);
- one ref per no-target expression, as many as needed for about
  ``no_target_fraction`` of the image's expressions (sentences) to be no-target.

testA and testB are drawn like val here (the scenes have no people/objects
divide). Same seed, same bytes; the marker and atomic-write rules of
:mod:`~lavt.data.synthetic.writer` apply.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

from lavt.data.synthetic.expressions import expressions_for
from lavt.data.synthetic.generalized import multi_target_expressions, no_target_expressions
from lavt.data.synthetic.scenes import SHAPES
from lavt.data.synthetic.writer import (
    SynthSummary,
    _check_arguments,
    _prepare_root,
    _summary,
    synth_layout,
    write_scenes,
)
from lavt.errors import InputError

GRES_IMAGE_SUBDIR = Path("images") / "train2014"
MAX_GROUP_SENTENCES = 3


def _no_target_count(rng: random.Random, targets: int, fraction: float) -> int:
    """k with k / (targets + k) close to ``fraction`` (randomised rounding)."""
    if fraction <= 0:
        return 0
    exact = fraction / (1 - fraction) * targets
    return int(exact) + (rng.random() < exact - int(exact))


def _scene_refs(rng, objects, ann_ids, side, fraction) -> list[tuple[list[int], list[str]]]:
    """(ann ids, sentences) of one scene's refs; ``[-1]`` marks no-target."""
    refs: list[tuple[list[int], list[str]]] = []
    for i, obj in enumerate(objects):
        refs.append(([ann_ids[i]], expressions_for(rng, objects, obj, side)))
    groups: dict[frozenset[int], list[str]] = {}
    for text, chosen in multi_target_expressions(rng, objects, side):
        groups.setdefault(chosen, []).append(text)
    for chosen, texts in sorted(groups.items(), key=lambda kv: sorted(kv[0])):
        texts = list(dict.fromkeys(texts))[:MAX_GROUP_SENTENCES]
        refs.append(([ann_ids[i] for i in sorted(chosen)], texts))
    targets = sum(len(s) for _, s in refs)
    absent = no_target_expressions(rng, objects, side)
    for text in absent[: _no_target_count(rng, targets, fraction)]:
        refs.append(([-1], [text]))
    return refs


def generate_generalized_dataset(
    root: str | os.PathLike,
    *,
    num_images: int,
    seed: int = 0,
    image_size: tuple[int, int] = (64, 64),
    no_target_fraction: float = 0.2,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write ``num_images`` generalized scenes under ``root`` in the gRefCOCO layout."""
    _check_arguments(num_images, image_size)
    if not 0 <= no_target_fraction < 1:
        raise InputError(
            f"no_target_fraction {no_target_fraction}: must be in [0, 1)",
            param="no_target_fraction",
        )
    root = Path(root)
    ann_dir = root / "grefcoco"
    refs_path = ann_dir / "grefs(unc).json"
    _prepare_root(root, refs_path, overwrite=overwrite)
    rng = random.Random(seed)
    layout = synth_layout()
    for split, image_id, objects, ann_ids in write_scenes(
        rng, root / GRES_IMAGE_SUBDIR, num_images, image_size, layout, progress=progress
    ):
        category = {a: SHAPES.index(o.shape) + 1 for a, o in zip(ann_ids, objects, strict=True)}
        scene = _scene_refs(rng, objects, ann_ids, min(image_size), no_target_fraction)
        for targets, sentences in scene:
            layout.add_gref(
                split,
                image_id,
                [a for a in targets if a != -1],
                [category.get(a, -1) for a in targets],
                sentences,
                f"COCO_train2014_{image_id:012d}_{len(layout.refs)}.jpg",
            )
    layout.write(ann_dir, generalized=True)
    return _summary(root, layout)
