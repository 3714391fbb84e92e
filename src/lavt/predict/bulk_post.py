"""Bulk inference's postprocessing: one batch's model outputs -> its result lines.

The same results as :func:`lavt.predict.predictions_from_logits` followed by
:func:`lavt.predict.encode.encode_prediction` (the predictor's and ``lavt serve``'s
path), computed an image at a time instead of an expression at a time: the
no-target decision once per batch, one upsampling per image for all its
expressions in the batch (:meth:`LAVT.postprocess`, the same bilinear resize, so
the same masks bit for bit), one RLE call for them all; the score is the
predictor's own (:func:`lavt.predict.results.mean_probabilities`), so the lines are
serve's, byte for byte (``tests/predict/test_manifest.py``). At most
:data:`PIXELS_PER_STEP` upsampled pixels are held at once, whatever the image's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lavt.evaluation.overlays import render_prediction
from lavt.imageio import save_png_atomic
from lavt.modeling import LAVT
from lavt.predict.bulk_data import LoadedImage, Segment
from lavt.predict.encode import encode_masks, result_fields
from lavt.predict.results import mean_probabilities, no_target_decisions

PIXELS_PER_STEP = 1 << 23  # expressions x H x W floats upsampled at once (32 MiB)


@torch.inference_mode()
def batch_records(
    segments: list[Segment],
    logits: torch.Tensor,
    no_target_logits: torch.Tensor | None,
    *,
    rule: str,
    area_threshold: int,
    png_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """logits (B, 2, S, S) and no-target logits (B, 2) or None of one batch's real
    rows -> one result line per row, in row order (PNGs written when ``png_dir``)."""
    no_target, nt_probs = no_target_decisions(
        logits, no_target_logits, rule=rule, area_threshold=area_threshold
    )  # (B,) bool, B x (float | None)
    nothing = no_target.tolist()
    records = []
    for seg in segments:
        item, entry = seg.item, seg.item.task.entry
        step = max(1, PIXELS_PER_STEP // (item.height * item.width))
        for start in range(seg.start, seg.stop, step):
            stop = min(start + step, seg.stop)
            masks, scores = _masks_and_scores(
                logits[start:stop], no_target[start:stop], (item.height, item.width)
            )  # (e, H, W) bool, (e,)
            column_major = np.ascontiguousarray(masks.transpose(0, 2, 1))  # (e, W, H)
            encoded = encode_masks(column_major.view(np.uint8).transpose(2, 1, 0))  # (H, W, e)
            for row, (rle, bbox, area) in enumerate(encoded):
                k = seg.indices[start + row - seg.start]
                found, nt = not nothing[start + row], nt_probs[start + row]
                result = result_fields(entry.texts[k], rle, bbox, area, scores[row], found, nt)
                record = {"line": entry.line, "text_index": k, "id": entry.id}
                record |= {"image": entry.image, "text": result.pop("text")}
                record |= {"width": item.width, "height": item.height, **result}
                if png_dir is not None:
                    record |= save_pngs(png_dir, item, k, masks[row], found, nt)
                records.append(record)
    return records


def _masks_and_scores(
    logits: torch.Tensor, no_target: torch.Tensor, size: tuple[int, int]
) -> tuple[np.ndarray, list[float]]:
    """logits (e, 2, S, S), no_target (e,) bool -> masks (e, H, W) bool (empty where
    nothing is found) and each mask's mean foreground probability (0 when empty),
    as the predictor computes them."""
    foreground = LAVT.postprocess(logits, size)  # (e, H, W) log-odds
    masks = (foreground > 0) & ~no_target.view(-1, 1, 1)  # (e, H, W)
    return masks.cpu().numpy(), mean_probabilities(foreground, masks)


def save_pngs(
    png_dir: Path,
    item: LoadedImage,
    k: int,
    mask: np.ndarray,
    found: bool,
    no_target_probability: float | None,
) -> dict[str, str]:
    """The mask and the overlay of expression ``k`` of ``item`` as PNGs; their paths."""
    name = f"{item.task.entry.line}_{k}.png"
    save_png_atomic(
        Image.fromarray(mask.view("uint8") * 255, mode="L"),  # (H, W)
        png_dir / "masks" / name,
        compress_level=3,
    )
    overlay = render_prediction(
        Image.fromarray(item.picture),
        mask,
        item.task.entry.texts[k],
        colour_index=k,
        found=found,
        no_target_probability=no_target_probability,
    )
    save_png_atomic(overlay, png_dir / "overlays" / name)
    return {"mask": f"masks/{name}", "overlay": f"overlays/{name}"}
