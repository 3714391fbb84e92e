"""The built wheel, installed outside the checkout, works on its own (issue 23).

The wheel is built from a copy of the sources with this environment's setuptools
(no build isolation: nothing is downloaded), installed with ``pip install --no-deps
--target`` into a temporary folder, and run from another temporary folder with only
that folder on ``PYTHONPATH``: ``lavt --version``, ``python -m lavt --help``, ``lavt
predict`` with the bundled model, the serve page and a segment request through
FastAPI's in-process client, and the Python API. Anything the package reads at run
time but the wheel lacks (a bundled model, a vocabulary, the page's files) fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIP = (sys.executable, "-m", "pip")
#: what a build reads: the package and the files pyproject.toml names
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md")
#: run-time files that must travel in the wheel (a glob each, under lavt/)
PACKAGE_DATA = (
    "assets/lavt_synthetic.safetensors",
    "assets/lavt_synthetic_generalized.safetensors",
    "assets/bert-base-uncased-vocab.txt",
    "assets/synthetic-vocab.txt",
    "serve/static/index.html",
    "serve/static/app.js",
    "serve/static/style.css",
    "serve/static/examples/examples.json",
    "serve/static/examples/scene-1.jpg",
    "py.typed",
)

API_AND_SERVE = """
import sys
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

import lavt
from lavt.serve.adapter import ModelAdapter
from lavt.serve.app import create_app

site = Path(sys.argv[1]).resolve()
assert Path(lavt.__file__).resolve().is_relative_to(site), lavt.__file__
predictor = lavt.Predictor.from_checkpoint(device="cpu")
(result,) = predictor.predict(sys.argv[2], ["the red circle"])
cli_mask = np.asarray(Image.open(sys.argv[3])) > 127
assert result.mask.shape == cli_mask.shape and (result.mask == cli_mask).all()
adapter = ModelAdapter(predictor.model, device=predictor.device)
with TestClient(create_app(adapter)) as client:
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower(), page.status_code
    script = client.get("/static/app.js")
    assert script.status_code == 200 and len(script.content) > 100
    example = client.get("/static/examples/scene-1.jpg")
    assert example.status_code == 200 and example.content[:2] == b"\\xff\\xd8"
    with open(sys.argv[2], "rb") as f:
        answer = client.post(
            "/v1/segment", files={"image": ("s.png", f, "image/png")},
            data={"text": "the red circle"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["area"] == int(result.mask.sum())
print("api+serve ok", lavt.__version__)
"""


def _source_version() -> str:
    text = (ROOT / "src" / "lavt" / "_version.py").read_text(encoding="utf-8")
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def _copy_sources(dest: Path) -> Path:
    dest.mkdir()
    for name in BUILD_INPUTS:
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "src" / "lavt", dest / "src" / "lavt", ignore=ignore)
    return dest


def _build_wheel(tmp_path: Path) -> Path:
    src = _copy_sources(tmp_path / "src-copy")
    dist = tmp_path / "dist"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
        check=True,
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    (wheel,) = dist.glob("lavt-*.whl")
    return wheel


def _synthetic_image(path: Path) -> Path:
    """A red disc on grey, the kind of scene the bundled model knows (48 x 64)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 48), (200, 200, 200))
    ImageDraw.Draw(image).ellipse((8, 8, 32, 32), fill=(220, 30, 30))
    image.save(path)
    return path


@pytest.mark.slow
def test_installed_wheel_runs_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path)
    assert wheel.name.startswith(f"lavt-{_source_version()}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in PACKAGE_DATA if f"lavt/{f}" not in names]
    assert not missing, f"not in the wheel: {missing}"

    site = tmp_path / "site"
    subprocess.run(
        [*PIP, "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"},
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # -S: no site processing, so no .pth file of an editable install of this checkout puts
    # its src/ on the path; the dependencies come from this interpreter's site-packages
    paths = sysconfig.get_paths()
    deps = dict.fromkeys([paths["purelib"], paths["platlib"]])
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), *deps]),
        OMP_NUM_THREADS="1",
        LAVT_HOME=str(tmp_path / "home"),
    )
    python = (sys.executable, "-S")

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{args}: {done.stderr[-2000:]}"
        return done.stdout

    where = run(*python, "-c", "import lavt, sys; print(lavt.__file__); print(sys.path)")
    assert Path(where.splitlines()[0]).resolve().is_relative_to(site.resolve())
    assert str(ROOT / "src") not in where
    # the console script pip wrote, and the version from its one source
    lavt_script = (*python, str(site / "bin" / "lavt"))
    assert run(*lavt_script, "--version").strip() == f"lavt {_source_version()}"
    assert "predict" in run(*python, "-m", "lavt", "--help")

    image = _synthetic_image(work / "scene.png")
    out = run(
        *lavt_script, "predict", "--image", "scene.png", "--text", "the red circle",
        "--output", "out", "--device", "cpu",
    )  # fmt: skip
    assert "the red circle" in out
    (line,) = [json.loads(x) for x in (work / "out" / "predictions.jsonl").read_text().splitlines()]
    mask = Path(line["mask"]) if Path(line["mask"]).is_absolute() else work / line["mask"]
    assert mask.is_file()
    checks = run(*python, "-c", API_AND_SERVE, str(site), str(image), str(mask))
    assert "api+serve ok" in checks


@pytest.mark.slow
def test_sdist_holds_the_package_data_and_the_tests(tmp_path):
    source = _copy_sources(tmp_path / "src-copy")
    for folder in ("configs", "docs", "tests/golden"):
        shutil.copytree(ROOT / folder, source / folder)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--sdist",
            "--no-isolation",
            "-o",
            str(tmp_path / "d"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (sdist,) = (tmp_path / "d").glob("lavt-*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    wanted = [f"src/lavt/{f}" for f in PACKAGE_DATA]
    wanted += ["CHANGELOG.md", "LICENSE", "configs/refcoco_lavt.yaml"]
    wanted += ["tests/golden/lavt_one_w7.pth", "docs/model.md"]
    assert not [f for f in wanted if f not in names]
