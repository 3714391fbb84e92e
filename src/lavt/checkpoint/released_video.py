"""Adapter for the LAVT authors' video checkpoints (``lavt_video``, LAVT-RS).

A LAVT-RS file holds ``model`` (everything, BERT under ``text_encoder.``), the
training ``args`` (an ``argparse.Namespace``) and ``epoch``. Its tensors keep
their names (:func:`lavt.checkpoint.released.filter_released_state_dict` drops
the derived buffers); the architecture is read off the tensor shapes (so
``swin_type`` may be anything, "custom" included) and the arguments that do
not show in them: ``mha``, ``fusion_drop``, ``img_size``.

LAVT-RS's ``args`` also select among ablation variants of the fusion module
and the decoder. Only the variant of the README's video commands is
implemented (docs/video.md); a checkpoint asking for another is refused with a
line naming the option.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from lavt.checkpoint.released import (
    count_indexed,
    filter_released_state_dict,
    parse_mha,
    text_config,
)
from lavt.errors import CheckpointError, InputError
from lavt.modeling.config import LAVTVideoConfig
from lavt.modeling.window import relative_position_index

StateDict = dict[str, torch.Tensor]

#: the README's video flags: ``--sep_t_pwam --w_t3x3_s1x1 --mm_t3x3_s1x1``; these must be set
REQUIRED_FLAGS = ("sep_t_pwam", "w_t3x3_s1x1", "mm_t3x3_s1x1")
#: other fusion variants and decoder/backbone ablations of LAVT-RS; these must be off
REFUSED_FLAGS = (
    "ts_pwam",
    "t_pwam",
    "t_pwam_comp",
    "seq_t_pwam",
    "sep_t_pwam_inner",
    "sep_seq_t_pwam",
    "sep_seq_t_pwam_inner",
    "w_3x3",
    "w_3",
    "mm_3x3",
    "mm_3",
    "s_tanh_plus_1_gate_1_q",
    "s_tanh_plus_1_gate_1_v",
    "t_tanh_plus_1_gate_1_q",
    "t_tanh_plus_1_gate_1_v",
    "hs",
    "lazy_pred",
    "seg_last",
    "interpolate_before_seg",
)
#: options that must be empty (they add fusion convolutions)
EMPTY_OPTIONS = ("sept_sum_3_kernel_size", "sept_cat_reduce_kernel_size")
#: kernel sizes LAVT-RS gives a padding for (``_3d_kernel_size_to_padding_size``)
KERNELS = ((3, 3, 3), (1, 1, 1), (3, 1, 1), (1, 3, 3))
#: stochastic depth of LAVT-RS's video backbones by ``swin_type``; Video Swin's default otherwise
DROP_PATH = {"tiny": 0.1, "small": 0.2, "base": 0.3}
#: the temporal window LAVT-RS always uses ((8, 7, 7), or (8, 12, 12) with ``--window12``)
TEMPORAL_WINDOW = 8


def is_video_checkpoint(obj: Any) -> bool:
    """Whether an unpickled released file is a LAVT-RS video model (by ``args.model`` or shape)."""
    if getattr(obj.get("args"), "model", None) == "lavt_video":
        return True
    proj = next(
        (v for k, v in obj["model"].items() if k.endswith("backbone.patch_embed.proj.weight")),
        None,
    )
    return isinstance(proj, torch.Tensor) and proj.ndim == 5


def check_video_args(args: Any) -> None:
    """Refuse ``args`` asking for a variant other than the README's video model, naming it.

    ``None`` (no saved arguments) is taken as the README's flags.
    """
    if args is None:
        return
    model = getattr(args, "model", "lavt_video")
    if model != "lavt_video":
        raise CheckpointError(f"args --model {model}: a 5-D patch embedding needs lavt_video")
    for flag in REQUIRED_FLAGS:
        if not getattr(args, flag, False):
            raise CheckpointError(
                f"args: --{flag} is not set: only the LAVT-RS README's video variant "
                f"(--{' --'.join(REQUIRED_FLAGS)}) is implemented"
            )
    for flag in REFUSED_FLAGS:
        if getattr(args, flag, False):
            raise CheckpointError(
                f"args: --{flag} is set: this LAVT-RS ablation variant is not implemented "
                "(only the README's video variant is)"
            )
    for option in EMPTY_OPTIONS:
        if getattr(args, option, ""):
            raise CheckpointError(
                f"args: --{option} {getattr(args, option)}: this LAVT-RS ablation variant "
                "is not implemented"
            )
    version = getattr(args, "version", "default")
    if version != "default":
        raise CheckpointError(
            f"args: --version {version}: only the gated model (--version default) is implemented"
        )


def _kernel(sd: Mapping[str, torch.Tensor], key: str, args: Any, option: str) -> tuple[int, ...]:
    """A fusion kernel size read off ``key``'s shape, checked against ``args.<option>``."""
    kernel = tuple(sd[key].shape[2:])  # (C_out, C_in, d, h, w)
    if kernel not in KERNELS:
        raise CheckpointError(f"{key}: kernel {list(kernel)} is not one LAVT-RS builds")
    stated = getattr(args, option, None)
    if stated and stated != "-".join(map(str, kernel)):
        raise CheckpointError(
            f"args --{option} {stated} does not match the {'x'.join(map(str, kernel))} "
            f"weights of {key}"
        )
    return kernel


