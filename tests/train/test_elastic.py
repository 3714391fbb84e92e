"""Several nodes and restarts: two torchrun agents on 127.0.0.1 as two "nodes" (gloo).

README's multi-node command (read from README.md) is the one run here, with
one process a node, the endpoint on a free local port and the tiny config.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_train_robustness import _children
from test_trainer import _env, _losses, _tiny_yaml, synth_root  # noqa: F401

from conftest import NODES_ENV, free_port, lavt_torchrun, lavt_torchrun_node
from lavt.checkpoint import read_torch_file
from lavt.errors import CheckpointError, InputError
from lavt.runtime import DistInfo
from lavt.train import TrainConfig
from lavt.train.elastic import LostPeerError, lost_peer_as_error, open_resume

README = Path(__file__).parents[2] / "README.md"
STEPS = 18  # iterations an epoch: about 72 objects / (2 processes x batch 2)


def readme_multinode_command(path: Path = README) -> tuple[dict[str, str], list[str]]:
    """README's ``... torchrun --nnodes 2 ...`` command: (exported variables, arguments)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "torchrun --nnodes" in line)
    text = ""
    for line in lines[start:]:
        text += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            break
    words = shlex.split(text)
    env = {}
    while re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words.pop(0) == "torchrun"
    return env, words


def test_readme_multinode_command_is_the_tested_one(tmp_path):
    env, words = readme_multinode_command()
    assert readme_multinode_command(README.parent / "docs" / "training.md") == (env, words)
    # what the tests change: one process a node, the endpoint, the run's name, the config
    mine = {"--nproc_per_node": "1", "--rdzv_endpoint": "127.0.0.1:4242", "--rdzv_id": "t"}
    mine["--config"] = str(tmp_path / "tiny.yaml")
    for i, word in enumerate(words[:-1]):
        words[i + 1] = mine.get(word, words[i + 1])
    launcher = [sys.executable, "-m", "torch.distributed.run"]
    tested = lavt_torchrun_node("train", "--config", mine["--config"], port=4242, run_id="t")
    assert env == NODES_ENV
    assert launcher + words == tested


def _node_env() -> dict[str, str]:
    return {**_env(), **NODES_ENV}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _start_nodes(config: Path, logs: Path, run_id: str, **node) -> list[subprocess.Popen]:
    """Two agents, one worker each, stderr in ``logs/node{0,1}.err``.

    Node 0 starts first and holds the rendezvous store (as HOST does in README).
    """
    port = free_port()
    cmd = lavt_torchrun_node("train", "--config", str(config), port=port, run_id=run_id, **node)
    agents = []
    for n in (0, 1):
        err = (logs / f"node{n}.err").open("w")
        agents.append(subprocess.Popen(cmd, env=_node_env(), stdout=subprocess.DEVNULL, stderr=err))
        deadline = time.monotonic() + 60
        while n == 0 and not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)
    return agents


