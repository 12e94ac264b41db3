"""The paper's experiment: self, temporal and spatial contrast on one budget, judged four ways.

One call (:func:`run_experiment`, the ``urbanvis experiment`` command) takes a study of the
synthetic city (made on the spot from the bundled Helsinki roads when the folder is empty)
and

1. builds the three pair tables and cuts them to one size, so every strategy sees the same
   number of pairs for the same number of epochs (the same budget);
2. pretrains one encoder per strategy with one recipe (the preset), recording each step's
   loss;
3. embeds the study's captures with each encoder, a random-init ViT of the same
   architecture and the colour-thumbnail baseline (no learning at all), plus any
   ``baselines`` checkpoints the user has (an ImageNet DeiT, say);
4. runs the four evaluations on them: place recognition on unseen places, safety
   perception, zone indicator R² (same zones and folds for every encoder) and attention.
   Place recognition has a table per split: queries by ``day`` (another season's light
   and weather) and in the ``evening`` after sunset (day to night), each with the paper's
   [CLS] descriptor and with centred patch ``tokens`` (which keep the layout a small ViT's
   [CLS] loses; the thumbnail's counterpart is its pixels minus the mean colour);
5. checks learning instead of assuming it: the loss curve against its chance level, and a
   collapse diagnostic (the spread of the L2-normalised embeddings per dimension);
6. writes one report (Markdown and a static HTML page with the tables and plots) under
   ``reports/experiment/`` that says, for each of the paper's three hypotheses (temporal
   best at place recognition, spatial best at zone indicators, self best at safety),
   whether it held, with the numbers.

Every step is resumable: a rerun skips finished pair tables, training runs, embeddings and
evaluation sets, and continues an interrupted training run. Nothing is tuned to make a
hypothesis hold; the report states what happened.

Collapse diagnostic: for L2-normalised vectors ``z`` of width ``d``, the standard deviation
of each dimension over the images, averaged over dimensions and multiplied by ``sqrt(d)``.
Vectors spread evenly over the sphere give about 1; a collapsed encoder (every image the
same vector) gives 0. This is the measure of the SimSiam paper (Chen & He, 2021, Fig. 2).
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._errors import InputError, Stopped
from ._files import atomic_write_text
from .study import Study

log = logging.getLogger(__name__)

STRATEGIES = ("self", "temporal", "spatial")
"""The paper's three pair strategies, in the order of its tables."""

FOLD_SEEDS = 5
"""Zone indicator R² is the mean over this many 5-fold splits (seeds ``seed``...)."""

HYPOTHESES = (
    ("temporal", "place recognition", "R@1 on unseen places"),
    ("spatial", "zone indicators", "mean R² over all indicators"),
    ("self", "safety perception", "probe accuracy"),
)
"""(strategy, task, measure) of the paper's three hypotheses."""


