"""Referring-video evaluation: Refer-YouTube-VOS and Ref-DAVIS17 (J, F, J&F) or the
Refer-YouTube-VOS submission (docs/video.md, "Datasets and protocols").

Each expression runs over its whole video (:func:`lavt.predict.video.segment_frames`:
the LAVT-RS ``test_ytvos.py`` protocol for a video model, frame by frame for an
image model) and its masks at the frames' sizes are compared with the label PNGs
(pixel == the expression's object id): J and F per frame, their means per
expression, the means over expressions and J&F (:mod:`lavt.evaluation.video_metrics`).
Protocol ``davis`` scores every frame but the first and the last, as the DAVIS
2017 semi-supervised evaluation which Ref-DAVIS17 results are computed with
(void pixels are not set apart there either); ``ytvos`` scores every frame.

Under ``torchrun`` the expressions are split between the processes
(``expressions[rank::world]``), the fixed-point sums all-reduced and the
per-expression records gathered: the same numbers as one process::

    torchrun --nproc_per_node 4 -m lavt evaluate --video-protocol ytvos ...
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lavt.data.video.records import (
    Video,
    VideoExpression,
    VideoSplit,
    expression_key,
    read_label_png,
)
from lavt.evaluation.loop import gather_records
from lavt.evaluation.metrics import markdown_table
from lavt.evaluation.submission import finish_submission, save_mask, start_submission
from lavt.evaluation.video_metrics import VideoMetrics, boundary_f_measure, region_similarity
from lavt.imageio import load_image
from lavt.predict.video import VideoModel, segment_frames
from lavt.runtime import DistInfo
from lavt.tokenizer import tokenizer_for_model

log = logging.getLogger("lavt")

PROTOCOLS = ("ytvos", "davis")


@dataclass(frozen=True)
class VideoEvalSettings:
    """How a referring-video split is evaluated.

    ``clip_length`` 0: the whole video as one clip (the authors' protocol);
    ``chunk_size``: expressions (image model: frame-expression pairs) per forward;
    ``submission``: write the submission layout even when the split has masks.
    """

    output: Path
    protocol: str = "ytvos"
    img_size: int | None = None
    clip_length: int = 0
    chunk_size: int = 8
    amp: torch.dtype | None = None
    submission: bool = False


def scored_frames(num_frames: int, protocol: str) -> range:
    """The frames J and F are computed on: all, or (davis) all but the first and the last."""
    if protocol == "davis" and num_frames >= 3:
        return range(1, num_frames - 1)
    return range(num_frames)


def record_order(record: dict[str, Any]) -> tuple:
    return expression_key(record["video"], record["exp_id"])


def _by_video(expressions: tuple[VideoExpression, ...]) -> dict[str, list[VideoExpression]]:
    groups: dict[str, list[VideoExpression]] = {}
    for expression in expressions:
        groups.setdefault(expression.video, []).append(expression)
    return groups


def _frames(video: Video) -> Iterator:
    for path in video.frame_paths:
        yield load_image(path)


def _evaluate_video(
    model: VideoModel,
    video: Video,
    expressions: list[VideoExpression],
    settings: VideoEvalSettings,
    *,
    tokenizer,
    img_size: int,
    device: torch.device,
    staging: Path | None,
) -> list[dict[str, Any]]:
    """One video's expressions: PNGs into ``staging`` (if given), and one record each."""
    ids, attention = tokenizer([e.text for e in expressions])  # (E, N)
    with_masks = video.mask_paths is not None and all(e.obj_id is not None for e in expressions)
    scored = set(scored_frames(len(video.frames), settings.protocol)) if with_masks else set()
    obj_ids = torch.tensor([e.obj_id or 0 for e in expressions], device=device)  # (E,)
    j_frames: list[torch.Tensor] = []  # per scored frame: (E,) float64
    f_frames: list[torch.Tensor] = []
    logodds_per_frame = segment_frames(
        model, _frames(video), ids, attention, img_size=img_size,
        clip_length=settings.clip_length, device=device, amp=settings.amp,
        chunk_size=settings.chunk_size,
    )  # fmt: skip
    for t, logodds in enumerate(logodds_per_frame):
        pred = logodds > 0  # (E, H, W) bool
        if staging is not None:
            for e, expression in enumerate(expressions):
                save_mask(staging, video.name, expression.exp_id, video.frames[t], pred[e])
        if t in scored:
            labels = read_label_png(video.mask_paths[t], tuple(pred.shape[-2:]))  # (H, W)
            labels = torch.from_numpy(labels).to(device)
            gt = labels[None] == obj_ids[:, None, None]  # (E, H, W)
            j_frames.append(region_similarity(pred, gt).cpu())  # E masks as E "frames"
            f_frames.append(boundary_f_measure(pred, gt).cpu())
    records = []
    for e, expression in enumerate(expressions):
        row: dict[str, Any] = {
            "video": video.name,
            "exp_id": expression.exp_id,
            "text": expression.text,
        }
        if with_masks:
            j = float(torch.stack([x[e] for x in j_frames]).mean())
            f = float(torch.stack([x[e] for x in f_frames]).mean())
            row.update(obj_id=expression.obj_id, frames=len(j_frames), J=j, F=f)
            row["J&F"] = (j + f) / 2
        records.append(row)
    return records


@torch.inference_mode()
def evaluate_video_split(
    model: VideoModel,
    split: VideoSplit,
    settings: VideoEvalSettings,
    *,
    device: torch.device,
    dist: DistInfo | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate this process's share of the split's expressions, merged over processes.

    Returns the summary (J, F, J&F in percent when the split has masks, the
    counts, the submission zip when written) and the per-expression records.
    Every process of a ``torchrun`` job must call it.
    """
    dist = dist or DistInfo()
    tokenizer = tokenizer_for_model(model)
    img_size = settings.img_size or model.config.img_size
    submission = settings.submission or not split.has_masks
    staging = start_submission(settings.output, dist) if submission else None
    mine = _by_video(split.expressions[dist.rank :: dist.world_size])
    metrics, records = VideoMetrics(), []
    videos: Any = mine.items()
    if dist.is_main:
        from tqdm import tqdm

        videos = tqdm(videos, desc="evaluate", unit="video", leave=False, disable=None)
    try:
        for name, expressions in videos:
            rows = _evaluate_video(
                model, split.videos[name], expressions, settings,
                tokenizer=tokenizer, img_size=img_size, device=device, staging=staging,
            )  # fmt: skip
            for row in rows:
                if "J" in row:
                    metrics.add_scores(row["J"], row["F"])
            records += rows
    except BaseException:
        if staging is not None and dist.is_main:  # no half-written submission left behind
            shutil.rmtree(staging, ignore_errors=True)
        raise
    metrics = metrics.all_reduce(device)
    records = sorted(gather_records(records, key=record_order), key=record_order)
    summary: dict[str, Any] = dict(metrics.summary()) if split.has_masks else {}
    summary.update(num_expressions=len(split.expressions), num_videos=len(split.videos))
    if staging is not None:
        zip_path = finish_submission(settings.output, staging, dist)
        summary["submission"] = "submission.zip"
        if zip_path is not None:
            log.info("wrote %s", zip_path)
    return summary, records


def format_video_table(results: dict[str, dict[str, Any]]) -> str:
    """``| Split | J&F | J | F |`` in percent; a split without masks shows its zip instead."""
    scored = {s: [r["J&F"], r["J"], r["F"]] for s, r in results.items() if "J" in r}
    lines = [markdown_table(("J&F", "J", "F"), scored)] if scored else []
    lines += [
        f"{s}: no masks; submission written to {r['submission']}"
        for s, r in results.items()
        if "J" not in r
    ]
    return "\n".join(lines)
