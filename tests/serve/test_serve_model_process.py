"""The model in a child process (``lavt serve --model-process``): the same outputs as the
forward in the server's thread, a failed forward fails only its batch, a dead child is
restarted, a model that cannot go to a child stays in the server process."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from importlib import resources
from pathlib import Path

import pytest
import torch
from tiny_serve import tiny_adapter, tiny_client

from lavt.commands.serve import wants_model_process
from lavt.serve.model_process import (
    ModelProcess,
    ModelProcessError,
    ensure_descriptors,
    start_model_process,
)

EXAMPLES = Path(str(resources.files("lavt.serve") / "static" / "examples"))


def batch(adapter, size: int = 3):
    torch.manual_seed(1)
    pixels = torch.randn(size, 3, adapter.img_size, adapter.img_size)  # (B, 3, S, S)
    ids, attention = adapter.tokenizer(["red circle", "the big square", "x"][:size])  # (B, N)
    return pixels, ids, attention


@pytest.fixture
def one_thread():
    """The child runs on threads=1: the in-thread forward it equals bit for bit runs so too
    (another thread count sums in another order)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_child_forward_equals_thread_forward_survives_errors_and_deaths(one_thread):
    adapter = tiny_adapter()
    inputs = batch(adapter)
    expected, _ = adapter.forward(*inputs)  # (B, 2, S, S)
    process = ModelProcess(adapter, threads=1)
    process.start()
    try:
        for size in (1, 3, 2):  # the shared buffers grow for 3, and serve 2 as they are
            part = tuple(tensor[:size] for tensor in inputs)
            logits, no_target = process.forward(*part)
            assert no_target is None  # the tiny model has no head
            torch.testing.assert_close(logits, adapter.forward(*part)[0], rtol=0, atol=0)
        first = logits.clone()
        process.forward(*inputs)
        torch.testing.assert_close(logits, first, rtol=0, atol=0)  # not a view of a buffer
        pixels, ids, attention = inputs
        with pytest.raises(ModelProcessError, match="forward failed in the model process"):
            process.forward(pixels, ids + 10_000, attention)  # token ids past the vocabulary
        torch.testing.assert_close(process.forward(*inputs)[0], expected, rtol=0, atol=0)
        os.kill(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        torch.testing.assert_close(process.forward(*inputs)[0], expected, rtol=0, atol=0)
    finally:
        process.stop()
    assert not process.alive


@pytest.mark.slow
def test_app_with_model_process_answers_as_without():
    example = json.loads((EXAMPLES / "examples.json").read_text())[0]
    files = {"image": (example["file"], (EXAMPLES / example["file"]).read_bytes())}
    bodies = []
    for model_process in (False, True):
        with tiny_client(model_process=model_process) as client:
            reply = client.post("/v1/segment", files=files, data={"text": example["texts"][:2]})
            assert reply.status_code == 200, reply.text
            bodies.append(reply.content)
    assert bodies[0] == bodies[1]


def test_a_model_that_cannot_be_sent_stays_in_the_server_process(caplog):
    adapter = tiny_adapter()
    adapter.model.unpicklable = lambda: None  # like a compiled or exported model
    process = ModelProcess(adapter)
    with caplog.at_level(logging.WARNING, logger="lavt"):
        forward = start_model_process(process, adapter)
    assert forward == adapter.forward
    assert not process.alive
    assert "the model runs in the server process" in caplog.text


@pytest.mark.parametrize(
    ("flag", "device", "runtime", "expected"),
    [("auto", "cpu", "torch", True), ("auto", "cuda", "torch", False),
     ("auto", "cpu", "onnx", False), ("off", "cpu", "torch", False),
     ("on", "cuda", "torch", True)],
)  # fmt: skip
def test_model_process_flag(flag, device, runtime, expected):
    model = argparse.Namespace(runtime=runtime)
    args = argparse.Namespace(model_process=flag)
    assert wants_model_process(args, model, torch.device(device)) is expected


def test_descriptor_limit_is_raised_for_the_weights_or_refused(monkeypatch):
    import resource

    model = tiny_adapter().model
    tensors = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    raised = []
    monkeypatch.setattr(resource, "setrlimit", lambda kind, limits: raised.append(limits))
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (64, 100_000))
    ensure_descriptors(model, spare=16)
    assert raised == [(len(tensors) + 16, 100_000)]
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (64, 100))
    with pytest.raises(ModelProcessError, match="file descriptors, the limit is 100"):
        ensure_descriptors(model, spare=16)


class _DiesWhenUnpickled:
    def __reduce__(self):
        return (os._exit, (3,))  # the child exits while it receives the model


@pytest.mark.slow
def test_a_child_that_dies_at_start_leaves_the_model_in_the_server_process(caplog):
    adapter = tiny_adapter()
    adapter.model.bomb = _DiesWhenUnpickled()
    process = ModelProcess(adapter)
    with caplog.at_level(logging.WARNING, logger="lavt"):
        forward = start_model_process(process, adapter)
    assert forward == adapter.forward
    assert "did not start (exit code 3)" in caplog.text
