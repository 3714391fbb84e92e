"""A2D-Sentences (Gavrilyuk et al., CVPR 2018): parse and check a split, read its masks.

The layout of the LAVT-RS README (``ROOT`` is ``Release/`` or the folder holding it)::

    ROOT/videoset.csv                 no header; column 1 the video id, column 9 the
                                      subset (0 train, 1 test)
    ROOT/a2d_missed_videos.txt        optional: videos left out, one a line
    ROOT/a2d_annotation.txt           CSV "video_id,instance_id,query"
    ROOT/a2d_annotation_with_instances/<video>/<frame>.h5
                                      "instance": the instance ids of that frame,
                                      "reMask": their masks, (N, W, H) or (W, H)
    ROOT/pngs320H/<video>/<frame>.png frames, numbered from 00001

The samples are those of the LAVT-RS evaluation (its annotation list is MTTR's,
github.com/mttr2021/MTTR): for each sentence of a video of the split, each
annotated frame (an ``.h5`` file, in name order) whose ``instance`` lists the
sentence's instance; the sentence lower-cased with its spaces collapsed; the
one malformed instance id ``0 (1)`` of the annotation file skipped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lavt.data.formats.base import Problems
from lavt.data.video.records import raise_problems, single_name_problem
from lavt.errors import InputError

SUBSETS = {"train": "0", "test": "1", "val": "1"}  # LAVT-RS calls the test subset "val"
SKIPPED_INSTANCE = "0 (1)"  # a single annotation mistake (video T6bNPuKV-wY), as MTTR


@dataclass(frozen=True)
class A2DSample:
    """One sentence on one annotated frame; ``frame`` counts from 1 as A2D's file names."""

    video: str
    frame: int
    instance: int
    text: str


@dataclass(frozen=True)
class A2DSplit:
    """The samples of a split, in the order above, and each video's frame count."""

    root: Path
    name: str
    samples: tuple[A2DSample, ...]
    num_frames: dict[str, int]

    def frame_path(self, video: str, index: int) -> Path:
        """The frame image at 0-based ``index``."""
        return self.root / "pngs320H" / video / f"{index + 1:05d}.png"

    def mask_path(self, sample: A2DSample) -> Path:
        return self.root / "a2d_annotation_with_instances" / sample.video / f"{sample.frame:05d}.h5"


def _h5py():
    try:
        import h5py
    except ImportError:
        raise InputError(
            "A2D-Sentences masks are HDF5 files: pip install h5py (or lavt[video])"
        ) from None
    return h5py


def _instances(path: Path) -> list[int]:
    """The instance ids an annotation file lists."""
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            return [int(i) for i in np.atleast_1d(np.asarray(f["instance"][()])).ravel()]
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise InputError(f"{path}: unreadable A2D annotation ({err})") from None


def load_mask(split: A2DSplit, sample: A2DSample) -> np.ndarray:
    """The sample's instance mask on its frame: (H, W) bool."""
    path = split.mask_path(sample)
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            instances = [int(i) for i in np.atleast_1d(np.asarray(f["instance"][()])).ravel()]
            masks = np.asarray(f["reMask"][()])
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise InputError(f"{path}: unreadable A2D annotation ({err})") from None
    if masks.ndim == 2:
        masks = masks[None]  # one instance: (W, H) -> (1, W, H)
    if masks.ndim != 3 or masks.shape[0] != len(instances) or sample.instance not in instances:
        raise InputError(
            f"{path}: reMask of shape {masks.shape} does not hold instance {sample.instance} "
            f"of {instances}"
        )
    return masks[instances.index(sample.instance)].T > 0  # (W, H) -> (H, W)


def _video_ids(root: Path, subset: str, problems: Problems) -> list[str]:
    path = root / "videoset.csv"
    ids = []
    with path.open(newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) < 9:
                problems.add(f"{path}:{number}", f"{len(row)} columns, expected 9")
            elif row[8].strip() == subset:
                ids.append(row[0].strip())
    return ids


def _sentences(path: Path, videos: set[str], problems: Problems) -> list[tuple[str, int, str]]:
    """(video, instance, text) of the annotation file's rows on ``videos``, in file order."""
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"video_id", "instance_id", "query"} <= set(reader.fieldnames or ()):
            raise InputError(f"{path}: expected the header video_id,instance_id,query")
        for number, row in enumerate(reader, 2):
            video, instance, text = row["video_id"], row["instance_id"], row["query"]
            if video not in videos or instance == SKIPPED_INSTANCE:
                continue
            if not (instance or "").strip().isdigit() or not (text or "").strip():
                problems.add(f"{path}:{number}", "instance_id is not a number or query is empty")
                continue
            rows.append((video, int(instance), " ".join(text.lower().split())))
    return rows


def read_a2d(root: str | Path, split: str = "test") -> A2DSplit:
    """Parse and check ``split`` (train, test; val = test) of A2D-Sentences at ``root``."""
    root = Path(root)
    if not (root / "videoset.csv").is_file() and (root / "Release" / "videoset.csv").is_file():
        root = root / "Release"
    if split not in SUBSETS:
        raise InputError(f"split {split!r}: A2D-Sentences has train and test", param="split")
    for name in ("videoset.csv", "a2d_annotation.txt"):
        if not (root / name).is_file():
            raise InputError(f"{root / name}: not found (the A2D-Sentences layout)")
    problems = Problems()
    ids = _video_ids(root, SUBSETS[split], problems)
    missed = root / "a2d_missed_videos.txt"
    left_out = set(missed.read_text(encoding="utf-8").split()) if missed.is_file() else set()
    videos = {v for v in ids if v not in left_out}
    for video in sorted(videos):
        problem = single_name_problem(video, "video")
        if problem:
            problems.add(str(root / "videoset.csv"), problem)
            videos.discard(video)
    sentences = _sentences(root / "a2d_annotation.txt", videos, problems)
    raise_problems(problems)
    annotated: dict[str, list[tuple[int, list[int]]]] = {}
    num_frames: dict[str, int] = {}
    samples = []
    for video, instance, text in sentences:
        if video not in annotated:
            folder = root / "a2d_annotation_with_instances" / video
            files = sorted(folder.glob("*.h5"))
            if not files:
                problems.add(str(folder), "no .h5 annotation files")
            bad = [p for p in files if not p.stem.isdigit()]
            if bad:
                problems.add(str(bad[0]), "an annotation file name that is not a frame number")
                files = [p for p in files if p.stem.isdigit()]
            annotated[video] = [(int(p.stem), _instances(p)) for p in files]
            num_frames[video] = len(list((root / "pngs320H" / video).glob("*.png")))
            last = max((frame for frame, _ in annotated[video]), default=0)
            if num_frames[video] < last:
                problems.add(
                    str(root / "pngs320H" / video),
                    f"{num_frames[video]} frames, but frame {last} is annotated",
                )
        for frame, instances in annotated[video]:
            if instance in instances:
                samples.append(A2DSample(video, frame, instance, text))
    if not samples and not problems:
        problems.add(str(root / "a2d_annotation.txt"), f"no sample in split {split!r}")
    raise_problems(problems)
    return A2DSplit(root, split, tuple(samples), num_frames)
