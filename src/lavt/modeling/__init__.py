"""LAVT model: one file per box of the paper's diagram."""

from lavt.modeling.config import (
    PRESETS,
    LAVTConfig,
    LAVTVideoConfig,
    TextEncoderConfig,
    preset_config,
)
from lavt.modeling.lavt import LAVT, LAVTOutput, build_model
from lavt.modeling.lavt_video import LAVTVideo, build_video_model

__all__ = [
    "LAVT",
    "PRESETS",
    "LAVTConfig",
    "LAVTOutput",
    "LAVTVideo",
    "LAVTVideoConfig",
    "TextEncoderConfig",
    "build_model",
    "build_video_model",
    "preset_config",
]
