"""The stage layer: one function per pipeline stage, under every front end.

    sample -> harvest -> pairs -> pretrain -> embed -> predict -> map

Each stage takes a study (a folder path or a :class:`~urbanvis.study.Study`) and the same
parameters as its command (``urbanvis harvest --max-requests 100`` is
``harvest(study, max_requests=100)``), one ``progress(done, total, counts)`` callback and one
``should_stop()`` callback. It validates all of its input before it writes anything, records
its own run in study.toml, and returns one :class:`StageResult`. The CLI, the QGIS plugin and
notebooks call these functions and nothing below them, so no front end holds logic that
another would have to copy::

    from urbanvis import stages as uv

    uv.sample("hel", osm=uv.helsinki_pbf(), bbox="24.93,60.16,24.96,60.18")
    uv.harvest("hel", provider="simulator", captures_per_point=3)
    uv.pairs("hel", strategy="temporal")
    uv.pretrain("hel", pairs="temporal", arch="vit_mini_patch16", epochs=2, batch_size=64)
    uv.embed("hel", checkpoint=uv.latest_checkpoint("hel"))
    uv.predict("hel", zones="zones.gpkg", id_field="GEOID", indicators="acs.csv")
    uv.map("hel", layer="predictions_blockgroup")

Errors are :class:`~urbanvis._errors.UrbanvisError` whose messages name parameters by their
keyword between backticks; each front end words them (``--max-requests`` on the command
line, the parameter's label in QGIS). ``should_stop`` is checked between units of work
(batches, iterations, steps); a stopped stage keeps what it finished, records its run with
``stopped = true`` and returns a result whose ``stopped`` is true. Nothing here imports
torch: the torch stages import the engine when they run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import InputError
from .demo import helsinki_pbf
from .study import Study, check_writable, open_study

log = logging.getLogger(__name__)

Progress = Callable[[int, int, Mapping[str, Any]], None]
"""``progress(done, total, counts)``: units done so far, units in all, running counts."""

ShouldStop = Callable[[], bool]
"""``should_stop()``: true when the caller wants the stage to stop at the next safe point."""

StudyLike = str | os.PathLike[str] | Study

__all__ = [
    "StageResult",
    "embed",
    "harvest",
    "helsinki_pbf",
    "latest_checkpoint",
    "map",
    "open_study",
    "pairs",
    "predict",
    "pretrain",
    "sample",
    "simulate",
    "Study",
]


@dataclass
class StageResult:
    """What one stage did.

    Attributes
    ----------
    stage
        The stage's name as recorded in study.toml (``harvest``, ``predict --apply``...).
    study
        The study it ran on (None for a contact sheet made without one).
    message
        A summary for people, as the CLI prints it (may hold several lines).
    outputs
        The figures recorded in study.toml for this run.
    files
        Files written, by kind (``table``, ``checkpoint``, ``html``...), absolute paths.
    layers
        GeoPackage layers written or updated.
    stopped
        True when the stage stopped early (``should_stop``, a request budget...); what it
        finished is kept and a rerun continues.
    details
        The stage's own result object (a harvest summary, the R² table...), for callers who
        want more than the figures.
    """

    stage: str
    study: Study | None
    message: str
    outputs: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)
    stopped: bool = False
    details: Any = None

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------- helpers
def _study(study: StudyLike, *, create: bool) -> Study:
    if isinstance(study, Study):
        return study
    return open_study(study, create=create)


def _root(study: StudyLike) -> Path:
    return study.root if isinstance(study, Study) else Path(study).expanduser()


def _has_study(study: StudyLike) -> bool:
    return (_root(study) / "study.gpkg").is_file()


def _stopper(should_stop: ShouldStop | None) -> ShouldStop:
    return should_stop if should_stop is not None else (lambda: False)


def _finish(
    st: Study,
    stage: str,
    parameters: Mapping[str, Any],
    message: str,
    *,
    outputs: Mapping[str, Any] | None = None,
    files: Mapping[str, Path] | None = None,
    layers: Sequence[str] = (),
    stopped: bool = False,
    details: Any = None,
    record: bool = True,
) -> StageResult:
    """Record the run in study.toml and build the result."""
    outs = {k: v for k, v in dict(outputs or {}).items() if v is not None}
    if stopped:
        outs["stopped"] = True
    if record:
        st.record_run(stage, _shown(parameters), **outs)
    return StageResult(
        stage=stage,
        study=st,
        message=message,
        outputs=outs,
        files={k: Path(v) for k, v in dict(files or {}).items()},
        layers=list(layers),
        stopped=stopped,
        details=details,
    )


def _shown(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as study.toml may keep them: URLs without user:password or keys."""
    from ._secrets import redact_url

    return {
        k: redact_url(v) if isinstance(v, str) and "://" in v else v for k, v in parameters.items()
    }


