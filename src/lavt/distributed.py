"""Process-group helpers shared by training and evaluation (torchrun)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from lavt.errors import InputError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: the local GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r}: not a device name") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_name, local_rank)
    info = DistInfo(rank=rank, world_size=world, local_rank=local_rank)
    if world > 1 and not torch_dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        torch_dist.init_process_group(backend=backend, **kwargs)
        info.initialized_here = True
    return info, device


def cleanup(info: DistInfo) -> None:
    if info.initialized_here and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
