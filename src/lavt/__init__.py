"""lavt: LAVT referring image segmentation (Yang et al., CVPR 2022).

Three lines::

    import lavt
    predictor = lavt.Predictor(lavt.load_model("refcoco.pth"))
    result = predictor.predict("photo.jpg", ["the man on the left"])[0]

Attributes are imported lazily, so ``import lavt`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from lavt._version import __version__ as __version__

_EXPORTS = {
    "load_model": "lavt.checkpoint",
    "save_checkpoint": "lavt.checkpoint",
    "build_model": "lavt.modeling",
    "LAVT": "lavt.modeling",
    "LAVTConfig": "lavt.modeling",
    "preset_config": "lavt.modeling",
    "Tokenizer": "lavt.tokenizer",
    "Predictor": "lavt.predict",
    "LavtError": "lavt.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lavt' has no attribute {name!r}")
