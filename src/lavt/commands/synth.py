"""``lavt synth``: write a synthetic dataset in the refer layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, required=True, help="dataset root to write")
    parser.add_argument("--images", type=int, default=1000, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, default=(64, 64), metavar=("W", "H"))
    parser.add_argument("--dataset", default="refcoco", help="folder name of the annotations")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lavt.data.synthetic import generate_dataset

    with tqdm(total=args.images, desc="synth", unit="img", disable=None) as bar:
        summary = generate_dataset(
            args.output,
            num_images=args.images,
            seed=args.seed,
            image_size=tuple(args.image_size),
            dataset=args.dataset,
            overwrite=args.overwrite,
            progress=lambda n: bar.update(n - bar.n),
        )
    print(f"wrote {summary.images} images to {summary.root}")
    for split, refs in summary.refs_per_split.items():
        print(f"  {split}: {refs} objects, {summary.sentences_per_split[split]} expressions")
    return 0
