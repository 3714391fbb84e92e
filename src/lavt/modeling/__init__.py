"""LAVT model: one file per box of the paper's diagram."""

from lavt.modeling.config import PRESETS, LAVTConfig, TextEncoderConfig, preset_config
from lavt.modeling.lavt import LAVT, LAVTOutput, build_model

__all__ = [
    "LAVT",
    "PRESETS",
    "LAVTConfig",
    "LAVTOutput",
    "TextEncoderConfig",
    "build_model",
    "preset_config",
]
