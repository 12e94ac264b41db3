"""Harvest street-level images for a study's points through a provider, resumably.

The engine is the same for every provider: it reads the ``points`` layer, skips points that
already have captures from this provider, gets the captures of the pending points (batch
by batch from offline providers, streamed as requests finish from web providers), writes
each image under a temporary name and renames it, fsyncs the batch's images, then appends
the batch's rows to the ``captures`` layer in one transaction. A killed harvest therefore
loses at most the batch in flight, and the next run fetches nothing that finished; image
files of an uncommitted batch are removed at the start of the next run. Images that several
captures share (one panorama seen from one heading by neighbouring points) are stored once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ._errors import InputError, UrbanvisError
from ._imagestore import ImageStore
from .providers.base import CAPTURE_COLUMNS, STATUSES, CaptureResult, Provider
from .study import Study, toml_value

log = logging.getLogger(__name__)

SURVEY_CHUNK = 20_000
"""Coverage rows written per chunk by :func:`survey`."""

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
    reason: str = ""
    orphans_removed: int = 0
    retried_rows: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    """The error of this run's first failed capture (why everything failed, when it did)."""
    estimate: Any = None
    """What a paid provider said this run would request and cost, before it started."""

    @property
    def all_failed(self) -> bool:
        """Whether this run harvested points and every one of their captures failed."""
        c = self.counts
        return bool(c["failed"]) and not c["ok"] and not c["missing"]

    def line(self) -> str:
        c = self.counts
        state = "done"
        if self.stopped:
            state = (
                f"stopped early ({self.reason}); rerun to resume"
                if self.reason
                else ("stopped early; rerun to resume")
            )
        if self.stats.get("requests"):
            state = f"{self.stats['requests']:,} requests, {state}"
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
    commit_seconds: float = 10.0,
    retry_failed: bool = False,
    notice: Callable[[str], None] | None = None,
) -> HarvestSummary:
    """Capture images for every point of ``study`` that this provider has not done yet.

    Parameters
    ----------
    study
        The study; it must have a ``points`` layer.
    provider
        Any :class:`urbanvis.providers.base.Provider`: its ``stream`` gives the results,
        as requests finish from web providers, batch by batch from the others.
    batch_size
        Points per committed batch (a kill loses at most one batch).
    limit
        Harvest at most this many more points (for trials).
    progress, should_stop
        Callbacks: ``progress(points_done, points_total, counts)`` as points finish;
        ``should_stop()`` is checked between batches.
    commit_seconds
        Streaming providers also commit whatever finished after this many seconds.
    retry_failed
        Harvest again the points with a capture recorded as ``failed`` (their rows are
        replaced; images already stored are reused, not fetched again).
    notice
        Called with one line before any request of a paid provider: the image requests
        it will make at most, the time at its rate and the estimated cost
        (:meth:`Provider.cost_estimate <urbanvis.providers.base.Provider.cost_estimate>`);
        without it, that line is logged.
    """
    if batch_size < 1:
        raise InputError(f"`batch_size` must be at least 1, got {batch_size}")
    provider.check()  # a bad manifest is refused before the lock file exists
    store = ImageStore(study, provider.name)
    store.lock()  # first: a refused second run must not touch the study's settings
    try:
        provider.prepare(study)  # e.g. folder: seeds the points layer from the images
        if not study.has_layer("points"):
            raise InputError(
                f"study {study.root} has no points; give `city`, `area`, `bbox` or `osm` to "
                f"sample them, or run 'urbanvis sample' first"
            )
        points = study.read_layer("points", columns=["point_id", "bearing"])
        if len(points) == 0:
            raise InputError(f"study {study.root} has no points; run 'urbanvis sample' first")
        done = _points_with(study, provider.name)
        _check_same_settings(study, provider, has_captures=len(done) > 0)
        _index_captures(study)  # after the check: a refused run leaves study.gpkg as it was
        orphans = store.sweep()
        retried = 0
        if retry_failed:
            again = _points_with(study, provider.name, status="failed")
            if len(again):
                retried = _drop_points(study, provider.name, again.tolist())
                done = np.setdiff1d(done, again)
                log.info("retrying %d points with failed captures", len(again))
    except BaseException:
        store.close()
        raise
    pending = points[~points["point_id"].isin(done)]
    if limit is not None:
        pending = pending.iloc[: max(int(limit), 0)]
    summary = HarvestSummary(
        provider=provider.name,
        points_total=len(points),
        points_done_before=int(points["point_id"].isin(done).sum()),
        orphans_removed=orphans,
        retried_rows=retried,
    )
    table = _points_table(pending)
    estimate = provider.cost_estimate(table) if len(table) else None
    if estimate is not None:
        summary.estimate = estimate
        if notice is not None:
            notice(estimate.line())
        else:  # a caller without a notice (a script, QGIS) still hears it
            log.info("%s", estimate.line())
    if progress is not None:  # the starting point, so that rates count this run only
        progress(summary.points_done_before, summary.points_total, dict(summary.counts))
    rows: list[dict] = []
    rows_points = 0
    rows_counts = dict.fromkeys(STATUSES, 0)  # the statuses of ``rows``
    last_commit = time.monotonic()

    def commit(*, clean: bool = True) -> None:
        """Commit the finished rows; ``clean=False`` (an interrupted run) keeps the journal,
        which may name files of a group that never reached ``rows``."""
        nonlocal rows, rows_points, rows_counts, last_commit
        batch, points_in_batch, batch_counts = rows, rows_points, rows_counts
        rows, rows_points, last_commit = [], 0, time.monotonic()  # never written twice
        rows_counts = dict.fromkeys(STATUSES, 0)
        store.flush()  # the images are on disk before any row names them
        if batch:
            study.write_layer("captures", _frame(batch), append=True)
        if clean:
            store.committed()
        for status, n in batch_counts.items():
            summary.counts[status] += n
        summary.points_harvested += points_in_batch

    try:
        groups = provider.stream(
            table, known=store.known, should_stop=should_stop, batch_size=batch_size
        )
        for group in groups:
            group_rows = [_store(store, provider.name, r) for r in group]
            rows.extend(group_rows)
            rows_points += len({int(r["point_id"]) for r in group_rows})
            for row in group_rows:
                rows_counts[row["status"]] += 1
                if row["status"] == "failed" and not summary.first_error:
                    summary.first_error = failure_reason(row.get("error"))
            if rows_points >= batch_size or time.monotonic() - last_commit >= commit_seconds:
                commit()
            if progress is not None:
                shown = {k: summary.counts[k] + rows_counts[k] for k in STATUSES}
                progress(
                    summary.points_done_before + summary.points_harvested + rows_points,
                    summary.points_total,
                    shown,
                )
        stopped = provider.stopped_reason
        if stopped or (should_stop is not None and should_stop()):
            summary.stopped = True
            summary.reason = stopped or ""
    except BaseException:
        try:
            commit(clean=False)  # finished work is kept, whatever stopped the run
        finally:
            _close(store, provider, summary)
        raise
    try:
        commit()
    finally:
        _close(store, provider, summary)
    log.debug("%s", summary.line())
    return summary


