"""Contrastive pair datasets from the ``captures`` layer: self, temporal and spatial.

The three datasets of the paper (section 3 and 4.1), each sized by a pair budget and drawn
reproducibly from a seed:

``self``
    One image per pair (``capture_a == capture_b``); the two views come from augmentation.
``temporal``
    Two captures of the same place at different dates: within ``max_distance`` metres of
    each other and with headings within ``heading_tol`` degrees. Captures need not share a
    point or a panorama id, so real providers, whose captures of one place drift by a few
    metres, pair as well as the simulator. A *place* (the anchor) is a group of captures
    linked by the distance-and-heading rule; every pair inside it satisfies both rules.
``spatial``
    Two different images inside the same zone, any heading. The global version uses square
    cells of a ``buffer``-metre grid laid in each capture's UTM zone, aligned on the UTM
    origin (zone id ``<epsg>:<easting>:<northing>`` of the cell's south-west corner); the
    local version uses polygons, e.g. census block groups, identified by ``zone_id``.

The budget is spread evenly over anchors (places, zones or images): every anchor gets one
pair before any gets a second, like the paper's "two images randomly selected from each
area", repeated until the budget is spent. Everything is vectorised (a KD-tree for
temporal neighbours, group arithmetic for zones), so millions of captures take seconds.

:func:`write_pairs` stores the table as ``pairs/<strategy>.parquet`` with a summary
(``.json`` and ``.md``) beside it and, optionally, WebDataset tar shards.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._errors import CRSError, InputError, InputFileError
from ._files import atomic_file, atomic_write_bytes
from ._geo import utm_coordinates
from .study import Study

log = logging.getLogger(__name__)

STRATEGIES = ("self", "temporal", "spatial")
PAIR_COLUMNS = [
    "pair_id",
    "strategy",
    "anchor",
    "capture_a",
    "capture_b",
    "image_a",
    "image_b",
    "point_a",
    "point_b",
    "captured_at_a",
    "captured_at_b",
    "heading_a",
    "heading_b",
    "lon_a",
    "lat_a",
    "lon_b",
    "lat_b",
    "distance_m",
    "days_apart",
    "heading_diff",
    "zone",
]
"""Columns of a pair table. ``anchor`` is the place (temporal), zone (spatial) or capture
(self) a pair was drawn for; ``zone`` is set for spatial pairs only."""

_STR = "string[pyarrow]"  # text columns: fast takes, Parquet strings
_ZONE_OFFSET = 1.0e7  # metres between UTM zones in the KD-tree (eastings are < 1e6)


@dataclass(frozen=True)
class PairConfig:
    """Settings of a pair dataset; the fields match :func:`pairs_from_captures`' keywords."""

    strategy: str
    max_pairs: int = 1_000_000
    seed: int = 0
    max_distance: float = 5.0
    heading_tol: float = 10.0
    buffer: float = 100.0
    zone_id: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(
                f"unknown pair strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}"
            )
        if int(self.max_pairs) <= 0:
            raise InputError(f"--max-pairs must be a positive number, got {self.max_pairs}")
        if not self.max_distance > 0:
            raise InputError(f"--max-distance must be positive metres, got {self.max_distance}")
        if not 0 <= self.heading_tol <= 180:
            raise InputError(f"--heading-tol must be 0 to 180 degrees, got {self.heading_tol}")
        if not self.buffer > 0:
            raise InputError(f"--buffer must be positive metres, got {self.buffer}")