def _window(sd: Mapping[str, torch.Tensor], raw: Mapping[str, torch.Tensor], args: Any):
    """(d, h, w) window off the bias table (temporal 8, as LAVT-RS); checks any stored index."""
    key = "backbone.layers.0.blocks.0.attn.relative_position_bias_table"
    rows = sd[key].shape[0]  # (2*8 - 1) * (2w - 1) ** 2
    side = math.isqrt(rows // (2 * TEMPORAL_WINDOW - 1))
    window = (TEMPORAL_WINDOW, (side + 1) // 2, (side + 1) // 2)
    if side % 2 == 0 or (2 * TEMPORAL_WINDOW - 1) * side * side != rows:
        raise CheckpointError(f"{key}: {rows} rows fit no (8, w, w) window")
    if args is not None and bool(getattr(args, "window12", False)) != (window[1] == 12):
        raise CheckpointError(
            f"args --window12 {bool(getattr(args, 'window12', False))} does not match the "
            f"window {list(window)} of {key}"
        )
    expected = relative_position_index(window)
    for name, index in raw.items():
        if name.endswith(".relative_position_index") and not torch.equal(index, expected):
            raise CheckpointError(f"{name}: not the relative-position index of window {window}")
    return window


def infer_video_config(
    sd: Mapping[str, torch.Tensor],
    args: Any = None,
    raw: Mapping[str, torch.Tensor] | None = None,
) -> LAVTVideoConfig:
    """Read the architecture off a filtered LAVT-RS state dict and its ``args``.

    ``raw``: the unfiltered state dict, whose stored relative-position indices
    are checked against the window.
    """
    check_video_args(args)
    try:
        proj = sd["backbone.patch_embed.proj.weight"]  # (C, 3, 1, patch, patch)
        if proj.ndim != 5 or proj.shape[2] != 1 or proj.shape[3] != proj.shape[4]:
            raise CheckpointError(
                f"backbone.patch_embed.proj.weight {list(proj.shape)}: expected a (C, 3, 1, p, p) "
                "video patch embedding"
            )
        depths = tuple(
            count_indexed(sd, rf"backbone\.layers\.{s}\.blocks\.(\d+)\.") for s in range(4)
        )
        heads = tuple(
            sd[f"backbone.layers.{s}.blocks.0.attn.relative_position_bias_table"].shape[1]
            for s in range(4)
        )
        window = _window(sd, raw or {}, args)
        fusion = "backbone.layers.0.fusion."
        kernel_t = _kernel(sd, fusion + "f_query_t.0.weight", args, "conv3d_kernel_size_t")
        kernel_s = _kernel(sd, fusion + "f_query_s.0.weight", args, "conv3d_kernel_size_s")
        mlp_hidden = sd["backbone.layers.0.blocks.0.mlp.fc1.weight"].shape[0]
        text_dim = sd[fusion + "f_key.0.weight"].shape[1]
        text = text_config(sd)
    except KeyError as err:
        missing = err.args[0]
        raise CheckpointError(f"missing tensor {missing!r}: not a lavt_video checkpoint") from None
    if text_dim != text.hidden_size:
        raise CheckpointError(
            f"PWAM key width {text_dim} does not match the text encoder width {text.hidden_size}"
        )
    try:
        pwam_heads = parse_mha(getattr(args, "mha", ""), param="args.mha")
    except InputError as err:
        raise CheckpointError(str(err)) from None
    try:
        return LAVTVideoConfig(
            embed_dim=proj.shape[0],
            depths=depths,
            num_heads=heads,
            window_size=window,
            mlp_ratio=mlp_hidden / proj.shape[0],
            patch_size=proj.shape[-1],
            drop_path_rate=DROP_PATH.get(getattr(args, "swin_type", None), 0.2),
            pwam_heads=pwam_heads,
            fusion_drop=float(getattr(args, "fusion_drop", 0.0) or 0.0),
            kernel_t=kernel_t,
            kernel_s=kernel_s,
            last_stage_gate="backbone.layers.3.res_gate.0.weight" in sd,
            text=text,
            img_size=int(getattr(args, "img_size", 480) or 480),
        )
    except ValueError as err:
        raise CheckpointError(f"inconsistent architecture: {err}") from None


def read_released_video(obj: dict[str, Any]) -> tuple[LAVTVideoConfig, StateDict]:
    """Config and state dict of an unpickled LAVT-RS video file."""
    sd = filter_released_state_dict(obj["model"])
    return infer_video_config(sd, obj.get("args"), obj["model"]), sd