def _close(store: ImageStore, provider: Provider, summary: HarvestSummary) -> None:
    try:
        store.close()
    finally:
        provider.close()
        summary.stats = dict(provider.stats)


@dataclass
class SurveySummary:
    """What a metadata-only run found: coverage and the cost of a full harvest."""

    provider: str
    points: int
    points_with_imagery: int = 0
    panoramas: int = 0
    images: int = 0
    requests: int = 0
    layer: str = ""
    surveyed: int = 0
    reason: str = ""
    estimate: Any = None
    """The requests and cost of harvesting the images found (paid providers only)."""

    def line(self) -> str:
        share = self.points_with_imagery / self.surveyed if self.surveyed else 0.0
        stop = (
            f"; stopped early ({self.reason}) after {self.surveyed:,} points"
            if (self.reason)
            else ""
        )
        return (
            f"{self.provider} coverage: {self.points_with_imagery:,} of {self.surveyed:,} "
            f"points surveyed ({share:.0%}) have imagery in {self.panoramas:,} panoramas; a "
            f"full harvest of them would fetch {self.images:,} images ({self.requests:,} "
            f"metadata requests made); layer {self.layer}{stop}"
            + (f"\n{self.estimate.line()}" if self.estimate is not None else "")
        )


def survey(
    study: Study,
    provider: Provider,
    *,
    limit: int | None = None,
    progress: Progress | None = None,
) -> SurveySummary:
    """Metadata only: which points have imagery, in how many panoramas, at what cost.

    Nothing is downloaded and the ``captures`` layer is untouched; the answer goes to the
    ``coverage_<provider>`` layer (one row per point and heading: pano_id, captured_at,
    status) so coverage can be mapped before any image is paid for.
    """
    if not provider.supports_metadata_only:
        raise InputError(f"provider {provider.name} has no metadata-only mode")
    if not provider.metadata_only:
        raise InputError(
            f"this {provider.name} provider downloads images; make it with "
            f"`metadata_only` to survey coverage"
        )
    if not study.has_layer("points"):
        raise InputError(f"study {study.root} has no points; run 'urbanvis sample' first")
    points = study.read_layer("points", columns=["point_id", "bearing"])
    if limit is not None:
        points = points.iloc[: max(int(limit), 0)]
    table = _points_table(points)
    layer = f"coverage_{provider.name}"
    summary = SurveySummary(provider=provider.name, points=len(table), layer=layer)
    counts = dict.fromkeys(STATUSES, 0)
    seen_points: set[int] = set()
    with_imagery: set[int] = set()
    panoramas: set[str] = set()
    images: set = set()
    rows: list[dict] = []
    written = 0

    def flush() -> None:  # in chunks: a city-wide survey never holds all its rows
        nonlocal rows, written
        if rows:
            frame = _frame(rows).drop(columns=["image_path", "sha256", "width", "height"])
            study.write_layer(layer, frame, append=written > 0)
            written += len(frame)
        rows = []

    if progress is not None:
        progress(0, len(table), dict(counts))
    first_error = ""
    try:
        for group in provider.stream(table):
            for result in group:
                row = dict(result.row)
                row.update(provider=provider.name, image_path="", sha256="")
                rows.append(row)
                counts[row["status"]] += 1
                seen_points.add(int(row["point_id"]))
                if row["status"] == "ok":
                    with_imagery.add(int(row["point_id"]))
                    panoramas.add(str(row["pano_id"]))
                    images.add(result.image_key or (row["pano_id"], row["heading"]))
                elif row["status"] == "failed" and not first_error:
                    first_error = failure_reason(row.get("error"))
            if len(rows) >= SURVEY_CHUNK:
                flush()
            if progress is not None:
                progress(len(seen_points), len(table), dict(counts))
    except BaseException:
        flush()  # what was surveyed is kept, however the run ends
        raise
    if counts["failed"] and not counts["ok"] and not counts["missing"] and not written:
        # no answer at all (offline, a wrong endpoint or key): a layer of failures would
        # only say "no coverage" where nothing is known
        raise UrbanvisError(
            f"every {provider.name} metadata request failed ({first_error}); nothing "
            f"written: check the network, the key and `endpoint`, then rerun"
        )
    flush()
    summary.surveyed = len(seen_points)
    summary.points_with_imagery = len(with_imagery)
    summary.panoramas = len(panoramas)
    summary.images = len(images)
    summary.requests = int(provider.stats.get("requests", 0))
    summary.reason = provider.stopped_reason or ""
    if summary.images:
        summary.estimate = provider.cost_estimate(table.iloc[:0], images=summary.images)
        if summary.estimate is not None:  # the points with imagery, not those surveyed
            summary.estimate = dataclasses.replace(
                summary.estimate, points=summary.points_with_imagery
            )
    log.info("%s", summary.line())
    return summary


