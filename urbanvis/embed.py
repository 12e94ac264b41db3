"""Embed a study's captures with a ViT backbone, resumably, and read the vectors back.

:func:`embed_captures` runs batched inference over the ``ok`` rows of the ``captures``
layer: each image is resized (bicubic, shorter side) and centre-cropped to the model's
input size, normalised with the encoder's mean/std, and the [CLS] token after the final
LayerNorm is kept, not normalised (design section 6). Images are decoded either

- ``cpu``: with PIL in DataLoader worker processes (the reference; the default on a CPU), or
- ``gpu``: workers only read the file bytes; JPEGs are decoded as a batch with
  ``torchvision.io.decode_jpeg`` (nvJPEG on CUDA, the default there), other formats with
  ``decode_image`` on the CPU, and the resize, crop and normalisation run as tensor
  operations on the device (:func:`eval_transform_batch`, which reproduces PIL's bicubic
  resize to within a grey level or two). On a CPU device the same code runs on CPU tensors.

The forward pass runs in bf16 autocast on CUDA (``precision="auto"``) and in fp32 on a CPU.

Where things go (design section 3)::

    embeddings/<model>/meta.json        what the model is: name, checkpoint sha256, size, dim
    embeddings/<model>/parts/*.parquet  one file per batch, written atomically while running
    embeddings/<model>/vectors.parquet  all vectors: capture_id + a float32 fixed-size list
    study.gpkg, layer ``embeddings``    capture_id, point_id, model, pc1..pc3, geometry

A kill loses at most the batches in flight (two on a GPU, one on a CPU): the next run
skips every capture that already has a vector from the same model (same checkpoint hash).
When every capture is done the parts are merged into ``vectors.parquet``, a PCA is fitted
on all of that model's vectors and the model's rows of the ``embeddings`` layer are
replaced in one transaction.

Under ``torchrun`` (``WORLD_SIZE`` > 1; NCCL on GPUs, gloo on CPUs) every rank reads the
same list of pending captures and takes every ``world``-th one from its rank on, so the
shards are disjoint and fixed by the files on disk; each rank writes its own part files
(``part-r<rank>-<n>.parquet``). After a barrier rank 0 alone merges the parts and writes
the layer. A killed run resumes under any number of processes. Read the result with
:func:`read_embeddings`.

``import urbanvis.embed`` does not import torch; the functions that need it import it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._errors import InputError, InputFileError, first_line
from ._files import atomic_file, atomic_write_text
from .study import Study

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, int]], None]
LAYER = "embeddings"
VECTOR_COLUMN = "vector"


@dataclass
class EmbedSummary:
    """What an embedding run did."""

    model: str
    captures_total: int
    done_before: int
    embedded: int = 0
    failed: int = 0
    stopped: bool = False
    dim: int = 0
    seconds: float = 0.0
    layer_written: bool = False
    vectors: Path | None = None

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        state = "stopped early; rerun to resume" if self.stopped else "done"
        failed = f", {self.failed:,} unreadable images skipped" if self.failed else ""
        return (
            f"{self.model}: {self.embedded:,} captures embedded ({self.done_before:,} already "
            f"done, {self.captures_total:,} ok captures) at {self.images_per_second:.1f} "
            f"images/s{failed}; {state}"
        )


def model_folder(study: Study, model_id: str) -> Path:
    """The folder holding a model's vectors: ``embeddings/<model id made file-safe>``."""
    return study.root / "embeddings" / re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)


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
        Images per forward pass (and per part file: a kill loses at most the batches in
        flight); DataLoader processes decoding images, or with ``decode="gpu"`` reading
        their bytes (0: in this process).
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
    image_size
        Resize/crop side; defaults to the model's input size (224 for the ViT sizes).
        Another size resamples the position embedding and is part of the model id.
    limit
        Embed at most this many more captures (a trial); the layer is then not written.
    progress, should_stop
        Callbacks: ``progress(done, total, counts)`` after each batch (``counts`` has
        ``ok`` and ``failed``); ``should_stop()`` is checked between batches.
    """
    if (model is None) == (checkpoint is None):
        raise InputError("give exactly one of --checkpoint FILE or --model NAME")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise InputError(f"workers must be 0 or more, got {workers}")
    if image_size is not None and image_size < 8:
        raise InputError(f"image size must be at least 8 pixels, got {image_size}")
    if precision not in ("auto", "fp32", "bf16"):
        raise InputError(f"--precision must be auto, fp32 or bf16, not {precision!r}")
    if decode not in ("auto", "cpu", "gpu"):
        raise InputError(f"--decode must be auto, cpu or gpu, not {decode!r}")
    if checkpoint is not None:
        _check_checkpoint_file(Path(checkpoint))
    captures = _ok_captures(study)  # before torch: a study without captures fails fast

    import torch

    net, meta = _build_model(
        model=model,
        checkpoint=checkpoint,
        random_init=random_init,
        seed=seed,
        image_size=image_size,
    )
    from .engine.distributed import init_distributed, local_rank, pick_device

    dev = pick_device(device, local_rank())
    rank, world, owned = init_distributed(dev)
    bf16 = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
    amp = torch.bfloat16 if bf16 else None
    on_device = decode == "gpu" or (decode == "auto" and dev.type == "cuda")
    folder = model_folder(study, meta["model"])
    summary = EmbedSummary(model=meta["model"], captures_total=len(captures), done_before=0)
    summary.dim = int(meta["dim"])
    summary.vectors = folder / "vectors.parquet"

    # Every rank reads the same files (nothing is written before the barrier below), so
    # every rank sees the same pending list and the shards rank::world are disjoint.
    done = set(_vector_ids(folder))
    summary.done_before = len(done & set(captures["capture_id"]))
    pending = captures[~captures["capture_id"].isin(done)]
    if limit is not None:
        pending = pending.iloc[: max(int(limit), 0)]
    mine = pending.iloc[rank::world]
    if rank == 0:
        _write_meta(folder, meta)
        _remove_temporaries(folder)  # left by a killed run
    if world > 1:
        import torch.distributed as dist

        dist.barrier()

    counts = {"ok": 0, "failed": 0}
    if progress is not None and rank == 0:
        progress(summary.done_before, summary.captures_total, dict(counts))
    started = time.perf_counter()
    net = net.to(dev).eval()
    loader = _loader(
        study.root, mine, meta, batch_size=batch_size, workers=workers, device=dev, raw=on_device
    )
    parts = _PartWriter(folder, rank)
    with torch.inference_mode():
        for batch_ids, batch, batch_failed in loader:
            if should_stop is not None and should_stop():
                summary.stopped = True
                break
            ids, images, failed = batch_ids, batch, batch_failed
            if on_device and ids:
                ids, images, unreadable = _transform_on_device(ids, batch, meta, dev)
                failed = failed + unreadable
            for capture_id, error in failed:
                log.warning("capture %s skipped: %s", capture_id, error)
            counts["failed"] += len(failed)
            if ids:
                images = images.to(dev, non_blocking=True)
                with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                    vectors = _forward(net, images)
                parts.add(ids, vectors)
                counts["ok"] += len(ids)
            if progress is not None and rank == 0:
                done_now = summary.done_before + world * counts["ok"]  # other ranks: estimate
                progress(min(done_now, summary.captures_total), summary.captures_total, counts)
        parts.flush()
    summary.seconds = time.perf_counter() - started
    summary.embedded, summary.failed = counts["ok"], counts["failed"]
    if limit is not None and len(pending) < len(captures) - summary.done_before:
        summary.stopped = True
    if world > 1:  # every rank has written its parts once it joins the sum
        totals = [summary.embedded, summary.failed, int(summary.stopped)]
        summary.embedded, summary.failed, stopped = _sum_over_ranks(totals, dev)
        summary.stopped = stopped > 0
        dist.barrier()
    if rank == 0 and not summary.stopped:
        summary.layer_written = _finalise(
            study, folder, meta["model"], captures, failed=summary.failed
        )
    if owned:
        dist.destroy_process_group()
    log.log(logging.INFO if rank == 0 else logging.DEBUG, "%s", summary.line())
    return summary


def _check_checkpoint_file(path: Path) -> None:
    if not path.exists():
        raise InputFileError(f"checkpoint {path} does not exist; check the path")
    if not path.is_file():
        raise InputFileError(f"checkpoint {path} is not a file; give a .pth or .pth.tar file")


def _ok_captures(study: Study) -> pd.DataFrame:
    if not study.has_layer("captures"):
        raise InputError(
            f"study {study.root} has no 'captures' layer; run 'urbanvis harvest' first"
        )
    caps = study.read_layer("captures", columns=["capture_id", "point_id", "image_path", "status"])
    caps = caps[caps["status"] == "ok"]
    if len(caps) == 0:
        raise InputError(
            f"study {study.root} has no ok captures to embed; run 'urbanvis harvest' first"
        )
    if not caps["capture_id"].is_unique:
        raise InputError("the captures layer repeats capture ids; it was not written by urbanvis")
    return caps.reset_index(drop=True)


def _build_model(*, model, checkpoint, random_init: bool, seed: int, image_size):
    """The backbone and its metadata (model id, arch, size, mean/std, sha256)."""
    import torch

    from .engine.encoders import create_encoder, encoder_info, file_hash, load_encoder

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
                f"no pretrained weights for {info.name} are available offline; pass "
                f"--checkpoint FILE, or add --random-init for a randomly initialised baseline"
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
                f"image size {size} is not a multiple of {info.name}'s patch size {info.patch_size}"
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


def _sum_over_ranks(values: list[int], device) -> list[int]:
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t)
    return [int(v) for v in t.tolist()]


class _PartWriter:
    """Writes each batch's vectors to the next part file of this rank.

    On CUDA a batch is written one batch late: its copy to (pinned) host memory is queued
    behind the forward pass, and the host writes the previous batch while the GPU runs.
    """

    def __init__(self, folder: Path, rank: int) -> None:
        self.folder = folder
        self.rank = rank
        self.seq = _next_part_number(folder, rank)
        self.waiting: tuple | None = None

    def add(self, ids: list[str], vectors) -> None:
        import torch

        if vectors.device.type == "cuda":
            host = vectors.float().to("cpu", non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
            self.flush()
            self.waiting = (ids, host, ready)
        else:
            self.waiting = (ids, vectors.float(), None)
            self.flush()

    def flush(self) -> None:
        if self.waiting is None:
            return
        ids, host, ready = self.waiting
        self.waiting = None
        if ready is not None:
            ready.synchronize()
        _write_part(self.folder, self.rank, self.seq, ids, host.numpy())
        self.seq += 1


# ------------------------------------------------------------------------- decoding
class _CaptureImages:
    """Item ``i``: ``(capture_id, tensor or None, error or None)``, decoded in a worker.

    With ``raw`` the tensor is replaced by ``(image_path, file bytes as a uint8 tensor)``,
    to be decoded on the device.
    """

    def __init__(
        self, root: Path, captures: pd.DataFrame, meta: dict[str, Any], *, raw: bool = False
    ) -> None:
        self.root = root
        self.ids = captures["capture_id"].to_numpy()
        self.paths = captures["image_path"].to_numpy()
        self.meta = meta
        self.raw = raw
        self.transform: Any = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        if self.raw:
            return self._bytes(i)
        from PIL import Image

        if self.transform is None:  # built in the worker
            from .engine.transforms import eval_transform

            m = self.meta
            self.transform = eval_transform(m["image_size"], mean=m["mean"], std=m["std"])
        try:
            with Image.open(self.root / self.paths[i]) as im:
                return self.ids[i], self.transform(im.convert("RGB")), None
        except Exception as exc:  # missing or undecodable (PIL raises more than OSError)
            reason = getattr(exc, "strerror", None) or first_line(exc)
            return self.ids[i], None, f"{self.paths[i]}: {reason}"

    def _bytes(self, i: int):
        try:
            data = (self.root / self.paths[i]).read_bytes()
        except OSError as exc:
            return self.ids[i], None, f"{self.paths[i]}: {exc.strerror or exc}"
        if not data:
            return self.ids[i], None, f"{self.paths[i]}: empty file"
        # plain bytes: a tensor per image would cost one shared-memory file descriptor each
        return self.ids[i], (self.paths[i], data), None


def _collate(items, *, stack: bool = True):
    import torch

    good = [(cid, x) for cid, x, _ in items if x is not None]
    failed = [(cid, err) for cid, x, err in items if x is None]
    images: Any = [x for _, x in good]
    if stack:
        images = torch.stack(images) if good else None
    return [str(cid) for cid, _ in good], images, failed


def _loader(root: Path, captures: pd.DataFrame, meta, *, batch_size, workers, device, raw):
    from functools import partial

    from torch.utils.data import DataLoader

    return DataLoader(
        _CaptureImages(root, captures, meta, raw=raw),  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=partial(_collate, stack=not raw),
        pin_memory=device.type == "cuda" and not raw,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        timeout=600 if workers else 0,  # a wedged worker is an error, not a silent hang
    )


def decode_images(data: list, device) -> tuple[list, list[str | None]]:
    """:func:`urbanvis.engine.decode.decode_images`, the decoder training uses too."""
    from .engine.decode import decode_images

    return decode_images(data, device)


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
    import torch

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
    from torch.nn import functional as F

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


def _transform_on_device(ids: list[str], items: list, meta: dict[str, Any], device):
    """Decode a batch of ``(path, bytes)`` on ``device`` and apply the eval transform there.

    Returns the ids that decoded, their normalised batch, and ``(id, error)`` of the rest.
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


