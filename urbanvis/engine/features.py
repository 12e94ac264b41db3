"""[CLS] (or patch-token) features of arbitrary image files, for the evaluations.

The embed stage (:mod:`.inference`) embeds a study's captures into its vector store; the
evaluations need the same descriptor for images that belong to no study (a VPR database
and its queries, Place Pulse images), kept in memory. Both use one model builder
(:func:`.inference.build_model`) and one eval transform, so a checkpoint's descriptor of an
image is the same number wherever it is computed.

Two descriptors (``descriptor``):

- ``cls``, the paper's: the [CLS] token after the final LayerNorm, ``width`` values.
- ``tokens``: the patch tokens after the final LayerNorm, each minus the image's mean patch
  token, flattened in grid order (``patches x width`` values). It keeps *where* things are
  in the picture, which a pooled [CLS] of a small or briefly trained ViT loses; subtracting
  the mean token removes what every patch shares (the light of the day, mostly). Measured
  on the synthetic city (README, "The paper's experiment"): a random-init ViT's tokens
  already match the colour thumbnail at place recognition while its [CLS] is at chance.
  It grows with the image (196 x 768 = 150,528 values for ViT-B/16 at 224 px), so it is
  meant for small models and images, or small sets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .._errors import InputError, InputFileError, Stopped
from ..evaluate.encoders import check_descriptor
from .distributed import pick_device
from .inference import _collate, _FileImages, _forward, build_model


def token_descriptor(net, images):
    """Patch tokens after the final LayerNorm, minus their mean per image, flattened."""
    tokens = net.forward_features(images)[:, int(getattr(net, "num_prefix_tokens", 1)) :]
    return (tokens - tokens.mean(dim=1, keepdim=True)).flatten(1)


def image_features(
    paths: Sequence[str | os.PathLike[str]],
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    model: str | None = None,
    random_init: bool = False,
    seed: int = 0,
    image_size: int | None = None,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "auto",
    precision: str = "auto",
    descriptor: str = "cls",
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The [CLS] vector (after the final LayerNorm, not normalised) of every image file,
    or with ``descriptor="tokens"`` its centred patch tokens (module docstring).

    Give ``checkpoint`` (urbanvis/MoCo v3 or timm/DeiT) or ``model`` with ``random_init``.
    Images are resized (bicubic) and centre-cropped to ``image_size`` (default: the
    model's), normalised with the model's mean and std.

    Returns
    -------
    (numpy.ndarray, dict)
        float32 ``(len(paths), dim)`` in the order of ``paths``, and the model's metadata
        (``model`` id, ``arch``, ``image_size``, ``dim`` of the descriptor, ``descriptor``).

    Raises
    ------
    InputFileError
        An image is missing or cannot be decoded (the first one is named).
    urbanvis._errors.Stopped
        ``should_stop()`` became true (a partial feature matrix would be meaningless).
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise InputError(f"`precision` must be auto, fp32 or bf16, not {precision!r}")
    if batch_size < 1:
        raise InputError(f"`batch_size` must be at least 1, got {batch_size}")
    check_descriptor(descriptor)
    net, meta = build_model(
        model=model,
        checkpoint=checkpoint,
        random_init=random_init,
        seed=seed,
        image_size=image_size,
    )
    dev = pick_device(device)
    net = net.to(dev).eval()
    amp = (
        torch.bfloat16
        if precision == "bf16" or (precision == "auto" and dev.type == "cuda")
        else None
    )
    forward = _forward
    if descriptor == "tokens":
        grid = net.patch_embed.grid_size
        meta = {**meta, "dim": int(grid[0] * grid[1] * int(meta["dim"]))}
        forward = token_descriptor
    meta = {**meta, "descriptor": descriptor}
    need = len(paths) * int(meta["dim"]) * 4
    free = _available_memory()
    if free is not None and need > free // 2:
        raise InputError(
            f"{len(paths):,} {descriptor} descriptors of {int(meta['dim']):,} values need "
            f"{need / 2**30:.1f} GiB, more than half the {free / 2**30:.1f} GiB of memory "
            f"free; use `descriptor` cls, a smaller `image_size` or fewer images"
        )
    out = np.empty((len(paths), int(meta["dim"])), dtype=np.float32)
    done = 0
    if progress is not None:
        progress(0, len(paths), {})
    with torch.inference_mode():
        for ids, images in file_batches(
            paths, meta, batch_size=batch_size, workers=workers, should_stop=should_stop,
            doing="computing features",
        ):  # fmt: skip
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                vectors = forward(net, images.to(dev, non_blocking=True))
            out[ids] = vectors.float().cpu().numpy()
            done += len(ids)
            if progress is not None:
                progress(done, len(paths), {})
    return out, meta


def _available_memory() -> int | None:
    """Bytes of memory the system has free for a new allocation (Linux's MemAvailable)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def file_batches(
    paths: Sequence[str | os.PathLike[str]],
    meta: dict[str, Any],
    *,
    batch_size: int,
    workers: int = 0,
    should_stop: Callable[[], bool] | None = None,
    doing: str = "reading images",
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Batches ``(positions in paths, normalised images)`` of image files, in order.

    Images get the model's eval transform (``meta``: image_size, mean, std). A missing or
    undecodable image is an :class:`InputFileError` naming it; ``should_stop()`` is
    checked before each batch and raises :class:`Stopped` (nothing is kept).
    """
    files = [str(Path(p).expanduser().absolute()) for p in paths]
    loader: DataLoader = DataLoader(
        _FileImages(Path("/"), np.asarray(files, dtype=object), meta),  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        timeout=600 if workers else 0,
    )
    for ids, images, failed in loader:
        if failed:
            raise InputFileError(f"cannot read image {failed[0][1]}; fix or remove it")
        if should_stop is not None and should_stop():
            raise Stopped(f"stopped while {doing}; nothing written")
        yield [int(i) for i in ids], images
