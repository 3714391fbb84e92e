"""`lavt train --dataset grefcoco`: empty masks and the no-target head's loss (a smoke run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_config
from lavt.checkpoint import load_model
from lavt.modeling import build_model
from lavt.train.config import resolve_config
from lavt.train.losses import no_target_loss
from lavt.train.model import resolve_model_config

SRC = Path(__file__).parents[2] / "src"
CONFIGS = Path(__file__).parents[2] / "configs"


def test_configs_turn_the_head_on():
    published = resolve_config(CONFIGS / "grefcoco_lavt.yaml")
    assert published.dataset == "grefcoco" and published.no_target_loss_weight == 0.1
    config, vocab = resolve_model_config(published)
    assert config.no_target_head and vocab is None and config.embed_dim == 128
    demo = resolve_config(CONFIGS / "synthetic_generalized.yaml")
    config, vocab = resolve_model_config(demo)
    assert config.no_target_head and "both" in vocab and config.text.vocab_size == len(vocab)
    # the default follows the dataset; RefCOCO runs stay without a head
    assert resolve_model_config(resolve_config(None, {"dataset": "grefcoco"}))[0].no_target_head
    assert not resolve_model_config(resolve_config(CONFIGS / "refcoco_lavt.yaml"))[0].no_target_head


def test_every_parameter_of_the_head_model_gets_a_gradient():
    torch.manual_seed(0)
    model = build_model(tiny_config(no_target_head=True)).train()
    image = torch.randn(2, 3, 64, 64)
    ids = torch.randint(1000, 2000, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    logits, nt = model(image, ids, mask, return_no_target=True)
    target = torch.zeros(2, 64, 64, dtype=torch.long)  # sample 1: no target, empty mask
    target[0, :20, :20] = 1
    loss = torch.nn.functional.cross_entropy(logits, target)
    (loss + 0.1 * no_target_loss(nt, torch.tensor([False, True]))).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


@pytest.mark.slow
def test_smoke_training_on_synthetic_generalized_data(tmp_path):
    from lavt.data.synthetic import generate_generalized_dataset

    data = tmp_path / "data"
    generate_generalized_dataset(data, num_images=12, seed=0, image_size=(64, 64))
    cfg = {
        "model": "lavt_one",
        "dataset": "grefcoco",
        "data_root": str(data),
        "output_dir": str(tmp_path / "runs"),
        "model_id": "tiny",
        "img_size": 64,
        "arch": {
            "embed_dim": 16,
            "depths": [1, 1, 2, 1],
            "num_heads": [1, 2, 4, 8],
            "window_size": 4,
            "text": {
                "hidden_size": 32,
                "num_layers": 1,
                "num_heads": 1,
                "intermediate_size": 64,
                "max_position_embeddings": 32,
            },
            "vocab": "synthetic_generalized",
        },
        "drop_path": 0.0,
        "text_trainable": "all",
        "batch_size": 4,
        "lr": 1e-3,
        "loss": "ce+dice",
        "epochs": 1,
        "workers": 0,
        "threads": 1,
        "device": "cpu",
        "log_every": 5,
        "progress": False,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "lavt", "train", "--config", str(path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "tiny"
    model = load_model(run / "best.pt")
    assert model.no_target_head is not None
    val = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in line]
    assert val and '"gIoU"' in val[-1] and '"N-acc"' in val[-1]
