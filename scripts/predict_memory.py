"""Peak memory of ``lavt predict`` with many expressions on a large photo.

    OMP_NUM_THREADS=1 python scripts/predict_memory.py --width 6000 --height 4000 --texts 200

Writes a synthetic JPEG of the given size, runs ``lavt predict`` (bundled model,
CPU) on it with N distinct expressions in a child process, and prints the
child's peak resident set size (``ru_maxrss``) and the wall time.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "gray")
SHAPES = ("circle", "square", "triangle", "cross", "rhombus")
PLACES = ("on the left", "on the right", "on the top", "on the bottom", "in the middle")


def expressions(n: int) -> list[str]:
    combos = itertools.product(("the", "a big", "the small"), COLOURS, SHAPES, PLACES)
    return [" ".join(c) for c in itertools.islice(combos, n)]


def write_photo(path: Path, width: int, height: int) -> None:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack(
        [x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1
    ).astype(np.uint8)
    Image.fromarray(rgb).save(path, quality=85)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--texts", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        write_photo(photo, args.width, args.height)
        cmd = [sys.executable, "-m", "lavt", "predict", "--device", "cpu", "--image", str(photo)]
        cmd += ["--text", *expressions(args.texts), "--output", str(Path(tmp) / "out")]
        start = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        masks = len(list((Path(tmp) / "out").glob("*_mask.png")))
    megapixels = args.width * args.height / 1e6
    print(
        f"{args.texts} expressions, {args.width}x{args.height} ({megapixels:.0f} MP), "
        f"{masks} masks: peak RSS {peak_mib:.0f} MiB, {seconds:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
