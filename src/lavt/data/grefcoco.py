"""gRefCOCO refs (GRES, Liu, Ding and Jiang, CVPR 2023) as :class:`~lavt.data.records.Ref`.

Layout (docs/gres.md, "Data"): ``<root>/grefcoco/grefs(unc).json`` (a JSON list of
refs; ``grefs(unc).p`` is read instead when it exists, as the GRES loader does),
``<root>/grefcoco/instances.json`` and the COCO train2014 images under
``<root>/images/train2014/``. The only splitBy is ``unc``.

A gRefCOCO ref differs from a RefCOCO one in its ``ann_id``: a scalar or a list;
``[-1]`` means the expression names no object (the ground truth is empty), two or
more ids mean several objects (the ground truth is the union of their masks).
Crowd annotations are left out of the union, as the GRES code does; a ref all of
whose targets are crowd is dropped with a warning (the GRES code would fail on
it). The image file name always comes from ``instances.json``, never from the
ref's ``file_name`` (which carries an extra suffix).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lavt.data.records import Ref, Sentence, safe_unpickle
from lavt.errors import InputError

log = logging.getLogger("lavt")

GREF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")
NO_TARGET = -1


def grefs_path(folder: Path, split_by: str) -> Path:
    """``grefs(<splitBy>).p`` when present (read first, like the GRES loader), else ``.json``."""
    pickled = folder / f"grefs({split_by}).p"
    return pickled if pickled.is_file() else folder / f"grefs({split_by}).json"


def load_grefs(path: Path) -> Any:
    """The raw list of refs of a ``grefs(...)`` file (JSON, or a plain pickle)."""
    if path.suffix == ".p":
        return safe_unpickle(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: malformed JSON ({err})") from None
    except (UnicodeDecodeError, OSError) as err:
        raise InputError(f"{path}: unreadable ({err})") from None


def _as_id_list(value: Any) -> list[int]:
    """``ann_id`` / ``category_id``: a scalar or a list -> a list of ints."""
    values = value if isinstance(value, list | tuple) else [value]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v:
            raise ValueError(f"{v!r} is not an integer id")
        out.append(int(v))
    return out


def _sentences(item: dict, path: Path) -> tuple[Sentence, ...]:
    try:
        return tuple(
            Sentence(int(s["sent_id"]), str(s.get("raw") or s["sent"])) for s in item["sentences"]
        )
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: ref {item['ref_id']} has malformed sentences") from None


def parse_grefs(raw: Any, path: Path, annotations: dict[int, dict]) -> list[Ref]:
    """gRefCOCO refs; ``ann_ids`` holds the non-crowd targets (empty: no-target).

    Targets missing from ``annotations`` are an error naming the ref.
    """
    if not isinstance(raw, list):
        raise InputError(f"{path}: expected a list of refs, found {type(raw).__name__}")
    refs, all_crowd = [], []
    for position, item in enumerate(raw):
        if not isinstance(item, dict) or any(k not in item for k in GREF_KEYS):
            missing = [k for k in GREF_KEYS if not isinstance(item, dict) or k not in item]
            raise InputError(f"{path}: ref #{position} lacks {', '.join(missing)}")
        try:
            targets = _as_id_list(item["ann_id"])
            categories = _as_id_list(item.get("category_id", 0))
        except ValueError as err:
            raise InputError(f"{path}: ref {item['ref_id']}: ann_id/category_id {err}") from None
        if not targets or (NO_TARGET in targets and targets != [NO_TARGET]):
            raise InputError(
                f"{path}: ref {item['ref_id']}: ann_id {item['ann_id']!r} must be [-1] "
                "(no target) or a list of annotation ids"
            )
        targets = [] if targets == [NO_TARGET] else targets
        for ann_id in targets:
            if ann_id not in annotations:
                raise InputError(
                    f"{path}: ref {item['ref_id']} points to annotation {ann_id}, "
                    "which instances.json lacks"
                )
        kept = tuple(a for a in targets if not annotations[a].get("iscrowd", 0))
        if targets and not kept:
            all_crowd.append(item["ref_id"])
            continue
        refs.append(
            Ref(
                ref_id=int(item["ref_id"]),
                ann_id=kept[0] if kept else NO_TARGET,
                image_id=int(item["image_id"]),
                category_id=categories[0] if categories else 0,
                split=str(item["split"]),
                sentences=_sentences(item, path),
                ann_ids=kept,
            )
        )
    if all_crowd:
        log.warning(
            "%s: dropped %d refs whose targets are all crowd annotations (e.g. ref %s)",
            path,
            len(all_crowd),
            all_crowd[0],
        )
    return refs
