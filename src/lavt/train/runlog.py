"""What a run writes about itself: ``train.log``, ``metrics.jsonl``, TensorBoard, ``curves.png``.

Rank 0 writes; the other ranks log warnings only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lavt.runtime import DistInfo, atomic_path, atomic_write_text

log = logging.getLogger("lavt")


@contextlib.contextmanager
def run_logging(run_dir: Path, info: DistInfo) -> Iterator[None]:
    """Log to ``RUN/train.log`` (and the console) on rank 0, warnings only elsewhere.

    A console handler is added only when the ``lavt`` logger has none (a Python
    caller); the CLI sets up its own. Everything is undone on exit.
    """
    old_level, added = log.level, []
    if not log.handlers:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        added.append(console)
    if info.is_main:
        file_handler = logging.FileHandler(run_dir / "train.log")
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
        )
        added.append(file_handler)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.WARNING)
    for handler in added:
        log.addHandler(handler)
    try:
        yield
    finally:
        for handler in added:
            log.removeHandler(handler)
            handler.close()
        log.setLevel(old_level)


class MetricsLog:
    """Rank 0's JSON-lines metrics file, plus TensorBoard scalars when it is installed."""

    def __init__(self, run_dir: Path, *, enabled: bool, resume_iteration: int | None) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if resume_iteration is not None and self.path.exists():
            # lines written after the checkpoint we resume from describe steps
            # that will be redone: drop them
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("iteration", 0) <= resume_iteration
            ]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        elif self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: metrics go to %s only", self.path)
        else:
            self.writer = SummaryWriter(
                str(run_dir / "tensorboard"), purge_step=resume_iteration or None
            )
        self._file = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {**record, "time": round(time.time(), 3)}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.writer is not None:
            kind = record["type"]
            for key, value in record.items():
                if key not in ("type", "epoch", "iteration", "time") and isinstance(
                    value, int | float
                ):
                    self.writer.add_scalar(f"{kind}/{key}", value, record["iteration"])

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self.writer is not None:
            self.writer.close()


def log_train_record(record: dict[str, Any]) -> None:
    log.info(
        "epoch %d iteration %d: loss %.4f, lr %.3g, %.1f samples/s%s",
        record["epoch"],
        record["iteration"],
        record["loss"],
        record["lr"],
        record["samples_per_s"],
        f", {record['skipped_steps']} steps skipped (non-finite loss)"
        if record["skipped_steps"]
        else "",
    )


def log_val_record(record: dict[str, Any]) -> None:
    if "gIoU" in record:  # gRefCOCO: the GRES metrics (docs/gres.md)
        log.info(
            "epoch %d validation (%d expressions): cIoU %.2f, gIoU %.2f, N-acc %.2f, T-acc %.2f",
            record["epoch"],
            record["num_expressions"],
            record["cIoU"],
            record["gIoU"],
            record["N-acc"],
            record["T-acc"],
        )
        return
    log.info(
        "epoch %d validation (%d expressions): overall IoU %.2f, mean IoU %.2f, P@0.5 %.2f",
        record["epoch"],
        record["num_expressions"],
        record["overall_iou"],
        record["mean_iou"],
        record["precision@0.5"],
    )


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: Path, out_path: Path) -> bool:
    """PNG of the training loss and the validation IoUs; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        log.info("matplotlib is not installed: no training-curve plot (pip install matplotlib)")
        return False
    records = read_metrics(metrics_path)
    train = [r for r in records if r["type"] == "train"]
    val = [r for r in records if r["type"] == "val"]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([r["iteration"] for r in train], [r["loss"] for r in train], lw=1)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("training loss")
    ax_loss.grid(alpha=0.3)
    curves = (("overall_iou", "overall IoU"), ("mean_iou", "mean IoU"))
    if val and "gIoU" in val[0]:  # gRefCOCO
        curves = (("cIoU", "cIoU"), ("gIoU", "gIoU"), ("N-acc", "N-acc"))
    for key, label in curves:
        epochs = [r["epoch"] + 1 for r in val]
        ax_val.plot(epochs, [r[key] for r in val], marker="o", label=label)
    ax_val.set_xlabel("epochs completed")
    ax_val.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_val.set_ylabel("validation (%)")
    ax_val.grid(alpha=0.3)
    if val:
        ax_val.legend()
    fig.tight_layout()
    try:
        with atomic_path(out_path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return True
