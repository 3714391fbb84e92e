"""Overlays for inspection: the object tinted, its contour drawn."""

from __future__ import annotations

import numpy as np
from PIL import Image

TINT = (255, 60, 60)
CONTOUR = (255, 255, 0)
REFERENCE_CONTOUR = (40, 255, 40)


def boundary(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Pixels of ``mask`` (H, W) bool that touch the background (4-neighbourhood)."""
    mask = mask.astype(bool)
    inner = mask.copy()
    for _ in range(max(1, thickness)):
        padded = np.pad(inner, 1, constant_values=False)
        inner = (
            inner
            & padded[:-2, 1:-1]
            & padded[2:, 1:-1]  # up, down
            & padded[1:-1, :-2]
            & padded[1:-1, 2:]  # left, right
        )
    return mask & ~inner


def render_overlay(
    image: Image.Image,
    mask: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    alpha: float = 0.5,
) -> Image.Image:
    """``image`` with ``mask`` (H, W) tinted and outlined; ``reference`` outlined in green."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32).copy()  # (H, W, 3)
    mask = mask.astype(bool)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match the image {rgb.shape[:2]}")
    thickness = max(1, min(mask.shape) // 200)
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.array(TINT, dtype=np.float32)
    rgb[boundary(mask, thickness)] = CONTOUR
    if reference is not None:
        rgb[boundary(reference.astype(bool), thickness)] = REFERENCE_CONTOUR
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")
