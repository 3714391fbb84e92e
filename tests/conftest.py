"""Shared fixtures: golden files and tiny model configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


def tiny_config(*, text_dropout: float | None = None, **overrides):
    """A small random-weight LAVT with the full bert-base-uncased vocabulary.

    ``text_dropout`` sets BERT's hidden and attention dropout (0.0 where eager and
    compiled runs must draw no random numbers); None keeps the encoder's default.
    """
    from lavt.modeling.config import LAVTConfig, TextEncoderConfig

    dropout = (
        {}
        if text_dropout is None
        else {
            "hidden_dropout": text_dropout,
            "attention_dropout": text_dropout,
        }
    )
    text = TextEncoderConfig(
        vocab_size=30522,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        **dropout,
    )
    base = dict(
        variant="lavt_one",
        embed_dim=16,
        depths=(1, 1, 2, 1),
        num_heads=(1, 2, 4, 8),
        window_size=4,
        drop_path_rate=0.0,
        text=text,
        img_size=64,
    )
    base.update(overrides)
    return LAVTConfig(**base)


@pytest.fixture
def tiny_model():
    import torch

    from lavt.modeling import build_model

    torch.manual_seed(0)
    return build_model(tiny_config()).eval()


def lavt_torchrun(*args: str, processes: int = 2) -> list[str]:
    """The command line of ``torchrun --standalone`` running ``python -m lavt ARGS``."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc_per_node", str(processes), "-m", "lavt", *args]


def tiny_model_and_inputs():
    """A seeded tiny LAVT without text dropout (eager and compiled runs draw random numbers
    differently) and its inputs: image (2, 3, 64, 64), ids and mask (2, 20), row 1 padded."""
    import torch

    from lavt.modeling import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config(text_dropout=0.0))
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 3, 64, 64, generator=g)
    ids = torch.randint(1000, 30000, (2, 20), generator=g)
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, 9:] = 0
    return model, (image, ids, mask)
