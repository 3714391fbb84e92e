"""Overlays of the lowest-IoU expressions of an evaluation (``--save-worst K``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from lavt.visualize import render_overlay


@torch.inference_mode()
def save_worst(
    records: list[dict[str, Any]],
    dataset,
    model: torch.nn.Module,
    img_size: int,
    device: torch.device,
    folder: Path,
    k: int,
) -> list[Path]:
    """Predict the ``k`` lowest-IoU expressions again and write their overlays.

    The prediction is tinted and outlined, the ground truth outlined in green;
    files are named ``<rank>_iou<IoU>_ref<ref>_sent<sent>.png``.
    """
    worst = sorted(records, key=lambda r: (r["IoU"], r["ref_id"], r["sent_id"]))[:k]
    position = {ref.ref_id: i for i, (ref, _) in enumerate(dataset.items)}
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for rank, record in enumerate(worst):
        item = dataset[position[record["ref_id"]]]
        e = item["sent_ids"].index(record["sent_id"])
        logits = model(
            item["image"][None].to(device),
            item["input_ids"][e : e + 1].to(device),
            item["attention_mask"][e : e + 1].to(device),
        ).float()
        ref = dataset.items[position[record["ref_id"]]][0]
        with Image.open(dataset.index.image_path(ref.image_id)) as im:
            picture = im.convert("RGB")
        logits = F.interpolate(
            logits, size=picture.size[::-1], mode="bilinear", align_corners=False
        )
        pred = logits.argmax(1)[0].cpu().numpy().astype(bool)
        truth = dataset.index.mask(ref.ann_id).astype(bool)
        path = (
            folder
            / f"{rank:03d}_iou{record['IoU']:.3f}_ref{ref.ref_id}_sent{record['sent_id']}.png"
        )
        tmp = path.with_name(f".{path.name}.tmp")
        render_overlay(picture, pred, reference=truth).save(tmp, format="PNG")
        os.replace(tmp, path)
        written.append(path)
    return written
