"""Elastic restarts under ``torchrun``: a restarted job continues its own run.

``torchrun --max-restarts N`` restarts every worker of the job when one of them
fails (a killed process, a node that drops out and comes back). The restarted
workers run the same command line, so without help they would refuse ``RUN``
(it holds ``last.pt`` and ``--resume`` was not given) or start the run over.
Here a restarted worker continues ``RUN/last.pt`` by itself when that
checkpoint was written by this job:

- every ``last.pt`` written under ``torchrun`` records the job that wrote it,
  the set of ``torchrun`` agents (host, pid and start time of each worker's
  parent process). An agent lives through the restarts it performs, so a
  restarted job shares at least one agent with the attempt that saved, while a
  checkpoint of another job (an earlier run in the same folder, a run started
  by hand) shares none and is treated exactly as before: refused without
  ``--resume``;
- the checkpoint then goes through the checks of ``--resume`` (data order,
  config): a job never continues a run whose result-changing config differs.

A peer that dies fails the others' next collective at once, one that stops
answering after ``dist_timeout`` seconds; either error becomes one line
(:func:`lost_peer_as_error`); whether the job then restarts is ``torchrun``'s
choice (``--max-restarts``; a node that never comes back ends the rendezvous
after ``--rdzv_conf join_timeout=S``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch.distributed as torch_dist

from lavt.errors import LavtError
from lavt.runtime import DistInfo
from lavt.train.config import TrainConfig
from lavt.train.resume import (
    Resume,
    check_config_unchanged,
    check_data_order,
    data_order,
    resume_path,
)

log = logging.getLogger("lavt")


class LostPeerError(LavtError):
    """Another process of the job died or stopped answering (a collective failed)."""

    exit_code = 1


def restart_count() -> int:
    """How many times ``torchrun`` restarted this job's workers (0 outside ``torchrun``)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def agent_id() -> str | None:
    """``host:pid:start`` of this worker's ``torchrun`` agent (its parent); None outside it.

    The start time (clock ticks since boot, Linux ``/proc``) tells a reused pid
    apart; elsewhere it is left out.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    parent = os.getppid()
    try:
        start = Path(f"/proc/{parent}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{socket.gethostname()}:{parent}:{start}"


def job_agents(info: DistInfo) -> list[str]:
    """The agents of every rank, sorted and distinct (a collective: every rank calls it).

    Empty outside ``torchrun``. Rank 0 warns when restarts are allowed while
    the workers share the agents' store (see :data:`SHARED_STORE_HINT`).
    """
    mine = agent_id()
    if mine is None:
        return []
    if info.is_main and restarts_share_the_agent_store():
        log.warning(SHARED_STORE_HINT)
    agents: list[Any] = [mine]
    if info.enabled:
        agents = [None] * info.world_size
        torch_dist.all_gather_object(agents, mine)
    return sorted(set(agents))


#: torch 2.5-2.13 (pytorch/pytorch#135712): with the c10d rendezvous the workers
#: of every restart share one store held by the agents, and a node whose own
#: worker did not fail keeps TORCHELASTIC_RESTART_COUNT 0, so the restarted
#: workers can read the previous attempt's addresses and fail or hang while
#: joining. Opting out gives each attempt a fresh store.
SHARED_STORE_HINT = (
    "torchrun --max-restarts with a shared rendezvous store: a restart can fail or hang "
    "while joining (pytorch/pytorch#135712); export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 "
    "before torchrun on every node"
)


def restarts_share_the_agent_store() -> bool:
    """Whether ``torchrun`` may restart workers that then join through the agents' store."""
    try:
        restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    except ValueError:
        restarts = 0
    return restarts > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"


def open_resume(cfg: TrainConfig, info: DistInfo, agents: list[str]) -> Resume | None:
    """:meth:`Resume.open`, except that a restarted job continues its own ``RUN/last.pt``.

    ``agents``: :func:`job_agents`. A ``last.pt`` that shares an agent with this
    job was written by an earlier attempt of it, whatever ``TORCHELASTIC_RESTART_COUNT``
    says (it counts the restarts of this node's agent only: the other nodes of a
    group restarted because one worker died keep 0). Every rank decides alike.
    """
    last = cfg.run_dir / "last.pt"
    if not agents or not last.is_file():
        return Resume.open(cfg, info)
    from lavt.checkpoint import read_torch_file

    ckpt = read_torch_file(last, allow_namespace=False)
    ours = isinstance(ckpt, dict) and bool(set(ckpt.get("job") or ()) & set(agents))
    if not ours:  # another job's: refused without --resume, reused by --resume auto
        wanted = resume_path(cfg)
        if wanted is None or wanted.resolve() != last.resolve():
            del ckpt  # --resume PATH names another file
            return Resume.open(cfg, info)
    check_data_order(ckpt, last, data_order(cfg, info, num_samples=-1))
    resume = Resume(last, ckpt, *check_config_unchanged(ckpt, cfg, last))
    if ours:
        resume.why = (
            f"torchrun restart (this node's count {restart_count()}): continuing this "
            f"job's {last} (iteration {resume.iteration})"
        )
    return resume


@contextlib.contextmanager
def lost_peer_as_error(info: DistInfo, timeout_s: float) -> Iterator[None]:
    """Turn a failed collective (a peer died, or was silent for ``timeout_s``) into one line.

    Gloo reports a lost peer as a plain ``RuntimeError`` whose message starts
    with its source location; NCCL and the stores raise ``DistError``.
    """
    try:
        yield
    except RuntimeError as err:
        text = str(err).strip()
        if not info.enabled or not (isinstance(err, torch_dist.DistError) or "/gloo/" in text):
            raise
        first = (text.splitlines() or [type(err).__name__])[0]
        first = re.sub(r"^\[[^\]]*\]\s*", "", first)  # drop "[.../pair.cc:537] "
        first = first.split(". ", 1)[0].rstrip(".")[:200]  # the first sentence
        raise LostPeerError(
            f"rank {info.rank}: lost contact with another process of the job ({first}); "
            f"a silent one is given up after dist_timeout {timeout_s:g} s; torchrun restarts "
            "the job if --max-restarts allows, else continue it with --resume auto"
        ) from None
