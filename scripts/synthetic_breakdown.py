"""Metrics of a synthetic-data evaluation per expression family.

    lavt evaluate --data-root data/synthetic64 --output eval_output
    python scripts/synthetic_breakdown.py eval_output [--split val]

Reads the per-expression records that ``lavt evaluate`` writes
(``<output>/<split>.jsonl``) and prints the README table with one row per
family of the generator's templates: attribute, ordinal, relation, and all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from lavt.data.synthetic import EXPRESSION_KINDS, expression_kind
from lavt.evaluation.metrics import SegmentationMetrics, format_table


def breakdown(records: list[dict]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[dict]] = {kind: [] for kind in EXPRESSION_KINDS}
    for record in records:
        groups[expression_kind(record["text"])].append(record)
    groups["all"] = records
    rows = {}
    for kind, rows_of_kind in groups.items():
        metrics = SegmentationMetrics()
        if rows_of_kind:
            inter = torch.tensor([r["I"] for r in rows_of_kind], dtype=torch.int64)
            union = torch.tensor([r["U"] for r in rows_of_kind], dtype=torch.int64)
            metrics.update(inter, union)
        rows[f"{kind} ({metrics.num_expressions})"] = metrics.summary()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the --output folder of lavt evaluate")
    parser.add_argument("--split", default="val")
    args = parser.parse_args(argv)
    path = args.output / f"{args.split}.jsonl"
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line]
        table = format_table(breakdown(records))
    except OSError as err:
        print(f"error: {path}: {err.strerror}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError):
        print(f"error: {path}: not the JSON lines that lavt evaluate writes", file=sys.stderr)
        return 2
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
