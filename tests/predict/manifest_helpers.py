"""Shared pieces of the ``lavt predict --manifest`` tests: scenes, manifests, runs, RLE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from lavt.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")
TEXTS = ("the red circle", "the blue square", "big red disc", "the small blue one")


def scene(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    """A synthetic-looking scene: grey background, a red disc and a blue square."""
    width, height = size
    image = Image.new("RGB", size, (120, 120, 120))
    draw = ImageDraw.Draw(image)
    x = (seed * 7) % max(1, width // 2)
    draw.ellipse((x, 2, x + width // 3, 2 + height // 3), fill=(220, 40, 40))
    draw.rectangle((width // 2, height // 2, width - 3, height - 3), fill=(40, 80, 220))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_manifest(path: Path, rows: list[dict | str]) -> Path:
    """One JSON line per dict; a string is written as it is (a broken line)."""
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def scenes_manifest(folder: Path, lines: int, *, size=(48, 40)) -> Path:
    """``lines`` lines over a few scenes in ``folder/imgs``, 1 to 3 texts each."""
    images = [scene(folder / "imgs" / f"s{k}.png", (size[0] + 8 * k, size[1] + 4 * k), k)
              for k in range(4)]  # fmt: skip
    rows: list[dict | str] = []
    for n in range(lines):
        texts = [TEXTS[(n + j) % len(TEXTS)] for j in range(1 + n % 3)]
        rows.append({"id": f"p{n}", "image": f"imgs/{images[n % 4].name}", "texts": texts})
    return write_manifest(folder / "manifest.jsonl", rows)


def run(manifest: Path, out: Path, *extra: str) -> int:
    """``lavt predict --manifest`` in this process (bundled model, CPU, no loader workers)."""
    args = ["predict", "--manifest", str(manifest), "--output", str(out), "--device", "cpu"]
    defaults = {"--workers": "0", "--batch-size": "4"}
    for flag, value in defaults.items():
        if flag not in extra:
            args += [flag, value]
    return main([*args, *extra])


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def decode(rle: dict) -> np.ndarray:
    """A record's RLE -> (H, W) bool, with pycocotools (independent of the encoder's code)."""
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def keys(lines: list[dict]) -> list[tuple[int, int]]:
    return [(line["line"], line["text_index"]) for line in lines]
