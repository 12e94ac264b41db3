"""Building a pair table: :func:`pairs_from_captures` and the zones file of spatial pairs.

The usable captures are selected and projected here, a rule of :mod:`.rules` draws the
pairs, and the table with its :class:`~.types.PairSummary` is assembled. Re-exported by
:mod:`urbanvis.pairs`.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from .._errors import CRSError, InputError
from .._geo import utm_coordinates
from .rules import (
    _check_zones,
    _dates,
    _days,
    _heading_diff,
    _self_pairs,
    _spatial_pairs,
    _temporal_pairs,
)
from .types import _STR, PAIR_COLUMNS, PairConfig, PairSummary

__all__ = ["pairs_from_captures", "zones_for_pairs"]

log = logging.getLogger("urbanvis.pairs")  # the package's logger, as before the split


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


# -------------------------------------------------------------------------- zones file
def zones_for_pairs(path: str | os.PathLike[str], *, zone_id: str | None):
    """Read a polygon file (any CRS, a GeoPackage layer as ``file.gpkg:layer``) for spatial
    pairs; see :func:`urbanvis.zones.zones_from_file` for what it checks."""
    from ..zones import zones_from_file

    return zones_from_file(path, zone_id or "", id_option="zone_id")
