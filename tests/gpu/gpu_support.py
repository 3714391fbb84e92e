"""Device, sizes and helpers of the GPU tests (``pytest -m gpu tests/gpu``).

On a machine with CUDA the tests run on ``cuda`` at full size (Swin-B at 480).
``LAVT_TEST_DEVICE=cpu`` runs the same tests on the CPU with tiny sizes: a dry
run that finds everything but GPU-specific failures before device time is
spent (``scripts/gpu_check.sh --dry-run`` sets it). Without either the tests
are skipped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _device() -> torch.device | None:
    name = os.environ.get("LAVT_TEST_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda") if torch.cuda.is_available() else None


DEVICE = _device()
#: a dry run on the CPU: tiny sizes, the same code paths
DRY_RUN = DEVICE is not None and DEVICE.type == "cpu"

#: mark every test module of tests/gpu with this
MARKS = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE is None, reason="needs CUDA (or LAVT_TEST_DEVICE=cpu for a dry run)"),
]


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """Plain float32 matmuls and convolutions (TF32 off in cuBLAS and cuDNN), restored after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.set_float32_matmul_precision(precision)


def tiny_lavt_config(img_size: int = 64):
    """A small random-weight LAVT (the shape of the bundled default model), no text dropout."""
    from conftest import tiny_config

    return tiny_config(text_dropout=0.0, img_size=img_size)


def large_model_and_size() -> tuple[object, int]:
    """(config, image side) of the "Swin-B at 480" checks: tiny on a dry run."""
    from lavt.modeling import preset_config

    if DRY_RUN:
        return tiny_lavt_config(96), 96
    return preset_config("base", window_size=12), 480


def random_inputs(
    batch: int, img_size: int, device: torch.device, *, length: int = 20, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """image (B, 3, S, S), input_ids (B, N), attention_mask (B, N) with varied lengths."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, img_size, img_size, generator=g)
    ids = torch.randint(1000, 30000, (batch, length), generator=g)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for b in range(batch):
        mask[b, : 4 + (7 * b) % (length - 4)] = 1
    return image.to(device), ids.to(device), mask.to(device)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two boolean masks of the same shape (1.0 when both are empty)."""
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def run_lavt(args: list[str], *, cwd: Path, timeout: float, env: dict | None = None):
    """``python -m lavt ARGS`` in a fresh process; fails the test with its output on error."""
    full_env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "lavt", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"lavt {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def report(check: str, **figures: object) -> None:
    """Append a measured figure to $LAVT_TEST_REPORT_DIR/gpu_tests.jsonl (when set)."""
    import json

    folder = os.environ.get("LAVT_TEST_REPORT_DIR")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    record = {"check": check, "device": str(DEVICE), "dry_run": DRY_RUN, **figures}
    with open(Path(folder) / "gpu_tests.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


_DATASETS: list[Path] = []


def synthetic_dataset(tmp_path_factory) -> Path:
    """A small ``lavt synth`` dataset of 64 px scenes (refer layout), made once per session."""
    if not _DATASETS:
        root = tmp_path_factory.mktemp("synthetic")
        images = "48" if DRY_RUN else "400"  # train split: about 2 objects an image
        args = ["synth", "--output", str(root), "--images", images, "--seed", "3"]
        run_lavt([*args, "--image-size", "64", "64"], cwd=root, timeout=300)
        _DATASETS.append(root)
    return _DATASETS[0]


def synthetic_expressions(root: Path, split: str, limit: int) -> list[tuple[Path, str]]:
    """Up to ``limit`` (image file, expression) pairs of a ``lavt synth`` split."""
    import pickle

    with open(root / "refcoco" / "refs(unc).p", "rb") as f:
        refs = pickle.load(f)
    pairs = []
    for ref in refs:
        if ref["split"] != split:
            continue
        name = ref["file_name"].rsplit("_", 1)[0] + ".jpg"
        image = next(root.glob(f"images/**/{name}"))
        pairs += [(image, s["sent"]) for s in ref["sentences"]]
    return pairs[:limit]
