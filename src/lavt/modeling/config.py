"""Model configuration: a frozen dataclass that rebuilds the model.

Every checkpoint this project writes stores ``LAVTConfig.to_dict()`` (plain
ints, floats, strings, lists), never a pickled object (nanoGPT's
``model_args``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from lavt.errors import ConfigError

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


@dataclass(frozen=True)
class LAVTConfig:
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
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        object.__setattr__(self, "pwam_heads", tuple(int(h) for h in self.pwam_heads))
        if isinstance(self.text, dict):
            object.__setattr__(self, "text", TextEncoderConfig(**self.text))
        n = len(self.depths)
        if n != 4 or len(self.num_heads) != n or len(self.pwam_heads) != n:
            raise ConfigError(
                f"depths {list(self.depths)}: depths, num_heads and pwam_heads need 4 entries "
                "(one per stage)",
                param="depths",
            )
        for s in range(n):
            dim = self.stage_dim(s)
            if dim % self.num_heads[s] or dim % self.pwam_heads[s]:
                raise ConfigError(
                    f"num_heads {list(self.num_heads)}: stage {s} width {dim} is not divisible "
                    f"by its heads ({self.num_heads[s]} attention, {self.pwam_heads[s]} PWAM)",
                    param="num_heads",
                )
        if self.window_size < 1:
            raise ConfigError(
                f"window_size {self.window_size}: must be positive", param="window_size"
            )

    def stage_dim(self, stage: int) -> int:
        """Channels C_s of stage ``stage``."""
        return self.embed_dim * 2**stage

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) that :meth:`from_dict` reverses."""
        out = asdict(self)
        for key in ("depths", "num_heads", "pwam_heads"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LAVTConfig:
        """Rebuild from :meth:`to_dict`; unknown keys are an error."""
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
                raise ConfigError(
                    f"text: unknown text encoder config keys {sorted(bad)}", param="text"
                )
            data["text"] = TextEncoderConfig(**data["text"])
        return cls(**data)

    def replace(self, **changes: Any) -> LAVTConfig:
        return replace(self, **changes)


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