@dataclass(frozen=True)
class Preset:
    """One recipe for the whole experiment: data, training and evaluation sizes."""

    name: str
    arch: str
    image_size: int
    render_size: int
    spacing: float
    captures_per_point: int
    headings: tuple[float, ...]
    points_per_zone: int
    max_pairs: int
    epochs: int
    batch_size: int
    base_lr: float
    warmup_epochs: float | None
    dim: int
    mlp_dim: int
    vpr_places: int
    safety_images: int
    attention_images: int
    device: str
    workers: int
    augment: str = "auto"
    precision: str = "auto"
    momentum: float = 0.99
    crop_min: float = 0.08
    photometric: float = 1.0
    learn_patch: bool = False
    vpr_queries: tuple[str, ...] = ("day", "evening")
    vpr_descriptors: tuple[str, ...] = ("cls", "tokens")

    def pretrain_config(self) -> dict[str, Any]:
        """The keywords of :class:`urbanvis.engine.pretrain.PretrainConfig`."""
        return {
            "arch": self.arch,
            "image_size": self.image_size,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "base_lr": self.base_lr,
            "warmup_epochs": self.warmup_epochs,
            "dim": self.dim,
            "mlp_dim": self.mlp_dim,
            "device": self.device,
            "workers": self.workers,
            "augment": self.augment,
            "precision": self.precision,
            "save_every": max(1, self.epochs // 10),
            "momentum": self.momentum,
            "crop_min": self.crop_min,
            "photometric": self.photometric,
            "learn_patch": self.learn_patch,
        }

    @property
    def vpr_splits(self) -> list[tuple[str, str]]:
        """(queries, descriptor) of every place-recognition table, days first."""
        return [(q, d) for q in self.vpr_queries for d in self.vpr_descriptors]


PRESETS: dict[str, Preset] = {
    # 2 CPU cores, under 30 minutes end to end. A ViT of 4 narrow layers on 64 px images
    # cut into 16 px patches (17 tokens): measured on 2 cores, the model with 8x8 patches
    # (65 tokens) stepped at a fifteenth of the rate. Eased for a short run (README, "The
    # paper's experiment", has the measurements): no photometric augmentation (a temporal
    # or spatial pair already differs in light, season and weather; with MoCo v3's colour
    # jitter on top, the temporal loss stayed at chance for 465 steps), crops of at least
    # half the image, a faster-moving target encoder (momentum 0.9 for ~900 steps instead
    # of 0.99 for 100,000s) and a trained patch projection. The same recipe for all three
    # strategies. 1.5e-3 is a choice between the paper's rule, which barely moves in so
    # few steps, and 4e-3, which collapsed the loss to chance in bench/learning_probe.py.
    "cpu": Preset(
        name="cpu",
        arch="vit_mini_patch16",
        image_size=64,
        render_size=64,
        spacing=15.0,
        captures_per_point=4,
        headings=(0.0, 180.0),
        points_per_zone=15,
        max_pairs=6_000,
        epochs=10,
        batch_size=64,
        base_lr=1.5e-3,
        warmup_epochs=1.0,
        dim=128,
        mlp_dim=512,
        vpr_places=200,
        safety_images=800,
        attention_images=16,
        device="cpu",
        workers=2,
        augment="cpu",
        precision="fp32",
        momentum=0.9,
        crop_min=0.5,
        photometric=0.0,
        learn_patch=True,
    ),
    # The paper's recipe (ViT-B/16 at 224 px, MoCo v3 defaults): one or more GPUs.
    "paper": Preset(
        name="paper",
        arch="vit_base_patch16_224",
        image_size=224,
        render_size=224,
        spacing=15.0,
        captures_per_point=6,
        headings=(0.0, 90.0, 180.0, 270.0),
        points_per_zone=15,
        max_pairs=1_000_000,
        epochs=300,
        batch_size=1024,
        base_lr=1.5e-4,
        warmup_epochs=None,
        dim=256,
        mlp_dim=4096,
        vpr_places=1000,
        safety_images=5000,
        attention_images=64,
        device="auto",
        workers=8,
    ),
}

Progress = Callable[[int, int, Mapping[str, Any]], None]


@dataclass
class EncoderRun:
    """One encoder of the experiment: how it was made and what it gave."""

    label: str
    kind: str  # strategy, random-init, thumbnail, baseline
    checkpoint: str | None = None
    model_id: str | None = None
    losses: list[float] = field(default_factory=list)  # per step, this process's steps
    epoch_losses: list[float] = field(default_factory=list)
    spread: float | None = None  # collapse diagnostic, see the module docstring
    seconds: float = 0.0
    curve: dict[int, float] = field(default_factory=dict)  # epoch -> R@1 of that checkpoint


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` made: the tables, the verdicts and the report files."""

    study: Path
    preset: Preset
    encoders: list[EncoderRun]
    vpr: pd.DataFrame
    safety: pd.DataFrame
    socioeconomic: pd.DataFrame
    attention: pd.DataFrame
    verdicts: list[dict[str, Any]]
    learning: list[dict[str, Any]]
    files: dict[str, Path]
    pairs: int
    seconds: float
    stopped: bool = False


def preset(name: str, **overrides: Any) -> Preset:
    """A preset by name, with any of its fields replaced (``epochs=2``...)."""
    if name not in PRESETS:
        raise InputError(f"unknown `preset` {name!r}; choose one of {', '.join(PRESETS)}")
    known = set(Preset.__dataclass_fields__) - {"name"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InputError(
            f"the experiment has no setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    chosen = replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    for key in ("epochs", "batch_size", "max_pairs", "vpr_places", "safety_images",
                "attention_images", "captures_per_point", "points_per_zone"):  # fmt: skip
        value = getattr(chosen, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"`{key}` must be a whole number of at least 1, got {value!r}")
    if chosen.captures_per_point < 2:
        raise InputError("`captures_per_point` must be at least 2: temporal pairs need 2 dates")
    if chosen.vpr_places < 2:
        raise InputError("`vpr_places` must be at least 2")
    from .evaluate.encoders import DESCRIPTORS
    from .simulate.vprset import QUERIES

    for key, allowed in (("vpr_queries", QUERIES), ("vpr_descriptors", DESCRIPTORS)):
        value = getattr(chosen, key)
        if (
            isinstance(value, str)
            or not isinstance(value, tuple | list)
            or not value
            or any(v not in allowed for v in value)
            or len(set(value)) < len(value)
        ):
            raise InputError(
                f"`{key}` must name one or more of {', '.join(allowed)} once each, "
                f"got {value!r}"
            )  # fmt: skip
    from .engine.pretrain import PretrainConfig

    PretrainConfig(**chosen.pretrain_config()).validate()  # lr, device... before any work
    return chosen


def spread(vectors: np.ndarray) -> float:
    """The collapse diagnostic: mean per-dimension std of unit vectors, times sqrt(d)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise InputError("the collapse diagnostic needs at least 2 vectors")
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    return float(x.std(axis=0).mean() * math.sqrt(x.shape[1]))


def chance_loss(batch_size: int, temperature: float = 0.2) -> float:
    """The MoCo v3 loss of an encoder that cannot tell the batch apart (both directions)."""
    return 2 * 2 * temperature * math.log(batch_size)


# --------------------------------------------------------------------------- the run
def run_experiment(
    study: Study,
    *,
    preset_name: str = "cpu",
    baselines: Sequence[str | os.PathLike[str]] = (),
    seed: int = 0,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    **overrides: Any,
) -> ExperimentResult:
    """The experiment on ``study`` (see the module docstring). Resumable."""
    from . import stages

    p = preset(preset_name, **overrides)
    baseline_files = [Path(b).expanduser() for b in baselines]
    for path in baseline_files:
        if not path.is_file():
            raise InputError(f"`baselines` {path} is not a file; give a checkpoint file")
    started = time.time()
    out = study.reports / "experiment"
    data = study.root / "experiment"

    def phase(name: str) -> Progress | None:
        if progress is None:
            return None
        return lambda done, total, counts: progress(done, total, {"phase": name, **counts})

    def check_stop(where: str) -> None:
        if should_stop is not None and should_stop():
            raise Stopped(f"stopped {where}; rerun the same command to continue")

    # 1. the city: the bundled Helsinki roads, synthetic captures, the simulated truth
    if not study.has_layer("points"):
        stages.sample(study, osm=stages.helsinki_pbf(), spacing=p.spacing)
    check_stop("after sampling")
    harvested = stages.harvest(
        study, provider="simulator", seed=seed, captures_per_point=p.captures_per_point,
        headings=p.headings, size=p.render_size, workers=1, progress=phase("harvest"),
        should_stop=should_stop,
    )  # fmt: skip
    if harvested.stopped:
        raise Stopped("stopped while harvesting; rerun the same command to continue")
    truth = study.root / "truth"
    if not (truth / "indicators.csv").is_file():
        stages.simulate(study, truth=True, seed=seed, points_per_zone=p.points_per_zone)
    check_stop("after the ground truth")

    # 2. one budget: every strategy's pair table cut to the smallest one's size
    n_pairs = _same_budget_pairs(study, p, seed, should_stop)

    # 3. pretraining, one run per strategy
    runs: list[EncoderRun] = []
    for strategy in STRATEGIES:
        check_stop(f"before pretraining {strategy}")
        runs.append(_pretrain(study, strategy, p, seed, phase, should_stop))
    runs.append(EncoderRun(label="random init", kind="random-init"))
    runs.append(EncoderRun(label="thumbnail 16x16", kind="thumbnail"))
    for path in baseline_files:
        runs.append(EncoderRun(label=_baseline_label(path), kind="baseline", checkpoint=str(path)))

    # 4. embeddings of the study's captures (zone indicators, collapse diagnostic)
    for run in runs:
        check_stop(f"before embedding {run.label}")
        _embed(study, run, p, seed, phase(f"embed {run.label}"), should_stop)

    # 5. the evaluation sets, made once
    pp2_dir = data / "safety-set"
    vpr_dirs = {q: data / vpr_folder(q) for q in p.vpr_queries}
    for queries, vpr_dir in vpr_dirs.items():
        if not vpr_dir.is_dir():
            stages.simulate(vpr_set=vpr_dir, places=p.vpr_places, size=p.render_size,
                            seed=seed + 1, queries=queries,
                            progress=phase(f"render VPR set ({queries})"),
                            should_stop=should_stop)  # fmt: skip
    if not pp2_dir.is_dir():
        stages.simulate(safety_set=pp2_dir, images=p.safety_images, size=p.render_size,
                        seed=seed + 2, progress=phase("render safety set"),
                        should_stop=should_stop)  # fmt: skip
    check_stop("before the evaluations")

    # 6. the four evaluations, every encoder in every table
    specs = _specs(runs, p, seed)
    from .evaluate.attention import evaluate_attention, image_list, write_attention_report
    from .evaluate.safety import safety_table
    from .evaluate.socioeconomic import socioeconomic_table
    from .evaluate.vpr import evaluate_vpr

    vpr_tables = []
    for queries, descriptor in p.vpr_splits:
        table = evaluate_vpr(
            vpr_dirs[queries], specs, image_size=p.image_size, workers=0, device=p.device,
            descriptor=descriptor, should_stop=should_stop,
            progress=phase(f"eval place recognition ({queries}, {descriptor})"),
        )  # fmt: skip
        table["model"] = [s.label for s in specs]  # the descriptor has a column of its own
        table.insert(1, "queries", queries)
        table.insert(2, "descriptor", descriptor)
        vpr_tables.append(table)
    vpr = pd.concat(vpr_tables, ignore_index=True)
    _learning_curves(runs, vpr_dirs[p.vpr_queries[0]], p, phase, should_stop)
    safety = safety_table(
        pp2_dir / "votes.csv", specs, images=pp2_dir / "images", seed=seed,
        image_size=p.image_size, workers=0, device=p.device,
        progress=phase("eval safety"), should_stop=should_stop,
    )["table"]  # fmt: skip
    # R² over FOLD_SEEDS different 5-fold splits: one split's ranking of close encoders
    # can flip with the next (measured: a 0.01 lead reversed), so the table is their mean
    splits = [
        socioeconomic_table(
            study, indicators=truth / "indicators.csv", topics=truth / "topics.csv",
            models=[r.model_id for r in runs if r.model_id], level="blockgroup",
            zones=study.gpkg, zones_layer="zones_sim", id_field="zone_id", protocol="kfold5",
            seed=seed + k, progress=phase(f"eval zone indicators, split {k + 1}"),
            should_stop=should_stop,
        )["table"].rename(columns={r.model_id: r.label for r in runs if r.model_id})
        for k in range(FOLD_SEEDS)
    ]  # fmt: skip
    labels = [c for c in splits[0].columns[2:]]
    stacked = np.stack([t[labels].to_numpy(float) for t in splits])
    socio = splits[0].copy()
    socio[labels] = stacked.mean(axis=0)
    socio_sd = splits[0].copy()
    socio_sd[labels] = stacked.std(axis=0, ddof=1) if FOLD_SEEDS > 1 else 0.0
    from .vectors import ok_captures

    images = image_list([study.root / f for f in ok_captures(study)["image_path"]],
                        max_images=p.attention_images, seed=seed)  # fmt: skip
    vit_specs = [s for s in specs if not s.thumbnail]
    attention = evaluate_attention(
        images, vit_specs, image_size=p.image_size, device=p.device,
        progress=phase("eval attention"), should_stop=should_stop,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    attention_files = write_attention_report(attention, out / "attention" / "attention.csv")
    attention_table = pd.read_csv(attention_files["fourier_table"])

    # 7. learning checks and the hypotheses
    for run in runs:
        if run.model_id:
            from .vectors import read_vectors

            run.spread = spread(read_vectors(study, run.model_id)[1])
    learning = _learning_checks(runs, vpr, p)
    verdicts = _verdicts(vpr, socio, safety, p)
    overall_sd = socio_sd[socio_sd["topic"] == "Overall"].iloc[0]
    zone_verdict = next(v for v in verdicts if v["hypothesis"].startswith("spatial"))
    zone_verdict["spread"] = ", ".join(f"{c} ±{float(overall_sd[c]):.3f}" for c in labels)
    result = ExperimentResult(
        study=study.root, preset=p, encoders=runs, vpr=vpr, safety=safety,
        socioeconomic=socio, attention=attention_table, verdicts=verdicts, learning=learning,
        files={}, pairs=n_pairs, seconds=time.time() - started,
    )  # fmt: skip
    result.files = write_report(result, out, attention_files)
    return result


def _same_budget_pairs(study: Study, p: Preset, seed: int, should_stop) -> int:
    """Build the three pair tables and cut each to the size of the smallest."""
    from . import stages

    counts = {}
    for strategy in STRATEGIES:
        made = stages.pairs(study, strategy=strategy, max_pairs=p.max_pairs, seed=seed,
                            should_stop=should_stop)  # fmt: skip
        counts[strategy] = int(made.outputs["pairs"])
        if counts[strategy] < p.batch_size:
            raise InputError(
                f"only {counts[strategy]} {strategy} pairs, fewer than one batch of "
                f"{p.batch_size}; sample more points (a smaller `spacing`) or more "
                f"`captures_per_point`"
            )
    n = min(counts.values())
    for strategy, count in counts.items():
        if count > n:
            stages.pairs(study, strategy=strategy, max_pairs=n, seed=seed,
                         should_stop=should_stop)  # fmt: skip
    log.info("pairs per strategy (same budget): %d", n)
    return n


def vpr_folder(queries: str) -> str:
    """The experiment's VPR set of ``queries`` conditions, under STUDY/experiment/."""
    return "vpr-set" if queries == "evening" else f"vpr-set-{queries}"


def curve_split(p: Preset) -> tuple[str, str]:
    """The (queries, descriptor) of the R@1-by-epoch curves: the first set, last descriptor."""
    return p.vpr_queries[0], p.vpr_descriptors[-1]


def _run_name(strategy: str) -> str:
    return f"experiment-{strategy}"


def _pretrain(study, strategy, p: Preset, seed, phase, should_stop) -> EncoderRun:
    """Train (or resume, or find finished) one strategy's encoder; record its loss."""
    from . import stages

    run = EncoderRun(label=strategy, kind="strategy")
    run_dir = study.checkpoints / _run_name(strategy)
    log_file = run_dir / "experiment_losses.json"
    config = p.pretrain_config()
    final = run_dir / f"checkpoint_{p.epochs:04d}.pth.tar"
    saved = json.loads(log_file.read_text(encoding="utf-8")) if log_file.is_file() else None
    if final.is_file() and saved is not None and saved.get("complete"):
        run.checkpoint, run.losses = str(final), saved["losses"]
        run.epoch_losses, run.seconds = saved["epoch_losses"], saved["seconds"]
        return run
    bar = phase(f"pretrain {strategy}")
    # a resumed run's curve continues the steps recorded before the interruption
    losses: list[float] = list(saved["losses"]) if saved else []
    spent = float(saved["seconds"]) if saved else 0.0

    def on_step(done: int, total: int, counts: Mapping[str, Any]) -> None:
        losses.append(float(counts["loss"]))
        if bar is not None:
            bar(done, total, counts)

    began = time.time()
    resume = any(run_dir.glob("checkpoint_*.pth.tar"))
    try:
        result = stages.pretrain(study, pairs=strategy, name=_run_name(strategy), resume=resume,
                                 progress=on_step, should_stop=should_stop, seed=seed,
                                 **config)  # fmt: skip
    finally:
        if run_dir.is_dir():
            atomic_write_text(log_file, json.dumps({
                "losses": losses, "epoch_losses": [], "complete": False,
                "seconds": spent + time.time() - began,
            }))  # fmt: skip
    if result.stopped:
        raise Stopped(f"stopped while pretraining {strategy}; rerun the same command to resume")
    run.checkpoint = str(result.files["checkpoint"])
    run.losses, run.epoch_losses = losses, list(result.details.epoch_losses)
    run.seconds = spent + time.time() - began
    atomic_write_text(log_file, json.dumps({
        "losses": losses, "epoch_losses": run.epoch_losses, "complete": True,
        "seconds": run.seconds,
    }))  # fmt: skip
    return run


def _learning_curves(runs: list[EncoderRun], vpr_dir: Path, p: Preset, phase, should_stop):
    """R@1 on the unseen places after each saved epoch of each strategy: did it rise?

    On the :func:`curve_split` set and descriptor only (one of the VPR tables' splits)."""
    from .evaluate.encoders import EncoderSpec
    from .evaluate.vpr import evaluate_vpr, read_dataset

    descriptor = curve_split(p)[1]
    data = read_dataset(vpr_dir)
    for run in runs:
        if run.kind != "strategy" or run.checkpoint is None:
            continue
        saved = sorted(Path(run.checkpoint).parent.glob("checkpoint_*.pth.tar"))
        epochs = [int(c.name.split("_")[1].split(".")[0]) for c in saved]
        specs = [EncoderSpec(label=f"{run.label}@{e}", checkpoint=str(c))
                 for e, c in zip(epochs, saved, strict=True)]  # fmt: skip
        table = evaluate_vpr(
            data, specs, image_size=p.image_size, workers=0, device=p.device,
            descriptor=descriptor, progress=phase(f"R@1 by epoch, {run.label}"),
            should_stop=should_stop,
        )  # fmt: skip
        run.curve = {e: float(r) for e, r in zip(epochs, table["R@1"], strict=True)}


def _baseline_label(path: Path) -> str:
    return path.name.removesuffix(".pth.tar").removesuffix(".pth").removesuffix(".pt")


def _embed(study, run: EncoderRun, p: Preset, seed, bar, should_stop) -> None:
    from . import stages

    if run.kind == "thumbnail":
        run.model_id = _thumbnail_embeddings(study, should_stop)
        return
    if run.kind == "random-init":
        kwargs: dict[str, Any] = {"model": p.arch, "random_init": True, "seed": seed}
    else:
        kwargs = {"checkpoint": run.checkpoint}
    made = stages.embed(study, image_size=p.image_size, device=p.device, workers=0,
                        progress=bar, should_stop=should_stop, **kwargs)  # fmt: skip
    if made.stopped:
        raise Stopped(f"stopped while embedding {run.label}; rerun the same command to resume")
    run.model_id = made.outputs["model_id"]


THUMBNAIL_MODEL = "thumbnail:16x16"


def _thumbnail_embeddings(study, should_stop) -> str:
    """The thumbnail baseline's vectors in the study's vector store (as ``embed`` writes)."""
    from .evaluate.encoders import THUMBNAIL_SIDE, thumbnail_features
    from .vectors import (
        finalise,
        model_folder,
        next_part_number,
        pending_captures,
        write_meta,
        write_part,
    )

    folder = model_folder(study, THUMBNAIL_MODEL)
    ids, paths, _, _ = pending_captures(study, folder)  # what embed would still do
    dim = 3 * THUMBNAIL_SIDE**2
    write_meta(folder, {"model": THUMBNAIL_MODEL, "arch": "thumbnail", "dim": dim,
                        "image_size": THUMBNAIL_SIDE})  # fmt: skip
    for start in range(0, len(ids), 4096):  # a part per chunk: a stop loses one chunk
        chunk = paths.slice(start, 4096).to_pylist()
        vectors = thumbnail_features([study.root / f for f in chunk], should_stop=should_stop)
        write_part(folder, 0, next_part_number(folder, 0),
                   ids.slice(start, 4096).to_pylist(), vectors)  # fmt: skip
    finalise(study, folder, THUMBNAIL_MODEL)
    return THUMBNAIL_MODEL


def _specs(runs: list[EncoderRun], p: Preset, seed: int):
    from .evaluate.encoders import THUMBNAIL_SIDE, EncoderSpec

    specs = []
    for run in runs:
        if run.kind == "thumbnail":
            specs.append(EncoderSpec(label=run.label, thumbnail=THUMBNAIL_SIDE))
        elif run.kind == "random-init":
            specs.append(EncoderSpec(label=run.label, model=p.arch, random_init=True, seed=seed))
        else:
            specs.append(EncoderSpec(label=run.label, checkpoint=run.checkpoint))
    return specs


# --------------------------------------------------------------------------- verdicts
def _r1(vpr: pd.DataFrame, queries: str, descriptor: str) -> dict[str, float]:
    """R@1 by encoder label in one (queries, descriptor) split of the VPR table."""
    part = vpr[(vpr["queries"] == queries) & (vpr["descriptor"] == descriptor)]
    return {str(m): float(r) for m, r in zip(part["model"], part["R@1"], strict=True)}


def split_name(queries: str, descriptor: str) -> str:
    """``day/tokens``: how the tables and the report name a place-recognition split."""
    return f"{queries}/{descriptor}"


def _learning_checks(runs: list[EncoderRun], vpr: pd.DataFrame, p: Preset) -> list[dict]:
    """Per trained encoder: loss first/last vs chance, spread, and R@1 in every VPR split
    against both baselines (``beats_both``: the splits where it beats both)."""
    chance = chance_loss(p.batch_size)
    r1 = {split_name(q, d): _r1(vpr, q, d) for q, d in p.vpr_splits}
    rows = []
    for run in runs:
        if run.kind != "strategy":
            continue
        first = run.epoch_losses[0] if run.epoch_losses else float("nan")
        last = run.epoch_losses[-1] if run.epoch_losses else float("nan")
        row: dict[str, Any] = {
            "encoder": run.label, "loss_first_epoch": first, "loss_last_epoch": last,
            "chance_loss": chance, "spread": run.spread,
        }  # fmt: skip
        beats = []
        for name, values in r1.items():
            row[f"R@1 {name}"] = values[run.label]
            row[f"R@1 {name} random init"] = values["random init"]
            row[f"R@1 {name} thumbnail"] = values["thumbnail 16x16"]
            if values[run.label] > max(values["random init"], values["thumbnail 16x16"]):
                beats.append(name)
        row["beats_both"] = " ".join(beats) or "none"
        row["R@1 by epoch"] = " ".join(f"{e}:{v:.1f}" for e, v in sorted(run.curve.items()))
        rows.append(row)
    return rows


def learning_text(row: dict, p: Preset) -> str:
    """One encoder's learning check in words (the report and the CLI)."""
    splits = "; ".join(
        f"{name} {row[f'R@1 {name}']:.1f} (random init {row[f'R@1 {name} random init']:.1f}, "
        f"thumbnail {row[f'R@1 {name} thumbnail']:.1f})"
        for name in (split_name(q, d) for q, d in p.vpr_splits)
    )
    beats = row["beats_both"]
    won = f"beats both baselines on {beats}" if beats != "none" else "beats both on no split"
    return (
        f"loss {row['loss_first_epoch']:.3f} -> {row['loss_last_epoch']:.3f} (chance "
        f"{row['chance_loss']:.3f}), spread {row['spread']:.3f}; R@1 {splits}: {won}"
    )


BASELINES = ("random init", "thumbnail 16x16")


def _verdicts(
    vpr: pd.DataFrame, socio: pd.DataFrame, safety: pd.DataFrame, p: Preset
) -> list[dict]:
    """Did each of the paper's hypotheses hold among the three strategies? With the numbers.

    A hypothesis holds when its strategy is strictly best of the three. It is only evidence
    (``beats_baselines``) when that strategy also beats both baselines that learned nothing;
    otherwise the ranking of the three is noise around an untrained encoder. Place
    recognition is judged in every (queries, descriptor) split, one verdict each.
    """
    overall = socio[(socio["topic"] == "Overall")].iloc[0]
    measured: list[tuple[str, str, str, dict[str, float]]] = []
    for strategy, task, measure in HYPOTHESES:
        if strategy == "temporal":
            for q, d in p.vpr_splits:
                measured.append((strategy, task, f"{measure}, {q} queries, {d} descriptor",
                                 _r1(vpr, q, d)))  # fmt: skip
        elif strategy == "spatial":
            values = {c: float(overall[c]) for c in socio.columns[2:]}
            measured.append((strategy, task, measure, values))
        else:
            values = dict(zip(safety["model"], safety["accuracy"], strict=True))
            measured.append((strategy, task, measure, values))
    out = []
    for strategy, task, measure, got in measured:
        values = {s: float(got[s]) for s in STRATEGIES}
        best = max(values.values())
        winners = [s for s, v in values.items() if v == best]
        held = winners == [strategy]
        numbers = ", ".join(f"{s} {values[s]:.3g}" for s in STRATEGIES)
        base = {b: float(got[b]) for b in BASELINES if b in got}
        beats = bool(base) and values[strategy] > max(base.values())
        out.append({
            "hypothesis": f"{strategy} contrast is best at {task}", "measure": measure,
            "held": held, "numbers": numbers, "best": " and ".join(winners),
            "baselines": ", ".join(f"{b} {v:.3g}" for b, v in base.items()),
            "beats_baselines": beats,
        })  # fmt: skip
    return out


def verdict_text(v: dict) -> str:
    """'held' or 'did not hold', and whether that is evidence, for the report and the CLI."""
    word = "held" if v["held"] else "did not hold"
    if v["baselines"]:
        tail = "above" if v["beats_baselines"] else "NOT above"
        word += f" ({v['hypothesis'].split()[0]} is {tail} the baselines: {v['baselines']})"
    return word


# --------------------------------------------------------------------------- report
def write_report(result: ExperimentResult, out: Path, attention_files: dict[str, Path]):
    """reports/experiment/: report.md, report.html, the tables as CSV, the loss plot."""
    from .evaluate._draw import line_plot
    from .evaluate.tables import markdown_table

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    tables = {
        "vpr": (result.vpr, "Place recognition on unseen places (Recall@K, %)", 1),
        "socioeconomic": (
            result.socioeconomic,
            f"Zone indicator R² (5-fold, mean of {FOLD_SEEDS} splits)",
            3,
        ),
        "safety": (result.safety, "Safety perception (linear probe, %)", 1),
        "learning": (pd.DataFrame(result.learning), "Learning checks", 3),
    }
    for name, (table, _, _) in tables.items():
        files[name] = out / f"{name}.csv"
        atomic_write_text(files[name], table.to_csv(index=False))
    series = {}
    for run in result.encoders:
        if run.losses:
            y = np.asarray(run.losses, float)
            k = max(1, len(y) // 100)  # a running mean over 1% of the steps
            smooth = np.convolve(y, np.ones(k) / k, mode="valid")
            series[run.label] = (np.arange(len(smooth)) + k, smooth)
    if series:
        steps = max(len(x) for x, _ in series.values())
        chance = chance_loss(result.preset.batch_size)
        series[f"chance ({chance:.2f})"] = (np.array([1.0, steps]), np.array([chance, chance]))
        files["loss_plot"] = out / "loss.png"
        files["loss_plot"].write_bytes(
            line_plot(series, xlabel="step", ylabel="loss", title="MoCo v3 loss per step")
        )
    curves = {
        run.label: (
            np.array(sorted(run.curve), float),
            np.array([run.curve[e] for e in sorted(run.curve)]),
        )
        for run in result.encoders
        if run.curve
    }
    if curves:
        last = max(float(x.max()) for x, _ in curves.values())
        r1 = _r1(result.vpr, *curve_split(result.preset))
        for label in ("random init", "thumbnail 16x16"):
            curves[label] = (np.array([0.0, last]), np.array([r1[label], r1[label]]))
        files["curve_plot"] = out / "recall_by_epoch.png"
        files["curve_plot"].write_bytes(
            line_plot(curves, xlabel="epoch", ylabel="R@1 (%)",
                      title="Place recognition on unseen places after each saved epoch "
                            f"({split_name(*curve_split(result.preset))})")
        )  # fmt: skip
    p = result.preset
    lines = [
        "# urbanvis experiment: self, temporal and spatial contrast",
        "",
        f"Study `{result.study}`, preset `{p.name}`: {p.arch} at {p.image_size} px, "
        f"{result.pairs:,} pairs per strategy, {p.epochs} epochs, batch {p.batch_size}, "
        f"base lr {p.base_lr:g}. This run took {result.seconds / 60:.1f} minutes; training "
        f"took {sum(r.seconds for r in result.encoders) / 60:.1f} minutes in all (a rerun "
        f"resumes and does not train again).",
        "",
        "## The paper's hypotheses",
        "",
    ]
    for v in result.verdicts:
        sd = f" Spread over {FOLD_SEEDS} splits: {v['spread']}." if v.get("spread") else ""
        lines.append(f"- **{v['hypothesis']}** ({v['measure']}): {v['numbers']}: "
                     f"{verdict_text(v)}.{sd}")  # fmt: skip
    lines += ["", "## Did the encoders learn?", ""]
    curve = split_name(*curve_split(p))
    for row in result.learning:
        lines.append(
            f"- **{row['encoder']}**: {learning_text(row, p)}. R@1 ({curve}) after each "
            f"saved epoch: {row['R@1 by epoch']}."
        )
    lines += [
        "",
        "Spread: 1 = embeddings spread evenly, 0 = collapsed. Place recognition splits: "
        "queries on a spring `day` (another day's light, season and weather, as between a "
        "study's own dates) or an autumn `evening` after sunset (day to night, which "
        "street-view captures hardly contain); descriptor `cls` (the paper's [CLS] vector) "
        "or `tokens` (patch tokens minus their mean; for the thumbnail, pixels minus the "
        "mean colour).",
    ]
    lines.append("")
    for name, (table, title, digits) in tables.items():
        if name != "learning":
            lines.append(markdown_table(table, title=title, digits=digits))
    if "loss_plot" in files:
        lines += ["![loss per step](loss.png)", ""]
    if "curve_plot" in files:
        lines += ["![R@1 by epoch](recall_by_epoch.png)", ""]
    attention_pngs = sorted(p_.relative_to(out) for p_ in attention_files.values()
                            if p_.suffix == ".png")  # fmt: skip
    for png in attention_pngs:
        lines += [f"![{png.stem}]({png.as_posix()})", ""]
    files["markdown"] = out / "report.md"
    atomic_write_text(files["markdown"], "\n".join(lines) + "\n")
    files["html"] = out / "report.html"
    atomic_write_text(files["html"], _html(result, tables, files, attention_pngs))
    summary = {
        "preset": asdict(p), "pairs": result.pairs, "seconds": result.seconds,
        "verdicts": result.verdicts, "learning": result.learning,
    }  # fmt: skip
    files["json"] = out / "summary.json"
    atomic_write_text(files["json"], json.dumps(summary, indent=2, default=str) + "\n")
    return files


def _html(result, tables, files, attention_pngs) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>urbanvis experiment</title><style>body{font-family:sans-serif;max-width:72em;"
        "margin:2em auto}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid "
        "#ccc;padding:.2em .6em}td.n{text-align:right}.held{color:#1a7f37}.not{color:#b42318}"
        "</style></head><body>",
        "<h1>urbanvis experiment: self, temporal and spatial contrast</h1>",
        f"<p>Study <code>{esc(str(result.study))}</code>, preset <code>{esc(result.preset.name)}"
        f"</code>; {result.pairs:,} pairs per strategy; this run {result.seconds / 60:.1f} "
        "minutes.</p>",
        "<h2>The paper's hypotheses</h2><ul>",
    ]
    for v in result.verdicts:
        cls = "held" if v["held"] and v["beats_baselines"] else "not"
        parts.append(f"<li><b>{esc(v['hypothesis'])}</b> ({esc(v['measure'])}): "
                     f"{esc(v['numbers'])}: <span class='{cls}'>{esc(verdict_text(v))}</span>"
                     "</li>")  # fmt: skip
    parts.append("</ul>")
    for _name, (table, title, digits) in tables.items():
        parts.append(f"<h2>{esc(title)}</h2><table><tr>")
        parts += [f"<th>{esc(str(c))}</th>" for c in table.columns]
        parts.append("</tr>")
        for row in table.itertuples(index=False):
            parts.append("<tr>")
            for value in row:
                if isinstance(value, float):
                    text = "" if np.isnan(value) else f"{value:.{digits}f}"
                    parts.append(f"<td class='n'>{text}</td>")
                else:
                    parts.append(f"<td>{esc(str(value))}</td>")
            parts.append("</tr>")
        parts.append("</table>")
    if "loss_plot" in files:
        parts.append("<h2>Loss</h2><img src='loss.png' alt='loss per step'>")
    if "curve_plot" in files:
        parts.append("<h2>R@1 by epoch</h2><img src='recall_by_epoch.png' alt='R@1 by epoch'>")
    if attention_pngs:
        parts.append("<h2>Attention</h2>")
        parts += [f"<img src='{esc(p.as_posix())}' alt='{esc(p.stem)}'>" for p in attention_pngs]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
