"""``lavt data``: bring your own data into the refer layout, and check a dataset.

- ``lavt data import {jsonl,coco,labelme} SRC --output ROOT --name NAME``: writes
  ``ROOT/NAME/`` (instances.json, refs(unc).p, images/) for
  ``lavt train/evaluate --data-root ROOT --dataset NAME``; nothing is written when
  the source has a problem (each reported with its file and line / id / shape);
- ``lavt data check ROOT --dataset NAME``: the checks ``lavt evaluate`` runs on
  load, then per split the numbers of images, objects and expressions and
  summaries of expression lengths and mask areas (``--json``: as JSON).

Formats and layout: docs/data.md ("Your own data").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lavt.commands.helpformat import use_defaults_help
from lavt.commands.shared_flags import add_split_by_flag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    use_defaults_help(parser)
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    imp = sub.add_parser(
        "import",
        help="write JSONL, COCO or LabelMe annotations as a refer-layout dataset",
        description="write JSONL, COCO or LabelMe annotations as dataset NAME under ROOT "
        "(ROOT/NAME/instances.json, refs(unc).p, images/); docs/data.md",
    )
    _add_import_arguments(imp)
    check = sub.add_parser(
        "check",
        help="validate a refer-layout dataset and print its figures per split",
        description="validate a refer-layout dataset (imported, synthetic or published) with "
        "the checks of lavt evaluate, and print per split its images, objects, expressions, "
        "expression lengths and mask areas",
    )
    _add_check_arguments(check)


def _add_import_arguments(parser: argparse.ArgumentParser) -> None:
    use_defaults_help(parser)
    parser.add_argument("format", choices=("jsonl", "coco", "labelme"), help="source format")
    parser.add_argument(
        "src",
        type=Path,
        metavar="SRC",
        help="the .jsonl file, the COCO .json file, or the folder of LabelMe .json files",
    )
    parser.add_argument(
        "--output", type=Path, required=True, metavar="ROOT", help="data root to write into"
    )
    parser.add_argument(
        "--name", required=True, help="dataset name: the folder ROOT/NAME and --dataset NAME"
    )
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder the image paths are relative to (default: the JSONL/COCO file's "
        "folder; LabelMe: each JSON file's folder)",
    )
    parser.add_argument(
        "--split-ratios",
        "--split_ratios",
        dest="split_ratios",
        default="0.8,0.1,0.1",
        metavar="TRAIN,VAL,TEST",
        help="shares of train/val/test for images without a split (assigned by a hash of "
        "the image path)",
    )
    parser.add_argument(
        "--generalized",
        action="store_true",
        help="gRefCOCO layout (grefs(unc).json): a mask may be a list of objects or null",
    )
    parser.add_argument(
        "--link", action="store_true", help="hard-link the images instead of copying them"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace ROOT/NAME when lavt data import wrote it before",
    )
    parser.set_defaults(
        _run_data=_run_import, _flags={"output": "--output", "split_ratios": "--split-ratios"}
    )


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    use_defaults_help(parser)
    parser.add_argument(
        "root", type=Path, metavar="ROOT", help="data root holding <dataset>/ (and images/)"
    )
    parser.add_argument(
        "--dataset", required=True, help="dataset name (refcoco, grefcoco, an imported NAME)"
    )
    add_split_by_flag(parser)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.set_defaults(_run_data=_run_check, _flags={"split_by": "--splitBy", "data_root": "ROOT"})


def run(args: argparse.Namespace) -> int:
    return args._run_data(args)


def _run_import(args: argparse.Namespace) -> int:
    from lavt.data.importer import import_dataset, parse_split_ratios

    summary = import_dataset(
        args.format,
        args.src,
        output=args.output,
        name=args.name,
        images=args.images,
        split_ratios=parse_split_ratios(args.split_ratios),
        generalized=args.generalized,
        link=args.link,
        overwrite=args.overwrite,
    )
    print(f"wrote {summary.images} images to {summary.folder}")
    for split, counts in sorted(summary.per_split.items()):
        print(f"  {split}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    print(f"use: --data-root {args.output} --dataset {args.name}")
    return 0


def _run_check(args: argparse.Namespace) -> int:
    from lavt.data.check import check_dataset, format_report

    report = check_dataset(args.root, args.dataset, args.split_by)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0
