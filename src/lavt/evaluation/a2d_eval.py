"""A2D-Sentences evaluation: the protocol of the LAVT authors' ``test.py --dataset a2d``
(LAVT-RS, with ``--clip_length 16`` in its README's command).

Each sample is a sentence on an annotated frame. A video model sees the clip of
``clip_length`` consecutive frames around it (``[f - L // 2, f + (L + 1) // 2)``,
indices outside the video clamped to its first or last frame; 0: the whole
video), every frame resized to the model's square input; its prediction is
the argmax on the annotated frame's position in the clip (the first, when the
clamping repeats it), compared at the model's input size with the instance's
mask resized there by nearest neighbour. An image model sees the annotated
frame alone. Metrics: overall IoU (sum of I over sum of U), mean IoU (IoU 0 when
I or U is 0) and precision at IoU >= 0.5 ... 0.9, as integer sums
(:class:`~lavt.evaluation.metrics.SegmentationMetrics`), so several processes
(``samples[rank::world]``) give the numbers of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lavt.data.transforms import image_to_tensor, mask_to_tensor
from lavt.data.video.a2d import A2DSample, A2DSplit, load_mask
from lavt.evaluation.loop import EvalResult, gather_records
from lavt.evaluation.metrics import SegmentationMetrics, intersection_union
from lavt.imageio import load_image
from lavt.modeling import LAVTVideo
from lavt.predict.video import VideoModel, clip_foreground
from lavt.runtime import DistInfo, all_reduce_sum
from lavt.tokenizer import tokenizer_for_model

A2D_CLIP_LENGTH = 16  # the LAVT-RS README's A2D test command


@dataclass(frozen=True)
class A2DSettings:
    clip_length: int = A2D_CLIP_LENGTH
    img_size: int | None = None
    chunk_size: int = 8
    amp: torch.dtype | None = None


def clip_indices(frame: int, num_frames: int, clip_length: int) -> list[int]:
    """0-based indices of the clip around 0-based ``frame`` (edge frames repeated)."""
    if clip_length <= 0:
        return list(range(num_frames))
    start = frame - clip_length // 2
    return [min(max(i, 0), num_frames - 1) for i in range(start, start + clip_length)]


def record_order(record: dict[str, Any]) -> tuple:
    return (record["video"], record["frame"], record["instance"], record["text"])


def _groups(samples: tuple[A2DSample, ...]) -> dict[tuple[str, int], list[A2DSample]]:
    groups: dict[tuple[str, int], list[A2DSample]] = {}
    for sample in samples:
        groups.setdefault((sample.video, sample.frame), []).append(sample)
    return groups


@torch.inference_mode()
def evaluate_a2d_split(
    model: VideoModel,
    split: A2DSplit,
    settings: A2DSettings,
    *,
    device: torch.device,
    dist: DistInfo | None = None,
) -> EvalResult:
    """Evaluate this process's share of the samples, merged over processes."""
    dist = dist or DistInfo()
    tokenizer = tokenizer_for_model(model)
    size = settings.img_size or model.config.img_size
    video_model = isinstance(model, LAVTVideo)
    metrics, records = SegmentationMetrics(), []
    groups: Any = _groups(split.samples[dist.rank :: dist.world_size]).items()
    if dist.is_main:
        from tqdm import tqdm

        groups = tqdm(groups, desc="evaluate", unit="frame", leave=False, disable=None)
    for (video, frame), samples in groups:
        index = frame - 1
        clip = clip_indices(index, split.num_frames[video], settings.clip_length)
        clip = clip if video_model else [index]
        pixels = torch.stack(
            [image_to_tensor(load_image(split.frame_path(video, i)), size) for i in clip]
        ).to(device)  # (T, 3, S, S)
        ids, attention = tokenizer([s.text for s in samples])  # (E, N)
        logodds = clip_foreground(
            model,
            pixels,
            ids.to(device),
            attention.to(device),
            amp=settings.amp,
            chunk_size=settings.chunk_size,
        )  # (E, T, S, S)
        pred = logodds[:, clip.index(index)] > 0  # (E, S, S): the argmax of the two logits
        target = torch.stack([mask_to_tensor(load_mask(split, s), size) for s in samples])
        inter, union = intersection_union(pred, target.to(device))  # (E,), (E,)
        iou = metrics.update(inter, union)
        for k, s in enumerate(samples):
            records.append(
                {"video": video, "frame": frame, "instance": s.instance, "text": s.text,
                 "I": int(inter[k]), "U": int(union[k]), "IoU": float(iou[k])}
            )  # fmt: skip
    count = all_reduce_sum(torch.tensor([len(records)], dtype=torch.int64, device=device))
    return EvalResult(
        metrics=metrics.all_reduce(device),
        records=sorted(gather_records(records, key=record_order), key=record_order),
        num_objects=int(count.item()),
    )
