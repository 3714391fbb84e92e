"""Ref-DAVIS17 in the raw DAVIS 2017 layout: parse and check a split::

    ROOT/JPEGImages/480p/<video>/<frame>.jpg
    ROOT/Annotations/480p/<video>/<frame>.png     palette PNG, pixel = object id
    ROOT/ImageSets/2017/<split>.txt               one video a line (val: 30 videos)
    ROOT/davis_text_annotations/Davis17_annot1.txt, Davis17_annot1_full_video.txt,
                                Davis17_annot2.txt, Davis17_annot2_full_video.txt

(``ROOT/DAVIS/`` may hold the first three folders instead.) Each text line is
``<video> <object id> "<expression>"`` (Khoreva et al., ACCV 2018: two
annotators, each describing every object from the first frame and from the
whole video). Every file present is read, so an object has up to four
expressions, ``exp_id`` ``<file>-<object id>`` (e.g. ``annot2_full_video-1``);
the J&F usually reported for Ref-DAVIS17 is the mean over all of them. Three
video names differ between the text files and DAVIS (``clasic-car``,
``dog-scale``, ``motor-bike``); they are read as DAVIS spells them.
"""

from __future__ import annotations

from pathlib import Path

from lavt.data.formats.base import Problems
from lavt.data.video.records import (
    Video,
    VideoExpression,
    VideoSplit,
    expression_order,
    missing_files,
    raise_problems,
)
from lavt.errors import InputError

TEXT_FILES = ("annot1", "annot1_full_video", "annot2", "annot2_full_video")
RENAMED = {"clasic-car": "classic-car", "dog-scale": "dogs-scale", "motor-bike": "motorbike"}


def is_davis_layout(root: str | Path) -> bool:
    """True when ``root`` holds ``davis_text_annotations/`` (the raw layout)."""
    return (Path(root) / "davis_text_annotations").is_dir()


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # the second annotator's files are Latin-1
        return data.decode("latin-1")


def _parse_line(line: str) -> tuple[str, int, str] | str:
    """(video, object id, expression) of one text line, or what is wrong with it."""
    parts = line.split(maxsplit=2)
    if len(parts) < 3 or not parts[1].isdigit():
        return 'expected: <video> <object id> "<expression>"'
    text = parts[2].strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if not text.strip() or not 1 <= int(parts[1]) <= 255:
        return "an empty expression or an object id outside 1..255"
    return RENAMED.get(parts[0], parts[0]), int(parts[1]), " ".join(text.split())


def read_davis(root: str | Path, split: str = "val", *, check_files: bool = True) -> VideoSplit:
    """Parse and check ``split`` of Ref-DAVIS17 in the raw DAVIS layout at ``root``."""
    root = Path(root)
    davis = root / "DAVIS" if (root / "DAVIS" / "ImageSets").is_dir() else root
    set_file = davis / "ImageSets" / "2017" / f"{split}.txt"
    if not set_file.is_file():
        raise InputError(f"{set_file}: not found (the DAVIS 2017 layout of split {split!r})")
    names = [n.strip() for n in set_file.read_text(encoding="utf-8").splitlines() if n.strip()]
    problems = Problems()
    by_video: dict[str, list[VideoExpression]] = {n: [] for n in names}
    texts = root / "davis_text_annotations"
    files = [(k, texts / f"Davis17_{k}.txt") for k in TEXT_FILES]
    if not any(p.is_file() for _, p in files):
        raise InputError(f"{texts}: none of Davis17_annot1.txt, Davis17_annot2.txt found")
    for key, path in files:
        if not path.is_file():
            continue
        for number, line in enumerate(_read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            parsed = _parse_line(line)
            if isinstance(parsed, str):
                problems.add(f"{path}:{number}", parsed)
                continue
            video, obj, text = parsed
            if video in by_video:
                by_video[video].append(VideoExpression(video, f"{key}-{obj}", text, obj))
    videos: dict[str, Video] = {}
    for name in names:
        if not by_video[name]:
            problems.add(str(set_file), f"video {name!r} has no expression in {texts}")
            continue
        images = davis / "JPEGImages" / "480p" / name
        frames = sorted(p.stem for p in images.glob("*.jpg"))
        if not frames:
            problems.add(str(images), "no .jpg frames")
            continue
        masks = davis / "Annotations" / "480p" / name
        videos[name] = Video(
            name,
            tuple(frames),
            tuple(images / f"{f}.jpg" for f in frames),
            tuple(masks / f"{f}.png" for f in frames),
        )
    if check_files and not problems:
        missing_files([p for v in videos.values() for p in v.mask_paths or ()], problems, "mask")
    raise_problems(problems)
    expressions = [e for n in videos for e in by_video[n]]
    return VideoSplit(split, videos, tuple(sorted(expressions, key=expression_order)))
