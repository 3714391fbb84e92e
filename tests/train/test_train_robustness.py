"""Trainer robustness: config on resume, resume auto, non-finite losses, launcher death."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_trainer import _env, _model, _tiny_yaml, synth_root  # noqa: F401

import lavt.train
from conftest import lavt_torchrun
from lavt.checkpoint import read_torch_file
from lavt.cli import main as cli_main
from lavt.errors import InputError, LavtError
from lavt.train import TrainConfig, resolve_config, train_step
from lavt.train.losses import build_loss
from lavt.train.optim import build_optimizer
from lavt.train.resume import resume_path
from lavt.train.runlog import read_metrics


def test_train_step_is_one_optimizer_step():
    model = _model()
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    g = torch.Generator().manual_seed(0)
    batch = {
        "image": torch.randn(2, 3, 64, 64, generator=g),
        "target": (torch.rand(2, 64, 64, generator=g) > 0.5).long(),
        "input_ids": torch.tensor([[101, 1000, 102]] * 2),
        "attention_mask": torch.ones(2, 3, dtype=torch.long),
    }
    before = model.classifier.conv1_1.weight.detach().clone()
    result = train_step(
        model, [batch, batch], optimizer, scaler, build_loss("ce"), device=torch.device("cpu")
    )
    assert result.samples == 4 and result.loss_count.item() == 2 and result.found.item() == 0
    assert torch.isfinite(result.loss_sum)
    assert not torch.equal(model.classifier.conv1_1.weight, before)


def test_resume_auto_refuses_a_run_dir_that_is_not_there(tmp_path):
    cfg = TrainConfig(output_dir=str(tmp_path / "runs"), model_id="new", resume="auto")
    assert resume_path(cfg) is None  # nothing there yet: the first start of a job
    (tmp_path / "runs" / "other").mkdir(parents=True)
    (tmp_path / "runs" / "other" / "config.yaml").write_text("epochs: 1\n")
    with pytest.raises(InputError, match=r"resume auto: nothing to resume in .*new.*other"):
        resume_path(cfg)
    (tmp_path / "runs" / "new").mkdir()  # started, killed before its first checkpoint
    assert resume_path(cfg) is None


@pytest.mark.slow
def test_resume_protects_the_run_config(tmp_path, synth_root, capsys):  # noqa: F811
    config = _tiny_yaml(tmp_path, synth_root, epochs=1)
    cfg = resolve_config(config)
    summary = lavt.train.main(cfg)  # the Python API
    run_dir = tmp_path / "runs" / "tiny"
    assert summary["epochs"] == 1 and (run_dir / "best.pt").is_file()
    saved = (run_dir / "config.yaml").read_text()

    capsys.readouterr()
    code = cli_main(["train", "--config", str(config), "--resume", "auto", "epochs=2", "lr=0.5"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "epochs 1 -> 2" in err and "lr 0.001 -> 0.5" in err and "--allow-config-change" in err
    assert (run_dir / "config.yaml").read_text() == saved

    # keys that cannot change the result may differ; the saved config stays
    code = cli_main(["train", "--config", str(config), "--resume", "auto", "log_every=7"])
    assert code == 0 and (run_dir / "config.yaml").read_text() == saved

    # a mistyped run name is not a new run
    code = cli_main(["train", "--config", str(config), "--resume", "auto", "model_id=tinyy"])
    assert code == 2 and "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "tinyy").exists()

    argv = ["train", "--config", str(config), "--resume", "auto", "epochs=2"]
    assert cli_main([*argv, "--allow-config-change"]) == 0
    assert read_torch_file(run_dir / "last.pt")["epoch"] == 2
    assert "epochs 1 -> 2" in (run_dir / "train.log").read_text()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["epochs"] == 2
    (before,) = run_dir.glob("config.before-*.yaml")
    assert before.read_text() == saved


def test_max_nonfinite_stops_at_the_step_it_is_reached(tmp_path, synth_root, monkeypatch):  # noqa: F811
    def nan_loss(name):
        loss = build_loss(name)
        return lambda logits, target: loss(logits, target) * float("nan")

    monkeypatch.setattr("lavt.train.losses.build_loss", nan_loss)
    config = _tiny_yaml(tmp_path, synth_root, epochs=1, log_every=50)
    cfg = resolve_config(config, overrides=["max_nonfinite=2"])
    with pytest.raises(LavtError, match=r"2 steps in a row .* at iteration 2 without saving"):
        lavt.train.main(cfg)
    assert not (tmp_path / "runs" / "tiny" / "last.pt").exists()


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_stop_when_the_torchrun_launcher_dies(tmp_path, synth_root):  # noqa: F811
    config = _tiny_yaml(tmp_path, synth_root, epochs=100, batch_size=2)
    cmd = lavt_torchrun("train", "--config", str(config))
    launcher = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = tmp_path / "runs" / "tiny" / "metrics.jsonl"
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and launcher.poll() is None:
            if metrics.exists() and read_metrics(metrics):
                workers = _children(launcher.pid)
                break
            time.sleep(0.2)
        assert len(workers) == 2, "the workers did not start training"
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(_running(p) for p in workers):
            time.sleep(0.2)
        assert not any(_running(p) for p in workers), "workers outlived their launcher"
    finally:
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()


@pytest.mark.slow
def test_bf16_accumulation_channels_last_and_checkpointing_train(tmp_path, synth_root):  # noqa: F811
    config = _tiny_yaml(tmp_path, synth_root, epochs=1, val_every=5)
    cfg = resolve_config(
        config,
        {"amp": "bf16", "grad_accum": 2, "channels_last": True, "grad_checkpointing": True},
    )
    summary = lavt.train.main(cfg)
    records = read_metrics(Path(summary["run_dir"]) / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["type"] == "train"]
    assert summary["iterations"] == len(losses) > 0 and summary["skipped_steps"] == 0
    assert all(torch.isfinite(torch.tensor(losses)))
    assert read_torch_file(Path(summary["run_dir"]) / "last.pt")["data_order"]["grad_accum"] == 2


def test_a_bad_architecture_is_refused_before_the_run_dir_exists(tmp_path, synth_root, capsys):  # noqa: F811
    config = _tiny_yaml(tmp_path, synth_root, epochs=1)
    assert cli_main(["train", "--config", str(config), "--mha", "1-2"]) == 2
    assert "--mha '1-2': expected four positive head counts" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(config), "arch.depths=[1,1]"]) == 2
    assert "arch: invalid architecture" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_an_unreadable_image_in_a_loader_worker_is_one_line(tmp_path, capsys):
    from lavt.data.synthetic import generate_dataset

    root = tmp_path / "data"
    generate_dataset(root, num_images=24, seed=0)
    for image in (root / "images").rglob("*.jpg"):
        image.write_bytes(image.read_bytes()[:200])  # the header survives, the pixels do not
    config = _tiny_yaml(tmp_path, root, epochs=1, workers=1)
    assert cli_main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err  # log lines, then the error
    last = err.splitlines()[-1]
    assert last.startswith("lavt train: error: ") and "unreadable image" in last, err
    assert "Caught InputError" not in err and "Original Traceback" not in err
