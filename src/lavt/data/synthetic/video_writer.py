"""Writing synthetic videos in the Refer-YouTube-VOS layout (``lavt synth --video``).

::

    ROOT/.lavt-synth                                   marker: lavt synth wrote ROOT
    ROOT/meta_expressions/<split>/meta_expressions.json
        {"videos": {video: {"expressions": {"0": {"exp": "...", "obj_id": "1"}, ...},
                            "frames": ["00000", "00005", ...]}}}
    ROOT/<split>/meta.json
        {"videos": {video: {"objects": {"1": {"category": "circle", "frames": [...]}}}}}
    ROOT/<split>/JPEGImages/<video>/<frame>.jpg
    ROOT/<split>/Annotations/<video>/<frame>.png       palette PNG: object id, 0 background

Splits ``train`` and ``valid`` (a third of the videos, at least one). Frame names
count every 5th frame, as the real set's (00000, 00005, ...). Unlike the real
``valid`` split, the synthetic one keeps its masks and ``obj_id``, so J&F can be
measured offline. An object's ``frames`` in ``meta.json`` are those where any of
it is visible.

Everything is written into a temporary folder beside ROOT and renamed into place
when complete. ROOT must be new, empty, or a dataset ``lavt synth`` wrote (the
marker file), which ``overwrite`` replaces as a whole. The same seed gives the
same bytes.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lavt.data.synthetic.scenes import SceneObject, _background, render_scene
from lavt.data.synthetic.video import (
    MovingObject,
    frame_objects,
    motion_direction,
    sample_video,
    video_expressions,
)
from lavt.data.synthetic.writer import MARKER
from lavt.errors import InputError
from lavt.imageio import davis_palette
from lavt.runtime import atomic_directory

VIDEO_SPLITS = ("train", "valid")
FRAME_STEP = 5  # frame names count every 5th frame, as Refer-YouTube-VOS's
MAX_FRAMES = 1000
MAX_SIDE = 4096


@dataclass
class VideoSynthSummary:
    """What :func:`generate_video_dataset` wrote, per split."""

    root: Path
    frames_per_video: int
    videos: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)
    expressions: dict[str, int] = field(default_factory=dict)


def parse_size(text: str) -> tuple[int, int]:
    """``"160x120"`` -> (160, 120); an InputError naming ``size`` otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 160x120", param="size")
    width, height = (int(p) for p in parts)
    return width, height


def _check_arguments(num_videos: int, num_frames: int, size: tuple[int, int]) -> None:
    if num_videos < 2:
        raise InputError(
            f"num_videos {num_videos}: must be at least 2 (one per split)", param="num_videos"
        )
    if not 2 <= num_frames <= MAX_FRAMES:
        raise InputError(
            f"num_frames {num_frames}: must be from 2 to {MAX_FRAMES}", param="num_frames"
        )
    if len(size) != 2 or not all(32 <= side <= MAX_SIDE for side in size):
        raise InputError(
            f"size {'x'.join(map(str, size))}: both sides must be from 32 to {MAX_SIDE} pixels",
            param="size",
        )


def _check_root(root: Path, overwrite: bool) -> bool:
    """Refuse a ROOT we must not replace; True when one exists that is to be replaced."""
    if root.exists() and not root.is_dir():
        raise InputError(f"root {root}: exists and is not a folder", param="root")
    if not root.is_dir() or not any(root.iterdir()):
        return root.is_dir()
    if not (root / MARKER).is_file():
        raise InputError(
            f"root {root}: a folder lavt synth did not write (no {MARKER} marker) and not "
            "empty; refusing to replace it, choose a new folder",
            param="root",
        )
    if not overwrite:
        raise InputError(
            f"overwrite not set: {root} already holds a dataset lavt synth wrote",
            param="overwrite",
        )
    return True


