"""Hub-native models: save_pretrained / from_pretrained / push_to_hub, the model card,
``--checkpoint DIR`` and ``hf://owner/repo[@rev]`` (issue 23). No test touches the network:
the Hub client's download and upload calls are replaced by local stand-ins."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

import lavt
from lavt.assets import default_model_path
from lavt.checkpoint.io import PRETRAINED_FILES
from lavt.cli import main as cli_main
from lavt.errors import CheckpointError
from lavt.hub.hf import PRETRAINED_PATTERNS

GOLDEN_RELEASED = ("lavt_one_w7", "lavt_w12_mha2")
REQUIRED_CARD_KEYS = {"license", "library_name", "pipeline_tag", "tags"}


def _logits(model, golden=None):
    """Logits of ``model`` on the golden inputs, or on a seeded random input."""
    if golden is not None:
        inputs = [torch.from_numpy(golden[f"in0_{k}"]) for k in ("image", "input_ids")]
        mask = torch.from_numpy(golden["in0_attention_mask"])
        image, ids = inputs
    else:
        g = torch.Generator().manual_seed(0)
        size = model.config.img_size
        image = torch.randn(2, 3, size, size, generator=g)
        ids = torch.randint(1, len(model.vocab or range(30522)), (2, 20), generator=g)
        mask = torch.ones(2, 20, dtype=torch.long)
        mask[1, 6:] = 0
    with torch.inference_mode():
        return model(image, ids.long(), mask.long())


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def _scene(path):
    image = Image.new("RGB", (72, 56), (200, 200, 200))
    ImageDraw.Draw(image).ellipse((10, 10, 36, 36), fill=(220, 30, 30))
    image.save(path)
    return path


@pytest.mark.slow
def test_bundled_model_round_trips_through_a_pretrained_folder(tmp_path, capsys):
    original = lavt.load_model(default_model_path())
    folder = original.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == sorted(PRETRAINED_FILES)
    config = json.loads((folder / "config.json").read_text())
    assert lavt.LAVTConfig.from_dict(config) == original.config  # the typed config, plain dict
    assert (folder / "vocab.txt").read_text().splitlines() == original.vocab
    with open(folder / "model.safetensors", "rb") as f:  # a safetensors header, not a pickle
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert set(header) - {"__metadata__"} == set(original.state_dict())

    # tokenizer_config.json + vocab.txt: transformers' tokenizer gives lavt's ids
    from transformers import AutoTokenizer

    from lavt.tokenizer import tokenizer_for_model

    text = "the red circle under the big blue square"
    ids, mask = tokenizer_for_model(original)(text)
    assert AutoTokenizer.from_pretrained(folder)(text)["input_ids"] == ids[0][mask[0] > 0].tolist()

    expected = _logits(original)
    for loaded in (lavt.LAVT.from_pretrained(folder), lavt.load_model(folder)):
        assert loaded.vocab == original.vocab
        assert torch.equal(_logits(loaded), expected)

    # --checkpoint DIR: the same masks as the bundled model
    image = _scene(tmp_path / "scene.png")
    args = ["predict", "--image", str(image), "--text", "the red circle", "--device", "cpu"]
    assert cli_main([*args, "--output", str(tmp_path / "a")]) == 0
    assert cli_main([*args, "--output", str(tmp_path / "b"), "--checkpoint", str(folder)]) == 0
    capsys.readouterr()
    (mask_a,) = (tmp_path / "a").glob("*_mask.png")
    mask_b = tmp_path / "b" / mask_a.name
    assert np.array_equal(np.asarray(Image.open(mask_a)), np.asarray(Image.open(mask_b)))


@pytest.mark.parametrize("name", GOLDEN_RELEASED)
def test_released_layout_round_trips_with_identical_logits(name, golden_dir, tmp_path):
    original = lavt.load_model(golden_dir / f"{name}.pth")
    golden = np.load(golden_dir / f"{name}.npz")
    folder = original.save_pretrained(tmp_path / name)
    loaded = lavt.LAVT.from_pretrained(str(folder))
    assert loaded.vocab is None  # the bundled bert-base-uncased vocabulary, recognised
    assert loaded.config == original.config
    expected = _logits(original, golden)
    assert torch.equal(_logits(loaded, golden), expected)
    card = _front_matter((folder / "README.md").read_text())
    assert REQUIRED_CARD_KEYS <= set(card) and card["library_name"] == "lavt"


def test_weights_push_local_dir_writes_the_card_with_metrics(golden_dir, tmp_path, capsys):
    metrics = tmp_path / "metrics.json"
    row = {f"precision@{t}": 50.0 for t in (0.5, 0.6, 0.7, 0.8, 0.9)}
    metrics.write_text(json.dumps({"val": {**row, "overall_iou": 61.25, "mean_iou": 60.5}}))
    out = tmp_path / "push"
    source = str(golden_dir / "lavt_one_w7.pth")
    args = ["weights", "push", source, "me/lavt-tiny", "--metrics", str(metrics)]
    assert cli_main([*args, "--dataset", "refcoco", "--local-dir", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    card_text = (out / "README.md").read_text()
    card = _front_matter(card_text)
    assert REQUIRED_CARD_KEYS <= set(card)
    assert card["pipeline_tag"] == "image-segmentation" and card["datasets"] == ["refcoco"]
    (result,) = card["model-index"][0]["results"]
    assert result["dataset"]["split"] == "val"
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values["overall_iou"] == 61.25 and values["mean_iou"] == 60.5
    assert 'LAVT.from_pretrained("me/lavt-tiny")' in card_text
    assert "| val | 61.25 | 60.50 | 50.00 | 50.00 | 50.00 |" in card_text

    # metrics without a dataset: one line naming the flag, nothing written
    assert cli_main([*args, "--local-dir", str(tmp_path / "none")]) != 0
    assert "--dataset" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_released_name_card_carries_the_published_figures(monkeypatch, golden_dir, tmp_path):
    from lavt.commands.weights import _card_info
    from lavt.hub.card import model_card

    info = _card_info("lavt_one-refcoco", "me/x", None, None)  # table only, no download
    assert info.dataset == "refcoco" and info.published["val"] == 73.50
    config = lavt.load_model(golden_dir / "lavt_one_w7.pth").config
    card = _front_matter(model_card(config, info, vocab_size=30522, parameters=1))
    results = card["model-index"][0]["results"]
    assert {r["dataset"]["split"] for r in results} == {"val", "testA", "testB"}
    assert all(r["source"]["name"].startswith("LAVT README") for r in results)


def test_hub_repo_ids_resolve_through_snapshot_download(monkeypatch, tmp_path, capsys):
    import huggingface_hub

    folder = lavt.load_model(default_model_path()).save_pretrained(tmp_path / "snap")
    calls = []

    def fake_snapshot(repo_id, *, revision=None, allow_patterns=None, local_files_only=False):
        calls.append((repo_id, revision, tuple(allow_patterns)))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.chdir(tmp_path)
    model = lavt.LAVT.from_pretrained("owner/repo", revision="v1")
    assert calls[-1] == ("owner/repo", "v1", PRETRAINED_PATTERNS)
    assert torch.equal(_logits(model), _logits(lavt.load_model(folder)))
    lavt.load_model("hf://owner/repo")
    assert calls[-1][:2] == ("owner/repo", None)
    image = _scene(tmp_path / "scene.png")
    argv = ["predict", "--checkpoint", "hf://owner/repo@main", "--image", str(image)]
    assert cli_main([*argv, "--text", "the red circle", "--output", "out"]) == 0
    assert calls[-1][:2] == ("owner/repo", "main")
    capsys.readouterr()


def test_push_to_hub_uploads_the_saved_folder(monkeypatch):
    import huggingface_hub

    seen = {}

    class FakeApi:
        def __init__(self, token=None):
            seen["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            seen["create"] = (repo_id, private, exist_ok)
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, *, repo_id, repo_type, folder_path, commit_message, revision):
            from pathlib import Path

            files = {p.name: p for p in Path(folder_path).iterdir()}
            seen["files"] = sorted(files)
            seen["card"] = _front_matter(files["README.md"].read_text())
            seen["config"] = json.loads(files["config.json"].read_text())
            return type("Commit", (), {"commit_url": f"https://hub.test/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = lavt.load_model(default_model_path())
    url = model.push_to_hub("me/lavt-synthetic", private=True, token="tok")
    assert url == "https://hub.test/me/lavt-synthetic/commit/1"
    assert seen["create"] == ("me/lavt-synthetic", True, True) and seen["token"] == "tok"
    assert seen["files"] == sorted(PRETRAINED_FILES)
    assert seen["config"] == model.config.to_dict()
    assert REQUIRED_CARD_KEYS <= set(seen["card"])
    with pytest.raises(lavt.LavtError, match="repo_id"):
        model.push_to_hub("not a repo id")


def test_a_folder_runs_no_code_and_loads_strictly(tmp_path):
    folder = lavt.load_model(default_model_path()).save_pretrained(tmp_path / "m")
    marker = tmp_path / "ran"
    for name in ("__init__.py", "modeling.py", "custom_code.py"):
        (folder / name).write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    lavt.LAVT.from_pretrained(folder)
    assert not marker.exists()

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    torch.save({"x": torch.zeros(1)}, pickled / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="never read"):
        lavt.load_model(pickled)

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "trust_remote_code": True}))
    with pytest.raises(CheckpointError, match=r"config\.json: invalid model config"):
        lavt.load_model(folder)

    (folder / "config.json").write_text(json.dumps({**config, "embed_dim": 32}))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        lavt.load_model(folder)


@pytest.mark.slow
def test_model_and_card_import_without_huggingface_hub():
    code = (
        "import sys; sys.modules['huggingface_hub'] = None\n"
        "import lavt.modeling.lavt, lavt.checkpoint.io, lavt.checkpoint.pretrained\n"
        "import lavt.hub.card, lavt.hub.hf, lavt.hub.resolve\n"
        "from lavt.errors import CheckpointError\n"
        "try:\n"
        "    lavt.hub.hf.hf_snapshot('hf://owner/repo', label='checkpoint hf://owner/repo')\n"
        "except CheckpointError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pip install 'lavt[hub]'" in done.stdout


def test_trainer_takes_a_pretrained_folder_as_init_weights(tmp_path, capsys):
    from conftest import tiny_config
    from lavt.train import TrainConfig
    from lavt.train.model import build_training_model

    torch.manual_seed(3)
    source = lavt.build_model(tiny_config(img_size=64))
    folder = source.save_pretrained(tmp_path / "init")
    arch = tiny_config().to_dict()
    arch = {k: arch[k] for k in ("embed_dim", "depths", "num_heads", "window_size", "text")}
    cfg = TrainConfig(model="lavt_one", img_size=64, arch=arch, init_weights=str(folder))
    model = build_training_model(cfg, initialise=True)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    # the preflight accepts the folder (it used to want a file): the next check speaks
    config = tmp_path / "tiny.yaml"
    settings = {"model": "lavt_one", "img_size": 64, "arch": arch, "device": "cpu"}
    settings |= {"output_dir": str(tmp_path / "runs"), "data_root": str(tmp_path / "no-data")}
    config.write_text(yaml.safe_dump(settings))
    assert cli_main(["train", "--config", str(config), "--init-weights", str(folder)]) != 0
    err = capsys.readouterr().err
    assert "init-weights" not in err and "no-data" in err, err


def test_weights_path_of_a_repo_is_its_cached_snapshot(monkeypatch, tmp_path, capsys):
    """A real Hugging Face cache layout (refs/main -> snapshots/<commit>/), no network."""
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--owner--repo"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert cli_main(["weights", "path", "hf://owner/repo"]) == 0
    assert capsys.readouterr().out.strip() == str(snapshot)
    assert cli_main(["weights", "path", "hf://owner/other"]) == 1
    assert "not in the Hugging Face cache" in capsys.readouterr().err