# ------------------------------------------------------------------------ helpers
def failure_reason(error: object) -> str:
    """A failed capture's error, for a summary line: without the request URL it names."""
    text = re.sub(r"\s+for\s+https?://\S+", "", str(error or "")).strip()
    return text or "no reason given"


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
                f"{new!r}; rerun with the same settings or harvest into another `study`"
            )
        return
    study.store_settings(section, wanted)


def _points_table(points: gpd.GeoDataFrame) -> pd.DataFrame:
    """What providers are given: ``point_id``, ``bearing``, ``lon``, ``lat`` per point."""
    return pd.DataFrame(
        {
            "point_id": points["point_id"].to_numpy(),
            "bearing": points["bearing"].to_numpy(dtype=float),
            "lon": points.geometry.x.to_numpy(),
            "lat": points.geometry.y.to_numpy(),
        }
    )


def _points_with(study: Study, provider: str, *, status: str | None = None) -> np.ndarray:
    """Distinct ``point_id`` of this provider's committed captures (of ``status``, if given).

    One SQL query: a harvest of tens of millions of captures does not load them.
    """
    if not study.has_layer("captures"):
        return np.empty(0, dtype=np.int64)
    sql = "SELECT DISTINCT point_id FROM captures WHERE provider = ?"
    params: list = [provider]
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    with contextlib.closing(sqlite3.connect(study.gpkg)) as con:
        ids = [r[0] for r in con.execute(sql, params)]
    return np.asarray(ids, dtype=np.int64)


