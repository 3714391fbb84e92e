"""Dynamic batching: requests that arrive together run as one forward.

A single worker thread owns the model. Requests are queued as whole jobs;
the worker takes image-expression *pairs* from the front of the queue until
it has ``max_batch`` of them or the oldest waiting request has waited
``max_wait_s``, runs one forward, and hands every request its rows of the
logits once all its pairs are done (a request with more pairs than fit in
one batch spans several). The model is called off the event loop, and a
request's logits do not depend on what it was batched with, so results are
the same as one at a time (the idea is Triton's and TorchServe's "dynamic
batching": a delay bound and a size bound).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lavt.serve.adapter import ModelAdapter, PreparedImage

log = logging.getLogger("lavt")


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already."""


@dataclass(eq=False)
class Job:
    """One request waiting for the model."""

    prepared: PreparedImage
    deadline: float  # time.monotonic() after which nobody waits for the answer
    enqueued: float = field(default_factory=time.monotonic)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    taken: int = 0  # pairs handed to a batch so far
    parts: list[torch.Tensor] = field(default_factory=list)  # [(k, 2, S, S)] logits received

    def expired(self, now: float) -> bool:
        return self.future.done() or now > self.deadline


class DynamicBatcher:
    """Collects pairs from queued requests into forwards of up to ``max_batch``."""

    def __init__(
        self,
        adapter: ModelAdapter,
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        on_batch: Callable[[int], None] = lambda size: None,
        on_queue: Callable[[int], None] = lambda length: None,
        forward: Callable | None = None,
    ) -> None:
        self.adapter = adapter
        #: what runs a batch: ``adapter.forward`` in this thread, or a
        #: :class:`lavt.serve.model_process.ModelProcess`'s (same signature)
        self.forward = forward or adapter.forward
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._on_queue = on_queue
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------- client side
    def start(self) -> None:
        """Start the worker (again after :meth:`stop`: an app's lifespan may run twice)."""
        with self._cond:
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name="lavt-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def submit(self, prepared: PreparedImage, deadline: float) -> Job:
        """Queue one request; raises :class:`QueueFull` when ``max_queue`` wait already."""
        job = Job(prepared, deadline)
        with self._cond:
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are waiting for the model")
            self._queue.append(job)
            self._on_queue(len(self._queue))
            self._cond.notify_all()
        return job

    def cancel(self, job: Job) -> None:
        """Forget a job whose client stopped waiting (deadline, disconnect)."""
        job.future.cancel()
        with self._cond:
            if job in self._queue:
                self._queue.remove(job)
                self._on_queue(len(self._queue))
            self._cond.notify_all()

    # --------------------------------------------------------------- worker side
    def _pending_pairs(self) -> int:
        return sum(job.prepared.num_pairs - job.taken for job in self._queue)

    def _collect(self) -> list[tuple[Job, int, int]] | None:
        """Wait for work, then take up to ``max_batch`` pairs: [(job, start, stop)]."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                self._drop_expired()
                if not self._queue:
                    self._cond.wait()
                    continue
                wait = self._queue[0].enqueued + self.max_wait_s - time.monotonic()
                if self._pending_pairs() >= self.max_batch or wait <= 0:
                    break
                self._cond.wait(timeout=wait)
            rows: list[tuple[Job, int, int]] = []
            room = self.max_batch
            while self._queue and room > 0:
                job = self._queue[0]
                count = min(room, job.prepared.num_pairs - job.taken)
                rows.append((job, job.taken, job.taken + count))
                job.taken += count
                room -= count
                if job.taken == job.prepared.num_pairs:
                    self._queue.popleft()
            self._on_queue(len(self._queue))
            return rows

    def _drop_expired(self) -> None:
        now = time.monotonic()
        kept = [job for job in self._queue if not (job.taken == 0 and job.expired(now))]
        if len(kept) != len(self._queue):
            self._queue = collections.deque(kept)
            self._on_queue(len(self._queue))

    def _run(self) -> None:
        while (rows := self._collect()) is not None:
            try:
                self._forward(rows)
            except Exception as err:  # a failed forward fails its requests, not the server
                log.exception("forward of %d pairs failed", sum(b - a for _, a, b in rows))
                for job, _, _ in rows:
                    _settle(job.future, error=err)
                    self.cancel(job)

    def _forward(self, rows: list[tuple[Job, int, int]]) -> None:
        pixels = torch.stack(
            [job.prepared.pixels for job, a, b in rows for _ in range(b - a)]
        )  # (B, 3, S, S)
        ids = torch.cat([job.prepared.input_ids[a:b] for job, a, b in rows])  # (B, N)
        attention = torch.cat([job.prepared.attention_mask[a:b] for job, a, b in rows])  # (B, N)
        self._on_batch(pixels.shape[0])
        logits, no_target = self.forward(pixels, ids, attention)  # (B, 2, S, S), (B, 2)
        offset = 0
        for job, a, b in rows:
            part = slice(offset, offset + b - a)
            job.parts.append((logits[part], None if no_target is None else no_target[part]))
            offset += b - a
            if b == job.prepared.num_pairs:
                _settle(job.future, result=_joined(job.parts))


def _joined(parts: list[tuple[torch.Tensor, torch.Tensor | None]]):
    """A request's pieces -> (mask logits (E, 2, S, S), no-target logits (E, 2) or None)."""
    logits = torch.cat([p[0] for p in parts])
    no_target = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
    return logits, no_target


def _settle(
    future: concurrent.futures.Future,
    *,
    result: torch.Tensor | None = None,
    error: BaseException | None = None,
) -> None:
    """Set a future's outcome unless its client has gone (cancelled)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass
