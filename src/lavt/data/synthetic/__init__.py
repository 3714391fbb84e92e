"""A synthetic referring-segmentation dataset in the exact refer layout.

Scenes of 3-5 coloured shapes on textured backgrounds, with expressions that
need the language to resolve:

- attributes: "the small red circle", "the blue one", "big green square";
- relations: "the square left of the blue triangle";
- ordinals: "second circle from the left", "the rightmost star";

several per object, worded in more than one way (synonyms, templates). Every
expression is checked against its scene: it matches exactly one object. Colours
and shapes repeat across objects, so a model that ignores the text cannot
exceed about one third.

- :mod:`~lavt.data.synthetic.scenes`: objects, outlines and rendering;
- :mod:`~lavt.data.synthetic.expressions`: the expression templates and words;
- :mod:`~lavt.data.synthetic.writer`: :func:`generate_dataset` (``lavt synth``);
- :mod:`~lavt.data.synthetic.generalized` and ``gres_writer``: expressions naming
  several objects or none, :func:`generate_generalized_dataset` in the gRefCOCO
  layout (``lavt synth --generalized``);
- :mod:`~lavt.data.synthetic.novel` and ``novel_export``: the "own data" worked
  example, scenes of shapes, colours and words the bundled model never saw, written
  as JSONL, COCO and LabelMe files (``lavt synth --own-data``) for ``lavt data import``.

The vocabulary of these words lives in :func:`lavt.tokenizer.synthetic_vocabulary`
(re-exported here), so that building a model never imports the generator.
"""

from __future__ import annotations

from lavt.data.synthetic.expressions import (
    EXPRESSION_KINDS,
    ORDINALS,
    RELATION_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
    expression_kind,
    expressions_for,
)
from lavt.data.synthetic.generalized import (
    generalized_vocabulary,
    multi_target_expressions,
    no_target_expressions,
)
from lavt.data.synthetic.gres_writer import generate_generalized_dataset
from lavt.data.synthetic.scenes import COLOURS, SHAPES, SceneObject, render_scene, shape_polygon
from lavt.data.synthetic.writer import MARKER, SPLIT_SHARES, SynthSummary, generate_dataset
from lavt.tokenizer import synthetic_vocabulary

__all__ = [
    "COLOURS",
    "EXPRESSION_KINDS",
    "MARKER",
    "ORDINALS",
    "RELATION_WORDS",
    "SHAPES",
    "SHAPE_WORDS",
    "SIZE_WORDS",
    "SPLIT_SHARES",
    "SceneObject",
    "SynthSummary",
    "expression_kind",
    "expressions_for",
    "generalized_vocabulary",
    "generate_dataset",
    "generate_generalized_dataset",
    "multi_target_expressions",
    "no_target_expressions",
    "render_scene",
    "shape_polygon",
    "synthetic_vocabulary",
]
