"""Image loading: EXIF orientation, every colour mode, and each bad file."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from lavt.errors import InputError
from lavt.imageio import load_image


def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_exif_orientation_is_applied(tmp_path):
    # a 40x20 landscape picture with a red marker at its top-left corner
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:5, :5] = (255, 0, 0)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(image, tmp_path / "rot.jpg", exif=exif, quality=100)
    loaded = load_image(path)
    assert loaded.size == (20, 40)  # shown as a portrait
    shown = np.asarray(loaded)
    assert shown[:5, -5:, 0].mean() > 200 and shown[:5, :5, 0].mean() < 50  # marker top-right
    exif[0x0112] = 8  # "rotate 90 CCW"
    path = _save(image, tmp_path / "rot8.jpg", exif=exif, quality=100)
    shown = np.asarray(load_image(path))
    assert shown[-5:, :5, 0].mean() > 200  # marker bottom-left


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    loaded = np.asarray(load_image(path))
    assert loaded.shape == (1, 4, 3)
    assert loaded[0, :, 0].tolist() == [0, 128, 255, 1]


def test_float_and_int32_images(tmp_path):
    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    path = _save(Image.fromarray(floats, mode="F"), tmp_path / "f.tiff")
    assert np.asarray(load_image(path))[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("mode", ["L", "1", "P", "RGBA", "LA", "CMYK", "PA"])
def test_modes_become_rgb(tmp_path, mode):
    base = Image.new("RGB", (8, 6), (200, 30, 30))
    image = base.convert(mode) if mode != "PA" else base.convert("P").convert("PA")
    ext = "jpg" if mode == "CMYK" else "png"
    if mode == "PA":
        ext = "png"
    try:
        path = _save(image, tmp_path / f"x.{ext}")
    except OSError:
        pytest.skip(f"PIL cannot write {mode} as {ext}")
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (8, 6)


def test_transparency_over_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (10, 20, 30, 255))
    loaded = np.asarray(load_image(_save(rgba, tmp_path / "a.png")))
    assert loaded[0, 0].tolist() == [10, 20, 30] and loaded[3, 3].tolist() == [255, 255, 255]
    palette = rgba.convert("P")
    palette.info["transparency"] = palette.getpixel((3, 3))
    loaded = np.asarray(
        load_image(_save(palette, tmp_path / "p.png", transparency=palette.getpixel((3, 3))))
    )
    assert loaded[3, 3].tolist() == [255, 255, 255]


def test_cmyk_colours(tmp_path):
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # red
    loaded = np.asarray(load_image(_save(cmyk, tmp_path / "c.tiff")))
    assert loaded[0, 0, 0] > 200 and loaded[0, 0, 1] < 50


def _write_bad(tmp_path, kind):
    path = tmp_path / "bad.jpg"
    good = Image.new("RGB", (64, 64), (1, 2, 3))
    if kind == "missing":
        return path
    if kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("this is not an image\n" * 10)
    elif kind in ("truncated_jpeg", "truncated_png"):
        fmt = "JPEG" if kind == "truncated_jpeg" else "PNG"
        noise = Image.fromarray(
            np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        )
        noise.save(path, format=fmt)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "directory":
        path.mkdir()
    elif kind == "unreadable":
        good.save(path)
        path.chmod(0)
    return path


@pytest.mark.parametrize(
    "kind",
    ["missing", "empty", "text", "truncated_jpeg", "truncated_png", "directory", "unreadable"],
)
def test_bad_images(tmp_path, kind):
    if kind == "unreadable" and os.geteuid() == 0:
        pytest.skip("root can read files without permission")
    path = _write_bad(tmp_path, kind)
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_decompression_bomb(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InputError, match="decompression bomb"):
        load_image(path)
