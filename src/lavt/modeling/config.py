"""Model configuration: a frozen dataclass that rebuilds the model.

Every checkpoint this project writes stores ``LAVTConfig.to_dict()`` (plain
ints, floats, strings, lists), never a pickled object (nanoGPT's
``model_args``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

from lavt.errors import ConfigError

_C = TypeVar("_C")

VARIANTS = ("lavt", "lavt_one")


@dataclass(frozen=True)
class TextEncoderConfig:
    """A BERT (transformers ``BertModel`` semantics, no pooler)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12  # width / 64: cannot be read from the weights
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size}: not divisible by the text encoder's "
                f"num_heads {self.num_heads}",
                param="hidden_size",
            )


class _ArchitectureMethods:
    """What the image and the video architecture configs share (both frozen dataclasses
    with ``embed_dim`` doubling per stage)."""

    embed_dim: int

    def stage_dim(self, stage: int) -> int:
        """Channels C_s of stage ``stage``."""
        return self.embed_dim * 2**stage

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) that :meth:`from_dict` reverses."""
        return _plain_dict(self)

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
        """Rebuild from :meth:`to_dict`; unknown keys are an error."""
        return _from_dict(cls, data)

    def replace(self: _C, **changes: Any) -> _C:
        return replace(self, **changes)


@dataclass(frozen=True)
class LAVTConfig(_ArchitectureMethods):
    """Architecture of a LAVT model (docs/model.md, "Architecture in numbers").

    ``variant`` only says how the released checkpoints store the BERT
    (``lavt``: a separate ``bert_model`` dict; ``lavt_one``: ``text_encoder.*``
    inside ``model``); the computation is the same.
    """

    variant: str = "lavt"
    embed_dim: int = 128
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 4
    drop_path_rate: float = 0.3
    pwam_heads: tuple[int, ...] = (1, 1, 1, 1)
    fusion_drop: float = 0.0
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    img_size: int = 480  # preprocessing size the weights were trained at
    max_text_len: int = 20
    no_target_head: bool = False  # GRES: 2-way "no object" classifier (docs/gres.md)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(
                f"variant {self.variant!r}: expected one of {', '.join(VARIANTS)}",
                param="variant",
            )
        _check_stages(self)
        if self.window_size < 1:
            raise ConfigError(
                f"window_size {self.window_size}: must be positive", param="window_size"
            )


@dataclass(frozen=True)
class LAVTVideoConfig(_ArchitectureMethods):
    """Architecture of the authors' video model ``lavt_video`` (LAVT-RS; docs/video.md).

    A Video Swin backbone (temporal patch 1, windows ``window_size`` = (d, h, w))
    whose stages fuse language with a PWAM of separate temporal (``kernel_t``)
    and spatial (``kernel_s``) 3-D convolutions, then the image model's
    decoder on every frame. ``last_stage_gate``: whether the checkpoint holds
    the last stage's gate (LAVT-RS drops it when trained with
    ``--use_checkpoint``); it never changes the output.
    """

    variant: str = "lavt_video"
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: tuple[int, ...] = (8, 7, 7)
    mlp_ratio: float = 4.0
    patch_size: int = 4  # spatial; the temporal patch is 1 (one feature map per frame)
    drop_path_rate: float = 0.1
    pwam_heads: tuple[int, ...] = (1, 1, 1, 1)
    fusion_drop: float = 0.0
    kernel_t: tuple[int, ...] = (3, 3, 3)
    kernel_s: tuple[int, ...] = (1, 1, 1)
    last_stage_gate: bool = True
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    img_size: int = 480
    max_text_len: int = 20

    def __post_init__(self) -> None:
        if self.variant != "lavt_video":
            raise ConfigError(
                f"variant {self.variant!r}: a video config has variant 'lavt_video'",
                param="variant",
            )
        _check_stages(self)
        for name in ("window_size", "kernel_t", "kernel_s"):
            value = tuple(int(v) for v in getattr(self, name))
            object.__setattr__(self, name, value)
            if len(value) != 3 or min(value) < 1:
                raise ConfigError(
                    f"{name} {list(value)}: expected three positive sizes (d, h, w)", param=name
                )
        for name in ("kernel_t", "kernel_s"):
            if any(k % 2 == 0 for k in getattr(self, name)):
                raise ConfigError(
                    f"{name} {list(getattr(self, name))}: kernel sizes must be odd", param=name
                )


AnyConfig = LAVTConfig | LAVTVideoConfig


def config_from_dict(data: dict[str, Any]) -> AnyConfig:
    """The image or video config a stored dict describes (by its ``variant``)."""
    video = isinstance(data, dict) and data.get("variant") == "lavt_video"
    return (LAVTVideoConfig if video else LAVTConfig).from_dict(data)


def _check_stages(config: AnyConfig) -> None:
    """Normalise the per-stage tuples and check the stage widths against the heads."""
    for name in ("depths", "num_heads", "pwam_heads"):
        object.__setattr__(config, name, tuple(int(v) for v in getattr(config, name)))
    if isinstance(config.text, dict):
        object.__setattr__(config, "text", TextEncoderConfig(**config.text))
    n = len(config.depths)
    if n != 4 or len(config.num_heads) != n or len(config.pwam_heads) != n:
        raise ConfigError(
            f"depths {list(config.depths)}: depths, num_heads and pwam_heads need 4 entries "
            "(one per stage)",
            param="depths",
        )
    for s in range(n):
        dim = config.stage_dim(s)
        if dim % config.num_heads[s] or dim % config.pwam_heads[s]:
            raise ConfigError(
                f"num_heads {list(config.num_heads)}: stage {s} width {dim} is not divisible "
                f"by its heads ({config.num_heads[s]} attention, {config.pwam_heads[s]} PWAM)",
                param="num_heads",
            )


def _plain_dict(config: AnyConfig) -> dict[str, Any]:
    """asdict with lists for tuples (JSON and ``weights_only`` friendly)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        message = f"config: unknown model config keys {sorted(unknown)}"
        raise ConfigError(message, param="config")
    data = dict(data)
    if "text" in data and isinstance(data["text"], dict):
        text_known = {f.name for f in fields(TextEncoderConfig)}
        bad = set(data["text"]) - text_known
        if bad:
            raise ConfigError(f"text: unknown text encoder config keys {sorted(bad)}", param="text")
        data["text"] = TextEncoderConfig(**data["text"])
    return cls(**data)


_SWIN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "small": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "base": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
    "large": {"embed_dim": 192, "depths": (2, 2, 18, 2), "num_heads": (6, 12, 24, 48)},
}

PRESETS: tuple[str, ...] = tuple(_SWIN_PRESETS)


def preset_config(name: str, **overrides: Any) -> LAVTConfig:
    """Config of a Swin preset (tiny/small/base/large) with BERT-base.

    ``overrides`` replace any field, e.g. ``window_size=7, variant="lavt_one"``.
    """
    if name not in _SWIN_PRESETS:
        raise ConfigError(f"preset {name!r}: expected one of {', '.join(PRESETS)}", param="preset")
    return LAVTConfig(**{**_SWIN_PRESETS[name], **overrides})
