"""The device and the process group of a run, shared by pretraining and inference.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process joins one group, NCCL on GPUs and
gloo on CPUs, and ``cuda`` means the GPU of the process's ``LOCAL_RANK``.

Ranks are global: ``RANK`` 0 is the one process, over all nodes, that writes checkpoints,
the ``embeddings`` layer and study.toml; ``LOCAL_RANK`` (0 on every node) only picks a GPU.
Across nodes the study folder must be one shared filesystem (NFS, Lustre, GPFS...) mounted
at the same path everywhere: every rank reads the images and checkpoints there, and rank 0
merges the vector parts the other nodes write there. :func:`init_distributed` checks that
when given the folder, so a node-local copy fails at the start instead of leaving a
checkpoint or a layer on one node only.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from pathlib import Path

import torch
import torch.distributed as dist

from .._errors import InputError, StudyError

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


def init_distributed(
    device: torch.device, shared: str | os.PathLike[str] | None = None
) -> tuple[int, int, bool]:
    """Join the torchrun process group: ``(rank, world, owned)``.

    Without torchrun ``(0, 1, False)``. ``owned`` says this call started the group (a
    caller that owns it may destroy it when done); a group already started is joined as is.
    ``shared`` is a folder every rank must see as one (the study): checked with
    :func:`check_shared_folder` once the group is joined.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, False
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if shared is not None:
        try:
            check_shared_folder(shared, device)
        except StudyError:
            if owned:
                dist.destroy_process_group()
            raise
    return rank, world, owned


def check_shared_folder(folder: str | os.PathLike[str], device: torch.device) -> None:
    """Fail on every rank unless every rank sees the file rank 0 writes in ``folder``.

    Rank 0 writes a file with a random name, every rank looks for it, and the ranks that
    do not see it are summed over the group (two collectives; rank 0 then removes the
    file). A study copied to each node's local disk fails here, in one line, on all ranks.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    folder = Path(folder)
    token = torch.zeros(1, dtype=torch.int64, device=device)
    if rank == 0:
        value = secrets.randbits(62) + 1  # 0 says rank 0 could not write
        try:
            (folder / f".urbanvis-shared-{value:x}").write_text(socket.gethostname())
            token[0] = value
        except OSError:
            pass
    dist.broadcast(token, src=0)  # sent once the file is written
    value = int(token.item())
    if value == 0:
        raise StudyError(f"could not write in {folder}; check that the folder is writable")
    probe = folder / f".urbanvis-shared-{value:x}"
    blind = torch.zeros(world, dtype=torch.int64, device=device)
    blind[rank] = 0 if probe.is_file() else 1
    dist.all_reduce(blind)
    if rank == 0:
        probe.unlink(missing_ok=True)
    missing = [str(r) for r in blind.nonzero().flatten().tolist()]
    if missing:
        raise StudyError(
            f"rank(s) {', '.join(missing)} of {world} do not see the files rank 0 writes in "
            f"{folder}; put the `study` folder on a filesystem every node mounts at the same "
            f"path (NFS, Lustre...), not a copy per node"
        )