# -------------------------------------------------------------------------- storage
def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    path = folder / "meta.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("dim") != meta["dim"]:
            raise InputError(
                f"{folder} holds {old.get('dim')}-d vectors but this model gives {meta['dim']}; "
                f"move the folder away"
            )
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")


def _table(ids: list[str], vectors: np.ndarray):
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
    return pa.table({"capture_id": pa.array(ids, type=pa.string()), VECTOR_COLUMN: column})


def _write_parquet(path: Path, ids: list[str], vectors: np.ndarray) -> None:
    import pyarrow.parquet as pq

    with atomic_file(path) as fh:
        pq.write_table(_table(ids, vectors), fh)


def _write_part(folder: Path, rank: int, seq: int, ids: list[str], vectors) -> None:
    _write_parquet(folder / "parts" / f"part-r{rank:03d}-{seq:06d}.parquet", ids, vectors)


def _remove_temporaries(folder: Path) -> None:
    """Delete the temporary files of writes a kill interrupted (never read as output)."""
    for path in [*folder.glob(".*.tmp"), *(folder / "parts").glob(".*.tmp")]:
        path.unlink(missing_ok=True)


def _next_part_number(folder: Path, rank: int) -> int:
    numbers = [
        int(p.stem.rsplit("-", 1)[1]) for p in (folder / "parts").glob(f"part-r{rank:03d}-*")
    ]
    return max(numbers, default=-1) + 1