def _split_plan(rng: random.Random, num_videos: int) -> list[str]:
    valid = max(1, num_videos // 3)
    plan = ["train"] * (num_videos - valid) + ["valid"] * valid
    rng.shuffle(plan)
    return plan


def _write_frame(
    objects: list[SceneObject], background: Image.Image, jpg: Path, png: Path, palette: list[int]
) -> np.ndarray:
    """Save one frame and its index mask; returns the pixel count of ids 0..len(objects)."""
    render_scene(objects, background).save(jpg, format="JPEG", quality=95)
    labels = Image.new("P", background.size, 0)
    draw = ImageDraw.Draw(labels)
    for obj_id, obj in enumerate(objects, start=1):  # the drawing order: later ones on top
        draw.polygon(obj.polygon, fill=obj_id)
    labels.putpalette(palette)
    labels.save(png, format="PNG")
    return np.bincount(np.asarray(labels).ravel(), minlength=len(objects) + 1)


def _write_video(
    rng: random.Random,
    folder: Path,
    name: str,
    size: tuple[int, int],
    num_frames: int,
    palette: list[int],
) -> tuple[dict, dict]:
    """Sample, render and save one video; returns its meta_expressions and meta.json entries."""
    width, height = size
    objects: list[MovingObject] = sample_video(rng, width, height)
    background = _background(rng, width, height)
    frames = [frame_objects(objects, t, width, height) for t in range(num_frames)]
    names = [f"{FRAME_STEP * t:05d}" for t in range(num_frames)]
    (folder / "JPEGImages" / name).mkdir(parents=True)
    (folder / "Annotations" / name).mkdir(parents=True)
    seen: list[list[str]] = [[] for _ in objects]
    for frame, objs in zip(names, frames, strict=True):
        jpg = folder / "JPEGImages" / name / f"{frame}.jpg"
        png = folder / "Annotations" / name / f"{frame}.png"
        counts = _write_frame(objs, background, jpg, png, palette)
        for i in range(len(objects)):
            if counts[i + 1] > 0:
                seen[i].append(frame)
    directions = [motion_direction(o, num_frames, width, height) for o in objects]
    expressions: dict[str, dict[str, str]] = {}
    for i in range(len(objects)):
        for text in video_expressions(rng, objects, i, frames, directions, min(size)):
            expressions[str(len(expressions))] = {"exp": text, "obj_id": str(i + 1)}
    meta = {
        str(i + 1): {"category": obj.start.shape, "frames": seen[i]}
        for i, obj in enumerate(objects)
    }
    return {"expressions": expressions, "frames": names}, {"objects": meta}


def generate_video_dataset(
    root: str | os.PathLike,
    *,
    num_videos: int = 12,
    num_frames: int = 8,
    size: tuple[int, int] = (128, 128),
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> VideoSynthSummary:
    """Write ``num_videos`` videos of ``num_frames`` frames of ``size`` = (W, H) under
    ``root`` in the Refer-YouTube-VOS layout (module docstring)."""
    _check_arguments(num_videos, num_frames, tuple(size))
    root = Path(root)
    replace = _check_root(root, overwrite)
    rng = random.Random(seed)
    palette = davis_palette()
    summary = VideoSynthSummary(root, num_frames)
    meta_expressions: dict[str, dict] = {split: {} for split in VIDEO_SPLITS}
    meta: dict[str, dict] = {split: {} for split in VIDEO_SPLITS}
    try:
        with atomic_directory(root, replace=replace) as tmp:
            (tmp / MARKER).write_text(json.dumps({"written_by": "lavt synth --video"}) + "\n")
            width = max(4, len(str(num_videos - 1)))
            for index, split in enumerate(_split_plan(rng, num_videos)):
                name = f"video{index:0{width}d}"
                entry, objects = _write_video(
                    rng, tmp / split, name, tuple(size), num_frames, palette
                )
                meta_expressions[split][name], meta[split][name] = entry, objects
                summary.videos[split] = summary.videos.get(split, 0) + 1
                summary.objects[split] = summary.objects.get(split, 0) + len(objects["objects"])
                summary.expressions[split] = summary.expressions.get(split, 0) + len(
                    entry["expressions"]
                )
                if progress is not None:
                    progress(index + 1)
            for split in VIDEO_SPLITS:
                folder = tmp / "meta_expressions" / split
                folder.mkdir(parents=True)
                text = json.dumps({"videos": meta_expressions[split]}, indent=1)
                (folder / "meta_expressions.json").write_text(text + "\n", encoding="utf-8")
                (tmp / split).mkdir(exist_ok=True)
                text = json.dumps({"videos": meta[split]}, indent=1)
                (tmp / split / "meta.json").write_text(text + "\n", encoding="utf-8")
    except OSError as err:
        raise InputError(
            f"root {root}: cannot write there ({err.strerror or err})", param="root"
        ) from None
    return summary
