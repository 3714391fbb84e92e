"""The Refer-YouTube-VOS layout: parse and check a split (the layout ``lavt synth --video``
writes, and the one Ref-DAVIS17 is usually converted to)::

    ROOT/meta_expressions/<split>/meta_expressions.json
        {"videos": {video: {"expressions": {"<exp_id>": {"exp": "...", "obj_id": "1"}},
                            "frames": ["00000", "00005", ...]}}}
    ROOT/<split>/JPEGImages/<video>/<frame>.jpg
    ROOT/<split>/Annotations/<video>/<frame>.png   palette PNG, pixel = object id, 0 background
    ROOT/<split>/meta.json                          optional, not read

A split has masks when ``Annotations/`` exists and every expression has an
``obj_id`` (the competition's ``valid`` split has neither). As the LAVT authors'
test (LAVT-RS ``test_ytvos.py``), the videos that
``ROOT/meta_expressions/test/meta_expressions.json`` lists are left out of any
other split: the competition's ``valid`` file lists its test videos too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lavt.data.formats.base import Problems, read_json_file
from lavt.data.video.records import (
    Video,
    VideoExpression,
    VideoSplit,
    expression_order,
    missing_files,
    raise_problems,
    single_name_problem,
)
from lavt.errors import InputError

log = logging.getLogger("lavt")


def meta_path(root: Path, split: str) -> Path:
    return Path(root) / "meta_expressions" / split / "meta_expressions.json"


def _videos_of(path: Path, problems: Problems) -> dict[str, Any]:
    data = read_json_file(path, problems)
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        problems.add(str(path), 'no "videos" object at the top level')
        return {}
    return data["videos"]


def _obj_id(value: Any) -> int | str | None:
    """The object id (1..255), None when absent, or what is wrong with it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        return f"obj_id {value!r} is not a number"
    try:
        number = int(value)
    except ValueError:
        return f"obj_id {value!r} is not a number"
    return number if 1 <= number <= 255 else f"obj_id {value!r} is not in 1..255"


def _expressions(video: str, entry: dict, where: str, problems: Problems) -> list[VideoExpression]:
    expressions = entry.get("expressions")
    if not isinstance(expressions, dict) or not expressions:
        problems.add(where, 'no "expressions" object (exp_id -> {"exp": ...})')
        return []
    out = []
    for exp_id, item in expressions.items():
        at = f"{where}, expression {exp_id!r}"
        if not isinstance(item, dict):
            problems.add(at, "not an object")
            continue
        text = item.get("exp")
        if not isinstance(text, str) or not text.strip():
            problems.add(at, '"exp" is not a non-empty string')
            continue
        obj = _obj_id(item.get("obj_id"))
        if isinstance(obj, str):
            problems.add(at, obj)
            continue
        out.append(VideoExpression(video, str(exp_id), " ".join(text.split()), obj))
    return out


def _frames(entry: dict, where: str, problems: Problems) -> list[str]:
    frames = entry.get("frames")
    if not isinstance(frames, list) or not frames:
        problems.add(where, '"frames" is not a non-empty list of frame names')
        return []
    for frame in frames:
        problem = single_name_problem(frame, "frame")
        if problem:
            problems.add(where, problem)
            return []
    if len(set(frames)) != len(frames):
        problems.add(where, '"frames" names a frame twice')
        return []
    return frames


def read_ytvos(root: str | Path, split: str, *, check_files: bool = True) -> VideoSplit:
    """Parse and check ``split`` of the Refer-YouTube-VOS layout at ``root``.

    Every problem is collected first; the first is raised as one line
    (:class:`InputError` naming the file, video and expression) with a count of
    the rest. ``check_files``: also check that every frame (and mask) file exists.
    """
    root = Path(root)
    path = meta_path(root, split)
    if not path.is_file():
        raise InputError(f"{path}: not found (the Refer-YouTube-VOS layout of split {split!r})")
    problems = Problems()
    videos_meta = _videos_of(path, problems)
    raise_problems(problems)
    test_path = meta_path(root, "test")
    if split != "test" and test_path.is_file():
        test_videos = set(_videos_of(test_path, problems))
        raise_problems(problems)
        left_out = [v for v in videos_meta if v in test_videos]
        if left_out:
            log.info("%s: %d videos of the test split left out", path, len(left_out))
        videos_meta = {v: e for v, e in videos_meta.items() if v not in test_videos}
    folder = root / split
    masks_folder = folder / "Annotations"
    with_masks = masks_folder.is_dir()
    videos: dict[str, Video] = {}
    expressions: list[VideoExpression] = []
    for name, entry in videos_meta.items():
        where = f"{path}: video {name!r}"
        problem = single_name_problem(name, "video")
        if problem or not isinstance(entry, dict):
            problems.add(where, problem or "not an object")
            continue
        found = _expressions(name, entry, where, problems)
        frames = _frames(entry, where, problems)
        if not found or not frames:
            continue
        expressions += found
        images = folder / "JPEGImages" / name
        masks = masks_folder / name
        videos[name] = Video(
            name,
            tuple(frames),
            tuple(images / f"{f}.jpg" for f in frames),
            tuple(masks / f"{f}.png" for f in frames) if with_masks else None,
        )
    if not videos and not problems:
        problems.add(str(path), "no videos")
    has_obj_ids = all(e.obj_id is not None for e in expressions)
    if not has_obj_ids:  # no masks to compare with (the competition's valid split)
        videos = {k: Video(v.name, v.frames, v.frame_paths) for k, v in videos.items()}
    if check_files and not problems:
        missing_files([p for v in videos.values() for p in v.frame_paths], problems, "frame")
        if has_obj_ids and with_masks:
            paths = [p for v in videos.values() for p in v.mask_paths or ()]
            missing_files(paths, problems, "mask")
    raise_problems(problems)
    return VideoSplit(split, videos, tuple(sorted(expressions, key=expression_order)))
