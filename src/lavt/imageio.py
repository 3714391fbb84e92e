"""Reading user images robustly.

``load_image`` applies the EXIF orientation (so a mask lines up with the picture
as a viewer shows it) and converts every PIL mode to 8-bit RGB correctly:
palette and alpha images are composited over white, CMYK goes through PIL's
conversion, and 16/32-bit and float grayscale are *scaled* to 8 bits (by their
bit depth, or by their range for floats), never clipped. Every failure is an
:class:`InputError` whose one-line message names the file.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lavt.errors import InputError
from lavt.runtime import atomic_path, check_readable_file

BACKGROUND = (255, 255, 255)  # alpha is composited over white


def _scale_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    if mode.startswith("I;16") or (
        mode == "I" and array.max(initial=0) <= 65535 and array.min(initial=0) >= 0
    ):
        return np.round(array.astype(np.float64) / 257.0).astype(np.uint8)  # 65535 -> 255
    if mode == "I":
        lo, hi = float(array.min()), float(array.max())
        return _stretch(array, lo, hi)
    lo, hi = float(np.nanmin(array)), float(np.nanmax(array))  # "F"
    if 0.0 <= lo and hi <= 1.0:
        lo, hi = 0.0, 1.0
    return _stretch(np.nan_to_num(array), lo, hi)


def _stretch(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.round((array.astype(np.float64) - lo) / (hi - lo) * 255.0).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (see the module docstring for the rules)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        gray = _scale_to_uint8(np.asarray(image), mode)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode == "P":
        return image.convert("RGB")
    if mode in ("PA",):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn PIL's failures on ``path`` into one-line :class:`InputError` messages."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"{path}: image is too large (over {Image.MAX_IMAGE_PIXELS} pixels; "
            "possible decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: unreadable or truncated image ({err})") from None


def check_image(path: str | os.PathLike) -> tuple[int, int]:
    """Check a file without decoding its pixels; returns its stored (width, height).

    Reads the header, refuses decompression bombs, and runs PIL's ``verify``
    (which walks PNG chunks and their checksums), so most broken files are
    reported before any work starts; a batch can then decode one image at a time.
    """
    path = Path(path)
    check_readable_file(path, "image", a_what="an image")
    with _reading(path), Image.open(path) as image:
        size = image.size
        image.verify()
    return size


def _decode(source: Path | io.BytesIO, name: str | Path) -> Image.Image:
    with _reading(name), Image.open(source) as image:
        image.load()
        return to_rgb(ImageOps.exif_transpose(image))


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode, EXIF-transpose and convert an image to RGB."""
    path = Path(path)
    check_readable_file(path, "image", a_what="an image")
    return _decode(path, path)


def load_image_bytes(data: bytes, name: str) -> Image.Image:
    """:func:`load_image` for a file's bytes held in memory; messages name ``name``."""
    if not data:
        raise InputError(f"{name}: image file is empty")
    return _decode(io.BytesIO(data), name)


def save_png_atomic(
    image: Image.Image, path: str | os.PathLike, *, compress_level: int = 6
) -> None:
    """Write a PNG atomically (a temporary file, then ``os.replace``), respecting the umask."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=compress_level)


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS and Refer-YouTube-VOS index PNGs (flat R, G, B).

    Index 0 black, 1 (128, 0, 0), 2 (0, 128, 0), 3 (128, 128, 0), ...: the PASCAL VOC
    colour map, each index's bits spread over the channels from the high bit down.
    """
    flat = []
    for index in range(256):
        rgb, code = [0, 0, 0], index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
        flat.extend(rgb)
    return flat