def _vector_files(folder: Path) -> list[Path]:
    merged = folder / "vectors.parquet"
    parts = sorted((folder / "parts").glob("part-*.parquet")) if folder.exists() else []
    return ([merged] if merged.exists() else []) + parts


def _vector_ids(folder: Path) -> list[str]:
    import pyarrow.parquet as pq

    ids: list[str] = []
    for path in _vector_files(folder):
        ids.extend(pq.read_table(path, columns=["capture_id"]).column(0).to_pylist())
    return ids


def read_vectors(study: Study, model: str) -> tuple[np.ndarray, np.ndarray]:
    """All vectors of one model id: ``(capture_ids, float32 matrix)``, one row per capture.

    Reads ``vectors.parquet`` and any part files of an unfinished run.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = model_folder(study, model)
    files = _vector_files(folder)
    if not files:
        raise InputError(
            f"study {study.root} has no vectors of model {model!r}; run 'urbanvis embed'"
        )
    table = pa.concat_tables([pq.read_table(p) for p in files])
    ids = np.asarray(table.column("capture_id").to_pylist(), dtype=object)
    column = table.column(VECTOR_COLUMN).combine_chunks()
    dim = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
    keep = ~pd.Series(ids).duplicated(keep="last").to_numpy()  # a merge killed halfway
    return ids[keep], matrix[keep]


def _merge_parts(folder: Path, ids: np.ndarray, matrix: np.ndarray) -> None:
    parts = sorted((folder / "parts").glob("part-*.parquet"))
    if not parts:
        return
    _write_parquet(folder / "vectors.parquet", list(ids), matrix)
    for part in parts:  # a kill here leaves duplicates, which readers drop
        part.unlink()


def principal_components(matrix: np.ndarray, n: int = 3) -> np.ndarray:
    """Scores on the first ``n`` principal components (signs fixed: largest loading > 0).

    Fitted in float64 from the covariance matrix, so memory grows with the width, not the
    number of vectors. Columns beyond the data's rank are NaN.
    """
    out = np.full((len(matrix), n), np.nan)
    if len(matrix) < 2:
        return out
    x = matrix.astype(np.float64)
    x -= x.mean(axis=0)
    values, vectors = np.linalg.eigh(x.T @ x)
    order = np.argsort(values)[::-1][: min(n, x.shape[1])]
    comps = vectors[:, order]
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
    comps *= np.where(signs == 0, 1, signs)
    out[:, : comps.shape[1]] = x @ comps
    return out


def _finalise(
    study: Study, folder: Path, model_id: str, captures: pd.DataFrame, failed: int = 0
) -> bool:
    """Merge the parts, fit the PCA and replace this model's rows of the layer."""
    import geopandas as gpd

    if not _vector_files(folder) and failed:
        raise InputError(
            f"none of the {failed:,} captures could be read, so nothing was embedded; check "
            f"the files under {study.images} (the warnings above name each one)"
        )
    ids, matrix = read_vectors(study, model_id)
    has_parts = any((folder / "parts").glob("part-*.parquet"))
    _merge_parts(folder, ids, matrix)
    rows = captures.set_index("capture_id").reindex(ids)
    known = rows["point_id"].notna().to_numpy()  # vectors of captures no longer ok: left out
    ids, matrix, rows = ids[known], matrix[known], rows[known]
    if not has_parts and study.has_layer(LAYER):
        existing = study.read_layer(
            LAYER,
            columns=["capture_id"],
            where=f"model = '{_sql_text(model_id)}'",
            read_geometry=False,
        )
        if set(existing["capture_id"]) == set(ids):
            return False  # nothing new: the layer is already current
    pcs = principal_components(matrix)
    frame = gpd.GeoDataFrame(
        {
            "capture_id": ids.astype(str),
            "point_id": rows["point_id"].astype(np.int64).to_numpy(),
            "model": model_id,
            "pc1": pcs[:, 0],
            "pc2": pcs[:, 1],
            "pc3": pcs[:, 2],
        },
        geometry=gpd.GeoSeries(rows.geometry.to_numpy(), crs=captures.crs).to_crs(4326).values,
        crs="EPSG:4326",
    )
    frame = gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
    if study.has_layer(LAYER):
        # only this model's rows change: other models' rows are never rewritten, so a kill
        # can at worst leave this model's rows missing (the next run writes them again)
        study.delete_rows(LAYER, "model = ?", [model_id])
        study.write_layer(LAYER, frame, append=True)
    else:
        study.write_layer(LAYER, frame)
    return True


