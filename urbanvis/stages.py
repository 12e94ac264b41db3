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

from ._errors import InputError, StudyError, UrbanvisError
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
    "eval_attention",
    "eval_safety",
    "eval_socioeconomic",
    "eval_vpr",
    "export",
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


def _writable(st: Study, *inside: Path) -> None:
    """Fail, before any work, when the study (or the folders of it a stage writes) could
    not be written: a read-only study is reported in one line, not after the work."""
    for path in (st.root, *inside):
        check_writable(path)
    if st.gpkg.exists() and not os.access(st.gpkg, os.W_OK):
        raise StudyError(
            f"study folder {st.root} is not writable (study.gpkg is read-only); choose "
            f"another `study` folder or fix its permissions"
        )


def _stopper(should_stop: ShouldStop | None) -> ShouldStop:
    return should_stop if should_stop is not None else (lambda: False)


def _finish(
    st: Study | None,
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
    """Record the run in study.toml (when there is a study) and build the result."""
    outs = {k: v for k, v in dict(outputs or {}).items() if v is not None}
    if stopped:
        outs["stopped"] = True
    if record and st is not None:
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


MAX_IMAGE_SIZE = 1024
"""Largest ``image_size`` an encoder stage accepts (street views are embedded at 224)."""


def _check_encoder_options(
    *, batch_size: int, workers: int, image_size: int | None, device: str, seed: int
) -> None:
    """The options every encoder-running stage shares (embed, eval), checked up front."""
    import re

    _check_int("batch_size", batch_size, low=1, allow_none=False)
    _check_int("workers", workers, low=0, allow_none=False)
    _check_int("image_size", image_size, low=8)
    if image_size is not None and image_size > MAX_IMAGE_SIZE:
        raise InputError(
            f"`image_size` must be at most {MAX_IMAGE_SIZE} pixels (a ViT's attention grows "
            f"with its fourth power), got {image_size}"
        )
    _check_int("seed", seed, low=0, allow_none=False)
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise InputError(f"`device` must be auto, cpu, cuda or cuda:N, got {device!r}")


def _check_url(name: str, value: str | None) -> None:
    """A server address the stage would only use later, refused now if it is not one."""
    if value is None:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"`{name}` {value!r} is not a URL like https://mirror.example.org")


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
    overwrite: bool = False,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """Points every ``spacing`` metres along the streets into the study's ``points`` layer.

    Where: ``city`` (geocoded online), ``area`` (a polygon file), ``bbox`` (W,S,E,N
    degrees) or ``osm`` (a local .osm.pbf/.osm/.graphml, clipped to the others when given).
    ``method="grid"`` puts points on a square grid instead. See
    :func:`urbanvis.sampling.sample` for the details.

    A study that has points keeps them unless ``overwrite``; a study whose captures (or
    embeddings) refer to its points is never re-sampled: their point ids would then name
    other places. Sample into a new study instead.
    """
    from . import sampling

    check_writable(_root(study))
    _check_points_replaceable(study, overwrite=overwrite)
    _check_url("nominatim_url", nominatim_url)
    _check_url("overpass_url", overpass_url)
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
    notice: Callable[[str], None] | None = None,
    **options: Any,
) -> StageResult:
    """Street-level images for the study's points into the ``captures`` layer, resumably.

    ``options`` are the provider's (``headings``, ``size``, ``radius``, ``since``,
    ``until``, ``captures_per_point``, ``seed``, ``images``, ``key_file``,
    ``concurrency``, ``rate``, ``max_requests``...; see ``urbanvis harvest --help``).
    ``headings`` may be a sequence of degrees or a string like ``"0,90,180,270"``. A study
    without points is sampled first when ``city``, ``area``, ``bbox`` or ``osm`` is given.
    ``metadata_only`` (web providers) surveys coverage and cost without downloading.
    ``notice(line)`` hears, before a paid provider (gsv, gsv-historical) requests anything,
    the image requests it will make, the time at ``rate`` and the cost at
    ``price_per_1000``; ``max_cost`` stops it before that budget is passed.
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
    source.check()  # e.g. folder: the images or manifest, before anything is written
    where = dict(city=city, area=area, bbox=bbox, osm=osm)
    if any(v is not None for v in where.values()):
        _sample_first(study, {k: v for k, v in where.items() if v is not None})
    elif provider != "folder" and not _has_study(study):
        root = _root(study)
        raise InputError(
            f"{root} is not a study yet; give `city`, `area`, `bbox` or `osm` to sample "
            f"its points first, or sample it first ('urbanvis sample --study {root}')"
        )
    check_writable(_root(study))
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
                "estimated_cost": round(found.estimate.cost, 2) if found.estimate else None,
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
        notice=notice,
    )
    result = _finish(
        st,
        "harvest",
        {"provider": provider, **source.parameters(), "batch_size": batch_size, "limit": limit},
        summary.line(),
        outputs={**summary.counts, "points": summary.points_harvested, **summary.stats},
        layers=["captures"],
        stopped=summary.stopped,
        details=summary,
    )
    if summary.all_failed:  # offline, a wrong key or endpoint: not a harvest that worked
        raise UrbanvisError(
            f"every capture of this {provider} harvest failed ({summary.first_error}); the "
            f"{summary.points_harvested:,} points are recorded as failed: fix the cause, "
            f"then rerun with `retry_failed`"
        )
    return result


def parse_headings(value: str) -> tuple[float, ...]:
    """``"0,90,180,270"`` -> ``(0.0, 90.0, 180.0, 270.0)``."""
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise InputError(
            f"`headings` {value!r} is not a comma-separated list of degrees, e.g. 0,90,180,270"
        ) from None


def _check_points_replaceable(study: StudyLike, *, overwrite: bool) -> None:
    """Refuse, before any work, to replace points silently or under captures."""
    if not _has_study(study):
        return
    import pyogrio

    gpkg = _root(study) / "study.gpkg"
    try:
        layers = {str(name) for name, _ in pyogrio.list_layers(gpkg)}
    except Exception:  # not a GeoPackage: open_study says so in its own words
        return
    if "points" not in layers:
        return
    n_points = int(pyogrio.read_info(gpkg, layer="points")["features"])
    dependents = sorted(
        name for name in layers if name in ("captures", "embeddings") or name.startswith(
            ("coverage_", "predictions_")
        )
    )  # fmt: skip
    if dependents:
        raise InputError(
            f"{_root(study)} has {n_points:,} points that its {', '.join(dependents)} "
            f"refer to; re-sampling would point them at other places: sample into a new "
            f"`study` folder instead"
        )
    if not overwrite:
        raise InputError(
            f"{_root(study)} has {n_points:,} points already; pass `overwrite` to replace "
            f"them, or sample into a new `study` folder"
        )


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
    _writable(st, st.pairs)
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
    cfg.validate()
    if name is not None and (
        not name.strip() or name in (".", "..") or "/" in name or os.sep in name
    ):
        raise InputError(
            f"`name` {name!r} must be a plain folder name under checkpoints/ (no slashes), "
            f"e.g. temporal-vit-small"
        )
    _check_pair_table(path)
    run_name = name or f"{path.stem}-{cfg.arch}"
    _writable(st, st.checkpoints / run_name)
    if resume and not any((st.checkpoints / run_name).glob("checkpoint_*.pth.tar")):
        raise InputError(
            f"nothing to resume in {st.checkpoints / run_name}; drop `resume` to start a new "
            f"run, or give the `name` of the run to continue"
        )

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
    if getattr(result, "compile_seconds", None) is not None:
        message += f"; compiled in {result.compile_seconds:.0f} s"
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


def _check_pair_table(path: Path) -> None:
    """A pair table that exists and is Parquet with image_a and image_b (its schema only)."""
    from ._errors import InputFileError

    if not path.is_file():
        raise InputFileError(f"pair table {path} does not exist; run 'urbanvis pairs' first")
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow's ArrowInvalid on a file that is not Parquet
        raise InputFileError(
            f"cannot read pair table {path.name}: it is not a Parquet file; give a table "
            f"written by 'urbanvis pairs' as `pairs`"
        ) from exc
    missing = {"image_a", "image_b"} - names
    if missing:
        raise InputError(
            f"pair table {path.name} lacks {', '.join(sorted(missing))}; give a table "
            f"written by 'urbanvis pairs' as `pairs`"
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
        intact = [p for p in found if not _truncated(p)]
        if intact:
            newer = [p.name for p in found if p.name > intact[-1].name]
            if newer:
                log.warning(
                    "%s truncated; using %s, the newest intact checkpoint of %s",
                    ", ".join(newer) + (" is" if len(newer) == 1 else " are"),
                    intact[-1].name,
                    run_dir.name,
                )
            return intact[-1]
        if found:
            raise InputError(
                f"every checkpoint in {run_dir} is truncated (empty or cut short); pretrain "
                f"again, or give a complete `checkpoint`"
            )
    where = f"checkpoints/{name}" if name else "checkpoints/"
    raise InputError(f"no checkpoint in {st.root / where}; pretrain first")


def _truncated(path: Path) -> bool:
    """An empty file, or a zip (torch's format) without its central directory: cut short.

    Reads a few bytes, not the weights; a file in torch's older pickle format counts as
    intact here (the loader says so when it is not).
    """
    import zipfile

    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return True
    return not head or (head == b"PK\x03\x04" and not zipfile.is_zipfile(path))


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
    compile: str = "auto",
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
    _check_encoder_options(batch_size=batch_size, workers=workers, image_size=image_size,
                           device=device, seed=seed)  # fmt: skip
    _check_int("limit", limit, low=1)
    if compile not in ("auto", "on", "off"):  # before torch is imported
        raise InputError(f"`compile` must be auto, on or off, not {compile!r}")
    st = _study(study, create=False)
    _writable(st, st.root / "embeddings")
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
        compile=compile,
        image_size=image_size,
        limit=limit,
        progress=progress if rank0 else None,
        should_stop=should_stop,
    )
    if summary.layer_written:
        from .qgis_styles import style_study

        style_study(st.gpkg, layers=["embeddings"])  # QGIS opens it coloured by pc1..pc3
    total = summary.done_before + summary.embedded
    message = (
        f"{total:,} of {summary.captures_total:,} captures embedded by {summary.model} "
        f"(this run: {summary.images:,} images for {summary.embedded:,} captures); "
        f"vectors in {summary.vectors.parent if summary.vectors else '-'}"
        + ("" if summary.stopped else f", layer embeddings in {st.gpkg}")
        + (
            f"; compiled in {summary.compile_seconds:.0f} s"
            if summary.compile_seconds is not None
            else ""
        )
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
            "compile": compile,
            "processes": int(os.environ.get("WORLD_SIZE", "1")),
            "image_size": image_size,
            "limit": limit,
        },
        message,
        outputs={
            "model_id": summary.model,
            "embedded": summary.embedded,
            "images": summary.images,
            "failed": summary.failed,
            "dim": summary.dim,
        },
        layers=["embeddings"] if summary.layer_written else [],
        stopped=summary.stopped,
        details=summary,
        record=rank0,
    )


# --------------------------------------------------------------------------- export
def export(
    study: StudyLike,
    *,
    model: str | None = None,
    format: str = "geoparquet",  # noqa: A002 - the option is called format, like the CLI's
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """The embeddings of one model as a GeoParquet file other tools read.

    One row per capture: its metadata, pc1..pc3, the vector (a fixed-size float32 list
    column ``vector``) and its point (EPSG:4326). ``out`` defaults to
    exports/embeddings_MODEL.parquet in the study; read it back with
    :func:`urbanvis.vectors.read_embeddings` (path) or ``geopandas.read_parquet``.
    """
    from . import export as exporting

    exporting.check_export_options(format, out)  # before the study: a typo costs nothing
    st = _study(study, create=False)
    _writable(st)  # the run is recorded in study.toml
    done = exporting.export_embeddings(
        st, model, out, format=format, progress=progress, should_stop=should_stop
    )
    if done is None:
        return _finish(st, "export", {"model": model, "format": format},
                       "stopped before writing the export", stopped=True)  # fmt: skip
    path = Path(done["path"])
    message = (
        f"wrote {path} (GeoParquet, EPSG:4326): {done['rows']:,} captures, "
        f"{done['dim']}-d vectors of {done['model']}"
    )
    return _finish(
        st,
        "export",
        {"model": done["model"], "format": format, "out": str(path)},
        message,
        outputs={"rows": done["rows"], "dim": done["dim"]},
        files={"geoparquet": path},
        details=done,
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

    _check_zone_options(min_images=min_images, cell_size=cell_size, buffer=buffer,
                        tiger_year=tiger_year, acs_year=acs_year, seed=seed)  # fmt: skip
    _check_url("tiger_url", tiger_url)
    _check_url("census_url", census_url)
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
        if not columns:
            raise InputError("`columns` names no column; give e.g. median_income,poverty")
    st = _study(study, create=False)
    _writable(st, st.reports, st.root / "models")
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


def _check_zone_options(
    *,
    min_images: int,
    cell_size: float,
    buffer: float,
    tiger_year: int,
    acs_year: int,
    seed: int,
) -> None:
    """The numbers predict and eval socioeconomic share, checked before any work."""
    import datetime as dt
    import math

    _check_int("min_images", min_images, low=1, allow_none=False)
    _check_int("seed", seed, low=0, allow_none=False)
    for name, value in (("cell_size", cell_size), ("buffer", buffer)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise InputError(f"`{name}` must be a positive number of metres, got {value!r}")
    now = dt.date.today().year
    for name, value, first, what in (
        ("tiger_year", tiger_year, 2008, "TIGER/Line block groups"),
        ("acs_year", acs_year, 2009, "ACS 5-year estimates"),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not first <= value <= now:
            raise InputError(
                f"`{name}` must be a year from {first} to {now} ({what}), got {value!r}"
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
    import math

    from . import maps

    if thumbnails not in ("auto", "embed", "link", "none"):
        raise InputError(f"`thumbnails` must be auto, embed, link or none, not {thumbnails!r}")
    if raster is None:
        for name, value, default in (("cell", cell, 50.0), ("radius", radius, None),
                                     ("method", method, "idw")):  # fmt: skip
            if value != default:
                raise InputError(f"`{name}` shapes the `raster` surface; give `raster` too")
    else:
        if Path(raster).suffix.lower() not in (".tif", ".tiff"):
            raise InputError(
                f"`raster` {Path(raster).name} must be a GeoTIFF file name (.tif or .tiff)"
            )
        if not column:
            raise InputError("`raster` needs `column`: the value to interpolate")
        if not (isinstance(cell, int | float) and math.isfinite(cell) and cell > 0):
            raise InputError(f"`cell` must be a positive number of metres, not {cell!r}")
        if radius is not None and not (
            isinstance(radius, int | float) and math.isfinite(radius) and radius > 0
        ):
            raise InputError(f"`radius` must be a positive number of metres, not {radius!r}")
        if method not in ("idw", "kernel"):
            raise InputError(f"`method` must be idw or kernel, not {method!r}")
    if out is not None and Path(out).suffix.lower() not in (".html", ".htm"):
        raise InputError(f"`out` {Path(out).name} must be a web page file name (.html)")
    if out is not None or raster is None:
        maps.check_tiles(tiles, attribution)
    value_column = column or ""
    st = _study(study, create=False)
    if layer is None:
        layer = "captures" if st.has_layer("captures") else "points"
    if out is None and raster is None:
        out = st.reports / f"map_{layer}.html"
    html_path = maps.check_out_path(str(out)) if out else None
    tif_path = maps.check_out_path(str(raster), param="raster") if raster else None
    _writable(st)  # the run is recorded in study.toml
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
    safety_set: str | os.PathLike[str] | None = None,
    images: int = 1000,
    votes_per_image: int = 6,
    vpr_set: str | os.PathLike[str] | None = None,
    places: int = 200,
    queries: str = "evening",
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """The synthetic city: a contact sheet (PNG) and/or the study's ground truth.

    ``truth`` writes the zones_sim layer, truth/indicators.csv and (with simulator
    captures) the per-image safety scores and Place Pulse-style votes. ``vpr_set`` is a
    new folder for ``places`` unseen places as database/ and queries/ images of ``size``
    pixels, the queries on an autumn ``evening`` or a spring ``day`` (``queries``; see
    :mod:`urbanvis.simulate.vprset`). ``safety_set``
    renders a standalone Place Pulse 2.0-shaped set into a new folder: ``images`` views
    at random places and times, ``votes_per_image`` votes each (see
    :mod:`urbanvis.simulate.safetyset`).
    """
    _check_int("seed", seed, low=0, allow_none=False)
    if safety_set:
        if contact_sheet or truth or vpr_set:
            raise InputError(
                "make `safety_set` on its own, without `contact_sheet`, `vpr_set` or `truth`"
            )
        from .simulate.safetyset import safety_set as make_set

        made = make_set(safety_set, images=images, votes_per_image=votes_per_image, seed=seed,
                        size=size, progress=progress, should_stop=should_stop)  # fmt: skip
        folder = Path(safety_set).expanduser()
        return StageResult(
            "simulate --safety-set",
            None,
            f"wrote {made['images']:,} images and {made['votes']:,} votes into {folder} "
            f"(votes.csv, truth.csv, images/)",
            outputs=made,
            files={"votes": folder / "votes.csv", "truth": folder / "truth.csv"},
        )
    if not contact_sheet and not truth and not vpr_set:
        raise InputError(
            "say what to make: `contact_sheet` (a .png file), `vpr_set` or `safety_set` "
            "(folders) and/or `truth`"
        )
    if truth and study is None:
        raise InputError("`truth` is written into a study; give `study`")
    # every output checked before the first is made
    if truth and not 10 <= points_per_zone <= 200:
        raise InputError(f"`points_per_zone` must be 10..200, got {points_per_zone!r}")
    if (contact_sheet or vpr_set) and not (
        isinstance(size, int) and not isinstance(size, bool) and 32 <= size <= 1024
    ):
        raise InputError(f"`size` must be 32..1024 pixels, got {size!r}")
    if contact_sheet:
        from .maps import check_out_path

        if Path(contact_sheet).suffix.lower() != ".png":
            raise InputError(
                f"`contact_sheet` must be a .png file name, got {Path(contact_sheet).name}"
            )
        check_out_path(contact_sheet, param="contact_sheet")
    if vpr_set:
        from .simulate.vprset import check_queries

        _check_int("places", places, low=2, allow_none=False)
        check_queries(queries)
        target = Path(vpr_set).expanduser()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise InputError(f"`vpr_set` {target} exists and is not empty; name a new folder")
    lines: list[str] = []
    files: dict[str, Path] = {}
    st: Study | None = None
    if truth:
        st = _study(study, create=False)  # type: ignore[arg-type]
        _writable(st, st.root / "truth")
    if contact_sheet:
        from .simulate.contact import contact_sheet as make_sheet

        files["contact_sheet"] = make_sheet(contact_sheet, seed=seed, size=size)
        lines.append(f"wrote {files['contact_sheet']}")
    if vpr_set:
        from .simulate.vprset import write_vpr_set

        made = write_vpr_set(
            vpr_set, places=places, seed=seed, size=size, queries=queries, progress=progress,
            should_stop=should_stop,
        )  # fmt: skip
        files["vpr_set"] = Path(vpr_set).expanduser()
        lines.append(
            f"wrote a VPR set of {made['database']:,} database and {made['queries']:,} query "
            f"images in {files['vpr_set']}"
        )
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


def _check_table_target(st: Study | None, target: Path) -> None:
    """An evaluation's table can be written, and its run recorded in the study (if any)."""
    from .maps import check_out_path

    check_out_path(target)
    if st is not None:
        _writable(st)


# --------------------------------------------------------------------------- eval safety
def eval_safety(
    study: StudyLike | None = None,
    *,
    pp2: str | os.PathLike[str],
    images: str | os.PathLike[str] | None = None,
    checkpoints: Sequence[str | os.PathLike[str]] = (),
    models: Sequence[str] = (),
    random_init: bool = False,
    thumbnail: bool = False,
    category: str = "safety",
    seed: int = 0,
    test_size: float = 0.2,
    epochs: int = 20,
    hard_auc: bool = False,
    image_size: int | None = None,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """Safety perception (the paper's Table 3): a linear probe on each encoder's features.

    ``pp2`` is Place Pulse 2.0's votes CSV (Q-scores per image, see
    :mod:`urbanvis.evaluate.safety`) or a CSV of image_id, score; ``images`` the folder of
    ``<image id>.jpg`` (default: ``images/`` beside ``pp2``). Images scored under 3.5 are
    unsafe, over 6.5 safe; a seeded stratified split (``test_size``) trains the probe for
    ``epochs`` passes. Writes ``out`` (default reports/eval_safety.csv of ``study``) and
    its Markdown twin.
    """
    from ._errors import Stopped
    from .evaluate.encoders import encoder_specs
    from .evaluate.safety import safety_table
    from .evaluate.tables import write_table

    if study is None and out is None:
        raise InputError("give `out` (a .csv file) or `study` to write the table into")
    _check_encoder_options(batch_size=batch_size, workers=workers, image_size=image_size,
                           device=device, seed=seed)  # fmt: skip
    _check_int("epochs", epochs, low=1, allow_none=False)
    if not (isinstance(test_size, int | float) and 0 < test_size < 1):
        raise InputError(f"`test_size` must be a share between 0 and 1, got {test_size!r}")
    st = _study(study, create=False) if study is not None else None
    target = Path(out).expanduser() if out is not None else st.reports / "eval_safety.csv"  # type: ignore[union-attr]
    if target.suffix.lower() != ".csv" or target.is_dir():
        raise InputError(f"`out` must be a .csv file, got {str(target)!r}")
    _check_table_target(st, target)
    specs = encoder_specs(
        checkpoints, models=models, random_init=random_init, thumbnail=thumbnail, seed=seed
    )
    params = {
        "pp2": str(pp2), "images": str(images) if images is not None else None,
        "checkpoints": [str(c) for c in checkpoints], "models": list(models),
        "random_init": random_init, "thumbnail": thumbnail, "category": category, "seed": seed,
        "test_size": test_size, "epochs": epochs, "hard_auc": hard_auc,
        "image_size": image_size, "out": str(target),
    }  # fmt: skip
    try:
        res = safety_table(
            pp2, specs, images=images, category=category, seed=seed, test_size=test_size,
            epochs=epochs, hard_auc=hard_auc, image_size=image_size, batch_size=batch_size,
            workers=workers, device=device, progress=progress, should_stop=should_stop,
        )  # fmt: skip
    except Stopped as exc:
        message = f"{exc}; nothing written"
        return _finish(st, "eval safety", params, message, stopped=True)
    table = res["table"]
    csv, md = write_table(table, target, title="Safety perception (Place Pulse 2.0 probe)")
    from .evaluate.tables import markdown_table

    labels = res["labels"]
    message = markdown_table(table, digits=2) + (
        f"{len(res['scores']):,} images scored, {int((labels == 0).sum()):,} unsafe and "
        f"{int((labels == 1).sum()):,} safe kept; table {csv}"
    )
    outputs = {"images_scored": len(res["scores"]), "labelled": len(labels),
               "table": str(csv)}  # fmt: skip
    files = {"table": csv, "markdown": md}
    return _finish(st, "eval safety", params, message, outputs=outputs, files=files, details=res)


# --------------------------------------------------------------------------- eval socioeconomic
def eval_socioeconomic(
    study: StudyLike,
    *,
    indicators: str | os.PathLike[str],
    models: Sequence[str] = (),
    level: str = "blockgroup",
    zones: str | os.PathLike[str] | None = None,
    zones_layer: str | None = None,
    id_field: str = "GEOID",
    columns: str | Sequence[str] | None = None,
    topics: str | os.PathLike[str] | Mapping[str, str] | None = None,
    protocol: str = "kfold5",
    seed: int = 0,
    min_images: int = 1,
    cell_size: float = 500.0,
    buffer: float = 100.0,
    tiger_year: int = 2023,
    acs_year: int = 2022,
    tiger_url: str | None = None,
    census_url: str | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """Zone indicator R² of several embedding models side by side (the paper's Table 2).

    ``models`` are embedding model ids already in the study (default: all); each is scored
    with the predict stage's method on the same zones and folds (``protocol`` kfold5 by
    default). Writes only the table: ``out`` (default reports/eval_socioeconomic.csv) and
    its Markdown twin; no layer, no model file.
    """
    from ._errors import Stopped
    from .evaluate.socioeconomic import socioeconomic_table
    from .evaluate.tables import markdown_table, write_table

    _check_zone_options(min_images=min_images, cell_size=cell_size, buffer=buffer,
                        tiger_year=tiger_year, acs_year=acs_year, seed=seed)  # fmt: skip
    _check_url("tiger_url", tiger_url)
    _check_url("census_url", census_url)
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
        if not columns:
            raise InputError("`columns` names no column; give e.g. median_income,poverty")
    st = _study(study, create=False)
    target = Path(out).expanduser() if out is not None else st.reports / "eval_socioeconomic.csv"
    if target.suffix.lower() != ".csv" or target.is_dir():
        raise InputError(f"`out` must be a .csv file, got {str(target)!r}")
    _check_table_target(st, target)
    params = {
        "indicators": str(indicators), "models": list(models), "level": level,
        "zones": str(zones) if zones is not None else None, "zones_layer": zones_layer,
        "id_field": id_field, "columns": ",".join(columns) if columns else None,
        "topics": topics if topics is None or isinstance(topics, str) else str(topics),
        "protocol": protocol, "seed": seed, "min_images": min_images, "out": str(target),
    }  # fmt: skip
    try:
        res = socioeconomic_table(
            st, indicators=indicators, models=models, level=level, zones=zones,
            zones_layer=zones_layer, id_field=id_field, columns=columns, topics=topics,  # type: ignore[arg-type]
            protocol=protocol, seed=seed, min_images=min_images, cell_size=cell_size,
            buffer=buffer, tiger_url=tiger_url, tiger_year=tiger_year, census_url=census_url,
            acs_year=acs_year, progress=progress, should_stop=should_stop,
        )  # fmt: skip
    except Stopped as exc:
        return _finish(st, "eval socioeconomic", params, f"{exc}; nothing written", stopped=True)
    table = res["table"]
    csv, md = write_table(table, target, title=f"Zone indicator R² ({protocol})")
    s = res["summary"]
    message = markdown_table(table) + (
        f"{s['models']} models, {s['indicators']} indicators, {s['zones_used']:,} of "
        f"{s['zones']:,} zones used; table {csv}"
    )
    return _finish(
        st,
        "eval socioeconomic",
        params,
        message,
        outputs={**s, "table": str(csv)},
        files={"table": csv, "markdown": md},
        details=res,
    )


# --------------------------------------------------------------------------- eval vpr
def eval_vpr(
    study: StudyLike | None = None,
    *,
    dataset: str | os.PathLike[str],
    checkpoints: Sequence[str | os.PathLike[str]] = (),
    models: Sequence[str] = (),
    random_init: bool = False,
    thumbnail: bool = False,
    threshold: float = 25.0,
    descriptor: str = "cls",
    seed: int = 0,
    image_size: int | None = None,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """Visual place recognition: Recall@1..25 of each encoder on a VPR set (Table 1).

    ``dataset`` is a folder with database/ and queries/ (``@utm_east@utm_north@...@.jpg``
    names; positives within ``threshold`` metres) or gsv-cities ``<ds>_dbImages.npy``,
    ``<ds>_qImages.npy`` and ``<ds>_gt.npy`` files (see :mod:`urbanvis.evaluate.vpr`). The
    table goes to ``out``, or with a study to reports/eval_vpr.csv (and .md beside it);
    with neither it is only returned. ``descriptor`` is ``cls`` (the paper's [CLS]
    vector) or ``tokens`` (each image's patch tokens minus their mean, which keeps the
    layout a small ViT's [CLS] loses; the thumbnail's pixels minus their mean colour).
    """
    from ._errors import Stopped
    from .evaluate.encoders import check_descriptor, encoder_specs
    from .evaluate.tables import markdown_table, write_table
    from .evaluate.vpr import evaluate_vpr, read_dataset

    _check_encoder_options(batch_size=batch_size, workers=workers, image_size=image_size,
                           device=device, seed=seed)  # fmt: skip
    if not (isinstance(threshold, int | float) and 0 < threshold < float("inf")):
        raise InputError(f"`threshold` must be a positive number of metres, got {threshold!r}")
    check_descriptor(descriptor)
    st = _study(study, create=False) if study is not None else None
    specs = encoder_specs(
        checkpoints, models=models, random_init=random_init, thumbnail=thumbnail, seed=seed
    )
    target = Path(out).expanduser() if out else None
    if target is None and st is not None:
        target = st.root / "reports" / "eval_vpr.csv"
    if target is not None and target.suffix.lower() != ".csv":
        raise InputError(f"`out` must be a .csv file, got {target.name!r}")
    if target is not None:
        _check_table_target(st, target)
    data = read_dataset(dataset, threshold=threshold)
    params = {
        "dataset": str(dataset),
        "checkpoints": [str(c) for c in checkpoints],
        "models": list(models),
        "random_init": random_init,
        "thumbnail": thumbnail,
        "threshold": threshold if data.threshold is not None else None,
        "descriptor": descriptor,
        "seed": seed,
        "image_size": image_size,
        "batch_size": batch_size,
        "workers": workers,
        "device": device,
        "out": str(out) if out else None,
    }
    try:
        table = evaluate_vpr(
            data,
            specs,
            image_size=image_size,
            batch_size=batch_size,
            workers=workers,
            device=device,
            descriptor=descriptor,
            progress=progress,
            should_stop=should_stop,
        )
    except Stopped as exc:
        message = f"{exc}; nothing written"
        return _finish(st, "eval vpr", params, message, stopped=True)
    title = f"Visual place recognition on {data.name} (Recall@K, %)"
    files: dict[str, Path] = {}
    message = markdown_table(table, title=title, digits=1)
    message += (
        f"{len(data.scored):,} queries scored against {len(data.database):,} database images"
        f" ({data.n_excluded:,} without a positive excluded)"
    )
    if target is not None:
        files["table"], files["markdown"] = write_table(table, target, title=title)
        message += f"; table {files['table']}"
    return _finish(
        st,
        "eval vpr",
        params,
        message,
        outputs={
            "n_queries": len(data.scored),
            "n_excluded": data.n_excluded,
            "n_database": len(data.database),
            "table": str(files["table"]) if "table" in files else None,
        },
        files=files,
        details=table,
    )


# --------------------------------------------------------------------------- eval attention
def eval_attention(
    study: StudyLike | None = None,
    *,
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    checkpoints: Sequence[str | os.PathLike[str]] = (),
    models: Sequence[str] = (),
    random_init: bool = False,
    thumbnail: bool = False,
    seed: int = 0,
    image_size: int | None = None,
    query_patches: Sequence[tuple[int, int]] | None = None,
    max_images: int = 32,
    batch_size: int = 8,
    workers: int = 0,
    device: str = "auto",
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
) -> StageResult:
    """Attention analysis of ViT encoders: mean attention distance, Fourier profile, maps.

    ``images`` is a folder or a list of image files; with a ``study`` and no ``images``, a
    sample of the study's ok captures. At most ``max_images`` are used (a sample drawn with
    ``seed``). Writes the per-head distance table to ``out`` (default
    reports/attention/attention.csv in the study), a per-layer table with the relative log
    amplitude beside it, and PNGs: the encoders side by side per layer, and each encoder's
    attention maps of ``query_patches`` (row, col) on the first image. See
    :mod:`urbanvis.evaluate.attention` for the definitions.
    """
    from .evaluate.encoders import encoder_specs

    if thumbnail:
        raise InputError(
            "the thumbnail baseline has no attention; drop `thumbnail` and name ViT encoders"
        )
    _check_int("max_images", max_images, low=1)
    _check_encoder_options(batch_size=batch_size, workers=workers, image_size=image_size,
                           device=device, seed=seed)  # fmt: skip
    specs = encoder_specs(checkpoints, models=models, random_init=random_init, seed=seed)
    st = _study(study, create=False) if study is not None else None
    if out is None:
        if st is None:
            raise InputError("say where to write: give `out` (a .csv file) or a `study`")
        out = st.root / "reports" / "attention" / "attention.csv"
    if Path(out).suffix.lower() != ".csv":
        raise InputError(f"`out` must be a .csv file, got {Path(out).name!r}")
    _check_table_target(st, Path(out))
    from .evaluate.attention import evaluate_attention, image_list, write_attention_report

    if images is None:
        if st is None:
            raise InputError("no images to analyse; give `images` (a folder or image files)")
        from .vectors import ok_captures

        paths = [st.root / p for p in ok_captures(st)["image_path"]]
        files = image_list(paths, max_images=max_images, seed=seed)
    else:
        files = image_list(images, max_images=max_images, seed=seed)
    parameters = dict(
        images=str(images) if isinstance(images, (str, os.PathLike)) else len(files),
        checkpoints=[str(c) for c in checkpoints], models=list(models),
        random_init=random_init, seed=seed, image_size=image_size,
        query_patches=[list(q) for q in query_patches] if query_patches else None,
        max_images=max_images, device=device, out=str(out),
    )  # fmt: skip
    from ._errors import Stopped

    try:
        result = evaluate_attention(
            files, specs, image_size=image_size, query_patches=query_patches,
            batch_size=batch_size, workers=workers, device=device, progress=progress,
            should_stop=should_stop,
        )  # fmt: skip
    except Stopped as exc:
        return _finish(st, "eval attention", parameters, str(exc), stopped=True)
    written = write_attention_report(result, out)
    lines = [
        f"attention of {len(specs)} encoder(s) over {len(files)} images "
        f"(mean attention distance in px, layer 1 -> last; relative log amplitude, last layer):"
    ]
    for e in result.encoders:
        lines.append(
            f"  {e.label}: {e.distance[0].mean():.1f} -> {e.distance[-1].mean():.1f} px; "
            f"{e.relative_log_amplitude[-1]:+.2f}"
        )
    lines.append(f"wrote {written['table']} and its tables and PNGs beside it")
    outputs = {
        "images": len(files),
        "encoders": len(specs),
        "table": str(written["table"]),
    }
    return _finish(
        st, "eval attention", parameters, "\n".join(lines), outputs=outputs, files=written,
        details=result,
    )  # fmt: skip


# --------------------------------------------------------------------------- experiment
def experiment(
    study: StudyLike,
    *,
    preset: str = "cpu",
    baselines: Sequence[str | os.PathLike[str]] = (),
    seed: int = 0,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    **settings: Any,
) -> StageResult:
    """The paper's experiment: self, temporal and spatial contrast on one budget, four evals.

    On a new or empty ``study`` folder it first makes the synthetic city of the bundled
    Helsinki roads; then it trains one encoder per strategy with the ``preset``'s recipe
    (``cpu``: minutes on 2 cores; ``paper``: the paper's ViT-B/16 recipe, for GPUs),
    evaluates them beside a random-init ViT, the 16x16 colour thumbnail and any
    ``baselines`` checkpoints, and writes reports/experiment/report.md and report.html.
    ``settings`` replace fields of the preset (``epochs``, ``max_pairs``...; see
    :class:`urbanvis.experiment.Preset`). Rerunning resumes.
    """
    from ._errors import Stopped
    from .experiment import preset as make_preset
    from .experiment import run_experiment

    chosen = make_preset(preset, **settings)  # validate before touching the study
    _check_int("seed", seed, low=0, allow_none=False)
    for path in baselines:
        if not Path(path).expanduser().is_file():
            raise InputError(f"`baselines` {path} is not a file; give a checkpoint file")
    st = _study(study, create=True)
    params = {"preset": preset, "baselines": [str(b) for b in baselines], "seed": seed,
              **{k: v for k, v in settings.items() if v is not None}}  # fmt: skip
    try:
        res = run_experiment(
            st, preset_name=preset, baselines=baselines, seed=seed, progress=progress,
            should_stop=should_stop, **settings,
        )  # fmt: skip
    except Stopped as exc:
        return _finish(st, "experiment", params, str(exc), stopped=True)
    lines = [f"experiment ({chosen.name} preset), this run {res.seconds / 60:.1f} min:"]
    from .experiment import learning_text, verdict_text

    for v in res.verdicts:
        lines.append(f"  {v['hypothesis']} ({v['measure']}: {v['numbers']}): "
                     f"{verdict_text(v)}")  # fmt: skip
    for row in res.learning:
        lines.append(f"  {row['encoder']}: {learning_text(row, res.preset)}")
    lines.append(f"report {res.files['markdown']} and {res.files['html'].name} beside it")
    outputs = {
        "pairs": res.pairs,
        "held": sum(v["held"] for v in res.verdicts),
        "report": str(res.files["markdown"].relative_to(st.root)),
    }
    return _finish(st, "experiment", params, "\n".join(lines), outputs=outputs,
                   files=res.files, details=res)  # fmt: skip
