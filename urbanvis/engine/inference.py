"""Embed a study's captures with a ViT backbone, resumably: the torch half of embedding.

:func:`embed_captures` runs batched inference over the ``ok`` rows of the ``captures``
layer, one forward pass per distinct image file: captures that point to the same file
(a panorama's view shared by neighbouring points, see :mod:`urbanvis._imagestore`) are
grouped by their normalised ``image_path`` and get that file's vector. Each image is
resized (bicubic, shorter side) and centre-cropped to the model's input size, normalised
with the encoder's mean/std, and the [CLS] token after the final LayerNorm is kept, not
normalised (design section 6). Images are decoded either

- ``cpu``: with PIL in DataLoader worker processes (the reference; the default on a CPU), or
- ``gpu``: workers only read the file bytes; the batch is decoded by
  :func:`urbanvis.engine.decode.decode_images` (JPEGs with ``torchvision.io.decode_jpeg``,
  nvJPEG on CUDA, the default there; other formats with PIL), and the resize, crop and
  normalisation run as tensor operations on the device (:func:`eval_transform_batch`,
  which reproduces PIL's bicubic resize to within a grey level or two). On a CPU device
  the same code runs on CPU tensors.

The forward pass runs in bf16 autocast on CUDA (``precision="auto"``) and in fp32 on a CPU.
The vectors, their files and the ``embeddings`` layer are :mod:`urbanvis.vectors`' (no
torch there); this module writes them through it.

A kill loses at most the batches in flight (two on a GPU, one on a CPU): the next run
skips every capture that already has a vector from the same model (same checkpoint hash);
a file whose captures are partly done is embedded once more for the rest.
When every capture is done the parts are merged into ``vectors.parquet``, a PCA is fitted
on all of that model's vectors and the model's rows of the ``embeddings`` layer are
replaced in one transaction.

Under ``torchrun`` (``WORLD_SIZE`` > 1; NCCL on GPUs, gloo on CPUs, see
:mod:`urbanvis.engine.distributed`) every rank reads the same list of pending captures,
groups it into the same list of distinct files (in order of first appearance) and takes
every ``world``-th file from its rank on, so the shards are disjoint and fixed by the
files on disk; each rank writes its own part files (``part-r<rank>-<n>.parquet``). After a
barrier rank 0 alone merges the parts and writes the layer. A killed run resumes under any
number of processes. Read the result with :func:`urbanvis.vectors.read_embeddings`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.utils.data import DataLoader

from .._errors import InputError, InputFileError, first_line
from .._imagefiles import ImageFiles as _ImageFiles
from ..study import Study
from ..vectors import (
    _check_captures,
    finalise,
    model_folder,
    next_part_number,
    pending_captures,
    remove_temporaries,
    write_meta,
    write_part,
)
from .compiling import check_compile, compile_in_place, compile_seconds, wants_compile
from .decode import decode_images
from .distributed import init_distributed, local_rank, pick_device
from .encoders import create_encoder, encoder_info, file_hash, load_encoder

__all__ = ["EmbedSummary", "Progress", "embed_captures", "eval_transform_batch"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, int]], None]


@dataclass
class EmbedSummary:
    """What an embedding run did."""

    model: str
    captures_total: int
    done_before: int
    embedded: int = 0
    """Captures given a vector by this run."""
    images: int = 0
    """Distinct image files run through the model by this run (at most ``embedded``)."""
    failed: int = 0
    """Captures skipped because their image file could not be read."""
    failed_images: int = 0
    stopped: bool = False
    dim: int = 0
    seconds: float = 0.0
    layer_written: bool = False
    vectors: Path | None = None
    compile_seconds: float | None = None

    @property
    def images_per_second(self) -> float:
        """Distinct image files through the model per second of the loop."""
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        state = "stopped early; rerun to resume" if self.stopped else "done"
        failed = (
            f", {self.failed_images:,} unreadable images skipped ({self.failed:,} captures)"
            if self.failed
            else ""
        )
        if self.compile_seconds is not None:
            failed += f"; compiled in {self.compile_seconds:.0f} s"
        return (
            f"{self.model}: embedded {self.images:,} images for {self.embedded:,} captures "
            f"({self.done_before:,} already done, {self.captures_total:,} ok captures) at "
            f"{self.images_per_second:.1f} images/s{failed}; {state}"
        )


# --------------------------------------------------------------------------- embedding
def embed_captures(
    study: Study,
    *,
    model: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    random_init: bool = False,
    seed: int = 0,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    precision: str = "auto",
    decode: str = "auto",
    compile: str = "auto",
    image_size: int | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EmbedSummary:
    """Embed every ``ok`` capture of ``study`` that this model has not embedded yet.

    Parameters
    ----------
    study
        The study; it must have a ``captures`` layer.
    model, checkpoint
        Exactly one: a checkpoint file (urbanvis, MoCo v3 or timm/DeiT; the model id is
        ``<arch>@<sha256[:12]>``), or a registered encoder name, which needs
        ``random_init`` since no pretrained weights ship offline (model id
        ``random-init:<arch>:<seed>``; a baseline, rarely what you want).
    random_init, seed
        Allow a bare ``model`` name with random weights drawn from ``seed``.
    batch_size, workers
        Distinct image files per forward pass (a part file holds the vectors of their
        captures: a kill loses at most the batches in flight); DataLoader processes
        decoding images, or with ``decode="gpu"`` reading their bytes (0: in this
        process).
    device
        ``auto`` (a GPU when one is visible), ``cpu``, ``cuda`` or ``cuda:N``. Under
        ``torchrun`` each process takes the GPU of its ``LOCAL_RANK``.
    precision
        ``auto`` (bf16 autocast on CUDA, fp32 on a CPU), ``fp32`` or ``bf16``. The
        vectors are float32 either way.
    decode
        Where images are decoded and resized: ``cpu`` (PIL in the workers), ``gpu``
        (a batch at a time on the device, JPEGs with nvJPEG on CUDA; on a CPU device the
        same tensor code runs on the CPU), or ``auto`` (``gpu`` on CUDA, else ``cpu``).
    compile
        ``on``: run the backbone through ``torch.compile`` (short batches padded to
        ``batch_size``, so one graph serves every batch; the compile time is in the
        summary); ``off``; ``auto``: on for CUDA, off on a CPU (see
        :mod:`urbanvis.engine.compiling`).
    image_size
        Resize/crop side; defaults to the model's input size (224 for the ViT sizes).
        Another size resamples the position embedding and is part of the model id.
    limit
        Embed at most this many more captures (a trial); the layer is then not written.
    progress, should_stop
        Callbacks: ``progress(done, total, counts)`` after each batch, in captures
        (``counts`` has ``ok`` and ``failed`` captures and ``images``, the distinct files
        embedded); ``should_stop()`` is checked between batches.
    """
    if (model is None) == (checkpoint is None):
        raise InputError("give exactly one of `checkpoint` (a file) or `model` (a name)")
    if batch_size < 1:
        raise InputError(f"`batch_size` must be at least 1, got {batch_size}")
    if workers < 0:
        raise InputError(f"`workers` must be 0 or more, got {workers}")
    if image_size is not None and image_size < 8:
        raise InputError(f"`image_size` must be at least 8 pixels, got {image_size}")
    if precision not in ("auto", "fp32", "bf16"):
        raise InputError(f"`precision` must be auto, fp32 or bf16, not {precision!r}")
    if decode not in ("auto", "cpu", "gpu"):
        raise InputError(f"`decode` must be auto, cpu or gpu, not {decode!r}")
    check_compile(compile)
    if checkpoint is not None:
        _check_checkpoint_file(Path(checkpoint))
    _check_captures(study)  # before the model: a study without captures fails fast

    net, meta = build_model(
        model=model,
        checkpoint=checkpoint,
        random_init=random_init,
        seed=seed,
        image_size=image_size,
    )
    dev = pick_device(device, local_rank())
    rank, world, owned = init_distributed(dev, shared=study.root)
    bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
    amp = torch.bfloat16 if bf16 else None
    on_device = decode == "gpu" or (decode == "auto" and dev.type == "cuda")
    folder = model_folder(study, meta["model"])

    # Every rank reads the same files (nothing is written before the barrier below), so
    # every rank sees the same pending list, groups it into the same distinct files, and
    # the shards of files rank::world are disjoint. Only ids and paths are held, as Arrow
    # strings (see urbanvis._imagefiles), and dropped before finalise.
    ids, paths, total, done_before = pending_captures(study, folder, limit=limit)
    summary = EmbedSummary(model=meta["model"], captures_total=total, done_before=done_before)
    summary.dim = int(meta["dim"])
    summary.vectors = folder / "vectors.parquet"
    pending = len(ids)
    mine = _ImageFiles.of(ids, paths).shard(rank, world)
    del ids, paths
    if rank == 0:
        write_meta(folder, meta)
        remove_temporaries(folder)  # left by a killed run
    if world > 1:
        dist.barrier()

    counts = {"ok": 0, "images": 0, "failed": 0}
    failed_images = 0
    if progress is not None and rank == 0:
        progress(summary.done_before, summary.captures_total, dict(counts))
    started = time.perf_counter()
    net = net.to(dev).eval()
    forward = _Forward(net, dev, batch_size) if wants_compile(compile, dev) else None
    loader = _loader(
        study.root,
        mine.paths,
        meta,
        batch_size=batch_size,
        workers=workers,
        device=dev,
        raw=on_device,
    )
    parts = _PartWriter(folder, rank)
    with torch.inference_mode():
        for batch_files, batch, batch_failed in loader:
            if should_stop is not None and should_stop():
                summary.stopped = True
                break
            good, images, failed = batch_files, batch, batch_failed
            if on_device and good:
                good, images, unreadable = _transform_on_device(good, batch, meta, dev)
                failed = failed + unreadable
            for index, error in failed:
                skipped = mine.ids_of(index)
                log.warning("%s skipped: %s", _name_captures(skipped), error)
                counts["failed"] += len(skipped)
            failed_images += len(failed)
            if good:
                images = images.to(dev, non_blocking=True)
                with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                    vectors = _forward(net, images) if forward is None else forward(images)
                ids, rows = mine.expand(good)
                parts.add(ids, vectors, rows)
                counts["ok"] += len(ids)
                counts["images"] += len(good)
            if progress is not None and rank == 0:
                done_now = summary.done_before + world * counts["ok"]  # other ranks: estimate
                progress(min(done_now, summary.captures_total), summary.captures_total, counts)
        parts.flush()
    summary.seconds = time.perf_counter() - started
    if forward is not None and len(forward.durations) == 2:
        summary.compile_seconds = compile_seconds(*forward.durations)
    summary.embedded, summary.images = counts["ok"], counts["images"]
    summary.failed, summary.failed_images = counts["failed"], failed_images
    del mine, loader  # what embed holds per capture, not needed by finalise
    if limit is not None and pending < summary.captures_total - summary.done_before:
        summary.stopped = True
    if world > 1:  # every rank has written its parts once it joins the sum
        totals = [summary.embedded, summary.images, summary.failed, summary.failed_images]
        totals = _sum_over_ranks([*totals, int(summary.stopped)], dev)
        summary.embedded, summary.images, summary.failed, summary.failed_images = totals[:4]
        summary.stopped = totals[4] > 0
        dist.barrier()
    if rank == 0 and not summary.stopped:
        summary.layer_written = finalise(study, folder, meta["model"], failed=summary.failed)
    if owned:
        dist.destroy_process_group()
    log.log(logging.INFO if rank == 0 else logging.DEBUG, "%s", summary.line())
    return summary


def _check_checkpoint_file(path: Path) -> None:
    if not path.exists():
        raise InputFileError(f"checkpoint {path} does not exist; check the path")
    if not path.is_file():
        raise InputFileError(f"checkpoint {path} is not a file; give a .pth or .pth.tar file")


def build_model(*, model, checkpoint, random_init: bool, seed: int, image_size):
    """The backbone and its metadata (model id, arch, size, mean/std, sha256)."""
    if checkpoint is not None:
        net = load_encoder(checkpoint)
        digest = file_hash(checkpoint)
        info = net.urbanvis_info
        model_id = f"{info.name}@{digest[:12]}"
        source: dict[str, Any] = {"checkpoint": Path(checkpoint).name, "sha256": digest}
    else:
        info = encoder_info(model)  # unknown names: close matches suggested
        if not random_init:
            raise InputError(
                f"no pretrained weights for {info.name} are available offline; pass a "
                f"`checkpoint` file, or set `random_init` for a randomly initialised baseline"
            )
        torch.manual_seed(seed)
        net = create_encoder(info.name)
        model_id = f"random-init:{info.name}:{seed}"
        source = {"random_init_seed": seed}
    native = int(net.patch_embed.img_size[0])
    size = int(image_size or native)
    if size != native:
        if size % info.patch_size:
            raise InputError(
                f"`image_size` {size} is not a multiple of {info.name}'s patch size "
                f"{info.patch_size}"
            )
        net.set_input_size(img_size=size)  # timm resamples the position embedding
        model_id += f"@{size}px"
    dim = int(net.num_features)
    meta = {
        "model": model_id,
        "arch": info.name,
        "image_size": size,
        "dim": dim,
        "mean": list(info.mean),
        "std": list(info.std),
        **source,
    }
    return net, meta


def _forward(net, images):
    """The [CLS] token after the final LayerNorm (not normalised)."""
    return net.forward_head(net.forward_features(images), pre_logits=True)


class _Forward:
    """:func:`_forward` compiled: batches padded to ``batch_size`` (one graph for all), and
    the durations of the first two calls kept to tell the compile time."""

    def __init__(self, net, device, batch_size: int) -> None:
        self.module = compile_in_place(_ClsToken(net))
        self.device = device
        self.batch_size = batch_size
        self.durations: list[float] = []

    def __call__(self, images):
        n = int(images.shape[0])
        if n < self.batch_size:
            pad = images.new_zeros((self.batch_size - n, *images.shape[1:]))
            images = torch.cat([images, pad])  # each image is its own: padding changes none
        timed = len(self.durations) < 2
        if timed:
            start = _synchronized(self.device)
        out = self.module(images)[:n]
        if timed:
            self.durations.append(_synchronized(self.device) - start)
        return out


class _ClsToken(torch.nn.Module):
    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, images):
        return _forward(self.net, images)


def _synchronized(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _sum_over_ranks(values: list[int], device) -> list[int]:
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t)
    return [int(v) for v in t.tolist()]


class _PartWriter:
    """Writes each batch's vectors to the next part file of this rank, one row per capture.

    ``add(ids, vectors, rows)``: capture ``ids[k]`` gets ``vectors[rows[k]]`` (a file's
    vector is repeated for each capture sharing it on the host, after the copy).

    On CUDA a batch is written one batch late: its copy to (pinned) host memory is queued
    behind the forward pass, and the host writes the previous batch while the GPU runs.
    """

    def __init__(self, folder: Path, rank: int) -> None:
        self.folder = folder
        self.rank = rank
        self.seq = next_part_number(folder, rank)
        self.waiting: tuple | None = None

    def add(self, ids: list[str], vectors, rows: np.ndarray) -> None:
        if vectors.device.type == "cuda":
            host = vectors.float().to("cpu", non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
            self.flush()
            self.waiting = (ids, host, rows, ready)
        else:
            self.waiting = (ids, vectors.float(), rows, None)
            self.flush()

    def flush(self) -> None:
        if self.waiting is None:
            return
        ids, host, rows, ready = self.waiting
        self.waiting = None
        if ready is not None:
            ready.synchronize()
        write_part(self.folder, self.rank, self.seq, ids, host.numpy()[rows])
        self.seq += 1


def _name_captures(ids: list[str], shown: int = 5) -> str:
    if len(ids) == 1:
        return f"capture {ids[0]}"
    more = f" and {len(ids) - shown:,} more" if len(ids) > shown else ""
    return f"{len(ids):,} captures of one image ({', '.join(ids[:shown])}{more})"


# ------------------------------------------------------------------------- decoding
class _FileImages:
    """Item ``i``: ``(i, tensor or None, error or None)`` for file ``paths[i]``, decoded in
    a worker.

    With ``raw`` the tensor is replaced by ``(image_path, file bytes)``, to be decoded on
    the device.
    """

    def __init__(self, root: Path, paths, meta: dict[str, Any], *, raw: bool = False) -> None:
        self.root = root
        self.paths = paths
        self.meta = meta
        self.raw = raw
        self.transform: Any = None

    def __len__(self) -> int:
        return len(self.paths)

    def _path(self, i: int) -> str:
        path = self.paths[i]
        return path if isinstance(path, str) else str(path.as_py())  # an Arrow string

    def __getitem__(self, i: int):
        if self.raw:
            return self._bytes(i)
        from PIL import Image

        if self.transform is None:  # built in the worker
            from .transforms import eval_transform

            m = self.meta
            self.transform = eval_transform(m["image_size"], mean=m["mean"], std=m["std"])
        path = self._path(i)
        try:
            with Image.open(self.root / path) as im:
                return i, self.transform(im.convert("RGB")), None
        except Exception as exc:  # missing or undecodable (PIL raises more than OSError)
            reason = getattr(exc, "strerror", None) or first_line(exc)
            return i, None, f"{path}: {reason}"

    def _bytes(self, i: int):
        path = self._path(i)
        try:
            data = (self.root / path).read_bytes()
        except OSError as exc:
            return i, None, f"{path}: {exc.strerror or exc}"
        if not data:
            return i, None, f"{path}: empty file"
        # plain bytes: a tensor per image would cost one shared-memory file descriptor each
        return i, (path, data), None


def _collate(items, *, stack: bool = True):
    good = [(i, x) for i, x, _ in items if x is not None]
    failed = [(i, err) for i, x, err in items if x is None]
    images: Any = [x for _, x in good]
    if stack:
        images = torch.stack(images) if good else None
    return [int(i) for i, _ in good], images, failed


def _loader(root: Path, paths, meta, *, batch_size, workers, device, raw):
    return DataLoader(
        _FileImages(root, paths, meta, raw=raw),  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=partial(_collate, stack=not raw),
        pin_memory=device.type == "cuda" and not raw,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        timeout=600 if workers else 0,  # a wedged worker is an error, not a silent hang
    )


def eval_transform_batch(images: list, size: int, *, mean, std):
    """The eval transform of :func:`urbanvis.engine.transforms.eval_transform` on tensors.

    Resize (bicubic, shorter side to ``size``), centre crop ``size``, scale to [0, 1] and
    normalise, for uint8 ``(3, H, W)`` images on any device; images of one shape are
    resized together. PIL's resize is reproduced: antialiased bicubic (a = -0.5),
    horizontal pass first, rounded to 8 bits after each pass. Against PIL a value differs
    by one grey level at about 0.1% of the values (rounding ties), rarely by two.

    Returns
    -------
    torch.Tensor
        float32 ``(len(images), 3, size, size)`` on the images' device.
    """
    dev = images[0].device
    out = torch.empty((len(images), 3, size, size), device=dev)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault((int(image.shape[-2]), int(image.shape[-1])), []).append(i)
    for index in groups.values():
        out[index] = _resize_and_crop(torch.stack([images[i] for i in index]).float(), size)
    m = torch.tensor(mean, device=dev, dtype=out.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=dev, dtype=out.dtype).view(1, 3, 1, 1)
    return out.div_(255.0).sub_(m).div_(s)


def _resize_and_crop(x, size: int):
    """Float batch (B, 3, H, W) in 0..255 -> (B, 3, size, size), as torchvision on PIL."""

    def bicubic(t, shape):
        t = F.interpolate(t, size=shape, mode="bicubic", antialias=True, align_corners=False)
        return t.clamp_(0.0, 255.0).add_(0.5).floor_()  # PIL keeps 8 bits between passes

    h, w = int(x.shape[-2]), int(x.shape[-1])
    long = int(size * max(h, w) / min(h, w))  # torchvision: the long side truncated
    nh, nw = (size, long) if h <= w else (long, size)
    if nw != w:
        x = bicubic(x, (h, nw))
    if nh != h:
        x = bicubic(x, (nh, nw))
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def _transform_on_device(ids: list[int], items: list, meta: dict[str, Any], device):
    """Decode a batch of ``(path, bytes)`` on ``device`` and apply the eval transform there.

    Returns the ids (file indices) that decoded, their normalised batch, and ``(id, error)``
    of the rest.
    """
    images, errors = decode_images([data for _, data in items], device)
    good = [i for i, image in enumerate(images) if image is not None]
    failed = [(ids[i], f"{items[i][0]}: {errors[i]}") for i, e in enumerate(images) if e is None]
    if not good:
        return [], None, failed
    batch = eval_transform_batch(
        [images[i] for i in good], meta["image_size"], mean=meta["mean"], std=meta["std"]
    )
    return [ids[i] for i in good], batch, failed
