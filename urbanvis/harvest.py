"""Harvest street-level images for a study's points through a provider, resumably.

The engine is the same for every provider: it reads the ``points`` layer, skips points that
already have captures from this provider, asks the provider for the captures of a batch of
points, writes each image under a temporary name, fsyncs and renames it, then appends the
batch's rows to the ``captures`` layer in one transaction. A killed harvest therefore loses
at most the batch in flight, and the next run fetches nothing that finished; image files of
an uncommitted batch are removed at the start of the next run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from ._errors import InputError
from ._files import atomic_write_bytes
from .providers.base import CAPTURE_COLUMNS, STATUSES, CaptureResult, Provider
from .study import Study, toml_value

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, int]], None]


@dataclass
class HarvestSummary:
    """What a harvest run did."""

    provider: str
    points_total: int
    points_done_before: int
    points_harvested: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    stopped: bool = False
    orphans_removed: int = 0

    def line(self) -> str:
        c = self.counts
        state = "stopped early; rerun to resume" if self.stopped else "done"
        return (
            f"{self.provider}: {self.points_harvested:,} points harvested "
            f"({self.points_done_before:,} already done), {c['ok']:,} ok, "
            f"{c['missing']:,} missing, {c['failed']:,} failed; {state}"
        )


def harvest(
    study: Study,
    provider: Provider,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> HarvestSummary:
    """Capture images for every point of ``study`` that this provider has not done yet.

    Parameters
    ----------
    study
        The study; it must have a ``points`` layer.
    provider
        Any :class:`urbanvis.providers.base.Provider`.
    batch_size
        Points per committed batch (a kill loses at most one batch).
    limit
        Harvest at most this many more points (for trials).
    progress, should_stop
        Callbacks: ``progress(points_done, points_total, counts)`` after each batch;
        ``should_stop()`` is checked between batches.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    points = study.read_layer("points", columns=["point_id", "bearing"])
    if len(points) == 0:
        raise InputError(f"study {study.root} has no points; run 'urbanvis sample' first")
    committed = _committed_captures(study, provider.name)
    done = set(committed["point_id"].astype(np.int64).tolist())
    _check_same_settings(study, provider, has_captures=bool(done))
    orphans = _remove_orphans(study, provider.name, set(committed["image_path"].dropna()))
    pending = points[~points["point_id"].isin(done)]
    if limit is not None:
        pending = pending.iloc[: max(int(limit), 0)]
    summary = HarvestSummary(
        provider=provider.name,
        points_total=len(points),
        points_done_before=len(done & set(points["point_id"])),
        orphans_removed=orphans,
    )
    table = pd.DataFrame(
        {
            "point_id": pending["point_id"].to_numpy(),
            "bearing": pending["bearing"].to_numpy(dtype=float),
            "lon": pending.geometry.x.to_numpy(),
            "lat": pending.geometry.y.to_numpy(),
        }
    )
    if progress is not None:  # the starting point, so that rates count this run only
        progress(summary.points_done_before, summary.points_total, dict(summary.counts))
    try:
        for start in range(0, len(table), batch_size):
            if should_stop is not None and should_stop():
                summary.stopped = True
                break
            batch = table.iloc[start : start + batch_size]
            rows = [_store(study, provider.name, r) for r in provider.capture_points(batch)]
            if rows:
                study.write_layer("captures", _frame(rows), append=True)
            for row in rows:
                summary.counts[row["status"]] += 1
            summary.points_harvested += len(batch)
            if progress is not None:
                progress(
                    summary.points_done_before + summary.points_harvested,
                    summary.points_total,
                    dict(summary.counts),
                )
    finally:
        close = getattr(provider, "close", None)
        if close is not None:
            close()
    log.info("%s", summary.line())
    return summary


# ------------------------------------------------------------------------ helpers
def _check_same_settings(study: Study, provider: Provider, *, has_captures: bool) -> None:
    """Refuse to mix captures made with other settings into one study; else store these."""
    section = f"harvest.{provider.name}"
    wanted = provider.parameters()
    previous = study.settings(section)
    if has_captures and previous is not None:
        current = toml_value(wanted)
        changed = {k: (previous.get(k), v) for k, v in current.items() if previous.get(k) != v}
        if changed:
            name, (old, new) = next(iter(changed.items()))
            raise InputError(
                f"this study's {provider.name} captures were made with {name}={old!r}, not "
                f"{new!r}; rerun with the same settings or harvest into another --study"
            )
        return
    study.store_settings(section, wanted)


def _committed_captures(study: Study, provider: str) -> pd.DataFrame:
    """``point_id`` and ``image_path`` of this provider's committed captures (one read)."""
    if not study.has_layer("captures"):
        return pd.DataFrame(
            {"point_id": pd.Series(dtype="int64"), "image_path": pd.Series(dtype="object")}
        )
    return study.read_layer(
        "captures",
        columns=["point_id", "image_path"],
        where=f"provider = '{_sql_text(provider)}'",
        read_geometry=False,
    )


def _remove_orphans(study: Study, provider: str, known: set[str]) -> int:
    """Delete image files of this provider that no committed capture row refers to."""
    folder = study.images / provider
    if not folder.exists():
        return 0
    removed = 0
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(study.root).as_posix()
        if rel not in known:
            path.unlink()
            removed += 1
    if removed:
        log.info("removed %d image files left by an interrupted harvest", removed)
    return removed


def _store(study: Study, provider: str, result: CaptureResult) -> dict:
    row = dict(result.row)
    row["provider"] = provider
    row["image_path"] = ""
    row["sha256"] = ""
    if row.get("status") not in STATUSES:
        raise ValueError(f"provider {provider} returned status {row.get('status')!r}")
    if row["status"] == "ok":
        if not result.image:
            raise ValueError(f"provider {provider} returned an ok capture without an image")
        rel = Path("images") / provider / _image_name(row, result.suffix)
        (study.root / rel).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(study.root / rel, result.image)
        row["image_path"] = rel.as_posix()
        row["sha256"] = hashlib.sha256(result.image).hexdigest()
    row.update(result.extra)
    return row


def _image_name(row: dict, suffix: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(row["capture_id"]))
    return f"{int(row['point_id']) // 1000:05d}/{safe}{suffix}"


def _frame(rows: list[dict]) -> gpd.GeoDataFrame:
    frame = pd.DataFrame(rows)
    lon = frame.pop("lon").to_numpy(dtype=float)
    lat = frame.pop("lat").to_numpy(dtype=float)
    extra = [c for c in frame.columns if c not in CAPTURE_COLUMNS]
    frame = frame[CAPTURE_COLUMNS + extra]
    for col in ("point_id", "width", "height"):
        frame[col] = frame[col].astype(np.int64)
    for col in ("heading", "pitch", "fov"):
        frame[col] = frame[col].astype(float)
    for col in (
        "capture_id",
        "provider",
        "pano_id",
        "captured_at",
        "image_path",
        "sha256",
        "status",
        "error",
    ):
        frame[col] = frame[col].fillna("").astype(str)
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")


def _sql_text(value: str) -> str:
    return value.replace("'", "''")
