"""``lavt synth``: write a synthetic dataset in the refer layout, or with ``--generalized``
in the gRefCOCO layout (expressions naming several objects or none; docs/gres.md), or
with ``--own-data`` the worked example's raw files (JSONL, COCO, LabelMe) of a domain
the bundled model never saw, for ``lavt data import`` (docs/data.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lavt.commands.helpformat import use_defaults_help


def add_arguments(parser: argparse.ArgumentParser) -> None:
    use_defaults_help(parser)
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="dataset root to write: a new or empty folder, or one lavt synth wrote before "
        "(a folder holding other images or annotations is refused)",
    )
    parser.add_argument("--images", type=int, default=1000, help="number of scenes (at least 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument(
        "--image-size",
        "--image_size",
        type=int,
        nargs=2,
        default=(64, 64),
        metavar=("W", "H"),
        help="width and height of every scene in pixels (at least 32)",
    )
    parser.add_argument(
        "--dataset", default="refcoco", help="folder name of the annotations under --output"
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
    parser.set_defaults(
        _flags={
            "formats": "--format",
            "root": "--output",
            "num_images": "--images",
            "image_size": "--image-size",
            "no_target_fraction": "--no-target-fraction",
        }
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lavt.data.synthetic import generate_dataset, generate_generalized_dataset
    from lavt.errors import InputError

    if args.no_target_fraction is not None and not args.generalized:
        raise InputError("no_target_fraction: only with --generalized", param="no_target_fraction")
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