@dataclass(frozen=True)
class PairSummary:
    """What a pair dataset holds and why candidates were left out.

    ``captures_total == captures_used + sum(dropped_captures.values())`` and
    ``candidates == pairs + dropped_candidates['over_budget']``.
    """

    strategy: str
    pairs: int
    anchors: int
    images: int
    captures_total: int
    captures_used: int
    candidates: int
    zones: str
    settings: dict[str, Any] = field(default_factory=dict)
    dropped_captures: dict[str, int] = field(default_factory=dict)
    dropped_candidates: dict[str, int] = field(default_factory=dict)
    pairs_per_anchor: dict[str, float] = field(default_factory=dict)
    per_zone: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The one-line log summary."""
        where = {"self": "", "temporal": " at {:,} places", "spatial": " in {:,} zones"}
        return (
            f"built {self.pairs:,} {self.strategy} pairs from {self.images:,} images"
            f"{where[self.strategy].format(self.anchors)} (of {self.candidates:,} candidates, "
            f"seed {self.settings.get('seed')})"
        )

    def text(self) -> str:
        """A few lines for the terminal."""
        lines = [self.line()]
        lines.append(
            f"captures: {self.captures_total:,} in the layer, {self.captures_used:,} usable"
        )
        dropped = {k: v for k, v in self.dropped_captures.items() if v}
        if dropped:
            lines.append("captures dropped: " + _counts(dropped))
        dropped = {k: v for k, v in self.dropped_candidates.items() if v}
        if dropped:
            lines.append("candidate pairs dropped: " + _counts(dropped))
        if self.pairs_per_anchor:
            s = self.pairs_per_anchor
            lines.append(
                f"pairs per anchor: min {s['min']:g}, median {s['median']:g}, max {s['max']:g}"
            )
        if self.strategy == "spatial":
            lines.append(f"zones: {self.zones}, {len(self.per_zone):,} with images")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The summary as a Markdown report."""
        out = [f"# {self.strategy} pairs", "", self.line() + ".", ""]
        out += ["| setting | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in self.settings.items() if v is not None]
        out += ["", "| count | value |", "|---|---|"]
        for key in ("pairs", "anchors", "images", "captures_total", "captures_used", "candidates"):
            out.append(f"| {key} | {getattr(self, key):,} |")
        for title, counts in (
            ("captures dropped", self.dropped_captures),
            ("candidate pairs dropped", self.dropped_candidates),
        ):
            out += ["", f"| {title} | count |", "|---|---|"]
            out += [f"| {k} | {v:,} |" for k, v in counts.items()]
        if self.per_zone:
            top = sorted(self.per_zone.items(), key=lambda kv: (-kv[1]["pairs"], kv[0]))[:20]
            out += ["", f"Zones ({self.zones}): {len(self.per_zone):,}; the 20 with most pairs:"]
            out += ["", "| zone | images | pairs |", "|---|---|---|"]
            out += [f"| {z} | {c['images']:,} | {c['pairs']:,} |" for z, c in top]
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- building
def pairs_from_captures(
    captures,
    *,
    strategy: str,
    max_pairs: int = 1_000_000,
    seed: int = 0,
    max_distance: float = 5.0,
    heading_tol: float = 10.0,
    buffer: float = 100.0,
    zones=None,
    zone_id: str | None = None,
) -> tuple[pd.DataFrame, PairSummary]:
    """Draw a contrastive pair dataset from a ``captures`` GeoDataFrame.

    Parameters
    ----------
    captures
        The study's ``captures`` layer, in any CRS. Only rows with ``status == 'ok'`` and an
        ``image_path`` are used; the frame is not modified.
    strategy
        ``self`` (pair = one image twice), ``temporal`` (same place and heading, different
        dates) or ``spatial`` (two images of the same zone).
    max_pairs
        The pair budget (the paper uses 1,000,000), spread evenly over anchors.
    seed
        Random seed; the same captures and seed give the same table, whatever the row order.
    max_distance, heading_tol
        temporal: the largest distance in metres and heading difference in degrees between
        the two captures of a pair.
    buffer
        spatial, without ``zones``: side in metres of the square zones, cells of a grid in
        each capture's UTM zone aligned on the UTM origin.
    zones, zone_id
        spatial: polygons (a GeoDataFrame in any CRS) and the column naming each zone (e.g.
        GEOID of block groups). Captures outside every zone are dropped; a capture on a
        shared border goes to the zone with the smallest id.

    Returns
    -------
    pairs, summary
        The pair table (columns :data:`PAIR_COLUMNS`, shuffled, ``pair_id`` 0..n-1) and a
        :class:`PairSummary`.

    Raises
    ------
    InputError
        Unknown strategy, non-positive budget, no usable captures, no temporal pair, zones
        without the id column or that overlap no capture.
    CRSError
        ``captures`` or ``zones`` has no CRS.
    """
    cfg = PairConfig(
        strategy=strategy,
        max_pairs=int(max_pairs),
        seed=int(seed),
        max_distance=float(max_distance),
        heading_tol=float(heading_tol),
        buffer=float(buffer),
        zone_id=zone_id,
    )
    if strategy == "spatial" and zones is not None:
        zones = _check_zones(zones, zone_id)
    frame, dropped = _usable_captures(captures, strategy)
    rng = np.random.default_rng(cfg.seed)
    if strategy == "self":
        a, b, anchor, info = _self_pairs(frame, cfg, rng)
    elif strategy == "temporal":
        a, b, anchor, info = _temporal_pairs(frame, cfg, rng, dropped)
    else:
        a, b, anchor, info = _spatial_pairs(frame, cfg, rng, dropped, zones)
    table = _pair_table(frame, a, b, anchor, strategy, rng)
    if strategy == "spatial":
        table["zone"] = table["anchor"]
    used = int(info.pop("captures_used"))
    candidates = int(info.pop("candidates"))
    counts = table["anchor"].value_counts()
    settings = {
        "strategy": strategy,
        "max_pairs": cfg.max_pairs,
        "seed": cfg.seed,
        "max_distance": cfg.max_distance if strategy == "temporal" else None,
        "heading_tol": cfg.heading_tol if strategy == "temporal" else None,
        "buffer": cfg.buffer if strategy == "spatial" and zones is None else None,
        "zone_id": zone_id if strategy == "spatial" and zones is not None else None,
    }
    summary = PairSummary(
        strategy=strategy,
        pairs=len(table),
        anchors=int(counts.size),
        images=int(pd.unique(np.concatenate([a, b])).size),
        captures_total=len(captures),
        captures_used=used,
        candidates=candidates,
        zones=info.pop("zones", ""),
        settings={k: v for k, v in settings.items() if v is not None},
        dropped_captures={k: int(v) for k, v in dropped.items()},
        dropped_candidates={
            **info.pop("dropped_candidates", {}),
            "over_budget": candidates - len(table),
        },
        pairs_per_anchor={
            "min": float(counts.min()),
            "median": float(counts.median()),
            "max": float(counts.max()),
        },
        per_zone=info.pop("per_zone", {}),
    )
    log.info("%s", summary.line())
    return table, summary


def _usable_captures(captures, strategy: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Ok captures with an image and a location, sorted by capture_id, with UTM x/y."""
    if getattr(captures, "crs", None) is None:
        raise CRSError("the captures have no CRS; set one (captures.set_crs(4326))")
    need = ["capture_id", "point_id", "image_path", "status"]
    if strategy == "temporal":
        need += ["heading", "captured_at"]
    missing = [c for c in need if c not in captures.columns]
    if missing:
        raise InputError(
            f"the captures layer lacks column(s) {', '.join(missing)}; "
            f"rerun 'urbanvis harvest' to rebuild it"
        )
    if len(captures) == 0:
        raise InputError("the captures layer is empty; run 'urbanvis harvest' first")
    geo = captures.geometry
    if captures.crs.to_epsg() != 4326:
        geo = geo.to_crs(4326)
    empty = geo.is_empty.to_numpy() | geo.isna().to_numpy()
    lon = np.where(empty, np.nan, geo.x.where(~empty).to_numpy(dtype=float))
    lat = np.where(empty, np.nan, geo.y.where(~empty).to_numpy(dtype=float))
    status = captures["status"].astype(str).str.lower().to_numpy()
    image = captures["image_path"].fillna("").astype(str).to_numpy()
    frame = pd.DataFrame(
        {
            "capture_id": pd.array(captures["capture_id"].astype(str), dtype=_STR),
            "point_id": pd.array(
                pd.to_numeric(captures["point_id"], errors="coerce").to_numpy(), dtype="Int64"
            ),
            "image_path": pd.array(image, dtype=_STR),
            "heading": _numbers(captures, "heading"),
            "captured_at": pd.array(
                _date_text(captures.get("captured_at"), len(captures)), dtype=_STR
            ),
            "lon": lon,
            "lat": lat,
        }
    )
    ok = status == "ok"
    has_image = ok & (image != "")
    located = has_image & np.isfinite(lon) & np.isfinite(lat)
    dropped = {
        "status_missing": int((status == "missing").sum()),
        "status_failed": int((~ok & (status != "missing")).sum()),
        "no_image": int((ok & ~has_image).sum()),
        "no_location": int((has_image & ~located).sum()),
    }
    if not ok.any():
        have = ", ".join(f"{k}={v}" for k, v in pd.Series(status).value_counts().items())
        raise InputError(
            f"no capture has status 'ok' ({have}); rerun 'urbanvis harvest' or check the provider"
        )
    if not located.any():
        raise InputError(
            "no ok capture has both an image_path and a location; rerun 'urbanvis harvest'"
        )
    frame = frame[located].sort_values("capture_id", kind="stable").reset_index(drop=True)
    if frame["capture_id"].duplicated().any():
        dup = frame.loc[frame["capture_id"].duplicated(), "capture_id"].iloc[0]
        raise InputError(f"capture_id {dup!r} appears twice in the captures layer; deduplicate it")
    frame["x"], frame["y"], frame["epsg"] = utm_coordinates(
        frame["lon"].to_numpy(), frame["lat"].to_numpy()
    )
    return frame, dropped


def _numbers(frame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _date_text(values, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, "", dtype=object)
    series = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(series):
        return series.dt.strftime("%Y-%m-%d").fillna("").to_numpy(dtype=object)
    return series.fillna("").astype(str).to_numpy(dtype=object)


def _dates(text: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Year, month, day and precision (0 year, 1 month, 2 day; -1 unknown) of ISO dates."""
    s = pd.Series(text, dtype=_STR).fillna("").str.strip()

    def number(a: int, b: int) -> np.ndarray:
        value = pd.to_numeric(s.str.slice(a, b), errors="coerce")
        return pd.Series(value).to_numpy(dtype=float, na_value=np.nan)

    def dash(at: int) -> np.ndarray:
        return (s.str.slice(at, at + 1) == "-").to_numpy(dtype=bool, na_value=False)

    n = s.str.len().to_numpy(dtype=np.int64, na_value=0)
    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    good_year = np.isfinite(year) & (n >= 4)
    good_month = good_year & (n >= 7) & dash(4) & (month >= 1) & (month <= 12)
    good_day = good_month & (n >= 10) & dash(7) & (day >= 1) & (day <= 31)
    precision = np.select([good_day, good_month, good_year & (n == 4)], [2, 1, 0], default=-1)
    return (
        np.where(good_year, year, 1970).astype(np.int64),
        np.where(good_month, month, 1).astype(np.int64),
        np.where(good_day, day, 1).astype(np.int64),
        precision,
    )


def _days(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    stamp = (
        (year - 1970).astype("datetime64[Y]").astype("datetime64[M]")
        + (month - 1).astype("timedelta64[M]")
    ).astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
    return stamp.astype(np.int64).astype(float)


def _heading_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


# ------------------------------------------------------------------------ strategies
def _self_pairs(frame, cfg, rng):
    n = len(frame)
    keep = np.flatnonzero(_quotas(np.ones(n, dtype=np.int64), cfg.max_pairs, rng))
    anchor = (keep, frame["capture_id"].array)
    return keep, keep, anchor, {"captures_used": n, "candidates": n}


def _temporal_pairs(frame, cfg, rng, dropped):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    year, month, day, precision = _dates(frame["captured_at"])
    heading = frame["heading"].to_numpy(dtype=float)
    has_date = precision >= 0
    has_heading = np.isfinite(heading)
    dropped["no_date"] = int((~has_date).sum())
    dropped["no_heading"] = int((has_date & ~has_heading).sum())
    idx = np.flatnonzero(has_date & has_heading)
    xy = np.column_stack([frame["x"].to_numpy()[idx], frame["y"].to_numpy()[idx]])
    xy[:, 0] += _zone_rank(frame["epsg"].to_numpy()[idx]) * _ZONE_OFFSET
    found = cKDTree(xy).query_pairs(cfg.max_distance, output_type="ndarray")
    i, j = idx[found[:, 0]], idx[found[:, 1]]
    near = len(i)
    same_heading = _heading_diff(heading[i], heading[j]) <= cfg.heading_tol
    i, j = i[same_heading], j[same_heading]
    # places: groups of captures linked by the distance and heading rule
    n = len(frame)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, place = connected_components(graph, directed=False)
    coarse = np.minimum(precision[i], precision[j])
    same_date = (
        (year[i] == year[j])
        & ((coarse < 1) | (month[i] == month[j]))
        & ((coarse < 2) | (day[i] == day[j]))
    )
    dropped_candidates = {
        "heading": int(near - same_heading.sum()),
        "same_date": int(same_date.sum()),
    }
    i, j = i[~same_date], j[~same_date]
    partnered = np.zeros(n, dtype=bool)
    partnered[i] = partnered[j] = True
    dropped["no_partner"] = int((has_date & has_heading & ~partnered).sum())
    if len(i) == 0:
        raise InputError(
            f"no place was captured at two dates (within {cfg.max_distance:g} m and "
            f"{cfg.heading_tol:g} degrees); harvest with --captures-per-point 2 or more, "
            f"or widen --max-distance/--heading-tol"
        )
    # number the places that have pairs 0..k-1, in capture_id order of their first member
    group = place[i]
    first = np.full(place.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, group, np.minimum(i, j))
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    group = rank[group]
    n_places = int(np.unique(group).size)
    pick = _pick_per_group(group, cfg.max_pairs, rng)
    labels = pd.array([f"place-{p:06d}" for p in range(n_places)], dtype=_STR)
    info = {
        "captures_used": int(partnered.sum()),
        "candidates": len(i),
        "dropped_candidates": dropped_candidates,
    }
    return i[pick], j[pick], (group[pick], labels), info


def _spatial_pairs(frame, cfg, rng, dropped, zones):
    if zones is None:
        label, zone_of = _grid_zones(frame, cfg.buffer)
        what = f"{cfg.buffer:g} m grid cells in the local UTM zone"
    else:
        label, zone_of = _polygon_zones(frame, zones, cfg.zone_id)
        dropped["outside_zones"] = int((zone_of < 0).sum())
        what = f"{len(zones):,} polygons by {cfg.zone_id}"
    inside = np.flatnonzero(zone_of >= 0)
    order = inside[np.lexsort((inside, zone_of[inside]))]  # by zone, then capture_id
    zone_sorted = zone_of[order]
    size = np.bincount(zone_sorted, minlength=len(label)).astype(np.int64)
    images_in_zone = size.copy()
    alone = size == 1
    dropped["alone_in_zone"] = int(alone.sum())
    if not (size >= 2).any():
        raise InputError(
            f"no zone holds two usable images ({what}); use larger zones (--buffer) "
            f"or harvest more points"
        )
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    caps = size * (size - 1) // 2
    quota = _quotas(caps, cfg.max_pairs, rng)
    zone_idx, k = _sample_triangle(caps, quota, rng)
    hi = np.floor((1.0 + np.sqrt(1.0 + 8.0 * k.astype(float))) / 2.0).astype(np.int64)
    hi -= (hi * (hi - 1) // 2) > k  # float rounding at large k
    hi += ((hi + 1) * hi // 2) <= k
    lo = k - hi * (hi - 1) // 2
    a = order[start[zone_idx] + hi]
    b = order[start[zone_idx] + lo]
    pairs_in_zone = np.bincount(zone_idx, minlength=len(label))
    has = np.flatnonzero(images_in_zone > 0)
    per_zone = {
        str(label[z]): {"images": int(images_in_zone[z]), "pairs": int(pairs_in_zone[z])}
        for z in has
    }
    info = {
        "captures_used": int(size[size >= 2].sum()),
        "candidates": int(caps.sum()),
        "zones": what,
        "per_zone": per_zone,
    }
    return a, b, (zone_idx, pd.array(label, dtype=_STR)), info


def _grid_zones(frame, buffer: float) -> tuple[np.ndarray, np.ndarray]:
    ix = np.floor(frame["x"].to_numpy() / buffer).astype(np.int64)
    iy = np.floor(frame["y"].to_numpy() / buffer).astype(np.int64)
    keys = np.column_stack([frame["epsg"].to_numpy().astype(np.int64), ix, iy])
    unique, zone_of = np.unique(keys, axis=0, return_inverse=True)
    label = np.array(
        [f"{e}:{x * buffer:.0f}:{y * buffer:.0f}" for e, x, y in unique.tolist()], dtype=object
    )
    return label, zone_of.reshape(-1).astype(np.int64)


def _polygon_zones(frame, zones, zone_id: str) -> tuple[np.ndarray, np.ndarray]:
    import geopandas as gpd

    ids = _zone_labels(zones[zone_id])
    polys = gpd.GeoDataFrame({"zone": ids}, geometry=zones.geometry.to_crs(4326).values, crs=4326)
    points = gpd.GeoSeries(gpd.points_from_xy(frame["lon"], frame["lat"]), crs=4326)
    pi, zi = polys.sindex.query(points, predicate="intersects")
    label = np.array(sorted(set(ids)), dtype=object)
    code = np.searchsorted(label, ids)
    zone_of = np.full(len(frame), -1, dtype=np.int64)
    hit = code[zi]
    # a point on a shared border: the smallest zone id wins
    best = pd.Series(hit).groupby(pi).min()
    zone_of[best.index.to_numpy()] = best.to_numpy()
    if (zone_of < 0).all():
        raise InputError(
            f"the zones overlap none of the {len(frame):,} usable captures; check that "
            f"--zones covers the study area"
        )
    return label, zone_of


def _zone_labels(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    return values.astype(str).fillna("").to_numpy(dtype=object)


def _check_zones(zones, zone_id: str | None):
    if getattr(zones, "crs", None) is None:
        raise CRSError("the zones have no CRS; give them one (a .prj or set_crs) and retry")
    fields = [c for c in zones.columns if c != zones.geometry.name]
    if not zone_id or zone_id not in zones.columns:
        have = ", ".join(fields) or "none"
        what = f"have no field {zone_id!r}" if zone_id else "need --zone-id"
        raise InputError(f"the zones {what}; pass --zone-id with one of their fields: {have}")
    if len(zones) == 0:
        raise InputError("the zones file holds no polygon; pass a file with zones")
    return zones


def _zone_rank(epsg: np.ndarray) -> np.ndarray:
    return np.unique(epsg, return_inverse=True)[1].reshape(-1).astype(float)


# ------------------------------------------------------------------------- sampling
def _quotas(caps: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Pairs per anchor: equal shares (capped by what each holds) summing to the budget."""
    caps = np.asarray(caps, dtype=np.int64)
    if caps.sum() <= budget:
        return caps.copy()
    lo, hi = 0, int(caps.max())
    while lo < hi:  # the largest level L with sum(min(caps, L)) <= budget
        mid = (lo + hi + 1) // 2
        if np.minimum(caps, mid).sum() <= budget:
            lo = mid
        else:
            hi = mid - 1
    quota = np.minimum(caps, lo)
    rest = int(budget - quota.sum())
    if rest:
        extra = rng.choice(np.flatnonzero(caps > lo), size=rest, replace=False)
        quota[extra] += 1
    return quota


def _pick_per_group(group: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of explicit candidates to keep: a random ``quota[g]`` of each group ``g``."""
    quota = _quotas(np.bincount(group).astype(np.int64), budget, rng)
    return _pick_per_group_quota(group, quota, rng)


def _sample_triangle(caps, quota, rng) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``quota[z]`` distinct pair numbers in ``[0, caps[z])`` for every zone ``z``."""
    zones = np.flatnonzero(quota > 0)
    dense = zones[2 * quota[zones] >= caps[zones]]  # enumerate, then keep a random subset
    sparse = zones[2 * quota[zones] < caps[zones]]  # draw, then redraw duplicates
    z_parts, k_parts = [], []
    if dense.size:
        n = caps[dense]
        z = np.repeat(dense, n)
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        keep = _pick_per_group_quota(z, quota, rng)
        z_parts.append(z[keep])
        k_parts.append(k[keep])
    if sparse.size:
        z = np.empty(0, dtype=np.int64)
        k = np.empty(0, dtype=np.int64)
        want = quota[sparse].copy()
        while want.sum():
            zz = np.repeat(sparse, want)
            kk = np.floor(rng.random(zz.size) * caps[zz]).astype(np.int64)
            z, k = np.concatenate([z, zz]), np.concatenate([k, kk])
            z, k = _unique_pairs(z, k, int(caps.max()))
            want = quota[sparse] - np.bincount(z, minlength=caps.size)[sparse]
        z_parts.append(z)
        k_parts.append(k)
    return np.concatenate(z_parts), np.concatenate(k_parts)


def _unique_pairs(z: np.ndarray, k: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    if width * (int(z.max()) + 1) < 2**62:  # one integer key: a sort is fastest
        key = np.sort(z * width + k)
        key = key[np.concatenate([[True], key[1:] != key[:-1]])]
        return key // width, key % width
    order = np.lexsort((k, z))
    z, k = z[order], k[order]
    unique = np.concatenate([[True], (z[1:] != z[:-1]) | (k[1:] != k[:-1])])
    return z[unique], k[unique]


def _pick_per_group_quota(group, quota, rng) -> np.ndarray:
    """Indices of a random ``quota[g]`` of the items of each group ``g``."""
    order = np.lexsort((rng.random(group.size), group))
    sizes = np.bincount(group, minlength=quota.size)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(group.size) - start[group[order]]
    return np.sort(order[rank < quota[group[order]]])


def _pair_table(frame, a, b, anchor, strategy, rng) -> pd.DataFrame:
    if strategy != "self":  # either image may get the stronger augmentation
        swap = rng.random(a.size) < 0.5
        a, b = np.where(swap, b, a), np.where(swap, a, b)
    shuffle = rng.permutation(a.size)
    a, b = a[shuffle], b[shuffle]
    codes, labels = anchor
    anchor_text = labels.take(np.asarray(codes)[shuffle])
    col = {c: frame[c].to_numpy() for c in ("x", "y", "epsg", "lon", "lat")}
    x_a, y_a, x_b, y_b = col["x"][a], col["y"][a], col["x"][b], col["y"][b]
    same_crs = col["epsg"][a] == col["epsg"][b]
    distance = np.where(same_crs, np.hypot(x_a - x_b, y_a - y_b), np.nan)
    if strategy != "self":  # pairs across UTM zones (spatial polygons) measured on the sphere
        far = ~same_crs
        if far.any():
            from pyproj import Geod

            _, _, d = Geod(ellps="WGS84").inv(
                col["lon"][a][far], col["lat"][a][far], col["lon"][b][far], col["lat"][b][far]
            )
            distance[far] = d
    year, month, day, precision = _dates(frame["captured_at"])
    days = np.where(precision >= 0, _days(year, month, day), np.nan)
    heading = frame["heading"].to_numpy(dtype=float)
    table = pd.DataFrame(
        {
            "pair_id": np.arange(a.size, dtype=np.int64),
            "strategy": strategy,
            "anchor": anchor_text,
            "capture_a": frame["capture_id"].array.take(a),
            "capture_b": frame["capture_id"].array.take(b),
            "image_a": frame["image_path"].array.take(a),
            "image_b": frame["image_path"].array.take(b),
            "point_a": frame["point_id"].array.take(a),
            "point_b": frame["point_id"].array.take(b),
            "captured_at_a": frame["captured_at"].array.take(a),
            "captured_at_b": frame["captured_at"].array.take(b),
            "heading_a": heading[a],
            "heading_b": heading[b],
            "lon_a": col["lon"][a],
            "lat_a": col["lat"][a],
            "lon_b": col["lon"][b],
            "lat_b": col["lat"][b],
            "distance_m": distance,
            "days_apart": np.abs(days[a] - days[b]),
            "heading_diff": _heading_diff(heading[a], heading[b]),
            "zone": pd.array([None] * a.size, dtype=_STR),
        }
    )
    return table[PAIR_COLUMNS]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items())


# -------------------------------------------------------------------------- zones file
def zones_for_pairs(path: str | os.PathLike[str], *, zone_id: str | None):
    """Read a polygon file (any CRS, a GeoPackage layer as ``file.gpkg:layer``) for spatial
    pairs; see :func:`urbanvis.zones.zones_from_file` for what it checks."""
    from .zones import zones_from_file

    return zones_from_file(path, zone_id or "", id_option="--zone-id")


# ----------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class PairFiles:
    """Where :func:`write_pairs` put a dataset (paths relative to the study)."""

    table: str
    summary_json: str
    summary_md: str
    shards: tuple[str, ...] = ()
    shard_pattern: str | None = None


def write_pairs(
    study: Study,
    pairs: pd.DataFrame,
    summary: PairSummary,
    *,
    strategy: str,
    shards: bool = False,
    shard_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> PairFiles:
    """Write ``pairs/<strategy>.parquet``, its summary and optionally WebDataset shards.

    Every file is written under a temporary name and renamed into place, shards first and
    the table last, so that an interrupted run leaves the previous dataset (or nothing).

    Parameters
    ----------
    study
        The study the pairs' image paths are relative to.
    pairs, summary
        As returned by :func:`pairs_from_captures`.
    strategy
        Names the files: ``pairs/<strategy>.parquet``, ``.json``, ``.md``.
    shards
        Also write ``pairs/<strategy>-shards/<strategy>-000000.tar``...: per pair the
        members ``<key>.a.<ext>``, ``<key>.b.<ext>`` (the two image files; a self pair holds
        its image twice) and ``<key>.json`` (the pair's row), with ``key`` the 9-digit
        pair_id. WebDataset reads them as they are; see :func:`iter_shard`.
    shard_size
        Pairs per shard.
    progress
        ``progress(pairs_done, pairs_total)`` while writing shards.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"unknown pair strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if shard_size < 1:
        raise InputError(f"--shard-size must be at least 1, got {shard_size}")
    folder = study.pairs
    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda p: p.relative_to(study.root).as_posix()  # noqa: E731
    shard_paths: tuple[str, ...] = ()
    pattern = None
    if shards:
        final = folder / f"{strategy}-shards"
        names = _write_shards(study, pairs, final, strategy, shard_size, progress)
        shard_paths = tuple(rel(final / n) for n in names)
        last = len(names) - 1
        pattern = rel(final / f"{strategy}-{{000000..{last:06d}}}.tar")
    meta = summary.to_dict() | {"shards": list(shard_paths), "shard_pattern": pattern}
    text = json.dumps(meta, indent=2, sort_keys=False) + "\n"
    md = summary.markdown()
    if pattern:
        md += f"\nWebDataset shards: `{pattern}` ({len(shard_paths)} files)\n"
    table_path = folder / f"{strategy}.parquet"
    atomic_write_bytes(folder / f"{strategy}.json", text.encode())
    atomic_write_bytes(folder / f"{strategy}.md", md.encode())
    _write_parquet(pairs, table_path, meta)
    files = PairFiles(
        table=rel(table_path),
        summary_json=rel(folder / f"{strategy}.json"),
        summary_md=rel(folder / f"{strategy}.md"),
        shards=shard_paths,
        shard_pattern=pattern,
    )
    log.info(
        "wrote %s pairs to %s%s",
        f"{len(pairs):,}",
        files.table,
        f" and {len(shard_paths)} shards" if shards else "",
    )
    return files


def _write_parquet(pairs: pd.DataFrame, path: Path, meta: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(pairs, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[b"urbanvis.pairs"] = json.dumps(meta).encode()
    table = table.replace_schema_metadata(schema_meta)
    with atomic_file(path) as fh:
        pq.write_table(table, fh)


def _write_shards(study, pairs, final: Path, strategy, shard_size, progress) -> list[str]:
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names: list[str] = []
    total = len(pairs)
    try:
        for number, begin in enumerate(range(0, max(total, 1), shard_size)):
            name = f"{strategy}-{number:06d}.tar"
            chunk = pairs.iloc[begin : begin + shard_size].to_dict(orient="records")
            with tarfile.open(tmp / name, "w", format=tarfile.USTAR_FORMAT) as tar:
                for row in chunk:
                    _add_pair(tar, study.root, row)
            names.append(name)
            if progress is not None:
                progress(min(begin + shard_size, total), total)
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return names


def _add_pair(tar: tarfile.TarFile, root: Path, row: dict[str, Any]) -> None:
    key = f"{int(row['pair_id']):09d}"
    for side in ("a", "b"):
        path = root / row[f"image_{side}"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(
                f"image {row[f'image_{side}']} of capture {row[f'capture_{side}']} cannot be "
                f"read ({exc.strerror}); rerun 'urbanvis harvest' to fetch it again"
            ) from exc
        ext = path.suffix.lower().lstrip(".") or "jpg"
        _add_member(tar, f"{key}.{side}.{'jpg' if ext == 'jpeg' else ext}", data)
    doc = {k: _json_value(v) for k, v in row.items()}
    _add_member(tar, f"{key}.json", json.dumps(doc, sort_keys=True).encode())


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # the same pairs give byte-identical shards
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def iter_shard(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Read one pair shard back: a dict per pair as WebDataset would group it.

    Each sample holds ``__key__``, the image bytes under their extensions (``a.jpg``,
    ``b.jpg``...) and ``json`` (the pair's row, decoded).
    """
    sample: dict[str, Any] = {}
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
            sample["__key__"] = key
            sample[ext] = json.loads(data) if ext == "json" else data
    if sample:
        yield sample
