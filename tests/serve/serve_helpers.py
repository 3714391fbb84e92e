"""Fixtures and helpers of the serve tests: a real ``lavt serve`` on 127.0.0.1, free port.

A plugin module (``pytest_plugins = ["serve_helpers"]`` in each test file),
not a ``conftest.py``: a second ``conftest`` module would replace the root one
in ``sys.modules`` and break ``from conftest import ...`` in other tests.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(str(resources.files("lavt.serve") / "static" / "examples"))

#: limits of the shared server; small so that the error tests stay cheap
MAIN_FLAGS = (
    "--max-upload-mb", "1",
    "--max-pixels", "1000000",
    "--max-expressions", "4",
    "--max-text-chars", "60",
    "--max-batch", "16",
    "--max-wait-ms", "100",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(*flags: str, log_dir: Path, env: dict[str, str] | None = None):
    """``python -m lavt serve --port N FLAGS`` until /healthz answers; stopped on exit."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lavt", "serve", "--port", str(port), "--device", "cpu", *flags],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log_text = log_path.read_text(errors="replace")
    assert "Traceback" not in log_text, f"the server logged an error:\n{log_text}"


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


@pytest.fixture(scope="session")
def busy_server(tmp_path_factory):
    """Every request waits 2 s for a batch to fill, past its 0.5 s deadline; queue of 1."""
    flags = ("--max-wait-ms", "2000", "--max-queue", "1", "--request-timeout", "0.5",
             "--max-batch", "64", "--cors-origin", "http://allowed.test")  # fmt: skip
    with running_server(*flags, log_dir=tmp_path_factory.mktemp("busy")) as url:
        yield url