def _wait_all(agents: list[subprocess.Popen], timeout: float) -> list[int | None]:
    """The agents' exit codes; one still running after ``timeout`` is killed (None)."""
    deadline = time.monotonic() + timeout
    codes: list[int | None] = []
    for agent in agents:
        try:
            codes.append(agent.wait(max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            for pid in _children(agent.pid):
                os.kill(pid, signal.SIGKILL)
            agent.kill()
            agent.wait()
            codes.append(None)
    return codes


def _wait_for_iteration(run_dir: Path, iteration: int, agents: list) -> None:
    """Poll ``metrics.jsonl`` until a train record reaches ``iteration``."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and all(a.poll() is None for a in agents):
        if (run_dir / "metrics.jsonl").exists() and max(_losses(run_dir) or {0: 0}) >= iteration:
            return
        time.sleep(0.005)
    raise AssertionError(f"training did not reach iteration {iteration}")


def _config(root: Path, synth_root: Path) -> Path:  # noqa: F811
    """2 epochs of 18 steps, last.pt every 4 steps; the run directory is root/runs/tiny."""
    return _tiny_yaml(root, synth_root, batch_size=2, checkpoint_every=4)


@pytest.fixture(scope="module")
def single_node(tmp_path_factory, synth_root) -> Path:  # noqa: F811
    """The run directory of the tiny config's single-node 2-process run."""
    root = tmp_path_factory.mktemp("single")
    cmd = lavt_torchrun("train", "--config", str(_config(root, synth_root)))
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "runs" / "tiny"


def _same_run(run_dir: Path, reference: Path) -> None:
    """Same loss at every iteration; bit-identical final weights and optimizer state."""
    assert _losses(run_dir) == _losses(reference)
    assert max(_losses(reference)) == 2 * STEPS
    got, want = read_torch_file(run_dir / "last.pt"), read_torch_file(reference / "last.pt")
    assert got["model"].keys() == want["model"].keys()
    for key, value in want["model"].items():
        assert torch.equal(got["model"][key], value), key
    for key, state in want["optimizer"]["state"].items():
        assert torch.equal(got["optimizer"]["state"][key]["exp_avg_sq"], state["exp_avg_sq"])


@pytest.mark.slow
def test_two_nodes_give_the_single_node_run(single_node, tmp_path, synth_root):  # noqa: F811
    agents = _start_nodes(_config(tmp_path, synth_root), tmp_path, "two", join_timeout=120)
    assert _wait_all(agents, 300) == [0, 0], (tmp_path / "node0.err").read_text()[-3000:]
    _same_run(tmp_path / "runs" / "tiny", single_node)


@pytest.mark.slow
def test_a_killed_worker_restarts_the_job_which_resumes_by_itself(
    single_node,
    tmp_path,
    synth_root,  # noqa: F811
):
    run_dir = tmp_path / "runs" / "tiny"
    config = _config(tmp_path, synth_root)
    agents = _start_nodes(config, tmp_path, "kill", restarts=1, join_timeout=120)
    try:
        _wait_for_iteration(run_dir, 10, agents)  # past the checkpoint at 8, mid-epoch
        workers = _children(agents[1].pid)
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        saved = read_torch_file(run_dir / "last.pt")
    finally:
        codes = _wait_all(agents, 300)
    assert codes == [0, 0], (tmp_path / "node0.err").read_text()[-3000:]
    assert 0 < saved["batch_in_epoch"] < STEPS  # the restart resumes mid-epoch
    log = (run_dir / "train.log").read_text()
    assert f"continuing this job's {run_dir / 'last.pt'}" in log
    assert f"epoch {saved['epoch']}, batch {saved['batch_in_epoch']} of it" in log
    _same_run(run_dir, single_node)


@pytest.mark.slow
def test_a_node_that_never_comes_back_ends_the_job(tmp_path, synth_root):  # noqa: F811
    """Node 1 (agent and worker) dies: node 0's worker stops with one line, its agent
    restarts it once, and the rendezvous gives up after ``join_timeout`` (which also
    bounds the first rendezvous: both nodes must have started by then)."""
    config = _config(tmp_path, synth_root)
    agents = _start_nodes(config, tmp_path, "lost", restarts=1, join_timeout=20)
    try:
        _wait_for_iteration(tmp_path / "runs" / "tiny", 2, agents)
        for pid in [*_children(agents[1].pid), agents[1].pid]:  # the whole node
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        code = agents[0].wait(120)
        elapsed = time.monotonic() - killed
    finally:
        _wait_all(agents, 0)
    err = (tmp_path / "node0.err").read_text()
    assert code != 0 and elapsed < 90, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("lavt train: error:")]
    assert len(lines) == 1 and "lost contact with another process of the job" in lines[0], err
    assert "Connection" in lines[0] and "--resume auto" in lines[0]
    assert "RendezvousTimeoutError" in err


def test_a_lost_peer_is_one_line():
    gloo = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
        "[127.0.0.1]:50590: Connection reset by peer. This is typically caused by a "
        "remote worker crashing.\nmore"
    )
    two = DistInfo(rank=1, world_size=2)
    with pytest.raises(LostPeerError) as caught, lost_peer_as_error(two, 30):
        raise gloo
    message = str(caught.value)
    assert message.startswith("rank 1: lost contact with another process of the job (Read error")
    assert "Connection reset by peer)" in message and "typically" not in message
    assert "\n" not in message and "dist_timeout 30 s" in message
    assert caught.value.exit_code == 1
    with pytest.raises(RuntimeError, match="shape"), lost_peer_as_error(two, 30):
        raise RuntimeError("shape mismatch")  # not a collective's error: unchanged
    with pytest.raises(RuntimeError, match="gloo"), lost_peer_as_error(DistInfo(), 30):
        raise gloo  # one process: nothing to lose


def test_a_restart_continues_only_its_own_jobs_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    cfg = TrainConfig(output_dir=str(tmp_path), model_id="run", lr=1e-3)
    order = {"seed": 0, "world_size": 1, "batch_size": 8, "grad_accum": 1, "num_samples": 9}
    last = tmp_path / "run" / "last.pt"
    last.parent.mkdir()
    saved = {"optimizer": {}, "data_order": order, "job": ["node0:7:123"], "iteration": 5}
    torch.save({**saved, "train_config": cfg.to_dict()}, last)
    one = DistInfo()

    resume = open_resume(cfg, one, ["node0:7:123", "node1:9:456"])  # a restart of that job
    assert resume is not None and resume.path == last and resume.iteration == 5
    assert "restart" in resume.why and "continuing this job's" in resume.why
    with pytest.raises(InputError, match="already holds a run"):
        open_resume(cfg, one, ["node0:8:124"])  # another job, started without --resume
    auto = open_resume(replace(cfg, resume="auto"), one, ["node0:8:124"])
    assert auto is not None and auto.path == last and not auto.why
    with pytest.raises(InputError, match=r"the config differs.*lr"):
        open_resume(replace(cfg, lr=2e-3), one, ["node0:7:123"])  # same job, other config
    with pytest.raises(CheckpointError, match="batch_size 8"):
        open_resume(replace(cfg, batch_size=4), one, ["node0:7:123"])
