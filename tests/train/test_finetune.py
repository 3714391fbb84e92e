"""Fine-tuning (``lavt train --init-weights``): settings from the checkpoint, fine-tuning
defaults, new words added to a word vocabulary, ``--freeze``, and a short fine-tune
on a new vocabulary that the bundled model cannot read."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import lavt_torchrun
from lavt.train.config import TrainConfig, resolve_config
from lavt.train.finetune import (
    FINETUNE_DEFAULTS,
    WORD_VOCAB_LR,
    extend_vocabulary,
    freeze_parts,
    new_embedding_rows,
)
from lavt.train.model import build_training_model

SRC = Path(__file__).parents[2] / "src"


def test_settings_come_from_the_checkpoint_and_user_values_win():
    from lavt.checkpoint import read_model_weights

    config, _, vocab = read_model_weights("synthetic")
    cfg = resolve_config(cli={"init_weights": "synthetic", "dataset": "own"})
    assert (cfg.model, cfg.img_size, cfg.drop_path) == ("lavt_one", 64, 0.0)
    assert cfg.arch["embed_dim"] == config.embed_dim and cfg.arch["vocab"] == "init_weights"
    assert cfg.text_trainable == "all"  # a word vocabulary: the new words' rows must train
    for key, value in FINETUNE_DEFAULTS.items():
        assert getattr(cfg, key) == value, key
    assert cfg.lr == WORD_VOCAB_LR != TrainConfig().lr  # not the published recipe's
    model = build_training_model(cfg, initialise=True)
    assert model.config == config and model.vocab == vocab

    mine = resolve_config(
        cli={"init_weights": "synthetic", "lr": 1e-5}, overrides=["img_size=96", "loss=ce"]
    )
    assert (mine.lr, mine.img_size, mine.loss) == (1e-5, 96, "ce")
    assert mine.warmup_iters == FINETUNE_DEFAULTS["warmup_iters"]
    # the published recipe is untouched without init_weights
    assert resolve_config(cli={}).lr == TrainConfig().lr


def _model_with_vocab():
    from lavt.checkpoint import load_model

    return load_model("synthetic").train()


def test_new_words_are_added_in_order_with_sensible_rows():
    model = _model_with_vocab()
    old = model.state_dict()["text_encoder.embeddings.word_embeddings.weight"].clone()
    texts = ["the Zorp hexagon", "a crimson zorp, west of the circle", "the red circle"]
    bigger = extend_vocabulary(model, texts, initialise=True, seed=0)
    added = bigger.vocab[len(model.vocab) :]
    assert added == sorted(["zorp", "hexagon", "crimson", ",", "west"])
    assert bigger.config.text.vocab_size == len(bigger.vocab) == len(model.vocab) + 5
    weight = bigger.state_dict()["text_encoder.embeddings.word_embeddings.weight"]
    assert torch.equal(weight[: len(old)], old)  # known words keep their rows
    words = [i for i, t in enumerate(model.vocab) if not t.startswith("[")]
    mean = old[words].float().mean(0)
    new = weight[len(old) :].float()
    assert (new - mean).abs().max() < (old[words].float() - mean).abs().max()
    assert torch.equal(new, new_embedding_rows(old, model.vocab, 5, seed=0).float())
    assert not torch.equal(new[0], new[1])  # they start apart
    # the same words in another order give the same vocabulary (deterministic)
    again = extend_vocabulary(_model_with_vocab(), texts[::-1], initialise=True, seed=0)
    assert again.vocab == bigger.vocab
    # nothing new, or BERT's WordPiece: the same model
    assert extend_vocabulary(model, ["the red circle"], initialise=True) is model
    model.vocab = None
    assert extend_vocabulary(model, texts, initialise=True) is model


def _batch(model, n: int = 2):
    from lavt.tokenizer import tokenizer_for_model

    ids, mask = tokenizer_for_model(model)(["the red circle", "a big blue square"][:n])
    size = model.config.img_size
    image = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(n, size, size, generator=torch.Generator().manual_seed(1)) > 0.5).long()
    return image, ids, mask, target


def test_frozen_parts_get_no_gradient_and_stay_bit_identical():
    from lavt.train.optim import build_optimizer

    model = _model_with_vocab()
    unused = {n for n, p in model.named_parameters() if not p.requires_grad}  # stage 4's gate
    spec = "backbone.stage1,backbone.stage3,text_encoder"
    frozen_count = freeze_parts(model, spec)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    names = set(frozen)
    assert frozen_count == sum(p.numel() for n, p in frozen.items() if n not in unused) > 0
    assert any(n.startswith("backbone.patch_embed.") for n in frozen)
    assert any(n.startswith("backbone.layers.2.blocks.") for n in frozen)
    assert not any(n.startswith("backbone.layers.1.") for n in frozen)
    assert not any(".fusion." in n or ".res_gate." in n for n in names - unused)  # PWAMs train
    text = [n for n, _ in model.named_parameters() if n.startswith("text_encoder.")]
    assert set(text) <= names
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.1)
    image, ids, mask, target = _batch(model)
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(image, ids, mask), target)
        optimizer.zero_grad()
        loss.backward()
        for name, param in model.named_parameters():
            assert (param.grad is None) == (name in frozen), name
        optimizer.step()
    for name, param in model.named_parameters():
        assert torch.equal(param, frozen[name]) if name in frozen else True, name
    changed = model.state_dict()["backbone.layers.1.blocks.0.mlp.fc1.weight"]
    assert not torch.equal(
        changed, _model_with_vocab().state_dict()["backbone.layers.1.blocks.0.mlp.fc1.weight"]
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--freeze", "backbone.stage5"], "--freeze 'backbone.stage5'"),
        (["--init-weights", "nowhere.pt"], "--init-weights nowhere.pt"),
    ],
)
def test_bad_finetune_flags_are_one_line(tmp_path, capsys, argv, message):
    from lavt.cli import main as cli_main

    code = cli_main(["train", "--data-root", str(tmp_path), "--output-dir", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- end to end

#: colour and shape words of ``lavt synth`` -> words the bundled model has never read
RENAMED = {
    "red": "crimson", "green": "jade", "blue": "azure", "yellow": "amber", "purple": "violet",
    "orange": "tangerine", "circle": "ring", "disc": "ring", "round": "ringlike",
    "square": "tile", "box": "tile", "triangle": "wedge", "diamond": "lozenge",
    "rhombus": "lozenge", "star": "asterisk", "cross": "saltire", "plus": "saltire",
}  # fmt: skip


@pytest.fixture(scope="module")
def renamed_root(tmp_path_factory) -> Path:
    """A ``lavt synth`` set whose colours and shapes are named with unseen words."""
    from lavt.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("renamed")
    generate_dataset(root, num_images=64, seed=11)
    path = root / "refcoco" / "refs(unc).p"
    refs = pickle.loads(path.read_bytes())
    for ref in refs:
        for sentence in ref["sentences"]:
            words = [RENAMED.get(w, w) for w in sentence["sent"].split()]
            sentence.update(sent=" ".join(words), raw=" ".join(words), tokens=words)
    path.write_bytes(pickle.dumps(refs))
    return root


def _oiou(checkpoint: str, root: Path, out: Path, *extra: str) -> float:
    from lavt.cli import main as cli_main

    args = ["evaluate", "--checkpoint", checkpoint, "--data-root", str(root), "--split", "val"]
    assert cli_main([*args, "--output", str(out), "--device", "cpu", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())["val"]["overall_iou"]


@pytest.mark.slow
def test_short_finetune_reads_the_new_words(tmp_path, renamed_root):
    """Two processes (DDP, stage 1 frozen) fine-tune the bundled model on unseen words."""
    from lavt.checkpoint import read_model_weights
    from lavt.cli import main as cli_main
    from lavt.export import export_onnx
    from lavt.export.runner import load_onnx_model

    before = _oiou("synthetic", renamed_root, tmp_path / "before")
    cmd = lavt_torchrun(
        "train", "--init-weights", "synthetic", "--data-root", str(renamed_root),
        "--epochs", "6", "--output-dir", str(tmp_path / "runs"), "--model-id", "ft",
        "--freeze", "backbone.stage1", "--device", "cpu", "--workers", "0", "--threads", "1",
        "--val-every", "6", "--no-progress", "lr=1e-3", "warmup_iters=10",
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "vocabulary: 13 new words" in done.stderr  # 17 renamed to 13 distinct words
    best = tmp_path / "runs" / "ft" / "best.pt"
    config, sd, vocab = read_model_weights(best)
    assert "asterisk" in vocab and config.text.vocab_size == len(vocab) == 60 + 13
    initial = read_model_weights("synthetic")[1]
    for key in [k for k in sd if k.startswith("backbone.layers.0.blocks.")]:
        assert torch.equal(sd[key], initial[key].to(sd[key].dtype)), key  # frozen

    after = _oiou(str(best), renamed_root, tmp_path / "after")
    swapped = _oiou(str(best), renamed_root, tmp_path / "swapped", "--swap-expressions")
    assert after >= before + 10 and swapped < after - 10, (before, after, swapped)

    # predict and export take the fine-tuned checkpoint unchanged
    image = next((renamed_root / "images").rglob("*.jpg"))
    code = cli_main(
        ["predict", "--checkpoint", str(best), "--image", str(image), "--text", "the azure tile",
         "--output", str(tmp_path / "pred"), "--device", "cpu"]
    )  # fmt: skip
    assert code == 0 and any((tmp_path / "pred").iterdir())
    runner = load_onnx_model(export_onnx(best, tmp_path / "ft.onnx", simplify=False).path)
    assert runner.vocab == vocab

    # and lavt serve: the new word is known (no unknown_words), the mask is the predictor's
    from pycocotools import mask as mask_utils
    from starlette.testclient import TestClient

    from lavt.checkpoint import load_model
    from lavt.predict import Predictor
    from lavt.serve.adapter import ModelAdapter
    from lavt.serve.app import create_app
    from lavt.serve.config import ServeConfig

    model = load_model(best)
    adapter = ModelAdapter(model, device=torch.device("cpu"))
    with TestClient(create_app(adapter, ServeConfig(max_wait_ms=0))) as client:
        reply = client.post(
            "/v1/segment", files={"image": (image.name, image.read_bytes())},
            data={"text": ["the azure tile"]},
        )  # fmt: skip
    assert reply.status_code == 200, reply.text
    result = reply.json()["results"][0]
    assert result["unknown_words"] == []
    expected = Predictor(model, device="cpu").predict(str(image), ["the azure tile"])[0].mask
    assert np.array_equal(mask_utils.decode(result["rle"]).astype(bool), expected)


def test_finetune_config_spells_out_the_defaults():
    import yaml

    path = Path(__file__).parents[2] / "configs" / "finetune.yaml"
    written = yaml.safe_load(path.read_text())
    assert {k: written[k] for k in FINETUNE_DEFAULTS} == FINETUNE_DEFAULTS
    assert written["lr"] == WORD_VOCAB_LR  # the bundled model's
    cfg = resolve_config(path)
    assert cfg.init_weights == "synthetic" and cfg.img_size == 64 and cfg.model == "lavt_one"


def test_released_wordpiece_checkpoint_needs_no_new_words(golden_dir):
    released = str(golden_dir / "lavt_w12_mha2.pth")  # the released file format, tiny
    cfg = resolve_config(cli={"init_weights": released})
    assert cfg.arch["vocab"] == "bert" and cfg.text_trainable == TrainConfig().text_trainable
    assert cfg.lr == TrainConfig().lr and cfg.loss == FINETUNE_DEFAULTS["loss"]
    model = build_training_model(cfg, initialise=True, expressions=["a zorp hexagon"])
    assert model.vocab is None and cfg.model == model.config.variant == "lavt"
    assert model.config.pwam_heads == (2, 2, 2, 2) and cfg.img_size == model.config.img_size