# ---------------------------------------------------------------------------- reading
def embedding_models(study: Study) -> list[str]:
    """Model ids with rows in the study's ``embeddings`` layer."""
    if not study.has_layer(LAYER):
        return []
    frame = study.read_layer(LAYER, columns=["model"], read_geometry=False)
    return sorted(frame["model"].unique().tolist())


def read_embeddings(study: Study, *, model: str | None = None):
    """The ``embeddings`` layer rows of one model and their vectors, aligned.

    Parameters
    ----------
    study
        A study that ``urbanvis embed`` has run on.
    model
        The model id (``<arch>@<sha256[:12]>``, or ``random-init:<arch>:<seed>``); may be
        left out when the study holds one model only.

    Returns
    -------
    (geopandas.GeoDataFrame, numpy.ndarray)
        The layer's rows for ``model`` (capture_id, point_id, model, pc1..pc3, geometry in
        EPSG:4326) and a float32 matrix of shape ``(len(rows), dim)``: row ``i`` is the
        vector of ``rows.capture_id[i]``.

    Examples
    --------
    >>> from urbanvis.study import open_study
    >>> from urbanvis.embed import read_embeddings
    >>> rows, vectors = read_embeddings(open_study("hel"))  # doctest: +SKIP
    """
    models = embedding_models(study)
    if not models:
        raise InputError(f"study {study.root} has no embeddings; run 'urbanvis embed' first")
    if model is None:
        if len(models) > 1:
            raise InputError(
                f"study {study.root} holds embeddings of {len(models)} models "
                f"({', '.join(models)}); pass model=..."
            )
        model = models[0]
    if model not in models:
        raise InputError(f"no embeddings of model {model!r}; this study has: {', '.join(models)}")
    rows = study.read_layer(LAYER, where=f"model = '{_sql_text(model)}'").reset_index(drop=True)
    ids, matrix = read_vectors(study, model)
    at = pd.Index(ids).get_indexer(rows["capture_id"])
    if (at < 0).any():
        raise InputError(
            f"{int((at < 0).sum())} rows of the embeddings layer have no vector in "
            f"{model_folder(study, model)}; rerun 'urbanvis embed'"
        )
    return rows, matrix[at]


def _sql_text(value: str) -> str:
    return value.replace("'", "''")
