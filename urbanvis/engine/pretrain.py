"""MoCo v3 pretraining on a pair table: one CPU process, one GPU, or many through torchrun.

The loop is the reference's: per-iteration learning-rate and momentum schedules, the
momentum update before the keys, AdamW, bf16/fp16 autocast on CUDA, SyncBN and keys
gathered across ranks under DDP. Checkpoints are written atomically by rank 0 in the
reference format, and a resumed run reproduces an uninterrupted one: the data order and
augmentation seeds of an epoch depend only on the seed and the epoch.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .._errors import InputError, InputFileError
from .._files import atomic_file
from .._version import __version__
from .compiling import check_compile, compile_in_place, compile_seconds, wants_compile
from .data import PairDataset, check_images, epoch_order, read_pair_table
from .distributed import init_distributed, local_rank, pick_device
from .encoders import create_encoder, encoder_info, read_checkpoint
from .moco import MoCo
from .schedules import absolute_lr, learning_rate, momentum
from .transforms import view_transforms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of a pretraining run; the CLI options map one to one.

    Defaults are the paper's ViT-B/16 recipe (design section 6). ``batch_size`` is global
    (summed over ranks); ``warmup_epochs`` defaults to 40/300 of ``epochs``. ``compile``
    (auto, on, off) runs the encoders and predictor through ``torch.compile``, auto on CUDA
    only (:mod:`.compiling`); checkpoints have the same keys either way.

    Three settings ease the task for short runs, off by default (the paper's recipe):
    ``crop_min`` (smallest crop's share of the image, MoCo v3's 0.08), ``photometric``
    (factor on the colour jitter, greyscale, blur and solarize probabilities; 0 = none;
    see :mod:`.transforms`) and ``learn_patch`` (train the patch projection, which MoCo v3
    freezes at its random init for stability at scale).
    """

    arch: str = "vit_base_patch16_224"
    epochs: int = 300
    batch_size: int = 1024
    base_lr: float = 1.5e-4
    weight_decay: float = 0.1
    warmup_epochs: float | None = None
    momentum: float = 0.99
    temperature: float = 0.2
    dim: int = 256
    mlp_dim: int = 4096
    image_size: int | None = None
    workers: int = 4
    device: str = "auto"
    precision: str = "auto"
    save_every: int = 10
    accumulate: int = 1
    seed: int = 0
    on_missing: str = "stop"
    augment: str = "auto"
    compile: str = "auto"
    crop_min: float = 0.08
    photometric: float = 1.0
    learn_patch: bool = False

    def validate(self) -> None:
        """Refuse any setting a run could not use, before anything is read or written."""
        info = encoder_info(self.arch)
        for name in ("epochs", "batch_size", "save_every", "accumulate", "dim", "mlp_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"`{name}` must be a whole number of at least 1, got {value!r}")
        for name in ("workers", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"`{name}` must be a whole number of 0 or more, got {value!r}")
        for name, low, strict in (
            ("base_lr", 0.0, True),
            ("temperature", 0.0, True),
            ("weight_decay", 0.0, False),
        ):
            value = getattr(self, name)
            if not _finite(value) or value < low or (strict and value == low):
                word = "a positive number" if strict else "0 or more"
                raise InputError(f"`{name}` must be {word}, got {value!r}")
        if not _finite(self.momentum) or not 0 <= self.momentum < 1:
            raise InputError(f"`momentum` must be in [0, 1), got {self.momentum!r}")
        if not _finite(self.crop_min) or not 0 < self.crop_min <= 1:
            raise InputError(f"`crop_min` must be in (0, 1], got {self.crop_min!r}")
        if not _finite(self.photometric) or not 0 <= self.photometric <= 1:
            raise InputError(f"`photometric` must be in [0, 1], got {self.photometric!r}")
        if not isinstance(self.learn_patch, bool):
            raise InputError(f"`learn_patch` must be true or false, got {self.learn_patch!r}")
        if self.warmup_epochs is not None and (
            not _finite(self.warmup_epochs) or not 0 <= self.warmup_epochs <= self.epochs
        ):
            raise InputError(
                f"`warmup_epochs` must be within 0..{self.epochs} (`epochs`), "
                f"got {self.warmup_epochs!r}"
            )
        if self.image_size is not None:
            size = self.image_size
            if isinstance(size, bool) or not isinstance(size, int) or size < info.patch_size:
                raise InputError(
                    f"`image_size` must be a whole number of pixels, at least the "
                    f"{info.patch_size} px patch of {info.name}, got {size!r}"
                )
            if size > 1024:  # a ViT's attention memory grows with the fourth power of it
                raise InputError(f"`image_size` must be at most 1024 pixels, got {size}")
            if size % info.patch_size:
                near = max(1, round(size / info.patch_size)) * info.patch_size
                raise InputError(
                    f"`image_size` {size} is not a multiple of the {info.patch_size} px patch "
                    f"of {info.name}; use e.g. {near}"
                )
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise InputError(
                f"`precision` must be auto, fp32, bf16 or fp16, not {self.precision!r}"
            )
        if self.augment not in ("auto", "cpu", "gpu"):
            raise InputError(f"`augment` must be auto, cpu or gpu, not {self.augment!r}")
        check_compile(self.compile)
        if self.on_missing not in ("stop", "skip"):
            raise InputError(f"`on_missing` must be stop or skip, not {self.on_missing!r}")
        if not (self.device in ("auto", "cpu", "cuda") or _CUDA_N.fullmatch(str(self.device))):
            raise InputError(f"`device` must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @property
    def warmup(self) -> float:
        return self.warmup_epochs if self.warmup_epochs is not None else self.epochs * 40 / 300


_CUDA_N = re.compile(r"cuda:\d+")


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class PretrainResult:
    """Where the run ended: the last checkpoint and the mean loss of each epoch."""

    checkpoint: Path | None
    run_dir: Path
    epoch_losses: list[float] = field(default_factory=list)
    pairs: int = 0
    pairs_per_second: float = 0.0
    stopped: bool = False
    compile_seconds: float | None = None


def pretrain(
    root: str | os.PathLike[str],
    pairs: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    config: PretrainConfig,
    *,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
    stop_after_epoch: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PretrainResult:
    """Pretrain a ViT with MoCo v3 on the pairs of a pair table.

    Parameters
    ----------
    root
        The study folder (image paths in the table are relative to it).
    pairs
        The pair table (Parquet; from ``urbanvis pairs``).
    run_dir
        Folder for checkpoints and the log (``checkpoint_0010.pth.tar``, ``log.csv``).
    config
        The recipe.
    resume
        Continue from the newest checkpoint in ``run_dir``.
    progress
        Called after every iteration with loss, lr, momentum and pairs/s (rank 0 only).
    stop_after_epoch
        Stop (after checkpointing) once this many epochs are done; for tests and trials.
    should_stop
        Checked after every iteration (single-process runs). When it returns true the run
        stops and checkpoints at once: the checkpoint counts the finished epochs and holds
        the weights trained so far, including the part of the epoch in progress (recorded as
        ``urbanvis.partial_iterations``); a resumed run trains that epoch again from its
        start. The result's ``stopped`` is true.
    """
    config.validate()
    root = Path(root)
    run_dir = Path(run_dir)
    device = pick_device(config.device, local_rank())
    rank, world, _ = init_distributed(device, shared=root)
    table = check_images(root, read_pair_table(pairs), on_missing=config.on_missing)
    if config.batch_size % world:
        raise InputError(f"`batch_size` {config.batch_size} must divide by the {world} processes")
    if config.batch_size > len(table):
        raise InputError(
            f"`batch_size` {config.batch_size} is larger than the {len(table):,} pairs; "
            f"use `batch_size` {len(table)} or less, or build more pairs"
        )
    per_rank = config.batch_size // world
    if per_rank % config.accumulate:
        raise InputError(f"the per-process batch {per_rank} must divide by `accumulate`")

    size = int(config.image_size or encoder_info(config.arch).input_size)
    _seed_everything(config.seed)  # the same initial weights on every rank
    model = MoCo(
        create_encoder(config.arch, img_size=size, stop_grad_conv1=not config.learn_patch),
        dim=config.dim,
        mlp_dim=config.mlp_dim,
        temperature=config.temperature,
    ).to(device)
    lr = absolute_lr(config.base_lr, config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    start_epoch, losses = 0, []
    if resume:
        start_epoch, losses = _resume(run_dir, config, model, optimizer, scaler)
    train_model: torch.nn.Module = model
    if world > 1:
        if device.type == "cuda":  # in place: ``model`` holds the SyncBatchNorm layers
            train_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:  # torch's SyncBatchNorm refuses CPU tensors: each process normalises its batch
            log.info(
                "SyncBatchNorm needs CUDA; on %s each process uses its own BN statistics",
                device.type,
            )
    compiled = wants_compile(config.compile, device)
    if compiled:  # the networks, in place: the momentum update and the loss stay eager
        for part in (model.base_encoder, model.momentum_encoder, model.predictor):
            compile_in_place(part)
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )

    on_device = config.augment == "gpu" or (config.augment == "auto" and device.type == "cuda")
    if on_device:  # workers read bytes; the batch is decoded and augmented on the device
        from .data import PairBytesDataset, collate_bytes
        from .gpu_views import DeviceViews

        dataset: torch.utils.data.Dataset = PairBytesDataset(root, table)
        collate = collate_bytes
    else:
        view1, view2 = view_transforms(
            size, crop_min=config.crop_min, photometric=config.photometric
        )
        dataset = PairDataset(root, table, view1, view2)
        collate = None
    iterations = len(table) // config.batch_size
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    last = None
    rate = 0.0
    end = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
    stopped = False
    first_steps: list[float] = []  # the durations of this process's first two steps
    compile_time: float | None = None
    for epoch in range(start_epoch, end):
        order = epoch_order(len(table), seed=config.seed, epoch=epoch)
        batches = order[: iterations * config.batch_size].reshape(iterations, world, per_rank)
        torch.manual_seed(config.seed * 1_000_003 + epoch * 7919 + rank)  # augmentation seeds
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batches[:, rank, :].tolist(),
            num_workers=config.workers,
            pin_memory=device.type == "cuda" and not on_device,
            persistent_workers=False,
            collate_fn=collate,
        )
        feed: Iterable = loader
        if on_device:  # decoded and augmented in a thread on a side stream, two batches ahead

            def seed_of(k: int, epoch: int = epoch) -> int:
                return config.seed * 1_000_003 + epoch * 7919 + k * 31 + rank

            feed = DeviceViews(loader, size, device, seed_of, crop_min=config.crop_min,
                               photometric=config.photometric)  # fmt: skip
        model.train()
        total, seen, started = 0.0, 0, time.perf_counter()
        for i, (x1, x2) in enumerate(feed):
            t = epoch + i / iterations
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(
                    t, lr=lr, warmup_epochs=config.warmup, epochs=config.epochs
                )
            m = momentum(t, base=config.momentum, epochs=config.epochs)
            timed = compiled and len(first_steps) < 2
            if timed:
                step_start = _synchronized(device)
            x1 = x1.to(device, non_blocking=True)
            x2 = x2.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for j, (c1, c2) in enumerate(
                zip(x1.chunk(config.accumulate), x2.chunk(config.accumulate), strict=True)
            ):
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    # one momentum update per iteration: the later micro-batches use m = 1
                    loss = train_model(c1, c2, m if j == 0 else 1.0) / config.accumulate
                scaler.scale(loss).backward()
                step_loss += float(loss.detach())
            scaler.step(optimizer)
            scaler.update()
            if timed:
                first_steps.append(_synchronized(device) - step_start)
                if len(first_steps) == 2:
                    compile_time = compile_seconds(*first_steps)
                    log.info("compiled in %.0f s (the first step's extra time)", compile_time)
            total += step_loss
            seen += config.batch_size
            rate = seen / max(time.perf_counter() - started, 1e-9)
            if progress is not None and rank == 0:
                progress(
                    {
                        "epoch": epoch,
                        "iteration": i,
                        "iterations": iterations,
                        "loss": step_loss,
                        "lr": optimizer.param_groups[0]["lr"],
                        "momentum": m,
                        "pairs_per_s": rate,
                    }
                )
            if should_stop is not None and world == 1 and should_stop():
                stopped = True
                last = save_checkpoint(
                    run_dir,
                    model,
                    optimizer,
                    scaler,
                    config,
                    epoch,
                    losses,
                    pairs=Path(pairs),
                    image_size=size,
                    partial_iterations=i + 1,
                )
                log.info("stopped in epoch %d after %d iterations", epoch + 1, i + 1)
                break
        if stopped:
            break
        losses.append(_mean_over_ranks(total / max(iterations, 1), device, world))
        if rank == 0:
            _log_epoch(run_dir / "log.csv", epoch, losses[-1], optimizer, m, rate)
        done = epoch + 1
        if rank == 0 and (done % config.save_every == 0 or done == end):
            last = save_checkpoint(
                run_dir,
                model,
                optimizer,
                scaler,
                config,
                done,
                losses,
                pairs=Path(pairs),
                image_size=size,
            )
        log.info("epoch %d/%d: loss %.4f, %.1f pairs/s", done, config.epochs, losses[-1], rate)
    if world > 1:
        dist.barrier()
    return PretrainResult(
        checkpoint=last or _newest_checkpoint(run_dir),
        run_dir=run_dir,
        epoch_losses=losses,
        pairs=len(table),
        pairs_per_second=rate,
        stopped=stopped,
        compile_seconds=compile_time,
    )


# ----------------------------------------------------------------------- checkpoints
def save_checkpoint(
    run_dir: Path,
    model: MoCo,
    optimizer,
    scaler,
    config: PretrainConfig,
    epoch: int,
    losses: list[float],
    *,
    pairs: Path,
    image_size: int,
    partial_iterations: int = 0,
) -> Path:
    """Write ``checkpoint_<epoch>.pth.tar`` atomically, in the MoCo v3 reference format."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    payload = {
        "epoch": epoch,
        "arch": config.arch,
        "state_dict": state,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "urbanvis": {
            "version": __version__,
            "config": asdict(config),
            "pairs": str(pairs),
            "image_size": image_size,
            "losses": list(losses),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        },
    }
    if partial_iterations:  # stopped inside epoch ``epoch + 1``; absent from whole epochs
        payload["urbanvis"]["partial_iterations"] = partial_iterations
    path = run_dir / f"checkpoint_{epoch:04d}.pth.tar"
    with atomic_file(path) as fh:
        torch.save(payload, fh)
    return path


def _newest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(run_dir.glob("checkpoint_*.pth.tar"))
    return found[-1] if found else None


def _newest_intact_checkpoint(run_dir: Path) -> tuple[Path, dict]:
    """The newest checkpoint of a run that reads, and its contents.

    A newer one that does not read (truncated by a full disk, a copy cut short) is passed
    over with a warning: resuming from the one before loses epochs, never the run.
    """
    found = sorted(run_dir.glob("checkpoint_*.pth.tar"))
    if not found:
        raise InputError(f"nothing to resume in {run_dir}; drop `resume` to start a new run")
    broken: list[str] = []
    for path in reversed(found):
        try:
            ckpt = read_checkpoint(path)
        except InputFileError:
            broken.append(path.name)
            continue
        if broken:
            log.warning(
                "%s cannot be read (truncated?); resuming from %s, the newest intact "
                "checkpoint, instead",
                ", ".join(broken),
                path.name,
            )
        return path, ckpt
    names = ", ".join(broken[:3]) + (", ..." if len(broken) > 3 else "")
    raise InputFileError(
        f"no checkpoint in {run_dir} can be read ({names}: truncated or not a PyTorch "
        f"checkpoint); drop `resume` to start a new run"
    )


def _resume(run_dir: Path, config: PretrainConfig, model: MoCo, optimizer, scaler):
    path, ckpt = _newest_intact_checkpoint(run_dir)
    meta = ckpt.get("urbanvis") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or "state_dict" not in ckpt:
        raise InputError(f"{path.name} is not an urbanvis training checkpoint; cannot resume it")
    saved = meta.get("config", {})
    fields = PretrainConfig.__dataclass_fields__
    keys = ("arch", "batch_size", "epochs", "dim", "mlp_dim", "seed", "base_lr", "crop_min",
            "photometric", "learn_patch")  # fmt: skip
    for key in keys:  # runs from before a setting existed had its default
        if saved.get(key, fields[key].default) != getattr(config, key):
            raise InputError(
                f"{path.name} was trained with `{key}`={saved.get(key)!r}, not "
                f"{getattr(config, key)!r}; resume with the same settings or use another run folder"
            )
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state)
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    rng = meta.get("rng", {})
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
    log.info("resuming from %s (epoch %d)", path.name, ckpt["epoch"])
    return int(ckpt["epoch"]), list(meta.get("losses", []))


# ------------------------------------------------------------------------ helpers
def _amp_dtype(config: PretrainConfig, device: torch.device):
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _synchronized(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has done all work queued so far."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _mean_over_ranks(value: float, device: torch.device, world: int) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t)
    return float(t) / world


def _log_epoch(path: Path, epoch: int, loss: float, optimizer, m: float, rate: float) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["epoch", "loss", "lr", "momentum", "pairs_per_s"])
        writer.writerow(
            [
                epoch + 1,
                f"{loss:.6f}",
                f"{optimizer.param_groups[0]['lr']:.6g}",
                f"{m:.6f}",
                f"{rate:.1f}",
            ]
        )
