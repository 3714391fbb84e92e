"""``lavt synth``: write a synthetic dataset in the refer layout, or with ``--generalized``
in the gRefCOCO layout (expressions naming several objects or none; docs/gres.md), or
with ``--own-data`` the worked example's raw files (JSONL, COCO, LabelMe) of a domain
the bundled model never saw, for ``lavt data import`` (docs/data.md), or with ``--video``
moving shapes in the Refer-YouTube-VOS layout (docs/synthetic.md, "Synthetic videos")."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="dataset root to write: a new or empty folder, or one lavt synth wrote before "
        "(a folder holding other images or annotations is refused)",
    )
    parser.add_argument(
        "--images", type=int, default=None, help="number of scenes, at least 4 (default: 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument(
        "--image-size",
        "--image_size",
        type=int,
        nargs=2,
        default=None,
        metavar=("W", "H"),
        help="width and height of every scene in pixels, at least 32 (default: 64 64)",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="folder name of the annotations under --output (default: refcoco)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a dataset lavt synth wrote there before"
    )
    parser.add_argument(
        "--generalized",
        action="store_true",
        help="gRefCOCO layout (<output>/grefcoco/, images/train2014/) with multi-target and "
        "no-target expressions; --dataset is then grefcoco",
    )
    parser.add_argument(
        "--no-target-fraction",
        "--no_target_fraction",
        dest="no_target_fraction",
        type=float,
        default=None,
        metavar="F",
        help="with --generalized: share of the expressions that name no object (default: 0.2)",
    )
    parser.add_argument(
        "--own-data",
        "--own_data",
        dest="own_data",
        action="store_true",
        help="write the worked example's raw annotation files instead (new shapes, colours, "
        "textures and words) under <output>/<format>/, to import with lavt data import",
    )
    parser.add_argument(
        "--format",
        choices=("jsonl", "coco", "labelme", "all"),
        default="all",
        help="with --own-data: which raw format(s) to write",
    )
    _add_video_arguments(parser)
    parser.set_defaults(
        _flags={
            "formats": "--format",
            "root": "--output",
            "num_images": "--images",
            "image_size": "--image-size",
            "no_target_fraction": "--no-target-fraction",
            "num_videos": "--videos",
            "num_frames": "--frames",
            "size": "--size",
        }
    )


def _add_video_arguments(parser: argparse.ArgumentParser) -> None:
    video = parser.add_argument_group("videos (--video)")
    video.add_argument(
        "--video",
        action="store_true",
        help="write moving shapes in the Refer-YouTube-VOS layout (splits train and valid, "
        "masks kept) instead; with --overwrite, --output is replaced as a whole",
    )
    video.add_argument(
        "--videos", type=int, default=12, help="with --video: number of videos, a third valid"
    )
    video.add_argument(
        "--frames", type=int, default=8, help="with --video: frames per video (2 to 1000)"
    )
    video.add_argument(
        "--size",
        default="128x128",
        metavar="WxH",
        help="with --video: frame width x height in pixels",
    )


#: the image layouts' flags and their defaults; with --video none of them may be given
_IMAGE_DEFAULTS = {"images": 1000, "image_size": (64, 64), "dataset": "refcoco"}
_VIDEO_FLAGS = {"videos": 12, "frames": 8, "size": "128x128"}


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lavt.data.synthetic import generate_dataset, generate_generalized_dataset
    from lavt.errors import InputError

    if args.no_target_fraction is not None and not args.generalized:
        raise InputError("no_target_fraction: only with --generalized", param="no_target_fraction")
    if args.video:
        return _run_video(args)
    for name, value in _VIDEO_FLAGS.items():
        if getattr(args, name) != value:
            raise InputError(f"{name}: only with --video", param=name)
    for name, value in _IMAGE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.own_data:
        return _run_own_data(args)
    with tqdm(total=args.images, desc="synth", unit="img", disable=None) as bar:
        common = dict(
            num_images=args.images,
            seed=args.seed,
            image_size=tuple(args.image_size),
            overwrite=args.overwrite,
            progress=lambda n: bar.update(n - bar.n),
        )
        if args.generalized:
            fraction = 0.2 if args.no_target_fraction is None else args.no_target_fraction
            summary = generate_generalized_dataset(
                args.output, no_target_fraction=fraction, **common
            )
        else:
            summary = generate_dataset(args.output, dataset=args.dataset, **common)
    print(f"wrote {summary.images} images to {summary.root}")
    for split, refs in summary.refs_per_split.items():
        print(f"  {split}: {refs} objects, {summary.sentences_per_split[split]} expressions")
    return 0


def _run_own_data(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lavt.data.synthetic.novel_export import FORMATS, write_novel_dataset
    from lavt.errors import InputError

    if args.generalized:
        raise InputError("generalized: not with --own-data", param="generalized")
    formats = FORMATS if args.format == "all" else (args.format,)
    with tqdm(total=args.images, desc="synth", unit="img", disable=None) as bar:
        summary = write_novel_dataset(
            args.output,
            formats=formats,
            num_images=args.images,
            seed=args.seed,
            image_size=tuple(args.image_size),
            overwrite=args.overwrite,
            progress=lambda n: bar.update(n - bar.n),
        )
    for fmt, folder in summary.folders.items():
        print(f"wrote {fmt} to {folder}")
    for split, counts in summary.per_split.items():
        print(f"  {split}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


def _run_video(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lavt.data.synthetic.video_writer import generate_video_dataset, parse_size
    from lavt.errors import InputError

    for name in ("generalized", "own_data", *_IMAGE_DEFAULTS):
        if getattr(args, name) not in (None, False):
            raise InputError(f"{name}: not with --video", param=name)
    size = parse_size(args.size)
    with tqdm(total=args.videos, desc="synth", unit="video", disable=None) as bar:
        summary = generate_video_dataset(
            args.output,
            num_videos=args.videos,
            num_frames=args.frames,
            size=size,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=lambda n: bar.update(n - bar.n),
        )
    total = sum(summary.videos.values())
    print(f"wrote {total} videos of {summary.frames_per_video} frames to {summary.root}")
    for split, count in summary.videos.items():
        print(
            f"  {split}: {count} videos, {summary.objects[split]} objects, "
            f"{summary.expressions[split]} expressions"
        )
    return 0
