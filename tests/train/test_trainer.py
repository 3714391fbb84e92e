"""Trainer: learning, gradients, initialisation, non-finite steps, config, resume, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import lavt_torchrun, tiny_config
from lavt.checkpoint import load_swin_imagenet_weights, read_torch_file, save_checkpoint
from lavt.errors import CheckpointError, InputError, LavtError
from lavt.modeling import build_model
from lavt.modeling.swin import relative_position_index
from lavt.train.config import TrainConfig, resolve_config
from lavt.train.loop import BufferGuard, NonFiniteTracker, optimizer_step
from lavt.train.losses import build_loss
from lavt.train.model import build_training_model, resolve_model_config
from lavt.train.optim import build_optimizer, configure_text_trainable
from lavt.train.resume import (
    ResumableSampler,
    TrainState,
    rng_state,
    seed_everything,
    set_rng_state,
)
from lavt.train.runlog import read_metrics
from lavt.train.trainer import load_index

IMG = 64  # stage 3 is 2 x 2: at 1 x 1 its InstanceNorms zero the language path


def _batch(n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 3, IMG, IMG, generator=g)
    target = torch.zeros(n, IMG, IMG, dtype=torch.long)
    for i in range(n):  # a different square per sample
        y, x = 4 * (i % 3), 4 * (i % 4)
        target[i, y : y + 12, x : x + 12] = 1
    input_ids = torch.randint(1000, 2000, (n, 8), generator=g)
    input_ids[:, 0], input_ids[:, -1] = 101, 102
    mask = torch.ones(n, 8, dtype=torch.long)
    return image, target, input_ids, mask


def _model(**overrides):
    torch.manual_seed(0)
    model = build_model(tiny_config(img_size=IMG, **overrides))
    configure_text_trainable(model, "0-9")
    return model.train()


@pytest.mark.slow
def test_loss_falls_on_a_fixed_batch():
    model = _model()
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss_fn = build_loss("ce+dice")
    image, target, ids, mask = _batch()
    found = torch.zeros(())
    losses = []
    for _ in range(20):
        loss = loss_fn(model(image, ids, mask), target)
        loss.backward()
        optimizer_step(optimizer, scaler, found)
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.6 * losses[0], losses


def test_every_trainable_parameter_gets_a_gradient():
    model = _model()
    text_layers = model.text_encoder.encoder.layer
    image, target, ids, mask = _batch(2)
    build_loss("ce")(model(image, ids, mask), target).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("text_encoder.encoder.layer.0.") for n in trainable)
    assert not any(n.startswith("text_encoder.embeddings.") for n in trainable)
    assert len(text_layers) == 1
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} got no gradient (DDP would need find_unused)"
            assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"
        else:
            assert p.grad is None, f"frozen {name} got a gradient"


def _official_swin_state_dict(model, window: int) -> dict[str, torch.Tensor]:
    """A state dict laid out like swin_*_patch4_window{w}_*.pth (random values)."""
    g = torch.Generator().manual_seed(3)
    sd = {}
    for key, value in model.state_dict().items():
        if not key.startswith("backbone.") or ".fusion." in key or ".res_gate." in key:
            continue
        key = key.removeprefix("backbone.")
        if key.startswith("norm") and key[4].isdigit():
            continue  # LAVT's per-stage norms are not in the classification Swin
        if key.endswith("relative_position_bias_table"):
            value = torch.zeros((2 * window - 1) ** 2, value.shape[1])
        sd[key] = torch.randn(value.shape, generator=g)
        if key.endswith("attn.qkv.weight"):
            stem = key.removesuffix("attn.qkv.weight")
            sd[stem + "attn.relative_position_index"] = relative_position_index(window)
            if int(stem.split(".")[3]) % 2:
                n = window * window
                sd[stem + "attn_mask"] = torch.zeros(4, n, n)
    c3 = model.config.stage_dim(3)
    sd.update(
        {
            "norm.weight": torch.ones(c3),
            "norm.bias": torch.zeros(c3),
            "head.weight": torch.randn(1000, c3, generator=g),
            "head.bias": torch.zeros(1000),
        }
    )
    return sd


def test_swin_imagenet_weights_load(tmp_path):
    model = _model()
    sd = _official_swin_state_dict(model, window=7)  # the model's window is 4
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": sd}, path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    left = load_swin_imagenet_weights(model, path)
    after = model.state_dict()
    assert torch.equal(
        after["backbone.layers.2.blocks.1.mlp.fc1.weight"], sd["layers.2.blocks.1.mlp.fc1.weight"]
    )
    assert torch.equal(after["backbone.patch_embed.proj.weight"], sd["patch_embed.proj.weight"])
    table = after["backbone.layers.0.blocks.0.attn.relative_position_bias_table"]
    assert table.shape == (7 * 7, 1)  # (2*4-1)^2 rows, resized from 13 x 13
    assert not torch.equal(
        table, before["backbone.layers.0.blocks.0.attn.relative_position_bias_table"]
    )
    assert any(".fusion." in k for k in left) and "backbone.norm0.weight" in left
    for key in left:
        assert torch.equal(after[key], before[key]), key
    assert all(torch.equal(after[k], before[k]) for k in after if not k.startswith("backbone."))

    # through the trainer's config: --pretrained_swin_weights
    cfg = TrainConfig(arch=_tiny_arch(), img_size=IMG, pretrained_swin_weights=str(path))
    trained = build_training_model(cfg, initialise=True)
    assert torch.equal(
        trained.state_dict()["backbone.layers.3.blocks.0.attn.qkv.weight"],
        sd["layers.3.blocks.0.attn.qkv.weight"],
    )
    bad = dict(sd)
    bad["layers.0.blocks.0.mlp.fc1.weight"] = torch.zeros(3, 3)
    torch.save({"model": bad}, path)
    with pytest.raises(CheckpointError, match="shape"):
        load_swin_imagenet_weights(model, path)


def _tiny_arch(**text):
    cfg = tiny_config()
    return {
        "embed_dim": cfg.embed_dim,
        "depths": list(cfg.depths),
        "num_heads": list(cfg.num_heads),
        "window_size": cfg.window_size,
        "text": {
            "hidden_size": 32,
            "num_layers": 1,
            "num_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 32,
            **text,
        },
    }


def test_nonfinite_step_is_skipped_and_counted():
    model = _model()
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    guard = BufferGuard(model)
    tracker = NonFiniteTracker(torch.device("cpu"), limit=3)
    state = TrainState()
    image, target, ids, mask = _batch(2)
    image[0, 0, 0, 0] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        guard.snapshot()
        loss = build_loss("ce")(model(image, ids, mask), target)
        loss.backward()
        found = (~torch.isfinite(loss)).float()
        assert found.item() == 1.0
        optimizer_step(optimizer, scaler, found)
        guard.restore_if(found)
        tracker.update(found)
    for key, value in model.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(value, before[key]), key
    tracker.check(state)  # 2 in a row: still going
    assert state.skipped_steps == 2
    tracker.update(torch.zeros(()))  # the streak ends
    tracker.update(torch.ones(()))
    tracker.check(state)
    tracker.update(torch.zeros(()))
    tracker.update(torch.ones(()))
    tracker.update(torch.ones(()))
    with pytest.raises(LavtError, match="3 steps in a row"):
        tracker.update(torch.ones(()))  # checked at every step
    # a finite step after the skipped ones does update the weights
    image, target, ids, mask = _batch(2)
    build_loss("ce")(model(image, ids, mask), target).backward()
    optimizer_step(optimizer, scaler, torch.zeros(()))
    assert not torch.equal(
        model.state_dict()["classifier.conv1_1.weight"], before["classifier.conv1_1.weight"]
    )
    model.backbone.norm0.weight.data[0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint("unused.pt", model)


def test_rng_state_round_trip_is_weights_only(tmp_path):
    import random

    import numpy as np

    seed_everything(5)
    state = rng_state()
    path = tmp_path / "rng.pt"
    torch.save({"rng": [state]}, path)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(99)
    set_rng_state(read_torch_file(path, allow_namespace=False)["rng"][0])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_resumable_sampler_skips_consumed_samples():
    data = list(range(23))
    full = ResumableSampler(data, num_replicas=2, rank=1, seed=4)
    full.set_epoch(3)
    order = list(full)
    part = ResumableSampler(data, num_replicas=2, rank=1, seed=4)
    part.set_epoch(3)
    part.set_start(5)
    assert list(part) == order[5:] and len(part) == len(order) - 5
    other = ResumableSampler(data, num_replicas=2, rank=1, seed=4)
    other.set_epoch(4)
    assert list(other) != order


def test_config_precedence_and_errors(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(
        "dataset: refcoco+\nlr: 1.0e-4\nepochs: 5\nbatch_size: 4\n"
        "arch:\n  embed_dim: 8\n  window_size: 4\n  text:\n    hidden_size: 64\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\nepochs: 7\narch:\n  embed_dim: 16\n")
    cfg = resolve_config(child, {"batch_size": 2}, ["lr=3e-4", "arch.text.num_layers=2"])
    assert cfg.dataset == "refcoco+" and cfg.epochs == 7 and cfg.batch_size == 2
    assert cfg.lr == 3e-4 and isinstance(cfg.lr, float)
    # a child's arch updates its base's key by key, nested mappings too
    assert cfg.arch == {
        "embed_dim": 16,
        "window_size": 4,
        "text": {"hidden_size": 64, "num_layers": 2},
    }
    assert cfg.model_id == "lavt_refcoco+" and cfg.swin_type == "base"
    with pytest.raises(InputError, match="unknown config key 'epoch'"):
        resolve_config(None, {}, ["epoch=3"])
    with pytest.raises(InputError, match="batch_size 'two': must be an integer"):
        resolve_config(None, {}, ["batch_size=two"])
    with pytest.raises(InputError, match="loss 'focal': must be one of"):
        resolve_config(None, {}, ["loss=focal"])
    (tmp_path / "bad.yaml").write_text("epochz: 3\n")
    with pytest.raises(InputError, match=r"bad\.yaml: unknown config key 'epochz'"):
        resolve_config(tmp_path / "bad.yaml")


def test_shipped_configs_resolve():
    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    names = {p.stem for p in configs}
    assert {"refcoco_lavt", "refcoco_lavt_one", "synthetic_demo", "synthetic_default"} <= names
    for path in configs:
        cfg = resolve_config(path)
        model_config, vocab = resolve_model_config(cfg)
        if path.stem.startswith(("ref", "grefcoco")):  # the published recipes
            assert (cfg.lr, cfg.wd, cfg.epochs, cfg.img_size) == (5e-5, 0.01, 40, 480)
            assert cfg.loss == "ce" and cfg.text_trainable == "0-9"
            assert model_config.embed_dim == 128 and model_config.window_size == 12
            assert model_config.drop_path_rate == 0.3 and vocab is None
        else:
            assert vocab is not None and model_config.text.vocab_size == len(vocab)


# ----------------------------------------------------------------------------- end to end

SRC = Path(__file__).parents[2] / "src"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from lavt.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, num_images=24, seed=0)  # 17 train images, about 50 objects
    return root


def _tiny_yaml(tmp_path: Path, synth_root: Path, **extra) -> Path:
    import yaml

    cfg = {
        "model": "lavt_one",
        "data_root": str(synth_root),
        "output_dir": str(tmp_path / "runs"),
        "model_id": "tiny",
        "img_size": IMG,
        "arch": {**_tiny_arch(), "vocab": "synthetic"},
        "drop_path": 0.1,  # random: resume must restore the RNG
        "text_trainable": "all",
        "batch_size": 4,
        "lr": 1e-3,
        "warmup_iters": 3,
        "loss": "ce+dice",
        "epochs": 2,
        "workers": 0,
        "threads": 1,
        "device": "cpu",
        "log_every": 1,
        "progress": False,
        **extra,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lavt", "train", "--config", str(config), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def _losses(run_dir: Path) -> dict[int, float]:
    records = read_metrics(run_dir / "metrics.jsonl")
    return {r["iteration"]: r["loss"] for r in records if r["type"] == "train"}


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_same_losses(tmp_path, synth_root):
    straight = _tiny_yaml(tmp_path / "a", synth_root)
    subprocess.run(_train_cmd(straight), env=_env(), check=True, capture_output=True)
    expected = _losses(tmp_path / "a" / "runs" / "tiny")
    total = max(expected)
    assert total >= 20 and all(math.isfinite(v) for v in expected.values())

    config = _tiny_yaml(tmp_path / "b", synth_root, checkpoint_every=4)
    run_dir = tmp_path / "b" / "runs" / "tiny"
    proc = subprocess.Popen(
        _train_cmd(config), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    kill_after = total // 2 + 3  # mid-run, past a mid-epoch checkpoint
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if max(_losses(run_dir) or {0: 0}) >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    resumed_from = read_torch_file(run_dir / "last.pt")["iteration"]
    assert 0 < resumed_from < total

    # without --resume the run directory is protected
    again = subprocess.run(_train_cmd(config), env=_env(), capture_output=True, text=True)
    assert again.returncode == 2 and "--resume auto" in again.stderr

    subprocess.run(
        _train_cmd(config, "--resume", "auto"), env=_env(), check=True, capture_output=True
    )
    got = _losses(run_dir)
    assert sorted(got) == sorted(expected)  # lines after the checkpoint were redone once
    for it in range(resumed_from + 1, total + 1):
        assert got[it] == pytest.approx(expected[it], abs=1e-6), it
    final_a = read_torch_file(tmp_path / "a" / "runs" / "tiny" / "last.pt")
    final_b = read_torch_file(run_dir / "last.pt")
    for key, value in final_a["model"].items():
        assert torch.allclose(value.float(), final_b["model"][key].float(), atol=1e-6), key
    assert final_b["epoch"] == 2 and final_b["iteration"] == total


@pytest.mark.slow
def test_resume_refuses_another_batch_size(tmp_path, synth_root, capsys):
    from lavt.cli import main as cli_main

    config = _tiny_yaml(tmp_path, synth_root, epochs=1)
    assert cli_main(["train", "--config", str(config)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.jsonl", "train.log"):
        assert (run_dir / name).is_file(), name
    saved = read_torch_file(run_dir / "last.pt")
    assert saved["data_order"]["batch_size"] == 4 and saved["epoch"] == 1
    assert isinstance(saved["rng"][0]["torch"], torch.Tensor)
    capsys.readouterr()
    code = cli_main(["train", "--config", str(config), "--resume", "auto", "batch_size=2"])
    err = capsys.readouterr().err
    assert code == 2 and "batch_size 4" in err and "batch_size 2" in err
    assert err.count("\n") == 1  # one line, no traceback
    # the config written in the run directory trains the same run again
    resolved = resolve_config(run_dir / "config.yaml")
    assert resolved.batch_size == 4 and resolved.arch["vocab"] == "synthetic"


@pytest.mark.slow
def test_init_weights_starts_from_a_checkpoint(tmp_path, synth_root, capsys):
    from lavt.checkpoint import read_model_weights
    from lavt.cli import main as cli_main

    config = _tiny_yaml(tmp_path, synth_root, epochs=1)
    assert cli_main(["train", "--config", str(config)]) == 0
    best = tmp_path / "runs" / "tiny" / "best.pt"
    _, saved, _ = read_model_weights(best)
    # another drop-path is fine: it does not change the weights' meaning
    cfg = resolve_config(config, overrides=[f"init_weights={best}", "drop_path=0.0"])
    model = build_training_model(cfg, initialise=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not build_training_model(cfg, initialise=False).state_dict()[key].equal(saved[key])

    other = resolve_config(config, overrides=[f"init_weights={best}", "arch.window_size=2"])
    with pytest.raises(CheckpointError, match="window_size"):
        build_training_model(other, initialise=True)
    with pytest.raises(InputError, match="init_weights"):
        resolve_config(config, overrides=[f"init_weights={best}", "pretrained_swin_weights=x"])

    capsys.readouterr()
    missing = tmp_path / "nope.pt"
    code = cli_main(
        ["train", "--config", str(config), "--init-weights", str(missing), "model_id=b"]
    )
    err = capsys.readouterr().err
    assert code == 2 and str(missing) in err and err.count("\n") == 1
    assert not (tmp_path / "runs" / "b").exists()  # nothing written


@pytest.mark.slow
def test_torchrun_two_processes_train_and_validate(tmp_path, synth_root):
    config = _tiny_yaml(tmp_path, synth_root, epochs=1, batch_size=2)
    cmd = lavt_torchrun("train", "--config", str(config))
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "tiny"
    records = read_metrics(run_dir / "metrics.jsonl")
    val = [r for r in records if r["type"] == "val"]
    train = [r for r in records if r["type"] == "train"]
    assert len(val) == 1 and val[0]["num_expressions"] > 0
    assert 0.0 <= val[0]["overall_iou"] <= 100.0
    saved = read_torch_file(run_dir / "last.pt")
    assert saved["data_order"]["world_size"] == 2 and len(saved["rng"]) == 2
    # each of the 2 ranks saw half the objects: one step takes 2 x 2 samples
    refs = sum(1 for _ in load_index(resolve_config(config)).split("train"))
    assert saved["iteration"] == math.ceil(refs / 2) // 2 == len(train)
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["iterations"] == saved["iteration"]
