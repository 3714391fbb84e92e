"""A video's predictions written to a folder (what ``lavt predict --video`` does).

::

    DIR/predictions.jsonl            one line per (frame, expression), frames in order
    DIR/masks/<expression>/<frame>.png   with ``save_png``: 0/255 at the frame's size
    DIR/overlay.mp4                  with ``overlay_video``: every mask tinted on its frame

A line holds ``frame`` (0-based index), ``frame_name`` (a folder's frame file)
or ``time`` (seconds, a video file), ``text_index``, ``text``, ``width``,
``height`` and the fields ``lavt serve`` and bulk inference write
(:func:`lavt.predict.encode.encode_prediction`: ``rle``, ``bbox``, ``area``,
``score``, ``found``), plus ``mask`` (the PNG's path in DIR) with ``save_png``.
``<expression>`` is a slug of the text and a hash of it; ``<frame>`` the frame
file's stem (a folder) or the 6-digit index (a file).

Everything is written into a temporary folder inside DIR and moved into place
when the whole video is done, so a failure half-way (an undecodable frame, no
disk space, Ctrl-C) leaves DIR as it was. A run replaces the three entries of
an earlier video run in DIR, those it does not write included; a DIR holding
``lavt predict --image`` or ``--manifest`` results is refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lavt.errors import InputError
from lavt.evaluation.outputs import check_output_dir
from lavt.evaluation.overlays import render_frame
from lavt.predict.batch import text_name
from lavt.predict.encode import encode_prediction, mask_png
from lavt.predict.predictor import Predictor
from lavt.predict.results import FramePrediction
from lavt.predict.video import DEFAULT_CLIP_LENGTH
from lavt.videoio import Video, write_video

log = logging.getLogger("lavt")

JSONL, MASKS, OVERLAY = "predictions.jsonl", "masks", "overlay.mp4"
#: the overlay's frame rate for a folder of frames, which has none: Refer-YouTube-VOS
#: folders hold every 5th frame of a 30 fps video
FOLDER_FPS = 6.0
PROGRESS_EVERY = 500  # frames between progress lines on the log


@dataclass
class VideoSummary:
    """What :func:`predict_video_to_folder` wrote."""

    frames: int
    expressions: int
    files: list[Path] = field(default_factory=list)  # predictions.jsonl, masks/, overlay.mp4


def check_video_output(output: str | os.PathLike) -> Path:
    """Refuse, before any work, an unusable DIR or one holding image predictions."""
    output = check_output_dir(output)
    jsonl = output / JSONL
    if jsonl.is_file():
        try:
            with open(jsonl, encoding="utf-8") as f:
                first = f.readline()
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{jsonl}: unreadable ({err})") from None
        try:
            earlier = json.loads(first) if first.strip() else {"frame": 0}
        except json.JSONDecodeError:
            earlier = None
        if not isinstance(earlier, dict) or "frame" not in earlier:
            raise InputError(
                f"output {output}: holds other predictions ({JSONL} without frames); "
                "choose another folder for a video",
                param="output",
            )
    return output


def frame_stem(result: FramePrediction) -> str:
    """A frame's file-name stem: its file's stem in a folder, else its 6-digit index."""
    name = result.frame.name
    return Path(name).stem if name else f"{result.index:06d}"


def video_record(result: FramePrediction, k: int) -> dict:
    """One (frame, expression) line of ``predictions.jsonl`` (without ``mask``)."""
    frame, prediction = result.frame, result.predictions[k]
    height, width = prediction.mask.shape
    where = {"frame_name": frame.name} if frame.name else {"time": frame.time}
    if where.get("time") is not None:
        where["time"] = round(where["time"], 6)
    encoded = encode_prediction(prediction)
    head = {"frame": frame.index, **where, "text_index": k, "text": encoded.pop("text")}
    return head | {"width": width, "height": height} | encoded


def predict_video_to_folder(
    predictor: Predictor,
    video: Video,
    texts: Sequence[str],
    output: str | os.PathLike,
    *,
    clip_length: int = DEFAULT_CLIP_LENGTH,
    save_png: bool = False,
    overlay_video: bool = False,
    fps: float | None = None,
) -> VideoSummary:
    """Segment every expression in every frame of ``video`` into ``output`` (see the module).

    ``fps``: the overlay's frame rate (default the video's, :data:`FOLDER_FPS` for a folder).
    """
    texts = list(dict.fromkeys(texts))  # the same expression twice: once
    output = check_video_output(output)
    results = predictor.predict_video(video, texts, clip_length=clip_length)
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    remove_dead_stages(output)
    stage = Path(
        tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", suffix=".tmp", dir=output)
    )
    try:
        summary = _write(
            results, texts, stage, save_png=save_png,
            overlay_fps=(fps or video.fps or FOLDER_FPS) if overlay_video else None,
        )  # fmt: skip
        _publish(stage, output)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(output, ignore_errors=True)
        raise
    shutil.rmtree(stage, ignore_errors=True)
    summary.files = [output / name for name in (JSONL, MASKS, OVERLAY) if (output / name).exists()]
    return summary


STAGE_PREFIX = ".lavt-video-"


def remove_dead_stages(output: Path) -> None:
    """Remove the staging folders that runs killed before they could clean up left in
    ``output`` (``.lavt-video-<pid>-*.tmp`` whose process is gone); a live run's stays."""
    for stage in output.glob(f"{STAGE_PREFIX}*.tmp"):
        pid = stage.name[len(STAGE_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        log.info("removing %s, left by a run that was killed", stage)
        shutil.rmtree(stage, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _write(
    results, texts: list[str], stage: Path, *, save_png: bool, overlay_fps: float | None
) -> VideoSummary:
    folders = [f"{MASKS}/{text_name(text)}" for text in texts]
    frames = 0
    with contextlib.ExitStack() as stack:
        lines = stack.enter_context(open(stage / JSONL, "w", encoding="utf-8"))
        add_frame = (
            stack.enter_context(write_video(stage / OVERLAY, fps=overlay_fps))
            if overlay_fps
            else None
        )
        for result in results:
            for k, prediction in enumerate(result.predictions):
                record = video_record(result, k)
                if save_png:
                    record["mask"] = f"{folders[k]}/{frame_stem(result)}.png"
                    (stage / folders[k]).mkdir(parents=True, exist_ok=True)
                    (stage / record["mask"]).write_bytes(mask_png(prediction.mask))
                lines.write(json.dumps(record) + "\n")
            if add_frame is not None:
                masks = [p.mask for p in result.predictions]  # (H, W) bool each
                add_frame(render_frame(result.frame.image, masks, texts))
            frames += 1
            if frames % PROGRESS_EVERY == 0:
                log.info("%d frames done", frames)
        lines.flush()
        os.fsync(lines.fileno())
    return VideoSummary(frames=frames, expressions=len(texts))


def _publish(stage: Path, output: Path) -> None:
    """Move the staged entries into ``output``, the index (predictions.jsonl) last; an
    earlier run's entries go (those this run did not write too)."""
    old = stage / ".old"
    old.mkdir()
    for name in (MASKS, OVERLAY, JSONL):
        if (output / name).exists():
            os.replace(output / name, old / name)
        if (stage / name).exists():
            os.replace(stage / name, output / name)
