"""Cross-cutting runtime helpers, each defined once.

- dtype names (``fp32``/``bf16``/``fp16`` and their long spellings) and autocast contexts;
- device choice (``auto``/``cpu``/``cuda[:N]``);
- the process group under ``torchrun`` (gloo on the CPU, NCCL on GPUs) and sum reductions;
- unwrapping DDP / ``torch.compile`` wrappers;
- atomic file writes that respect the umask (a temporary file in the same
  folder, fsynced, then ``os.replace``: a reader never sees half a file).

Like torchvision's ``references/segmentation/utils.py``, this module is what
every other part of the package uses for these jobs; none of them keeps a copy.
Errors name the *parameter* (``device``, ``dtype``); the CLI maps parameters to
its flags.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
import torch.distributed as torch_dist
from torch import nn

from lavt.errors import InputError, LavtError

# ----------------------------------------------------------------------------- dtypes

#: every accepted spelling -> dtype; ``none`` means "no autocast" (float32).
DTYPES: dict[str, torch.dtype | None] = {
    "none": None,
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
#: the short names, as shown in help texts and JSON records.
SHORT_NAMES: dict[torch.dtype, str] = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
}


def parse_dtype(
    name: str | torch.dtype | None, *, param: str = "dtype", allowed: tuple[str, ...] | None = None
) -> torch.dtype | None:
    """``"bf16"`` -> ``torch.bfloat16``; ``None``/``"none"`` -> None.

    ``allowed`` restricts the accepted names (for example no ``none`` for a storage dtype).
    Raises :class:`InputError` naming ``param`` for anything else.
    """
    if name is None or isinstance(name, torch.dtype):
        return name
    key = str(name).lower()
    names = allowed if allowed is not None else tuple(DTYPES)
    if key not in names or key not in DTYPES:
        raise InputError(f"{param} {name!r}: expected one of {', '.join(names)}", param=param)
    return DTYPES[key]


def dtype_name(dtype: torch.dtype | None) -> str:
    """``torch.bfloat16`` -> ``"bf16"``; None -> ``"none"``."""
    return "none" if dtype is None else SHORT_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def autocast(device: torch.device | str, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``; a no-op context for None or float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=dtype)


# ----------------------------------------------------------------------------- devices


def select_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: the local GPU when CUDA is available, else the CPU.

    ``cuda`` without an index means ``cuda:<local_rank>`` (one GPU per torchrun
    process). Raises :class:`InputError` naming ``device`` for an unknown name or
    a CUDA device this torch cannot reach.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(
            f"device {name!r}: not a device name (expected auto, cpu, cuda or cuda:N)",
            param="device",
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {name!r}: no CUDA device is available to this torch", param="device"
            )
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise InputError(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present",
                param="device",
            )
        torch.cuda.set_device(device)
    elif device.type not in ("cpu", "mps", "xpu"):
        raise InputError(
            f"device {name!r}: unsupported device type {device.type!r}", param="device"
        )
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (timing); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- processes


@dataclass
class DistInfo:
    """This process's place in the ``torchrun`` job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(
    device: str | torch.device = "auto", *, timeout_s: float | None = None
) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on GPU).

    ``timeout_s``: how long joining and each collective wait for a process that
    does not answer before raising (None: torch's default, 30 min for gloo).
    Returns this process's :class:`DistInfo` and its device (``cuda:LOCAL_RANK``
    for ``auto``/``cuda`` on a GPU machine).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = select_device(device, local_rank)
    info = DistInfo(rank=rank, world_size=world)
    if world > 1 and not torch_dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": dev} if dev.type == "cuda" else {}
        if timeout_s is not None:
            kwargs["timeout"] = datetime.timedelta(seconds=timeout_s)
        torch_dist.init_process_group(backend=backend, **kwargs)
        info.initialized_here = True
    return info, dev


def cleanup_distributed(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` joined it.

    Called from a ``finally`` clause: on the way out of a finished run every rank
    first waits for the others (a rank tearing gloo down while a peer still used its
    connections sometimes aborted that peer at exit: "terminate called without an
    active exception", about 1 run in 8 of the two-process evaluation test); with an
    exception on its way the group goes at once, so the peers fail instead of waiting.
    """
    if info.initialized_here and torch_dist.is_initialized():
        if sys.exc_info()[0] is None:
            torch_dist.barrier()
        torch_dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place (no-op when not distributed)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()


# ----------------------------------------------------------------------------- models


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside DDP and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        else:
            return model


# ----------------------------------------------------------------------------- files


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_readable_file(
    path: Path, what: str, *, a_what: str, error: type[LavtError] = InputError
) -> None:
    """Refuse a missing, directory, unreadable or empty ``path`` with one line naming it.

    ``what`` names the file's kind in the messages ("checkpoint", "image"), ``a_what``
    the kind a directory is not ("a checkpoint file").
    """
    if not path.exists():
        raise error(f"{path}: {what} not found")
    if path.is_dir():
        raise error(f"{path}: is a directory, not {a_what}")
    if not os.access(path, os.R_OK):
        raise error(f"{path}: {what} is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise error(f"{path}: {what} file is empty")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give (0666
    less the umask), is fsynced, and replaces ``path`` in one ``os.replace``. On
    any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_current_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO[Any]], Any], *, text: bool = False
) -> None:
    """Open a temporary file beside ``path``, call ``write(file)``, then replace ``path``."""
    with atomic_path(path) as tmp, open(tmp, "w" if text else "wb") as f:
        write(f)


def atomic_write_text(path: str | os.PathLike, content: str) -> None:
    """Write ``content`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(content, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, content: bytes) -> None:
    """Write ``content`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically."""
    atomic_write(path, lambda f: torch.save(obj, f))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it is renamed to ``path``.

    On any error the temporary folder is removed and ``path`` is left as it was.
    An existing ``path`` is replaced only with ``replace`` (the caller checks first;
    the old folder is removed after the new one is in place).
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_current_umask())
        old = None
        if replace and path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        try:
            os.rename(tmp, path)
        except OSError:
            if old is not None:  # put the old folder back
                os.replace(old / path.name, path)
                old.rmdir()
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
