"""Overlays: enlarged small images, a legend per expression, distinct colours, comparisons."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lavt.evaluation.overlays import (
    DARK,
    PREDICTION,
    TRUTH,
    expression_colour,
    render_comparison,
    render_prediction,
    view_size,
)


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
    assert len({expression_colour(k) for k in range(10)}) == 10


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
