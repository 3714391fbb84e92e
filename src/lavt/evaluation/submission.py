"""The Refer-YouTube-VOS submission: ``Annotations/<video>/<exp_id>/<frame>.png`` and its zip.

The competition server (CodaLab) takes a zip whose members are
``Annotations/<video>/<exp_id>/<frame>.png``: one greyscale PNG per expression
and frame, at the frame's size, 255 on the object and 0 elsewhere (as the LAVT
authors' ``test_ytvos.py`` writes them). Every process writes its expressions'
PNGs into one staging folder (so under ``torchrun`` the output folder must be
shared by all processes: one machine, or a shared file system); the main
process then zips it and moves it into place, so a folder or zip left from an
earlier run is replaced only by a complete one.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lavt.runtime import DistInfo, atomic_directory, atomic_path, barrier

STAGING = ".Annotations.partial"
ZIP_NAME = "submission.zip"


def start_submission(output: Path, dist: DistInfo) -> Path:
    """The (emptied) staging folder every process writes its PNGs into."""
    staging = Path(output) / STAGING
    if dist.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    return staging


def save_mask(staging: Path, video: str, exp_id: str, frame: str, mask: torch.Tensor) -> None:
    """One expression's mask on one frame: (H, W) bool -> ``<video>/<exp_id>/<frame>.png``."""
    folder = staging / video / exp_id
    folder.mkdir(parents=True, exist_ok=True)
    pixels = mask.to(torch.uint8).mul_(255).cpu().numpy().astype(np.uint8)  # (H, W) 0 or 255
    Image.fromarray(pixels, mode="L").save(folder / f"{frame}.png", format="PNG")


def finish_submission(output: Path, staging: Path, dist: DistInfo) -> Path | None:
    """After every process: the main one writes ``submission.zip`` and ``Annotations/``."""
    barrier()
    if not dist.is_main:
        return None
    output = Path(output)
    files = sorted(p for p in staging.rglob("*.png"))
    zip_path = output / ZIP_NAME
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path in files:
            z.write(path, "Annotations/" + path.relative_to(staging).as_posix())
    with atomic_directory(output / "Annotations", replace=True) as folder:
        folder.rmdir()  # the staging folder takes the temporary folder's place
        staging.rename(folder)
    return zip_path
