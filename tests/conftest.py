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


def tiny_video_config(*, vocab_size: int = 30522, **overrides):
    """A few-thousand-parameter lavt_video; window (8, 3, 3) as LAVT-RS's temporal 8.

    ``vocab_size`` 30522 reads bert-base-uncased ids; a smaller one suits a checkpoint's
    own vocabulary (e.g. the bundled model's).
    """
    from lavt.modeling.config import LAVTVideoConfig, TextEncoderConfig

    text = TextEncoderConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        num_layers=1,
        num_heads=1,  # width / 64, as read off a checkpoint
        intermediate_size=32,
        max_position_embeddings=32,
    )
    base = dict(
        embed_dim=8,
        depths=(2, 1, 1, 1),
        num_heads=(1, 1, 2, 2),
        window_size=(8, 3, 3),
        drop_path_rate=0.0,
        pwam_heads=(1, 2, 1, 1),
        text=text,
        img_size=32,
    )
    return LAVTVideoConfig(**{**base, **overrides})


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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a rendezvous the test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: what README's multi-node command exports before ``torchrun`` (pytorch/pytorch#135712)
NODES_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def lavt_torchrun_node(
    *args: str, port: int, run_id: str, restarts: int = 3, join_timeout: int = 600
) -> list[str]:
    """One node's command line of README's multi-node ``torchrun``, 1 process a node.

    Run it once per node (two "nodes" on 127.0.0.1, environment :data:`NODES_ENV`);
    ``test_readme_multinode_command_is_the_tested_one`` checks that README says the same.
    """
    launcher = [sys.executable, "-m", "torch.distributed.run"]
    return [
        *launcher, "--nnodes", "2", "--nproc_per_node", "1",
        "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", run_id,
        "--max-restarts", str(restarts), "--rdzv_conf", f"join_timeout={join_timeout}",
        "-m", "lavt", *args,
    ]  # fmt: skip


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
