"""Predictions for many images written to a folder (what ``lavt predict`` does).

Every image is checked (header, size, PNG checksums) before the model runs,
then decoded one at a time. Per (image, expression) the folder gets a mask PNG
at the image's size (0/255), an overlay PNG for people, and a line of
``predictions.jsonl`` (with ``found``: whether the expression names an object,
and the no-target probability when the model has a head). File names are stable and unique:
``<stem>-<hash of the image's resolved path>_<expression>-<hash of it>``, so
two images called ``x.jpg`` in different folders never share a file, and
running again adds to the folder: ``predictions.jsonl`` keeps the lines of
earlier runs, except those whose files this run rewrote (one line per file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lavt.errors import InputError
from lavt.evaluation.outputs import check_output_dir
from lavt.evaluation.overlays import render_prediction
from lavt.imageio import check_image, load_image, save_png_atomic
from lavt.predict.predictor import Predictor
from lavt.runtime import atomic_write_text

log = logging.getLogger("lavt")

JSONL = "predictions.jsonl"


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _slug(text: str, limit: int, keep: str = "") -> str:
    """``text`` as letters, digits, ``keep`` characters and single dashes, cut to ``limit``."""
    slug = re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]+", "-", text).strip("-")
    return slug[:limit].rstrip("-") or "x"


def text_name(text: str) -> str:
    """Stable, unique file-name part for an expression: a slug of it and a hash."""
    return f"{_slug(text.lower(), 40)}-{_digest(text, 6)}"


def output_name(image: str | os.PathLike, text: str) -> str:
    """Stable, unique file-name stem for one (image, expression)."""
    resolved = str(Path(image).resolve())
    stem = _slug(Path(image).stem, 40, keep="_.")
    return f"{stem}-{_digest(resolved, 8)}_{text_name(text)}"


def check_inputs(images: Sequence[str | os.PathLike]) -> list[Path]:
    """Every image's header checked up front; the same file given twice is kept once."""
    unique: dict[str, Path] = {}
    for image in images:
        path = Path(image)
        check_image(path)
        key = str(path.resolve())
        if key in unique:
            log.warning("%s: given twice, predicted once", path)
            continue
        unique[key] = path
    return list(unique.values())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The lines of an earlier run's ``predictions.jsonl`` (none if it does not exist)."""
    if not path.exists():
        return []
    lines = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: unreadable ({err})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict) or "mask" not in entry:
            raise InputError(f"{path}: line {number} is not a prediction record; move the file")
        lines.append(entry)
    return lines


def predict_to_folder(
    predictor: Predictor,
    images: Sequence[str | os.PathLike],
    texts: Sequence[str],
    output: str | os.PathLike,
    *,
    report: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Segment every expression in every image; returns this run's ``predictions.jsonl`` lines.

    ``report`` is called with each line as soon as its files are written.
    """
    predictor.check_image_model()
    paths = check_inputs(images)
    output = check_output_dir(output)
    jsonl = output / JSONL
    earlier = read_jsonl(jsonl)
    texts = list(dict.fromkeys(texts))  # the same expression twice: once
    lines: list[dict[str, Any]] = []
    for path in paths:
        picture = load_image(path)  # one decoded image at a time
        output.mkdir(parents=True, exist_ok=True)
        for k, result in enumerate(predictor.iter_predict(picture, texts)):
            line = _write_one(output, path, picture, result, k)
            lines.append(line)
            if report is not None:
                report(line)
        del picture
        _write_jsonl(jsonl, earlier, lines)
    return lines


def _write_one(output: Path, path: Path, picture: Image.Image, result, k: int) -> dict[str, Any]:
    name = output_name(path, result.text)
    mask_path, overlay_path = output / f"{name}_mask.png", output / f"{name}_overlay.png"
    mask_png = Image.fromarray(result.mask.view(np.uint8) * np.uint8(255), mode="L")
    save_png_atomic(mask_png, mask_path, compress_level=3)
    del mask_png
    save_png_atomic(
        render_prediction(
            picture,
            result.mask,
            result.text,
            colour_index=k,
            found=result.found,
            no_target_probability=result.no_target_probability,
        ),
        overlay_path,
    )
    nt_prob = result.no_target_probability
    return {
        "image": str(path),
        "text": result.text,
        "mask": str(mask_path),
        "overlay": str(overlay_path),
        "foreground_fraction": round(result.foreground_fraction, 6),
        "mean_foreground_probability": round(result.mean_foreground_probability, 6),
        "found": result.found,
        "no_target_probability": None if nt_prob is None else round(nt_prob, 6),
    }


def _write_jsonl(path: Path, earlier: list[dict[str, Any]], lines: list[dict[str, Any]]) -> None:
    """Earlier lines whose mask this run did not rewrite, then this run's lines."""
    rewritten = {Path(line["mask"]).name for line in lines}  # all masks live in this folder
    kept = [e for e in earlier if Path(str(e.get("mask"))).name not in rewritten]
    atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in [*kept, *lines]))
