"""TrainConfig: one declaration per option drives YAML, key=value, validation, flags and help."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import yaml

from lavt.cli import build_parser
from lavt.cli import main as cli_main
from lavt.commands.train import config_from_args
from lavt.errors import InputError
from lavt.train import TrainConfig
from lavt.train.config import FIELDS, field_type, resolve_config, save_config


def _parse(*argv: str) -> TrainConfig:
    argv = ["train", *argv]
    return config_from_args(build_parser(argv).parse_args(argv))


def test_overrides_are_accepted_anywhere_among_the_flags(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 5\nlr: 1.0e-4\narch:\n  embed_dim: 8\n")
    cfg = _parse(
        "--config", str(config), "epochs=1", "--data-root", "X", "lr=1e-3",
        "--no-progress", "arch.text.num_layers=2", "--seed", "3",
    )  # fmt: skip
    assert (cfg.epochs, cfg.data_root, cfg.lr, cfg.progress, cfg.seed) == (1, "X", 1e-3, False, 3)
    assert cfg.arch == {"embed_dim": 8, "text": {"num_layers": 2}}
    # key=value beats a flag wherever it stands
    assert _parse("lr=2e-3", "--lr", "5e-3").lr == 2e-3


def test_reference_spellings_and_dashed_spellings_are_both_accepted():
    a = _parse("--img_size", "64", "--batch_size", "3", "--model_id", "x", "--splitBy", "umd")
    b = _parse("--img-size", "64", "--batch-size", "3", "--model-id", "x", "--splitBy", "umd")
    assert a == b and (a.img_size, a.batch_size, a.model_id, a.splitBy) == (64, 3, "x", "umd")
    old = _parse("--window12", "--no-progress", "--channels-last", "--pretrained_swin_weights", "w")
    assert old.window12 is True and old.progress is False and old.channels_last is True


def test_every_flag_has_help_showing_its_default():
    parser = build_parser(["train"])
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "train"
    ]
    shown = [a for a in train._actions if a.option_strings and a.help != argparse.SUPPRESS]
    flags = {s for a in shown for s in a.option_strings}
    for name in FIELDS:
        if field_type(name) is not dict:
            assert f"--{name.replace('_', '-')}" in flags or f"--{name}" in flags, name
    for action in shown:
        if action.dest != "help":
            assert "(default: " in action.help, action.option_strings


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("img_size=0", "img_size 0: must be positive"),
        ("batch_size=-2", "batch_size -2: must be positive"),
        ("lr=0", "lr 0.0: must be positive"),
        ("drop_path=1.5", "drop_path 1.5: must be in [0, 1)"),
        ("workers=-1", "workers -1: must not be negative"),
        ("threads=0", "threads 0: must be positive"),
        ("amp=fp8", "amp 'fp8': must be one of none, bf16, fp16"),
        ("epochs=1.5", "epochs 1.5: must be an integer"),
        ("compile=maybe", "compile 'maybe': must be true or false"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(InputError) as err:
        resolve_config(None, {}, [override])
    assert str(err.value) == message
    assert err.value.param == override.split("=")[0]


def test_cli_error_names_the_flag(capsys):
    code = cli_main(["train", "--img-size", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err == "lavt train: error: --img-size 0: must be positive\n"


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochs: three\n")
    with pytest.raises(InputError, match=r"bad\.yaml: epochs 'three': must be an integer"):
        resolve_config(path)
    with pytest.raises(InputError, match="has no nested keys"):
        resolve_config(None, {}, ["lr.x=1"])
    with pytest.raises(InputError, match="expected key=value"):
        resolve_config(None, {}, ["epochs"])


def test_python_construction_validates_and_converts():
    cfg = TrainConfig(lr=1, epochs="3", dataset="refcoco+")
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.epochs == 3
    assert cfg.model_id == "lavt_refcoco+"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 2.0  # type: ignore[misc]
    assert dataclasses.replace(cfg, epochs=4).epochs == 4
    with pytest.raises(InputError, match="epochs 0: must be positive"):
        dataclasses.replace(cfg, epochs=0)


def test_saved_config_reads_back_equal(tmp_path):
    cfg = resolve_config(None, {}, ["arch.text.num_layers=2", "amp=bf16", "window12=true"])
    save_config(cfg, tmp_path / "config.yaml")
    assert resolve_config(tmp_path / "config.yaml") == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["amp"] == "bf16"


def test_every_flag_of_the_previous_trainer_still_parses():
    cfg = _parse(
        "--model", "lavt_one", "--dataset", "refcocog", "--splitBy", "umd", "--model_id", "r",
        "--batch-size", "2", "--lr", "1e-4", "--wd", "0", "--epochs", "3", "--img_size", "96",
        "--swin_type", "tiny", "--window12", "--mha", "2-2-2-2", "--pretrained_swin_weights",
        "s.pth", "--resume", "auto", "--data-root", "d", "--output-dir", "o", "--text-encoder",
        "bert", "--text-trainable", "all", "--drop-path", "0.1", "--loss", "dice",
        "--warmup-iters", "5", "--amp", "bf16", "--grad-accum", "2", "--grad-checkpointing",
        "--compile", "--channels-last", "--workers", "0", "--seed", "7", "--device", "cpu",
        "--threads", "1", "--max-nonfinite", "3", "--checkpoint-every", "9", "--log-every", "4",
        "--val-every", "2", "--no-progress",
    )  # fmt: skip
    assert cfg.to_dict() == {
        **TrainConfig().to_dict(),
        **dict(model="lavt_one", dataset="refcocog", splitBy="umd", model_id="r", batch_size=2,
               lr=1e-4, wd=0.0, epochs=3, img_size=96, swin_type="tiny", window12=True,
               mha="2-2-2-2", pretrained_swin_weights="s.pth", resume="auto", data_root="d",
               output_dir="o", text_encoder="bert", text_trainable="all", drop_path=0.1,
               loss="dice", warmup_iters=5, amp="bf16", grad_accum=2, grad_checkpointing=True,
               compile=True, channels_last=True, workers=0, seed=7, device="cpu", threads=1,
               max_nonfinite=3, checkpoint_every=9, log_every=4, val_every=2, progress=False),
    }  # fmt: skip
