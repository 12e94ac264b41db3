"""The pair rules: which two captures make a self, temporal or spatial pair.

``self`` pairs an image with itself; ``temporal`` links captures within ``max_distance``
metres and ``heading_tol`` degrees into places (a KD-tree, then connected components) and
pairs those of different dates; ``spatial`` pairs images of one zone, a grid cell in the
local UTM zone or a polygon. Each rule takes the usable captures (see
:func:`urbanvis.pairs.pairs_from_captures`) and returns the row numbers of the two
captures, the anchor of each pair (codes and labels) and counts for the summary. The date
and heading arithmetic the rules and the pair table share lives here too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._errors import CRSError, InputError
from .sampling import _pick_per_group, _quotas, _sample_triangle
from .types import _STR

_ZONE_OFFSET = 1.0e7  # metres between UTM zones in the KD-tree (eastings are < 1e6)


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
            f"{cfg.heading_tol:g} degrees); harvest with `captures_per_point` 2 or more, "
            f"or widen `max_distance`/`heading_tol`",
            param="max_distance",
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
            f"no zone holds two usable images ({what}); use larger zones (`buffer`) "
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
            f"`zones` covers the study area"
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
        what = f"have no field {zone_id!r}" if zone_id else "need `zone_id`"
        raise InputError(f"the zones {what}; pass `zone_id` with one of their fields: {have}")
    if len(zones) == 0:
        raise InputError("the zones file holds no polygon; pass a file with zones")
    return zones


def _zone_rank(epsg: np.ndarray) -> np.ndarray:
    return np.unique(epsg, return_inverse=True)[1].reshape(-1).astype(float)
