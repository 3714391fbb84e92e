"""``lavt evaluate`` on the test device gives the CPU's integer sums on a synthetic set.

Both runs use the bundled model in float32 with TF32 off (cuDNN convolutions use TF32 by
default, which can flip a pixel whose two logits are within 1e-3); the device run is
batched, the CPU run one object at a time, so batching is checked as well.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gpu_support import DEVICE, MARKS, REPO, report, synthetic_dataset

pytestmark = MARKS

# the CLI entry point, with TF32 off in this process
STRICT_CLI = (
    "import sys, torch; torch.backends.cudnn.allow_tf32 = False; "
    "torch.backends.cuda.matmul.allow_tf32 = False; "
    "from lavt.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _evaluate(data: Path, out: Path, device: str, batch: int) -> tuple[dict, list[dict]]:
    args = [
        "evaluate", "--data-root", str(data), "--split", "val", "--device", device,
        "--batch-size", str(batch), "--workers", "0", "--output", str(out),
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", STRICT_CLI, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())["val"]
    records = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    return metrics, records


def test_device_evaluation_equals_cpu(tmp_path, tmp_path_factory):
    data = synthetic_dataset(tmp_path_factory)
    on_device, device_records = _evaluate(data, tmp_path / "dev", str(DEVICE), 16)
    on_cpu, cpu_records = _evaluate(data, tmp_path / "cpu", "cpu", 1)
    key = lambda r: (r["ref_id"], r["sent_id"])
    want = {key(r): (r["I"], r["U"]) for r in cpu_records}
    got = {key(r): (r["I"], r["U"]) for r in device_records}
    differ = [k for k in want if got.get(k) != want[k]]
    report(
        "evaluate device vs cpu",
        expressions=len(want),
        differing_expressions=len(differ),
        cum_I=sum(v[0] for v in got.values()),
        cum_U=sum(v[1] for v in got.values()),
    )
    assert got.keys() == want.keys()
    assert not differ, f"{len(differ)} expressions differ, e.g. {differ[:3]}"
    assert on_device == on_cpu
