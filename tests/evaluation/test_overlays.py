"""Overlays: enlarged small images, a legend per expression, distinct colours, comparisons."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lavt.data.synthetic import COLOURS
from lavt.evaluation.overlays import (
    DARK,
    MIN_CONTRAST,
    PALETTE,
    PREDICTION,
    TRUTH,
    expression_colour,
    render_comparison,
    render_prediction,
    tint_colour,
    view_size,
)

APP_JS = Path(__file__).resolve().parents[2] / "src" / "lavt" / "serve" / "static" / "app.js"


def _picture(colour=(200, 30, 30), size=(64, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


def _mask(shape=(48, 64)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[10:30, 20:40] = True
    return mask


def test_view_sizes():
    assert view_size(64, 48) == (512, 384)  # whole-factor enlargement
    assert view_size(6000, 4000) == (1600, 1067)
    assert view_size(800, 600) == (800, 600)


def test_prediction_overlay_has_a_legend_in_the_expression_colour():
    overlay = np.asarray(render_prediction(_picture(), _mask(), "the red box", colour_index=3))
    view_w, view_h = view_size(64, 48)
    assert overlay.shape[1] == view_w and overlay.shape[0] > view_h  # legend strip below
    legend = overlay[view_h:]
    assert (legend == expression_colour(3)).all(-1).any()  # the swatch
    assert (legend == DARK).all(-1).sum() > 50  # the text
    assert len({expression_colour(k) for k in range(len(PALETTE))}) == len(PALETTE)


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (31, 119, 180)])
def test_contour_shows_on_any_object_colour(colour):
    overlay = np.asarray(render_prediction(_picture(colour), _mask(), "x"))
    view_h = view_size(64, 48)[1]
    shown = overlay[:view_h]
    assert (shown == DARK).all(-1).any() and (shown == expression_colour(0)).all(-1).any()


def test_comparison_shows_truth_prediction_and_text():
    truth = np.zeros((48, 64), dtype=bool)
    truth[5:20, 5:20] = True
    overlay = np.asarray(render_comparison(_picture(), _mask(), truth, "the box", iou=0.25))
    assert (overlay == TRUTH).all(-1).any() and (overlay == PREDICTION).all(-1).any()
    assert overlay.shape[0] > view_size(64, 48)[1] + 60  # three legend lines


def test_mask_must_match_the_image():
    with pytest.raises(ValueError, match="does not match"):
        render_prediction(_picture(), np.zeros((10, 10), dtype=bool), "x")


def _centre_and_swatch(overlay: np.ndarray, colour) -> tuple[np.ndarray, bool]:
    """The tinted centre pixel of the object of :func:`_mask` (view pixels), and whether the
    legend strip holds a swatch of ``colour``."""
    view_h = view_size(64, 48)[1]
    return overlay[160, 240].astype(int), bool((overlay[view_h:] == colour).all(-1).any())


@pytest.mark.parametrize("name", sorted(COLOURS))
@pytest.mark.parametrize("k", range(len(PALETTE)))
def test_tint_stands_out_on_every_scene_colour_and_the_legend_shows_it(name, k):
    own = COLOURS[name]
    overlay = np.asarray(render_prediction(_picture(own), _mask(), "x", colour_index=k))
    colour = tint_colour(k, np.asarray(own, np.float32))
    centre, swatch = _centre_and_swatch(overlay, colour)
    # a 45% tint at least MIN_CONTRAST away moves the object's pixels visibly
    assert np.linalg.norm(centre - own) >= 0.45 * MIN_CONTRAST - 2, (name, k, colour)
    assert swatch  # the legend keeps the tint's swatch


def test_tint_gives_way_on_an_object_of_the_palette_colour():
    own = PALETTE[0]
    assert tint_colour(0) == own and tint_colour(0, np.asarray(own, np.float32)) != own
    overlay = np.asarray(render_prediction(_picture(own), _mask(), "x", colour_index=0))
    centre, swatch = _centre_and_swatch(overlay, tint_colour(0, np.asarray(own, np.float32)))
    assert np.linalg.norm(centre - own) > 50 and swatch


def test_palette_is_the_serve_page_palette():
    """The page and the overlays pick tints from one list (both unlike the scene colours)."""
    found = re.search(r"const COLOURS = \[(.*?)\];", APP_JS.read_text(), re.S)
    page = [tuple(map(int, t)) for t in re.findall(r"\[(\d+), (\d+), (\d+)\]", found.group(1))]
    assert tuple(page) == PALETTE
