"""A tiny model behind the serve app, in process: the contract and schema tests' server."""

from __future__ import annotations

import contextlib


def tiny_adapter():
    """A seeded tiny LAVT reading with the synthetic vocabulary (so that most words are
    [UNK]) behind a :class:`ModelAdapter` on the CPU: milliseconds a forward."""
    import torch

    from conftest import tiny_config
    from lavt.modeling import build_model
    from lavt.modeling.config import TextEncoderConfig
    from lavt.serve.adapter import ModelAdapter
    from lavt.tokenizer import synthetic_vocabulary

    vocab = synthetic_vocabulary()
    text = TextEncoderConfig(
        vocab_size=len(vocab), hidden_size=32, num_layers=1, num_heads=2,
        intermediate_size=64, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(tiny_config(text=text), vocab=vocab)
    return ModelAdapter(model, device=torch.device("cpu"), checkpoint="tiny.safetensors")


@contextlib.contextmanager
def tiny_client(**config):
    """A Starlette test client of the app serving :func:`tiny_adapter` under ``config``."""
    from starlette.testclient import TestClient

    from lavt.serve.app import create_app
    from lavt.serve.config import ServeConfig

    app = create_app(tiny_adapter(), ServeConfig(**config))
    with TestClient(app) as client:
        yield client
