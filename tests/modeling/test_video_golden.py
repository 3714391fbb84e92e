"""``lavt_video`` (LAVT-RS) against the authors' outputs, its checkpoint reading and its gradients.

The golden cases live outside the repository (../shared/reference/golden_video,
57 MB; $LAVT_GOLDEN_VIDEO overrides): their tests skip when it is absent. The
other tests build a tiny video model, so CI runs them everywhere.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import lavt
from conftest import tiny_video_config as shared_tiny_video_config
from lavt.checkpoint import convert_to_safetensors, save_checkpoint
from lavt.errors import CheckpointError
from lavt.modeling import LAVTVideo, LAVTVideoConfig, build_video_model
from lavt.modeling.window import relative_position_index, window_partition, window_reverse

GOLDEN_VIDEO = Path(
    os.environ.get(
        "LAVT_GOLDEN_VIDEO",
        Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "golden_video",
    )
)
CASES = ["lavt_video_w877", "lavt_video_w877_mha2"]
TOLERANCE = 1e-4  # absolute, as the image golden tests; logits: 1e-4 of max |logit|
needs_golden = pytest.mark.skipif(
    not (GOLDEN_VIDEO / f"{CASES[0]}.npz").is_file(),
    reason=f"no golden video files in {GOLDEN_VIDEO}",
)

#: the LAVT-RS arguments of the README's video commands (the rest at their defaults)
README_ARGS = dict(
    model="lavt_video",
    swin_type="tiny",
    sep_t_pwam=True,
    conv3d_kernel_size_t="3-3-3",
    conv3d_kernel_size_s="1-1-1",
    w_t3x3_s1x1=True,
    mm_t3x3_s1x1=True,
    mha="",
    window12=False,
    fusion_drop=0.0,
    img_size=480,
    version="default",
    t_pwam=False,
    seq_t_pwam=False,
    hs=False,
    lazy_pred=False,
    sept_sum_3_kernel_size="",
)


def tiny_video_config(**overrides) -> LAVTVideoConfig:
    """The shared tiny lavt_video (conftest) with a 100-word vocabulary (ids of tiny_inputs)."""
    return shared_tiny_video_config(vocab_size=100, **overrides)


def tiny_inputs(B: int = 1, T: int = 3, H: int = 26, W: int = 30, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(B, T, 3, H, W, generator=g)
    ids = torch.randint(1, 100, (B, 7), generator=g)
    mask = torch.ones(B, 7, dtype=torch.long)
    mask[-1, 5:] = 0
    return clip, ids, mask


def released_file(path: Path, net: LAVTVideo, **args) -> Path:
    """``net`` saved as LAVT-RS saves it: DDP prefix, stored indices, an args Namespace."""
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    for name, module in net.named_modules():
        if name.endswith(".attn"):
            sd[f"module.{name}.relative_position_index"] = relative_position_index(module.window)
    mha = "-".join(map(str, net.config.pwam_heads))
    namespace = argparse.Namespace(**{**README_ARGS, "mha": mha, **args})
    torch.save({"model": sd, "args": namespace, "epoch": 29}, path)
    return path


@pytest.fixture(scope="module")
def tiny_video():
    torch.manual_seed(0)
    return build_video_model(tiny_video_config()).eval()


# ----------------------------------------------------------------------------- golden cases


@pytest.fixture(scope="module", params=CASES)
def golden(request):
    if not (GOLDEN_VIDEO / f"{request.param}.pth").is_file():
        pytest.skip(f"no golden video files in {GOLDEN_VIDEO}")
    model = lavt.load_model(GOLDEN_VIDEO / f"{request.param}.pth")
    return request.param, model, np.load(GOLDEN_VIDEO / f"{request.param}.npz")


@needs_golden
@pytest.mark.parametrize("clip", [0, 1])
def test_golden_outputs(golden, clip):
    """Every recorded tensor of both clips of both cases (T = 8, 4, 12, 6; odd sizes)."""
    name, model, data = golden
    inputs = [
        torch.from_numpy(data[f"in{clip}_{k}"]) for k in ("clip", "input_ids", "attention_mask")
    ]
    with torch.no_grad():
        out = model.forward_intermediates(*inputs)
    B, T = inputs[0].shape[:2]
    assert out["logits"].shape == (B, T, 2, *inputs[0].shape[-2:])
    recorded = {
        "text_features": out["text_features"],
        "decoder": out["decoder"],
        "logits": out["logits"].flatten(0, 1),  # (B, T, 2, H, W) -> (B*T, 2, H, W), as recorded
    }
    recorded.update({f"stage{s}": out["stages"][s] for s in range(4)})
    for key, value in recorded.items():
        expected = torch.from_numpy(data[f"out{clip}_{key}"])
        assert value.shape == expected.shape, (name, key)
        err = (value - expected).abs().max().item()
        bound = TOLERANCE * expected.abs().max().item() if key == "logits" else TOLERANCE
        assert err < bound, f"{name} clip {clip} {key}: max abs error {err:.2e} (bound {bound:.1e})"


@needs_golden
def test_golden_config_read_off_the_checkpoint():
    one = lavt.load_model(GOLDEN_VIDEO / "lavt_video_w877.pth")
    two = lavt.load_model(GOLDEN_VIDEO / "lavt_video_w877_mha2.pth")
    assert isinstance(one, LAVTVideo) and not one.training
    assert (one.config.pwam_heads, two.config.pwam_heads) == ((1, 1, 1, 1), (2, 2, 2, 2))
    for cfg in (one.config, two.config):
        assert (cfg.embed_dim, cfg.depths, cfg.num_heads) == (16, (2, 2, 2, 2), (1, 2, 4, 8))
        assert (cfg.window_size, cfg.kernel_t, cfg.kernel_s) == ((8, 7, 7), (3, 3, 3), (1, 1, 1))
        assert (cfg.text.hidden_size, cfg.text.num_layers, cfg.text.vocab_size) == (128, 2, 1000)


# ----------------------------------------------------------------------------- tiny model


def test_any_clip_length_and_size(tiny_video):
    """T past the temporal window (shifted in time), one frame, odd sizes: (B, T, 2, H, W)."""
    for B, T, H, W in ((1, 9, 20, 36), (2, 1, 17, 23)):
        clip, ids, mask = tiny_inputs(B, T, H, W)
        with torch.no_grad():
            logits = tiny_video(clip, ids, mask)
        assert logits.shape == (B, T, 2, H, W)
        assert torch.isfinite(logits).all()


def test_frames_of_a_clip_interact(tiny_video):
    """The temporal convolutions and windows mix frames: a clip is not its frames one by one."""
    clip, ids, mask = tiny_inputs(T=3)
    with torch.no_grad():
        whole = tiny_video(clip, ids, mask)
        first = tiny_video(clip[:, :1], ids, mask)
    assert (whole[:, 0] - first[:, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("checkpointing", [False, True])
def test_backward_reaches_every_trainable_parameter(checkpointing):
    torch.manual_seed(0)
    model = build_video_model(tiny_video_config()).train()
    model.set_grad_checkpointing(checkpointing)
    clip, ids, mask = tiny_inputs(T=9, H=24, W=24)  # shifted in time and space
    model(clip, ids, mask).square().mean().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    missing = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing[:5]}"
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("backbone.layers.3.res_gate.") for n in frozen)


def test_released_layout_loads_through_load_model(tiny_video, tmp_path):
    """A LAVT-RS-layout file: same outputs, config off the tensors and args, indices checked."""
    path = released_file(tmp_path / "video.pth", tiny_video, img_size=32)
    loaded = lavt.load_model(path)
    assert isinstance(loaded, LAVTVideo)
    assert loaded.config == tiny_video.config.replace(drop_path_rate=0.1)  # tiny's rate
    clip, ids, mask = tiny_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip, ids, mask), tiny_video(clip, ids, mask))


def test_a_file_without_the_last_gate_loads(tiny_video, tmp_path):
    """LAVT-RS trained with --use_checkpoint stores no last-stage gate; it never matters."""
    path = released_file(tmp_path / "video.pth", tiny_video)
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = torch.load(path, weights_only=True)
    obj["model"] = {k: v for k, v in obj["model"].items() if ".layers.3.res_gate." not in k}
    torch.save(obj, path)
    loaded = lavt.load_model(path)
    assert not loaded.config.last_stage_gate and loaded.backbone.layers[3].res_gate is None
    clip, ids, mask = tiny_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip, ids, mask), tiny_video(clip, ids, mask))


def test_project_checkpoint_and_safetensors_round_trip(tiny_video, tmp_path):
    save_checkpoint(tmp_path / "video.pt", tiny_video)
    convert_to_safetensors(tmp_path / "video.pt", tmp_path / "video.safetensors")
    clip, ids, mask = tiny_inputs()
    with torch.no_grad():
        expected = tiny_video(clip, ids, mask)
        for name in ("video.pt", "video.safetensors"):
            loaded = lavt.load_model(tmp_path / name)
            assert loaded.config == tiny_video.config
            torch.testing.assert_close(loaded(clip, ids, mask), expected)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"t_pwam": True}, "--t_pwam"),
        ({"seq_t_pwam": True}, "--seq_t_pwam"),
        ({"hs": True}, "--hs"),
        ({"lazy_pred": True}, "--lazy_pred"),
        ({"w_t3x3_s1x1": False}, "--w_t3x3_s1x1"),
        ({"sept_sum_3_kernel_size": "1-1-1"}, "--sept_sum_3_kernel_size"),
        ({"version": "no_gate"}, "--version"),
        ({"conv3d_kernel_size_t": "3-1-1"}, "--conv3d_kernel_size_t"),
        ({"window12": True}, "--window12"),
        ({"model": "lavt_one"}, "--model"),
    ],
)
def test_other_variants_are_refused(tiny_video, tmp_path, args, named):
    path = released_file(tmp_path / "variant.pth", tiny_video, **args)
    with pytest.raises(CheckpointError) as err:
        lavt.load_model(path)
    message = str(err.value)
    assert named in message and str(path) in message and "\n" not in message


def test_a_wrong_stored_index_is_refused(tiny_video, tmp_path):
    path = released_file(tmp_path / "video.pth", tiny_video)
    with torch.serialization.safe_globals([argparse.Namespace]):
        obj = torch.load(path, weights_only=True)
    key = "module.backbone.layers.0.blocks.0.attn.relative_position_index"
    obj["model"][key] = obj["model"][key].flip(0)
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="relative-position index"):
        lavt.load_model(path)


def test_video_window_helpers():
    """3-D index worked by hand; partition and reverse are inverses over (D, H, W)."""
    index = relative_position_index((2, 2, 2))  # 3 x 3 x 3 = 27 table rows
    # token 0 = (0,0,0), token 7 = (1,1,1): offsets (-1,-1,-1) -> row 0; itself -> (1*3+1)*3+1 = 13
    assert index[0, 7] == 0 and index[0, 0] == 13 and index[7, 0] == 26
    x = torch.randn(2, 4, 6, 9, 5)  # (B, D, H, W, C)
    windows = window_partition(x, (2, 3, 3))
    assert windows.shape == (2, 2 * 2 * 3, 18, 5)
    torch.testing.assert_close(windows[0, 0, 1], x[0, 0, 0, 1])  # token 1 of window 0: (0, 0, 1)
    torch.testing.assert_close(windows[0, 0, 9], x[0, 1, 0, 0])  # token 9: (1, 0, 0)
    assert torch.equal(window_reverse(windows, (2, 3, 3), 4, 6, 9), x)
