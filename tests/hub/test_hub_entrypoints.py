"""A registered name, a URL or hf:// wherever a checkpoint is accepted; ``lavt weights``."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import hub_server
import pytest
import torch

import lavt
from conftest import tiny_config
from lavt.assets import default_model_path
from lavt.cli import main as cli_main
from lavt.errors import CheckpointError
from lavt.hub import cache, resolve_weights
from lavt.hub.hf import parse_hf_uri

# the local HTTP server and an empty cache (fixtures)
server, lavt_home, table = hub_server.server, hub_server.lavt_home, hub_server.table


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(server, lavt_home, table, golden_dir):
    """The bundled model and a golden released-format checkpoint, registered by name."""
    default, golden = default_model_path(), golden_dir / "lavt_one_w7.pth"
    server.files["default.safetensors"] = default.read_bytes()
    server.files["golden.pth"] = golden.read_bytes()
    table(
        [
            {
                "name": "test-default",
                "url": f"{server.url}/files/default.safetensors",
                "sha256": _sha(default),
            },
            {
                "name": "test-golden",
                "url": f"{server.url}/files/golden.pth",
                "sha256": _sha(golden),
            },
        ]
    )
    return server


def test_load_model_and_predictor_take_a_registered_name(served):
    model = lavt.load_model("test-default")
    reference = lavt.load_model(default_model_path())
    for (key, a), b in zip(
        model.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), key
    predictor = lavt.Predictor.from_checkpoint("TEST_default", device="cpu")  # case and _ vs -
    assert predictor.model.config == reference.config
    assert served.hits_for("/files/default.safetensors") == [None]  # downloaded once


def test_load_model_takes_a_url(served):
    model = lavt.load_model(f"{served.url}/files/golden.pth")
    assert model.config.variant == "lavt_one"
    # argparse's type=Path turns "http://h/x" into "http:/h/x"; that still works
    assert lavt.load_model(Path(f"{served.url}/files/golden.pth")).config == model.config
    assert served.hits_for("/files/golden.pth") == [None]


def test_predict_command_takes_a_registered_name(served, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.new("RGB", (48, 40), (200, 30, 30)).save(image)
    out = tmp_path / "out"
    code = cli_main(
        [
            "predict",
            "--checkpoint",
            "test-default",
            "--image",
            str(image),
            "--text",
            "the red square",
            "--output",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0, capsys.readouterr().err
    masks = list(out.glob("photo-*_mask.png"))
    assert len(masks) == 1, sorted(p.name for p in out.iterdir())
    assert served.hits_for("/files/default.safetensors") == [None]


def test_predict_command_error_for_an_unknown_name_is_one_line(lavt_home, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(image)
    code = cli_main(
        ["predict", "--checkpoint", "lavt-refcocoo", "--image", str(image), "--text", "a"]
    )
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1
    assert "--checkpoint lavt-refcocoo" in err and "did you mean lavt-refcoco" in err


def test_offline_predict_names_the_file_and_where_to_put_it(
    lavt_home, tmp_path, capsys, monkeypatch
):
    from PIL import Image

    monkeypatch.setenv("LAVT_OFFLINE", "1")
    image = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(image)
    code = cli_main(
        ["predict", "--checkpoint", "lavt_one-refcoco", "--image", str(image), "--text", "a"]
    )
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1, err
    assert "lavt_one-refcoco.pth" in err and "1xFMEXr6AGU97Ypj1yr8oo00uObbeIQvJ" in err
    assert str(lavt_home / "weights" / "lavt_one-refcoco.pth") in err


def _swin_file(path: Path) -> None:
    """An official-Swin-format checkpoint of the tiny backbone (no PWAMs, gates, norm0-3)."""
    model = lavt.build_model(tiny_config())
    keep = re.compile(r"backbone\.(?!layers\.\d+\.(fusion|res_gate)\.|norm\d\.)")
    sd = {k.removeprefix("backbone."): v for k, v in model.state_dict().items() if keep.match(k)}
    torch.save({"model": sd}, path)


def test_trainer_initialisers_take_registered_names(server, lavt_home, table, tmp_path):
    from lavt.checkpoint import load_swin_imagenet_weights, save_checkpoint
    from lavt.train import TrainConfig
    from lavt.train.model import build_training_model

    torch.manual_seed(1)
    source = lavt.build_model(tiny_config(img_size=64))
    save_checkpoint(tmp_path / "init.pt", source)
    _swin_file(tmp_path / "swin.pth")
    server.files["init.pt"] = (tmp_path / "init.pt").read_bytes()
    server.files["swin.pth"] = (tmp_path / "swin.pth").read_bytes()
    table(
        [
            {"name": "test-init", "url": f"{server.url}/files/init.pt"},
            {"name": "test-swin", "url": f"{server.url}/files/swin.pth", "kind": "swin"},
        ]
    )
    arch = tiny_config().to_dict()
    arch = {k: arch[k] for k in ("embed_dim", "depths", "num_heads", "window_size", "text")}
    cfg = TrainConfig(model="lavt_one", img_size=64, arch=arch, init_weights="test-init")
    model = build_training_model(cfg, initialise=True)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    left = load_swin_imagenet_weights(lavt.build_model(tiny_config()), "test-swin")
    assert left and all(".fusion." in k or "res_gate" in k or ".norm" in k for k in left)
    assert server.hits_for("/files/init.pt") == [None]
    assert server.hits_for("/files/swin.pth") == [None]


def test_fetch_safetensors_copy_is_used_without_unpickling(served, lavt_home, capsys, monkeypatch):
    assert cli_main(["weights", "fetch", "test-golden", "--safetensors"]) == 0
    copy = Path(capsys.readouterr().out.strip())
    assert copy.suffix == ".safetensors" and cache.read_sidecar(copy) is not None
    assert resolve_weights("test-golden") == copy
    assert cli_main(["weights", "path", "test-golden"]) == 0
    assert capsys.readouterr().out.strip() == str(copy)

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", refuse)
    reference = lavt.load_model(lavt_home / "weights" / "golden.safetensors")
    assert lavt.load_model("test-golden").config == reference.config


def test_weights_verify_finds_and_deletes_a_damaged_file(served, lavt_home, capsys):
    path = resolve_weights("test-default")
    resolve_weights(f"{served.url}/files/golden.pth")
    assert cli_main(["weights", "verify"]) == 0
    assert "2 files" in capsys.readouterr().out
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    assert cli_main(["weights", "verify", "--delete"]) == 1
    out = capsys.readouterr().out
    assert "CORRUPT" in out and "(deleted)" in out and not path.exists()


def test_weights_list_shows_the_published_figures(lavt_home, capsys):
    assert cli_main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "lavt_one-refcoco " in out and "val 73.50 / testA 75.97 / testB 69.33" in out
    assert "lavt-gref-google" in out and "val 60.50" in out
    assert "swin-base-window12-384-22k" in out and "mean IoU: n/a" in out
    assert cli_main(["weights", "path", "lavt-refcoco+"]) == 1
    assert capsys.readouterr().out.strip() == str(lavt_home / "weights" / "lavt-refcoco+.pth")


def test_hf_uri_goes_through_huggingface_hub(lavt_home, monkeypatch, tmp_path, golden_dir):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    local = tmp_path / "hf" / "model.pth"
    local.parent.mkdir()
    shutil.copy(golden_dir / "lavt_one_w7.pth", local)
    calls = []

    def fake_download(repo_id, filename, *, revision=None, local_files_only=False):
        calls.append((repo_id, filename, revision, local_files_only))
        return str(local)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert lavt.load_model("hf://owner/repo/weights/model.pth@v1").config.variant == "lavt_one"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights("hf://owner/repo@main/model.pth") == local
    assert calls == [
        ("owner/repo", "weights/model.pth", "v1", False),
        ("owner/repo", "model.pth", "main", True),
    ]


def test_hf_uri_offline_and_missing_is_one_clear_line(lavt_home, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.errors import LocalEntryNotFoundError

    def missing(*args, **kwargs):
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache\nmore")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as err:
        lavt.load_model("hf://owner/repo/model.pth")
    message = str(err.value)
    assert "\n" not in message and "offline" in message
    assert "https://huggingface.co/owner/repo/resolve/main/model.pth" in message


def test_hf_uri_parsing():
    assert parse_hf_uri("hf://a/b/c/d.pth") == ("a/b", "c/d.pth", None)
    assert parse_hf_uri("hf://a/b/d.pth@rev") == ("a/b", "d.pth", "rev")
    assert parse_hf_uri("hf://a/b@rev/d.pth") == ("a/b", "d.pth", "rev")
    with pytest.raises(CheckpointError, match=r"expected hf://owner/repo/path"):
        parse_hf_uri("hf://a/b")


def test_fetch_text_encoder_goes_to_the_hugging_face_cache(lavt_home, monkeypatch, capsys):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []

    def fake_snapshot(repo_id, *, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return "/hf/cache/bert"

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert cli_main(["weights", "fetch", "bert-base-uncased"]) == 0
    assert capsys.readouterr().out.strip() == "/hf/cache/bert"
    assert calls[0][0] == "bert-base-uncased" and "model.safetensors" in calls[0][1]
    with pytest.raises(CheckpointError, match=r"a text encoder \(for text_encoder\), not a"):
        resolve_weights("bert-base-uncased")
    with pytest.raises(CheckpointError, match=r"ImageNet Swin weights .*, not a LAVT checkpoint"):
        lavt.load_model("swin-tiny-window7-224")  # refused before any download
    with pytest.raises(CheckpointError, match=r"a LAVT checkpoint, not ImageNet Swin"):
        resolve_weights("lavt-refcoco", param="pretrained_swin_weights")


def test_train_init_weights_name_offline_fails_early_in_one_line(
    lavt_home, tmp_path, monkeypatch, capsys
):
    import yaml

    monkeypatch.setenv("LAVT_OFFLINE", "1")
    arch = tiny_config().to_dict()
    arch = {k: arch[k] for k in ("embed_dim", "depths", "num_heads", "window_size", "text")}
    config = tmp_path / "tiny.yaml"
    runs = tmp_path / "runs"
    config.write_text(
        yaml.safe_dump(
            {"model": "lavt_one", "img_size": 64, "arch": arch, "output_dir": str(runs)}
            | {"data_root": str(tmp_path / "no-data"), "device": "cpu", "workers": 0}
        )
    )
    code = cli_main(["train", "--config", str(config), "--init-weights", "lavt_one-refcoco"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--init-weights lavt_one-refcoco" in err and "LAVT_OFFLINE" in err
    assert str(lavt_home / "weights" / "lavt_one-refcoco.pth") in err
    assert not runs.exists()  # refused before anything was written


def test_weights_path_looks_up_hf_uris_in_the_hub_cache(monkeypatch, tmp_path, capsys):
    """A real Hugging Face cache layout (refs/main -> snapshots/<commit>/file), no network."""
    pytest.importorskip("huggingface_hub")
    hub = tmp_path / "hub"
    repo = hub / "models--owner--repo"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit / "weights"
    snapshot.mkdir(parents=True)
    (snapshot / "model.pth").write_bytes(b"weights")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    assert cli_main(["weights", "path", "hf://owner/repo/weights/model.pth"]) == 0
    assert capsys.readouterr().out.strip() == str(snapshot / "model.pth")
    assert cli_main(["weights", "path", "hf://owner/repo/weights/other.pth"]) == 1
    err = capsys.readouterr().err
    assert "not in the Hugging Face cache" in err and "Traceback" not in err