def _index_captures(study: Study) -> None:
    """Indexes that keep a restart's queries fast on tens of millions of captures."""
    if not study.has_layer("captures"):
        return
    try:
        with contextlib.closing(sqlite3.connect(study.gpkg)) as con, con:
            con.execute(
                "CREATE INDEX IF NOT EXISTS urbanvis_captures_provider_point "
                "ON captures (provider, point_id)"
            )
            con.execute(
                "CREATE INDEX IF NOT EXISTS urbanvis_captures_image ON captures (image_path)"
            )
    except sqlite3.Error as exc:  # a read-only study still harvests nothing; say why later
        log.debug("could not index captures: %s", exc)


def _drop_points(study: Study, provider: str, point_ids: Sequence[int]) -> int:
    """Delete this provider's capture rows of ``point_ids`` (so they are harvested again)."""
    deleted = 0
    ids = [int(p) for p in point_ids]
    for start in range(0, len(ids), 500):  # SQLite caps the number of parameters
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        deleted += study.delete_rows(
            "captures", f"provider = ? AND point_id IN ({marks})", [provider, *chunk]
        )
    return deleted


def _store(store: ImageStore, provider: str, result: CaptureResult) -> dict:
    """The capture's row, its image written (journal, temporary name, rename) unless shared.

    ``store.flush()`` makes the images durable before their rows are committed.
    """
    row = dict(result.row)
    row["provider"] = provider
    row["image_path"] = ""
    row["sha256"] = ""
    if row.get("status") not in STATUSES:
        raise ValueError(f"provider {provider} returned status {row.get('status')!r}")
    if row["status"] == "ok":
        key = result.image_key
        # with bytes in hand the provider found it not stored (known() looked on disk):
        # only this run's own writes can hold it; without bytes, it is stored somewhere
        found = None
        if key is not None:
            found = store.recent(key) if result.image else store.lookup(key)
        if found is not None:  # the same image as another capture's
            row["image_path"], row["sha256"], width, height = found
            if not row.get("width"):
                row["width"], row["height"] = width, height
        elif not result.image:
            raise ValueError(f"provider {provider} returned an ok capture without an image")
        else:
            if key is not None:
                rel = store.rel_for_key(key, result.suffix)
            else:
                rel = store.rel_for_capture(row["point_id"], row["capture_id"], result.suffix)
            size = (row.get("width") or 0, row.get("height") or 0)
            row["sha256"] = store.write(rel, result.image, key, size)
            row["image_path"] = rel
    row.update(result.extra)
    return row


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