def _check_int(name: str, value: int | None, *, low: int, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"`{name}` must be a whole number of at least {low}, got {value!r}")


def _rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


# --------------------------------------------------------------------------- sample
def sample(
    study: StudyLike,
    *,
    city: str | None = None,
    area: str | os.PathLike[str] | None = None,
    bbox: str | Sequence[float] | None = None,
    osm: str | os.PathLike[str] | None = None,
    network: str = "drive",
    spacing: float = 15.0,
    method: str = "network",
    merge_distance: float = 1.0,
    nominatim_url: str | None = None,
    overpass_url: str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """Points every ``spacing`` metres along the streets into the study's ``points`` layer.

    Where: ``city`` (geocoded online), ``area`` (a polygon file), ``bbox`` (W,S,E,N
    degrees) or ``osm`` (a local .osm.pbf/.osm/.graphml, clipped to the others when given).
    ``method="grid"`` puts points on a square grid instead. See
    :func:`urbanvis.sampling.sample` for the details.
    """
    from . import sampling

    check_writable(_root(study))
    stop = _stopper(should_stop)
    parameters = dict(
        city=city,
        area=str(area) if area is not None else None,
        bbox=bbox,
        osm=str(osm) if osm is not None else None,
        network=network,
        spacing=spacing,
        method=method,
        merge_distance=merge_distance,
        nominatim_url=nominatim_url,
        overpass_url=overpass_url,
    )
    if progress is not None:
        progress(0, 2, {})
    points = sampling.sample(**parameters)  # type: ignore[arg-type]
    if progress is not None:
        progress(1, 2, {"points": len(points)})
    st = _study(study, create=True)
    if stop():
        return _finish(st, "sample", parameters, "stopped before writing points", stopped=True)
    st.write_layer("points", points)
    if progress is not None:
        progress(2, 2, {"points": len(points)})
    return _finish(
        st,
        "sample",
        parameters,
        f"wrote {len(points):,} points to {st.gpkg} (layer 'points')",
        outputs={"points": len(points)},
        layers=["points"],
        details=points,
    )


# --------------------------------------------------------------------------- harvest
def harvest(
    study: StudyLike,
    *,
    provider: str = "simulator",
    city: str | None = None,
    area: str | os.PathLike[str] | None = None,
    bbox: str | Sequence[float] | None = None,
    osm: str | os.PathLike[str] | None = None,
    metadata_only: bool = False,
    batch_size: int = 64,
    limit: int | None = None,
    retry_failed: bool = False,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    **options: Any,
) -> StageResult:
    """Street-level images for the study's points into the ``captures`` layer, resumably.

    ``options`` are the provider's (``headings``, ``size``, ``radius``, ``since``,
    ``until``, ``captures_per_point``, ``seed``, ``images``, ``key_file``,
    ``concurrency``, ``rate``, ``max_requests``...; see ``urbanvis harvest --help``).
    ``headings`` may be a sequence of degrees or a string like ``"0,90,180,270"``. A study
    without points is sampled first when ``city``, ``area``, ``bbox`` or ``osm`` is given.
    ``metadata_only`` (web providers) surveys coverage and cost without downloading.
    """
    from . import _secrets
    from .harvest import harvest as run_harvest
    from .harvest import survey
    from .providers import provider_from_name

    _secrets.install_log_filter()
    _check_int("batch_size", batch_size, low=1, allow_none=False)
    _check_int("limit", limit, low=1)
    if "headings" in options and isinstance(options["headings"], str):
        options["headings"] = parse_headings(options["headings"])
    options = {k: v for k, v in options.items() if v is not None}
    source = provider_from_name(provider, metadata_only=metadata_only, **options)
    if metadata_only and not source.supports_metadata_only:
        raise InputError(
            f"`metadata_only` is for gsv, gsv-historical and mapillary, not {provider}"
        )
    where = dict(city=city, area=area, bbox=bbox, osm=osm)
    if any(v is not None for v in where.values()):
        _sample_first(study, {k: v for k, v in where.items() if v is not None})
    elif provider != "folder" and not _has_study(study):
        root = _root(study)
        raise InputError(
            f"{root} is not a study yet; give `city`, `area`, `bbox` or `osm` to sample "
            f"its points first, or sample it first ('urbanvis sample --study {root}')"
        )
    st = _study(study, create=provider == "folder")
    if metadata_only:
        found = survey(st, source, limit=limit, progress=progress)
        return _finish(
            st,
            "harvest --metadata-only",
            {"provider": provider, **source.parameters()},
            found.line(),
            outputs={
                "points": found.surveyed,
                "panoramas": found.panoramas,
                "images": found.images,
            },
            layers=[found.layer] if found.layer else [],
            stopped=bool(found.reason),
            details=found,
        )
    summary = run_harvest(
        st,
        source,
        batch_size=batch_size,
        limit=limit,
        progress=progress,
        should_stop=should_stop,
        retry_failed=retry_failed,
    )
    return _finish(
        st,
        "harvest",
        {"provider": provider, **source.parameters(), "batch_size": batch_size, "limit": limit},
        summary.line(),
        outputs={**summary.counts, "points": summary.points_harvested, **summary.stats},
        layers=["captures"],
        stopped=summary.stopped,
        details=summary,
    )


def parse_headings(value: str) -> tuple[float, ...]:
    """``"0,90,180,270"`` -> ``(0.0, 90.0, 180.0, 270.0)``."""
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise InputError(
            f"`headings` {value!r} is not a comma-separated list of degrees, e.g. 0,90,180,270"
        ) from None


def _sample_first(study: StudyLike, where: dict[str, Any]) -> None:
    """Sample points (the sample stage's defaults) unless the study has them already."""
    check_writable(_root(study))
    if _has_study(study) and _study(study, create=False).has_layer("points"):
        given = ", ".join(f"`{k}`" for k in where)
        log.info("the study has its points already; %s not used again", given)
        return
    result = sample(study, **where)
    log.info("sampled %s points into %s", f"{result.outputs['points']:,}", _root(study))


# --------------------------------------------------------------------------- pairs
def pairs(
    study: StudyLike,
    *,
    strategy: str,
    max_pairs: int = 1_000_000,
    seed: int = 0,
    max_distance: float = 5.0,
    heading_tol: float = 10.0,
    buffer: float | None = None,
    zones: str | os.PathLike[str] | None = None,
    zone_id: str | None = None,
    shards: bool = False,
    shard_size: int = 1000,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """A contrastive pair table (self, temporal or spatial) from the captures into pairs/.

    Spatial zones are ``buffer``-metre grid cells (default 100) or the polygons of
    ``zones`` identified by ``zone_id``. ``shards`` also writes WebDataset tar shards.
    """
    from . import pairs as pairs_mod

    pairs_mod.PairConfig(  # validate before reading anything
        strategy=strategy,
        max_pairs=max_pairs,
        seed=seed,
        max_distance=max_distance,
        heading_tol=heading_tol,
        buffer=100.0 if buffer is None else buffer,
        zone_id=zone_id,
    )
    _check_int("shard_size", shard_size, low=1, allow_none=False)
    if (zones or zone_id) and strategy != "spatial":
        raise InputError("`zones` and `zone_id` apply to `strategy` spatial only; drop them")
    if zones and buffer is not None:
        raise InputError("give `zones` or `buffer`, not both")
    if zone_id and not zones:
        raise InputError("`zone_id` needs `zones`, the polygons it identifies")
    st = _study(study, create=False)
    if not st.has_layer("captures"):
        raise InputError(
            f"study {st.root} has no captures; harvest it first "
            f"('urbanvis harvest --study {st.root}')"
        )
    polygons = pairs_mod.zones_for_pairs(zones, zone_id=zone_id) if zones else None
    buffer_m = 100.0 if buffer is None else buffer
    parameters = {
        "strategy": strategy,
        "max_pairs": max_pairs,
        "seed": seed,
        "max_distance": max_distance,
        "heading_tol": heading_tol,
        "buffer": None if zones else buffer_m,
        "zones": str(zones) if zones else None,
        "zone_id": zone_id,
        "shards": shards,
        "shard_size": shard_size,
    }
    table, summary = pairs_mod.pairs_from_captures(
        st.read_layer("captures"),
        strategy=strategy,
        max_pairs=max_pairs,
        seed=seed,
        max_distance=max_distance,
        heading_tol=heading_tol,
        buffer=buffer_m,
        zones=polygons,
        zone_id=zone_id,
    )
    if _stopper(should_stop)():
        return _finish(st, "pairs", parameters, "stopped before writing pairs", stopped=True)
    files = pairs_mod.write_pairs(
        st,
        table,
        summary,
        strategy=strategy,
        shards=shards,
        shard_size=shard_size,
        progress=(lambda done, total: progress(done, total, {})) if progress else None,
    )
    lines = [summary.text().rstrip("\n"), f"pair table: {st.root / files.table}"]
    if files.shard_pattern:
        lines.append(f"shards: {st.root / files.shard_pattern}")
    written = {"table": st.root / files.table}
    return _finish(
        st,
        "pairs",
        parameters,
        "\n".join(lines),
        outputs={
            "pairs": summary.pairs,
            "anchors": summary.anchors,
            "images": summary.images,
            "table": files.table,
            "shards": len(files.shards),
        },
        files=written,
        details=summary,
    )


# --------------------------------------------------------------------------- pretrain
def pretrain(
    study: StudyLike,
    *,
    pairs: str | os.PathLike[str] = "temporal",
    name: str | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    **config: Any,
) -> StageResult:
    """MoCo v3 ViT pretraining on a pair table; checkpoints in checkpoints/NAME/.

    ``pairs`` is a strategy name (pairs/NAME.parquet in the study) or a path to a table;
    ``config`` holds the recipe (``arch``, ``epochs``, ``batch_size``, ``base_lr``...; see
    :class:`urbanvis.engine.pretrain.PretrainConfig`, the paper's recipe by default).
    ``name`` defaults to ``PAIRS-ARCH``. Stopping keeps every finished epoch and the
    weights of the epoch in progress (see :func:`urbanvis.engine.pretrain.pretrain`).
    """
    st = _study(study, create=False)
    path = Path(pairs)
    if path.suffix != ".parquet":
        if path.suffix or os.sep in str(pairs):
            raise InputError(
                f"`pairs` {str(pairs)!r} is neither a strategy name nor a .parquet pair table"
            )
        path = st.pairs / f"{pairs}.parquet"
    from .engine.pretrain import PretrainConfig
    from .engine.pretrain import pretrain as run

    try:
        cfg = PretrainConfig(**config)
    except TypeError as exc:
        known = ", ".join(sorted(PretrainConfig.__dataclass_fields__))
        raise InputError(f"pretrain got an unknown parameter ({exc}); known: {known}") from None
    run_name = name or f"{path.stem}-{cfg.arch}"

    def on_step(info: dict) -> None:
        if progress is None:
            return
        n = info["iterations"]
        progress(
            info["epoch"] * n + info["iteration"] + 1,
            cfg.epochs * n,
            {
                "epoch": info["epoch"] + 1,
                "loss": info["loss"],
                "lr": info["lr"],
                "m": info["momentum"],
                "pairs_s": info["pairs_per_s"],
            },
        )

    result = run(
        st.root,
        path,
        st.checkpoints / run_name,
        cfg,
        resume=resume,
        progress=on_step,
        should_stop=should_stop,
    )
    stopped = bool(getattr(result, "stopped", False))
    message = f"checkpoint {result.checkpoint}" if result.checkpoint else "no checkpoint written"
    if stopped:
        message += " (stopped early; rerun with resume to continue)"
    files = {"checkpoint": result.checkpoint} if result.checkpoint else {}
    return _finish(
        st,
        "pretrain",
        {"pairs": str(path), "name": run_name, "resume": resume, **config},
        message,
        outputs={
            "checkpoint": str(result.checkpoint.relative_to(st.root))
            if result.checkpoint
            else None,
            "final_loss": result.epoch_losses[-1] if result.epoch_losses else None,
        },
        files=files,
        stopped=stopped,
        details=result,
        record=result.checkpoint is not None and _rank0(),
    )


def latest_checkpoint(study: StudyLike, name: str | None = None) -> Path:
    """The newest checkpoint of run ``name`` (or of the most recent run) in a study."""
    st = _study(study, create=False)
    runs = (
        [st.checkpoints / name]
        if name
        else sorted(
            (p for p in st.checkpoints.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime
        )
    )
    for run_dir in reversed(runs):
        found = sorted(run_dir.glob("checkpoint_*.pth.tar"))
        if found:
            return found[-1]
    where = f"checkpoints/{name}" if name else "checkpoints/"
    raise InputError(f"no checkpoint in {st.root / where}; pretrain first")


# --------------------------------------------------------------------------- embed
def embed(
    study: StudyLike,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    model: str | None = None,
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
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """[CLS] vectors of every ok capture into embeddings/ and the ``embeddings`` layer.

    Give exactly one of ``checkpoint`` (urbanvis/MoCo v3 or timm/DeiT) or ``model`` (an
    encoder name, with ``random_init`` for a random-weights baseline). Resumable.
    """
    if (checkpoint is None) == (model is None):
        raise InputError("give exactly one of `checkpoint` (a file) or `model` (an encoder name)")
    if random_init and model is None:
        raise InputError("`random_init` goes with `model`, not with `checkpoint`")
    st = _study(study, create=False)
    from .engine.inference import embed_captures

    rank0 = _rank0()
    summary = embed_captures(
        st,
        model=model,
        checkpoint=checkpoint,
        random_init=random_init,
        seed=seed,
        batch_size=batch_size,
        workers=workers,
        device=device,
        precision=precision,
        decode=decode,
        image_size=image_size,
        limit=limit,
        progress=progress if rank0 else None,
        should_stop=should_stop,
    )
    total = summary.done_before + summary.embedded
    message = (
        f"{total:,} of {summary.captures_total:,} captures embedded by {summary.model}; "
        f"vectors in {summary.vectors.parent if summary.vectors else '-'}"
        + ("" if summary.stopped else f", layer embeddings in {st.gpkg}")
    )
    return _finish(
        st,
        "embed",
        {
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "model": model,
            "random_init": random_init,
            "seed": seed if random_init else None,
            "batch_size": batch_size,
            "workers": workers,
            "device": device,
            "precision": precision,
            "decode": decode,
            "processes": int(os.environ.get("WORLD_SIZE", "1")),
            "image_size": image_size,
            "limit": limit,
        },
        message,
        outputs={
            "model_id": summary.model,
            "embedded": summary.embedded,
            "failed": summary.failed,
            "dim": summary.dim,
        },
        layers=["embeddings"] if summary.layer_written else [],
        stopped=summary.stopped,
        details=summary,
        record=rank0,
    )


# --------------------------------------------------------------------------- predict
def predict(
    study: StudyLike,
    *,
    level: str = "blockgroup",
    zones: str | os.PathLike[str] | None = None,
    zones_layer: str | None = None,
    id_field: str = "GEOID",
    indicators: str | os.PathLike[str] | None = None,
    columns: str | Sequence[str] | None = None,
    topics: str | os.PathLike[str] | Mapping[str, str] | None = None,
    protocol: str = "holdout",
    seed: int = 0,
    min_images: int = 1,
    cell_size: float = 500.0,
    buffer: float = 100.0,
    model: str | None = None,
    apply: str | os.PathLike[str] | None = None,
    tiger_year: int = 2023,
    acs_year: int = 2022,
    tiger_url: str | None = None,
    census_url: str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """Zone indicators from mean zone embeddings: StandardScaler -> PCA(0.99) -> LassoCV.

    With ``indicators`` (a CSV keyed by ``id_field``, or ``acs:VAR[,VAR]``) fits and scores
    one model per indicator (``protocol`` holdout 70/30 or kfold5) and writes the layers
    ``zones_LEVEL`` and ``predictions_LEVEL``, reports/predict_LEVEL.csv/.md and
    models/predict_LEVEL.joblib. With ``apply`` (saved models) predicts without labels.
    """
    from ._errors import Stopped
    from .predict import apply_study, predict_study, scores_markdown

    st = _study(study, create=False)
    common: dict[str, Any] = dict(
        level=level,
        zones=str(zones) if zones is not None else None,
        zones_layer=zones_layer,
        model=model,
        min_images=min_images,
        cell_size=cell_size,
        buffer=buffer,
        tiger_url=tiger_url,
        tiger_year=tiger_year,
    )
    if apply is not None:
        if indicators is not None:
            raise InputError("`apply` predicts without labels; drop `indicators`")
        out = apply_study(st, apply, id_field=id_field, **common)
        s = out["summary"]
        return _finish(
            st,
            "predict --apply",
            {"apply": str(apply), **common},
            f"predicted {s['indicators']} indicators for {s['zones_with_images']:,} of "
            f"{s['zones']:,} zones; layer {s['layer']} in {st.gpkg}",
            outputs=s,
            layers=[s["layer"]],
            details=out,
        )
    if indicators is None:
        raise InputError(
            "give `indicators` (a CSV or acs:VAR) or `apply` (saved models) to predict"
        )
    if isinstance(columns, str):
        columns = [c for c in columns.split(",") if c.strip()]
    params = {
        "indicators": str(indicators),
        "id_field": id_field,
        "protocol": protocol,
        "seed": seed,
        "topics": topics if topics is None or isinstance(topics, str) else str(topics),
        "columns": ",".join(columns) if columns else None,
        "census_url": census_url,
        "acs_year": acs_year,
        **common,
    }
    try:
        out = predict_study(
            st,
            indicators=indicators,
            id_field=id_field,
            protocol=protocol,  # type: ignore[arg-type]
            seed=seed,
            topics=topics,  # type: ignore[arg-type]
            columns=columns,
            census_url=census_url,
            acs_year=acs_year,
            progress=progress,
            should_stop=should_stop,
            **common,
        )
    except Stopped as exc:  # nothing was written: the layers and models come at the end
        return _finish(st, "predict", params, f"{exc}; nothing written", stopped=True)
    s = out["summary"]
    message = scores_markdown(out["scores"]) + (
        f"{s['matched']:,} zones matched indicators ({s['zones_unmatched']:,} zones without a "
        f"row, {s['rows_unmatched']:,} rows without a zone); {s['flagged']:,} zones under "
        f"`min_images` flagged ({s['zones'] - s['zones_with_images']:,} without images); "
        f"mean R² {s['mean_r2']:.3f}; layer {s['layer']}, report {s['report']}, "
        f"models {s['models']}"
    )
    from .qgis_styles import style_study

    style_study(st.gpkg)  # QGIS opens the layers styled (a choropleth of predictions)
    return _finish(
        st,
        "predict",
        params,
        message,
        outputs=s,
        layers=[f"zones_{level}", s["layer"]],
        details=out,
    )


# --------------------------------------------------------------------------- map
def map(  # noqa: A001 - the stage is called map, like its command
    study: StudyLike,
    *,
    layer: str | None = None,
    column: str | None = None,
    out: str | os.PathLike[str] | None = None,
    tiles: str = "OpenStreetMap",
    attribution: str | None = None,
    thumbnails: str = "auto",
    raster: str | os.PathLike[str] | None = None,
    cell: float = 50.0,
    method: str = "idw",
    radius: float | None = None,
    zones_layer: str | None = None,
    title: str | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """A folium web map (HTML) and/or a GeoTIFF surface (``raster``) of a study layer.

    ``layer`` defaults to captures (points when the study has no captures); ``out`` to
    reports/map_LAYER.html, unless only a ``raster`` is asked for. Popups of points and
    captures show the values of their zone in ``zones_layer`` (default: the study's first
    predictions_* or zones_* layer).
    """
    from . import maps

    if raster is not None and not cell > 0:
        raise InputError(f"`cell` must be a positive number of metres, not {cell:g}")
    if raster is not None and not column:
        raise InputError("`raster` needs `column`: the value to interpolate")
    value_column = column or ""
    st = _study(study, create=False)
    if layer is None:
        layer = "captures" if st.has_layer("captures") else "points"
    if out is None and raster is None:
        out = st.reports / f"map_{layer}.html"
    html_path = maps.check_out_path(str(out)) if out else None
    tif_path = maps.check_out_path(str(raster), param="raster") if raster else None
    frame = st.read_layer(layer)
    steps = 2 if html_path is not None and tif_path is not None else 1
    if progress is not None:
        progress(0, steps, {})
    zones = None
    zone_layers = [n for n in st.layers() if n.startswith(("predictions_", "zones_"))]
    if zones_layer is not None:
        if not st.has_layer(zones_layer):
            raise InputError(
                f"`zones_layer` {zones_layer!r} is not a layer of {st.gpkg}; "
                f"its zone layers: {', '.join(zone_layers) or 'none'}"
            )
        zone_layers = [zones_layer]
    if html_path is not None and zone_layers and layer not in zone_layers:
        zones = st.read_layer(zone_layers[0])
    written: dict[str, Path] = {}
    stop = _stopper(should_stop)
    if html_path is not None:
        m = maps.map_from_layer(
            frame,
            column,
            tiles=tiles,
            attribution=attribution,
            zones=zones,
            study_root=st.root,
            html_dir=html_path.parent,
            thumbnails=thumbnails,
            title=title or f"urbanvis: {layer}",
        )
        html = maps.render_html(m)  # checked before anything is written
        if tif_path is not None and not stop():
            maps.raster_from_points(
                frame, value_column, tif_path, cell=cell, method=method, radius=radius
            )
            written["raster"] = tif_path
        if not stop():
            maps.write_map(html, html_path)
            written["html"] = html_path
    elif tif_path is not None:
        maps.raster_from_points(
            frame, value_column, tif_path, cell=cell, method=method, radius=radius
        )
        written["raster"] = tif_path
    if progress is not None:
        progress(steps, steps, {})
    parameters = dict(
        layer=layer, column=column, tiles=tiles, thumbnails=thumbnails, cell=cell, method=method,
        radius=radius, zones_layer=zones_layer,
    )  # fmt: skip
    lines = [
        f"wrote {Path(path)} ({kind}, {len(frame):,} features of '{layer}')"
        for kind, path in written.items()
    ]
    return _finish(
        st,
        "map",
        parameters,
        "\n".join(lines) or "stopped before writing the map",
        outputs={"features": len(frame), **{k: str(v) for k, v in written.items()}},
        files=written,
        stopped=not written,
    )


# --------------------------------------------------------------------------- simulate
def simulate(
    study: StudyLike | None = None,
    *,
    truth: bool = False,
    contact_sheet: str | os.PathLike[str] | None = None,
    seed: int = 0,
    points_per_zone: int = 60,
    size: int = 160,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """The synthetic city: a contact sheet (PNG) and/or the study's ground truth.

    ``truth`` writes the zones_sim layer, truth/indicators.csv and (with simulator
    captures) the per-image safety scores and Place Pulse-style votes.
    """
    if not contact_sheet and not truth:
        raise InputError("say what to make: `contact_sheet` (a .png file) and/or `truth`")
    if truth and study is None:
        raise InputError("`truth` is written into a study; give `study`")
    lines: list[str] = []
    files: dict[str, Path] = {}
    st: Study | None = None
    if truth:
        st = _study(study, create=False)  # type: ignore[arg-type]
    if contact_sheet:
        from .simulate.contact import contact_sheet as make_sheet

        files["contact_sheet"] = make_sheet(contact_sheet, seed=seed, size=size)
        lines.append(f"wrote {files['contact_sheet']}")
    if not truth or _stopper(should_stop)():
        if st is None:
            return StageResult("simulate", None, "\n".join(lines), files=files)
        return _finish(st, "simulate --truth", {"seed": seed}, "\n".join(lines), stopped=True)
    from .simulate.groundtruth import write_truth

    assert st is not None
    written = write_truth(st, seed=seed, points_per_zone=points_per_zone)
    lines.append(
        "ground truth: " + ", ".join(f"{v:,} {k}" for k, v in written.items()) + f" in {st.root}"
    )
    return _finish(
        st,
        "simulate --truth",
        {"seed": seed, "points_per_zone": points_per_zone},
        "\n".join(lines),
        outputs=written,
        files=files,
        layers=["zones_sim"],
    )
