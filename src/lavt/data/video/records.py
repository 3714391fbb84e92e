"""What the video readers return, and the checks they share.

A :class:`VideoSplit` is a set of videos (frame names and files, one label PNG
per frame when the split has masks) and the referring expressions over them,
each naming the object id its masks carry (a pixel value of the label PNGs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lavt.data.formats.base import Problems
from lavt.errors import InputError


@dataclass(frozen=True)
class VideoExpression:
    """One referring expression over one video; ``obj_id`` None without masks."""

    video: str
    exp_id: str
    text: str
    obj_id: int | None = None


@dataclass(frozen=True)
class Video:
    """A video's frames in order: names, image files and (with masks) label PNGs."""

    name: str
    frames: tuple[str, ...]
    frame_paths: tuple[Path, ...]
    mask_paths: tuple[Path, ...] | None = None


@dataclass(frozen=True)
class VideoSplit:
    """A split of a referring-video dataset: videos by name and expressions in a fixed order
    (by video, then expression id, numeric ids in numeric order)."""

    name: str
    videos: dict[str, Video]
    expressions: tuple[VideoExpression, ...]

    @property
    def has_masks(self) -> bool:
        """True when every video has label PNGs and every expression an object id."""
        return all(v.mask_paths is not None for v in self.videos.values()) and all(
            e.obj_id is not None for e in self.expressions
        )


def expression_order(expression: VideoExpression) -> tuple:
    """Sort key: video, then the expression id (numbers numerically, before other ids)."""
    return expression_key(expression.video, expression.exp_id)


def expression_key(video: str, exp_id: str) -> tuple:
    """Sort key of an expression given by its video and id (numeric ids numerically, first)."""
    return (video, (0, int(exp_id), "") if exp_id.isdigit() else (1, 0, exp_id))


def single_name_problem(name: object, what: str) -> str | None:
    """What is wrong with a video or frame name used as one path component, or None."""
    if not isinstance(name, str) or not name.strip():
        return f"{what} name {name!r} is not a non-empty string"
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return f"{what} name {name!r} is not a plain file name"
    return None


def raise_problems(problems: Problems) -> None:
    """Raise the first problem as one line (with how many more there are), if any."""
    if problems:
        more = f" (and {problems.count - 1} more problems)" if problems.count > 1 else ""
        raise InputError(problems.lines[0] + more)


def missing_files(paths: list[Path], problems: Problems, what: str) -> None:
    """Report the files of ``paths`` that are not on disk (one problem, with a count)."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        others = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        problems.add(str(missing[0]), f"{what} not found{others}")


def read_label_png(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A label PNG (palette "P" or greyscale "L": pixel value = object id) -> (H, W) uint8.

    ``size`` (H, W): the frame's size, which the mask must have.
    """
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise InputError(f"{path}: a {image.mode} image, not a palette or greyscale mask")
            labels = np.array(image, dtype=np.uint8)  # (H, W) palette indices
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise InputError(f"{path}: unreadable mask ({err})") from None
    if size is not None and labels.shape != tuple(size):
        raise InputError(
            f"{path}: mask of {labels.shape[1]}x{labels.shape[0]} pixels for a frame of "
            f"{size[1]}x{size[0]}"
        )
    return labels
