"""Overlays of the lowest-IoU expressions of an evaluation (``--save-worst K``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lavt.data.dataset import ReferEvalDataset, load_rgb
from lavt.evaluation.overlays import render_comparison
from lavt.imageio import save_png_atomic
from lavt.modeling.lavt import LAVT
from lavt.runtime import autocast

WORST_NAME = re.compile(r"\d{3}_iou\d+\.\d{3}_ref-?\d+_sent-?\d+\.png")


def clear_worst(folder: Path) -> None:
    """Remove overlays an earlier run wrote into ``folder`` (only files named like ours)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and WORST_NAME.fullmatch(path.name):
            path.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


@torch.inference_mode()
def save_worst(
    records: list[dict[str, Any]],
    dataset: ReferEvalDataset,
    model: nn.Module,
    *,
    device: torch.device,
    folder: Path,
    k: int,
    amp: torch.dtype | None = None,
) -> list[Path]:
    """Predict the ``k`` lowest-IoU expressions again and write their overlays.

    Earlier overlays in ``folder`` are removed first. The prediction (at the
    image's size, :meth:`LAVT.postprocess`) is tinted and outlined, the ground
    truth outlined in green, the expression and IoU written below; files are
    named ``<rank>_iou<IoU>_ref<ref>_sent<sent>.png``.
    """
    clear_worst(folder)
    worst = sorted(records, key=lambda r: (r["IoU"], r["ref_id"], r["sent_id"]))[:k]
    position = {ref.ref_id: i for i, (ref, _) in enumerate(dataset.items)}
    written = []
    for rank, record in enumerate(worst):
        item = dataset[position[record["ref_id"]]]
        e = item["sent_ids"].index(record["sent_id"])
        with autocast(device, amp):
            logits = model(
                item["image"][None].to(device),  # (1, 3, S, S)
                item["input_ids"][e : e + 1].to(device),  # (1, N)
                item["attention_mask"][e : e + 1].to(device),  # (1, N)
            )
        ref = dataset.items[position[record["ref_id"]]][0]
        picture = load_rgb(dataset.index.image_path(ref.image_id))
        pred = LAVT.postprocess(logits, picture.size[::-1])[0] > 0  # (H, W)
        truth = dataset.index.ref_mask(ref).astype(bool)  # (H, W)
        overlay = render_comparison(
            picture, pred.cpu().numpy(), truth, item["texts"][e], iou=record["IoU"]
        )
        name = f"{rank:03d}_iou{record['IoU']:.3f}_ref{ref.ref_id}_sent{record['sent_id']}.png"
        folder.mkdir(parents=True, exist_ok=True)
        save_png_atomic(overlay, folder / name)
        written.append(folder / name)
    return written
