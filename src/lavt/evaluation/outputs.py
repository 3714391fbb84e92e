"""Output folders and report files of ``lavt evaluate`` (and the folder check of predict)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from lavt.errors import InputError
from lavt.evaluation.gres_metrics import format_gres_table
from lavt.evaluation.loop import EvalResult
from lavt.evaluation.metrics import format_table
from lavt.runtime import atomic_write_text


def check_output_dir(path: str | os.PathLike, *, param: str = "output") -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be created/written.

    Nothing is left behind here: the nearest existing ancestor must be a writable
    folder in which a folder can be made (probed with an empty one, removed at
    once: ``/proc`` or a read-only mount pass the permission check and still refuse).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{param} {path}: exists and is not a folder", param=param)
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{param} {path}: {existing} is not a folder", param=param)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{param} {path}: {existing} is not writable", param=param)
    if existing != path:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".lavt-probe-", dir=existing))
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise InputError(
                f"{param} {path}: cannot create a folder in {existing} ({reason})", param=param
            ) from None
    return path


def write_split(output: Path, split: str, result: EvalResult) -> Path:
    """``<output>/<split>.jsonl``: one line per expression (ref_id, sent_id, text, I, U, IoU;
    gRefCOCO adds no_target, pred_no_target and, with a head, no_target_prob)."""
    path = output / f"{split}.jsonl"
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in result.records))
    return path


def format_results(results: dict[str, dict[str, Any]]) -> str:
    """The classic table, or the GRES one when the rows hold GRES metrics (gRefCOCO)."""
    if results and all("gIoU" in row for row in results.values()):
        rules = {(r["no_target_rule"], r["area_threshold"]) for r in results.values()}
        notes = [f"no-target rule: {rule}" + (f" (tau = {tau})" if rule == "area" else "")
                 for rule, tau in sorted(rules)]  # fmt: skip
        return format_gres_table(results) + "\n\n" + "; ".join(notes)
    return format_table(results)


def write_summary(output: Path, results: dict[str, dict[str, Any]]) -> str:
    """``metrics.md`` (the table of docs/evaluation.md) and ``metrics.json``; returns the table."""
    table = format_results(results)
    atomic_write_text(output / "metrics.md", table + "\n")
    atomic_write_text(output / "metrics.json", json.dumps(results, indent=2) + "\n")
    return table
