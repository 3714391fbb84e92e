"""Fixtures of the serve tests: the shared server, an example image, the Predictor."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serve_helpers import EXAMPLES, MAIN_FLAGS, running_server


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> str:
    """The shared server (default model, small limits) -> its base URL."""
    with running_server(*MAIN_FLAGS, log_dir=tmp_path_factory.mktemp("serve")) as url:
        yield url


@pytest.fixture(scope="session")
def example_image() -> Path:
    return EXAMPLES / "scene-1.jpg"


@pytest.fixture(scope="session")
def predictor():
    import lavt
    from lavt.assets import default_model_path

    return lavt.Predictor(lavt.load_model(default_model_path()), device="cpu")
