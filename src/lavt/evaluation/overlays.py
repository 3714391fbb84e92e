"""Overlays a person can read: tinted objects, two-tone contours, a legend of the texts.

- :func:`render_prediction`: one expression's mask on its image, tinted in the
  expression's colour (:func:`tint_colour`: the next palette colour when that one
  is close to the object's own) with the text, the share of the image and a
  swatch of the tint in a legend strip below;
- :func:`render_frame`: every expression's mask on one video frame, each in its
  own fixed colour (the overlay video of ``lavt predict --video``);
- :func:`render_comparison`: ground truth (green outline) against the
  prediction (tinted, outlined), with the expression and the IoU in the legend.

Overlays are drawn at a viewing size: small images (the 64 px synthetic
scenes) are enlarged by a whole factor with nearest-neighbour (pixels stay
sharp), very large photos reduced; masks are files at the image's own size.
A contour is a dark line outside a bright one, so it shows on any colour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: tints, one per expression in order: unlike the synthetic scenes' own colours, the
#: serve page's (``serve/static/app.js``), so a tint never vanishes into its object.
PALETTE = (
    (0, 229, 255),
    (255, 0, 204),
    (255, 255, 255),
    (127, 255, 0),
    (255, 140, 180),
    (0, 0, 0),
    (140, 255, 230),
    (120, 120, 255),
)
#: a tint closer than this (RGB distance) to the object's mean colour gives way to the next
MIN_CONTRAST = 120.0
TRUTH = (40, 230, 40)
PREDICTION = (230, 40, 200)
DARK = (0, 0, 0)
MIN_VIEW = 384  # shorter side of an enlarged small image, at least
MAX_VIEW = 1600  # longer side of a reduced large image, at most


def expression_colour(k: int) -> tuple[int, int, int]:
    """The colour of the ``k``-th expression (cycles through :data:`PALETTE`)."""
    return PALETTE[k % len(PALETTE)]


def tint_colour(k: int, own: np.ndarray | None = None) -> tuple[int, int, int]:
    """The ``k``-th expression's colour, or, when it is within :data:`MIN_CONTRAST` of
    the object's own colour ``own`` (its mean RGB, (3,)), the next palette colour that
    stands out from it (the farthest one when none does)."""
    if own is None:
        return expression_colour(k)
    order = [expression_colour(k + i) for i in range(len(PALETTE))]
    distance = [float(np.linalg.norm(np.subtract(c, own, dtype=np.float32))) for c in order]
    near = next((c for c, d in zip(order, distance, strict=True) if d >= MIN_CONTRAST), None)
    return near or order[int(np.argmax(distance))]


def view_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) to draw at: a whole-factor enlargement or a reduction to MAX_VIEW."""
    if max(width, height) > MAX_VIEW:
        scale = MAX_VIEW / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))
    factor = max(1, min(math.ceil(MIN_VIEW / min(width, height)), MAX_VIEW // max(width, height)))
    return width * factor, height * factor


def boundary(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Pixels of ``mask`` (H, W) bool within ``thickness`` of the background (4-neighbourhood)."""
    mask = mask.astype(bool)
    inner = mask.copy()
    for _ in range(max(1, thickness)):
        padded = np.pad(inner, 1, constant_values=False)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _outline(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], width: int) -> None:
    """Draw a two-tone contour just inside ``mask``: dark outer line, ``colour`` inner line."""
    outer = boundary(mask, width)
    rgb[outer] = DARK
    rgb[boundary(mask, 2 * width) & ~outer] = colour


def _line_width(rgb: np.ndarray) -> int:
    """Contour line width for a (H, W, 3) view: 2 px on a 384 px view, more on larger ones."""
    return max(2, min(rgb.shape[:2]) // 180)


def _view(image: Image.Image, masks: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The image (H', W', 3) uint8 and masks (H', W') bool at the viewing size."""
    size = view_size(*image.size)
    enlarge = size[0] >= image.size[0]
    picture = (image if image.mode == "RGB" else image.convert("RGB")).resize(
        size, Image.NEAREST if enlarge else Image.BILINEAR, reducing_gap=None if enlarge else 2.0
    )
    views = [
        np.asarray(Image.fromarray(m.astype(np.uint8) * 255, mode="L").resize(size, Image.NEAREST))
        > 127
        for m in masks
    ]
    return np.array(picture, dtype=np.uint8), views


def _tint(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float) -> None:
    region = rgb[mask].astype(np.float32)  # (P, 3), only the object's pixels
    rgb[mask] = ((1 - alpha) * region + alpha * np.asarray(colour, np.float32)).astype(np.uint8)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: a fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """``text`` broken into lines of at most ``width`` pixels (at most 3; the last one cut)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > 3:
        lines = [*lines[:2], " ".join(lines[2:])]
    cut = []
    for line in lines:
        while len(line) > 1 and draw.textlength(line, font=font) > width:
            line = line[:-4] + "..."
        cut.append(line)
    return cut or [""]


def _with_legend(
    rgb: np.ndarray, rows: list[tuple[tuple[int, int, int] | None, str]]
) -> Image.Image:
    """``rgb`` (H, W, 3) above a white strip with (swatch colour, wrapped text) rows."""
    height, width = rgb.shape[:2]
    size = max(14, min(28, width // 24))
    line, indent = size + size // 2, size + size
    font = _font(size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [(colour, _wrap(measure, text, font, width - indent - 4)) for colour, text in rows]
    total = sum(len(lines) for _, lines in wrapped)
    canvas = Image.new("RGB", (width, height + line * total + size // 2), (255, 255, 255))
    canvas.paste(Image.fromarray(rgb, mode="RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    top = height + size // 4
    for colour, lines in wrapped:
        left = size // 2
        if colour is not None:
            draw.rectangle((left, top, left + size, top + size), fill=colour, outline=DARK)
        for text in lines:
            draw.text((indent if colour is not None else left, top), text, fill=DARK, font=font)
            top += line
    return canvas


def render_prediction(
    image: Image.Image,
    mask: np.ndarray,
    text: str,
    *,
    colour_index: int = 0,
    alpha: float = 0.45,
    found: bool = True,
    no_target_probability: float | None = None,
) -> Image.Image:
    """One expression's overlay: ``mask`` (H, W) bool tinted and outlined, the text below.

    ``found=False`` says "no object found" in the legend (generalized referring
    segmentation); ``no_target_probability`` is shown when given.
    """
    if mask.shape != (image.size[1], image.size[0]):
        raise ValueError(f"mask {mask.shape} does not match the image {image.size[::-1]}")
    rgb, (view,) = _view(image, [mask])
    own = rgb[view].mean(axis=0) if view.any() else None  # (3,) the object's mean colour
    colour = tint_colour(colour_index, own)
    _tint(rgb, view, colour, alpha)
    _outline(rgb, view, colour, _line_width(rgb))
    share = 100.0 * float(mask.mean())
    note = f"{share:.1f}% of the image" if found else "no object found"
    if no_target_probability is not None:
        note += f", P(no object) {no_target_probability:.2f}"
    return _with_legend(rgb, [(colour, f'"{text}"  ({note})')])


def render_frame(
    image: Image.Image, masks: Sequence[np.ndarray], texts: Sequence[str], *, alpha: float = 0.45
) -> Image.Image:
    """Every expression's mask (H, W) bool on one video frame, the texts below.

    Expression ``k`` is always tinted :func:`expression_colour` ``(k)`` (no choice by
    the object's colour, which would make a tint flicker from frame to frame), and
    the legend holds the texts alone, so every frame of a video has the same size.
    """
    rgb, views = _view(image, list(masks))
    width = _line_width(rgb)
    for k, view in enumerate(views):
        _tint(rgb, view, expression_colour(k), alpha)
        _outline(rgb, view, expression_colour(k), width)
    return _with_legend(rgb, [(expression_colour(k), f'"{t}"') for k, t in enumerate(texts)])


def render_comparison(
    image: Image.Image,
    prediction: np.ndarray,
    truth: np.ndarray,
    text: str,
    *,
    iou: float | None = None,
    alpha: float = 0.45,
) -> Image.Image:
    """Prediction (tinted, outlined) against the ground truth (green outline), legend below."""
    rgb, (pred, gt) = _view(image, [prediction, truth])
    width = _line_width(rgb)
    _tint(rgb, pred, PREDICTION, alpha)
    _outline(rgb, pred, PREDICTION, width)
    _outline(rgb, gt, TRUTH, width)
    score = "" if iou is None else f"  (IoU {iou:.3f})"
    return _with_legend(
        rgb,
        [(None, f'"{text}"{score}'), (TRUTH, "ground truth"), (PREDICTION, "prediction")],
    )
