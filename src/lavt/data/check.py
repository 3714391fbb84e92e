"""``lavt data check``: a refer-layout dataset checked as ``lavt evaluate`` checks it, with figures.

The checks are :class:`~lavt.data.refer.ReferIndex`'s on load (links between refs,
images and annotations, image records, segmentations) and
:meth:`~lavt.data.refer.ReferIndex.check_images` per split (image files on disk):
the same calls ``lavt evaluate`` makes, so a dataset that passes here loads there.
Each referred mask is then decoded once (one at a time), which also proves it decodes.

Figures per split (``split`` values as written in the refs file): images, objects
(refs), expressions, expression length in words and mask area as a share of the
image (min / mean / median / max); generalized datasets also count no-target refs.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence

from lavt.data.refer import ReferIndex


def _summary(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": round(min(values), 4),
        "mean": round(statistics.fmean(values), 4),
        "median": round(statistics.median(values), 4),
        "max": round(max(values), 4),
    }


def check_dataset(root: str | os.PathLike, dataset: str, split_by: str = "unc") -> dict[str, dict]:
    """Figures per split of a dataset that passes ``lavt evaluate``'s checks
    (an :class:`~lavt.errors.InputError` naming the file and id otherwise)."""
    index = ReferIndex(root, dataset, split_by)
    report: dict[str, dict] = {}
    for split in sorted({r.split for r in index.refs}):
        refs = [r for r in index.refs if r.split == split]
        index.check_images(refs, skip_missing=False)
        words = [len(s.text.split()) for r in refs for s in r.sentences]
        areas = []
        for ref in refs:
            if not ref.no_target:
                mask = index.ref_mask(ref)  # (H, W) uint8
                areas.append(float(mask.sum()) / mask.size)
        figures: dict = {
            "images": len({r.image_id for r in refs}),
            "objects": len(refs),
            "expressions": len(words),
        }
        if index.generalized:
            figures["no_target"] = sum(r.no_target for r in refs)
        figures["expression_words"] = _summary(words)
        figures["mask_area"] = _summary(areas)
        report[split] = figures
    return report


def format_report(report: dict[str, dict]) -> str:
    """The figures as a table, one row per split."""
    header = (
        "split   images  objects  expressions  words min/median/max  mask area % min/median/max"
    )
    rows = [header]
    for split, f in report.items():
        w, a = f["expression_words"] or {}, f["mask_area"] or {}
        words = f"{w.get('min', 0):g}/{w.get('median', 0):g}/{w.get('max', 0):g}"
        area = "/".join(f"{100 * a.get(k, 0):.1f}" for k in ("min", "median", "max"))
        extra = f"  ({f['no_target']} no-target)" if "no_target" in f else ""
        rows.append(
            f"{split:<7} {f['images']:>6}  {f['objects']:>7}  {f['expressions']:>11}  "
            f"{words:>19}  {area:>27}{extra}"
        )
    return "\n".join(rows)
