"""The model in a process of its own (``lavt serve --model-process``, the default on a CPU).

Why: a small model on a CPU spends much of its forward in Python (module calls,
op dispatch), and so does the HTTP side (the event loop, parsing, decoding,
encoding). In one process both need the one GIL: each op of the model thread
waits for the event loop to hand it back, and a forward took twice its own time
under load. In a child process the forward has a GIL of its own; the server
process keeps the HTTP work, the decoding and the encoding.

The child gets the adapter's model at start (``torch.multiprocessing``, spawn:
CPU weights are moved to shared memory once, not copied). A batch's inputs and
outputs go through shared-memory tensors sized for the largest batch so far (sent
to the child once, again only when a batch does not fit them); per batch the pipe
carries two short messages, so a batch costs no pipe round trips per 64 kB and no
pickling of arrays (outputs of an unexpected shape come back through the pipe). The
child runs :func:`lavt.serve.adapter.run_forward`, the function
:meth:`ModelAdapter.forward` runs in a thread, so the outputs are the same.
(TorchServe's backend workers and Triton's Python-backend stubs are processes
beside the frontend for the same reason.)
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

import torch

from lavt.serve.adapter import ModelAdapter, run_forward

log = logging.getLogger("lavt")
#: a batch's forward: (pixels, input_ids, attention_mask) -> (mask logits, no-target logits)
Forward = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]
]

#: seconds the child may take to start (import torch, receive the model)
START_TIMEOUT_S = 300.0


class ModelProcessError(RuntimeError):
    """The child failed a forward, or died (it is restarted on the next batch)."""


class ModelProcess:
    """A child process running the adapter's forwards; :meth:`forward` has
    :meth:`ModelAdapter.forward`'s signature and outputs. One caller at a time
    (the batcher's worker thread); :meth:`start` and :meth:`stop` from the app's lifespan."""

    def __init__(self, adapter: ModelAdapter, *, threads: int | None = None) -> None:
        self.adapter = adapter
        self.threads = threads or torch.get_num_threads()
        self._process = None
        self._conn: Connection | None = None
        self._buffers: tuple[torch.Tensor, ...] | None = None  # shared with the child
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        """Spawn the child and wait until it holds the model; raises :class:`ModelProcessError`."""
        import torch.multiprocessing as torch_mp

        ensure_descriptors(self.adapter.model)
        context = torch_mp.get_context("spawn")
        parent, child = context.Pipe()
        adapter = self.adapter
        payload = (adapter.model, str(adapter.device), adapter.amp, self.threads)
        process = context.Process(
            target=_child_main, args=(child, payload), name="lavt-model", daemon=True
        )
        process.start()
        child.close()
        try:
            ready = parent.poll(START_TIMEOUT_S) and parent.recv() == "ready"
        except (EOFError, OSError):  # it died while unpickling the model or importing
            ready = False
        if not ready:
            process.kill()
            process.join(timeout=10)
            parent.close()
            code = process.exitcode
            raise ModelProcessError(f"the model process did not start (exit code {code})")
        self._process, self._conn, self._buffers = process, parent, None
        log.info("model process %d started (%d thread(s))", process.pid, self.threads)

    def stop(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is None:
            return
        try:
            conn.send(None)
        except OSError:
            pass
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join(timeout=10)
        conn.close()

    def forward(
        self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """pixels (B, 3, S, S), input_ids/attention_mask (B, N) -> mask logits (B, 2, S, S)
        float32 and no-target logits (B, 2) float32 or None, computed in the child."""
        count = pixels.shape[0]
        with self._lock:
            if not self.alive:  # died on an earlier batch (killed, out of memory)
                self.stop()
                log.warning("restarting the model process")
                self.start()
            try:
                buffers = self._buffers_for(pixels, input_ids)
                inputs = (pixels, input_ids, attention_mask)
                for buffer, tensor in zip(buffers[:3], inputs, strict=True):
                    buffer[:count].copy_(tensor)
                self._conn.send(("run", count))
                reply = self._conn.recv()
            except (OSError, EOFError) as err:
                self._process.join(timeout=5)
                code = self._process.exitcode
                raise ModelProcessError(
                    f"the model process died (exit code {code}): {type(err).__name__}"
                ) from None
            if reply[0] == "error":
                raise ModelProcessError(f"forward failed in the model process: {reply[1]}")
            # copied out: the next batch reuses the buffers
            no_target = buffers[4][:count].clone() if reply[1] else None
            return buffers[3][:count].clone(), no_target

    def _buffers_for(self, pixels: torch.Tensor, input_ids: torch.Tensor) -> tuple:
        """The shared tensors a batch like this one fits in, sent to the child when new:
        pixels (R, 3, S, S), input_ids and attention_mask (R, N), mask logits (R, 2, S, S),
        no-target logits (R, 2), for R rows (the most pairs a batch had so far)."""
        count, length = input_ids.shape
        old = self._buffers
        if old is not None and (
            count <= old[0].shape[0]
            and old[0].shape[1:] == pixels.shape[1:]
            and old[1].shape[1] == length
        ):
            return old
        rows = max(count, 0 if old is None else old[0].shape[0])
        height, width = pixels.shape[-2:]
        self._buffers = tuple(
            torch.zeros(shape, dtype=dtype).share_memory_()
            for shape, dtype in (
                ((rows, *pixels.shape[1:]), pixels.dtype),
                ((rows, length), input_ids.dtype),
                ((rows, length), input_ids.dtype),
                ((rows, 2, height, width), torch.float32),
                ((rows, 2), torch.float32),
            )
        )
        self._conn.send(("buffers", self._buffers))
        return self._buffers


def ensure_descriptors(model: torch.nn.Module, spare: int = 1024) -> None:
    """Each CPU tensor storage sent to the child stays open as one shared-memory file
    descriptor: raise the soft limit (up to the hard one) so that a large model's
    hundreds of tensors leave ``spare`` descriptors for connections."""
    try:
        import resource
    except ImportError:  # Windows: no descriptor limit of this kind
        return
    tensors = [*model.parameters(), *model.buffers()]
    storages = len({t.untyped_storage().data_ptr() for t in tensors if t.device.type == "cpu"})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = storages + spare
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise ModelProcessError(
                f"{storages} weight tensors need {needed} file descriptors, the limit is {hard}"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def start_model_process(process: ModelProcess, adapter: ModelAdapter) -> Forward:
    """Start ``process`` -> its ``forward``; ``adapter.forward`` (in the batcher's thread,
    logged) when the model cannot go to a child (a compiled or exported model, a failed
    start): the server then works as it would without the child."""
    try:
        process.start()
    except Exception as err:  # pickling a wrapped model, a child that died at start
        log.warning(
            "the model runs in the server process (a model process could not start: %s: %s)",
            type(err).__name__,
            str(err)[:200],
        )
        return adapter.forward
    return process.forward


def _child_main(conn: Connection, payload: tuple) -> None:
    """The child: hold the model, answer each batch until ``None`` or the parent's end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which stops us
    model, device, amp, threads = payload
    torch.set_num_threads(threads)
    device = torch.device(device)
    conn.send("ready")
    buffers = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the server is gone
            return
        if message is None:
            return
        if message[0] == "buffers":
            buffers = message[1]
            continue
        count = message[1]
        pixels, ids, attention, out_logits, out_no_target = (b[:count] for b in buffers)
        try:
            logits, no_target = run_forward(model, device, amp, pixels, ids, attention)
            if logits.shape != out_logits.shape:  # (B, 2, S, S) at the input's size
                raise ValueError(f"mask logits {tuple(logits.shape)}, expected "
                                 f"{tuple(out_logits.shape)}")  # fmt: skip
            out_logits.copy_(logits)
            if no_target is not None:
                out_no_target.copy_(no_target)  # (B, 2)
            reply = ("ok", no_target is not None)
        except Exception as err:  # the parent fails this batch's requests, we stay
            reply = ("error", f"{type(err).__name__}: {str(err)[:500]}")
        conn.send(reply)
