"""The device and the process group of a run, shared by pretraining and inference.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process joins one group, NCCL on GPUs and
gloo on CPUs, and ``cuda`` means the GPU of the process's ``LOCAL_RANK``.
"""

from __future__ import annotations

import os
import re

import torch
import torch.distributed as dist

from .._errors import InputError

_CUDA = re.compile(r"cuda(?::(\d+))?")


def local_rank() -> int:
    """This process's ``LOCAL_RANK`` under torchrun, else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, made current on CUDA.

    ``auto`` is a GPU when one is visible, else the CPU; ``cuda`` is GPU ``local_rank``
    (under torchrun the process's own GPU); an explicit ``cuda:N`` is GPU ``N``.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(name)
    if match is None:
        raise InputError(f"`device` must be auto, cpu, cuda or cuda:N, got {name!r}")
    if not torch.cuda.is_available():
        raise InputError(
            f"`device` {name} asked for, but no CUDA GPU is visible; use `device` cpu",
            param="device",
        )
    index = int(match.group(1)) if match.group(1) is not None else local_rank
    if index >= torch.cuda.device_count():
        raise InputError(
            f"`device` {name} asked for (GPU {index}), but {torch.cuda.device_count()} CUDA "
            f"GPU(s) are visible; pick another `device`",
            param="device",
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """Join the torchrun process group: ``(rank, world, owned)``.

    Without torchrun ``(0, 1, False)``. ``owned`` says this call started the group (a
    caller that owns it may destroy it when done); a group already started is joined as is.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), True
