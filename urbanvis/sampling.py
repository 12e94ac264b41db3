"""Sample points along a road network (or on a grid) for street-view capture.

The paper samples query points every 15 m along OpenStreetMap roads. Here that is one
vectorised pass over the coordinate arrays of all edges at once: shapely 2 gives the vertex
arrays, numpy places the points and their road bearings, a KD-tree merges points that fall
within ``merge_distance`` of each other (where edges meet). There is no Python loop per
point or per edge.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Proj, Transformer

from ._errors import InputError
from .areas import WGS84, area_from_bbox, area_from_file, area_from_place
from .network import Network, check_osm_file, edges_from_osm_file, edges_from_polygon

log = logging.getLogger(__name__)

Method = Literal["network", "grid"]
METHODS: tuple[str, ...] = ("network", "grid")
POINT_COLUMNS = ["point_id", "bearing", "edge_id", "osmid", "highway", "source", "geometry"]


@dataclass(frozen=True)
class LineSamples:
    """Points sampled along lines, as plain arrays (projected coordinates)."""

    x: np.ndarray
    y: np.ndarray
    bearing: np.ndarray  # degrees clockwise from grid north, along the line's direction
    line: np.ndarray  # index of the line each point lies on
    along: np.ndarray  # distance from the line's start

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: np.ndarray) -> LineSamples:
        return LineSamples(
            *(a[index] for a in (self.x, self.y, self.bearing, self.line, self.along))
        )


def sample_lines(lines: np.ndarray, spacing: float, *, merge_distance: float = 1.0) -> LineSamples:
    """Points every ``spacing`` along each line, ends included, merged within ``merge_distance``.

    ``lines`` is an array of shapely LineStrings in a projected CRS (metres). Each line gets
    its start, points at ``spacing, 2*spacing, ...`` that lie at least ``merge_distance``
    before its end, and its end. Line ends shared by several lines become one point; then
    points closer than ``merge_distance`` to each other (nearly coincident roads) are merged,
    the first kept, so no two returned points are closer than ``merge_distance``.
    """
    coords, vertex_line = shapely.get_coordinates(
        np.asarray(lines, dtype=object), return_index=True
    )
    return sample_coords(coords, vertex_line, spacing, merge_distance=merge_distance)


def sample_coords(
    coords: np.ndarray, vertex_line: np.ndarray, spacing: float, *, merge_distance: float = 1.0
) -> LineSamples:
    """:func:`sample_lines` on vertex arrays: ``coords`` (n, 2) and the line of each vertex.

    ``vertex_line`` must be sorted, as :func:`shapely.get_coordinates` returns it.
    """
    _check_spacing(spacing, merge_distance)
    if len(coords) == 0:
        empty = np.empty(0)
        return LineSamples(empty, empty, empty, empty.astype(np.int64), empty)

    # Drop repeated consecutive vertices so that every segment has a length and a direction.
    same_line = vertex_line[1:] == vertex_line[:-1]
    repeated = same_line & np.all(coords[1:] == coords[:-1], axis=1)
    if repeated.any():
        keep = np.concatenate(([True], ~repeated))
        coords, vertex_line = coords[keep], vertex_line[keep]
        same_line = vertex_line[1:] == vertex_line[:-1]

    # Segment i runs from vertex i to vertex i+1; segments that join two lines get length 0.
    x0, y0 = coords[:, 0], coords[:, 1]
    dx, dy = np.diff(x0), np.diff(y0)
    seg_len = np.hypot(dx, dy)
    seg_len[~same_line] = 0.0
    seg_bearing = np.degrees(np.arctan2(dx, dy)) % 360.0
    cum = np.concatenate(([0.0], np.cumsum(seg_len)))  # distance travelled at each vertex

    # vertex_line is sorted: lines start where it changes (empty lines have no vertices).
    first = np.flatnonzero(np.concatenate(([True], ~same_line)))
    last = np.concatenate((first[1:], [len(coords)])) - 1
    present = vertex_line[first]
    start = cum[first]
    length = cum[last] - start
    first_seg = np.minimum(first, len(seg_len) - 1)
    last_seg = np.maximum(last - 1, 0)

    # Line ends: the start and end of every line, each distinct location once.
    end_vertex = np.concatenate((first, last))
    end_along = np.concatenate((np.zeros(len(first)), length))
    end_line = np.concatenate((present, present))
    end_bearing = np.concatenate((seg_bearing[first_seg], seg_bearing[last_seg]))
    single = np.concatenate((first == last, first == last))
    end_bearing[single] = np.nan  # a one-vertex line has no direction
    distinct = ~_duplicated_xy(x0[end_vertex], y0[end_vertex])
    ends = LineSamples(
        x0[end_vertex][distinct],
        y0[end_vertex][distinct],
        end_bearing[distinct],
        end_line[distinct].astype(np.int64),
        end_along[distinct],
    )

    # Interior points at k*spacing (k >= 1), at least merge_distance before the line's end.
    margin = max(merge_distance, 1e-9)
    counts = np.floor(np.maximum(length - margin, 0.0) / spacing).astype(np.int64)
    owner = np.repeat(np.arange(len(present)), counts)
    k = np.arange(1, len(owner) + 1, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    along = k * float(spacing)
    travelled = start[owner] + along  # ascending, so the search below walks memory in order
    seg = np.searchsorted(cum, travelled, side="right") - 1
    t = (travelled - cum[seg]) / seg_len[seg]
    interior = LineSamples(
        x0[seg] + t * dx[seg],
        y0[seg] + t * dy[seg],
        seg_bearing[seg],
        present[owner].astype(np.int64),
        along,
    )

    samples = LineSamples(
        *(
            np.concatenate(pair)
            for pair in zip(
                (ends.x, ends.y, ends.bearing, ends.line, ends.along),
                (interior.x, interior.y, interior.bearing, interior.line, interior.along),
                strict=True,
            )
        )
    )
    keep = merge_close_points(samples.x, samples.y, merge_distance)
    return samples if len(keep) == len(samples) else samples.take(keep)


def road_length(coords: np.ndarray, vertex_line: np.ndarray) -> float:
    """Total length of lines given as vertex arrays (units of ``coords``)."""
    same = vertex_line[1:] == vertex_line[:-1]
    return float(np.hypot(*np.diff(coords, axis=0)[same].T).sum())


def _duplicated_xy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True for each point whose location (to the millimetre) appeared earlier in the arrays."""
    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    qx = np.round((x - x.min()) * 1000.0).astype(np.int64)
    qy = np.round((y - y.min()) * 1000.0).astype(np.int64)
    if qx.max() >= 2**31 or qy.max() >= 2**32:  # > 2,000 km across: no exact packed key
        return pd.Series(np.round(x, 3) + 1j * np.round(y, 3)).duplicated().to_numpy()
    return pd.Series((qx << 32) | qy).duplicated().to_numpy()


def merge_close_points(x: np.ndarray, y: np.ndarray, distance: float) -> np.ndarray:
    """Indices of the points to keep so that no two kept points are closer than ``distance``.

    Points linked by chains of neighbours closer than ``distance`` form one group; the first
    point of each group (lowest index) is kept. Returns sorted indices.
    """
    n = len(x)
    if n < 2 or distance <= 0:
        return np.arange(n)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    tree = cKDTree(np.column_stack((x, y)), balanced_tree=False, compact_nodes=False)
    pairs = tree.query_pairs(distance * (1 - 1e-12), output_type="ndarray")
    if len(pairs) == 0:
        return np.arange(n)
    involved = np.unique(pairs)
    local = np.searchsorted(involved, pairs)
    m = len(involved)
    graph = coo_matrix((np.ones(len(local)), (local[:, 0], local[:, 1])), shape=(m, m))
    _, labels = connected_components(graph, directed=False)
    _, first_of_group = np.unique(labels, return_index=True)
    drop = np.setdiff1d(involved, involved[first_of_group], assume_unique=True)
    keep = np.ones(n, dtype=bool)
    keep[drop] = False
    return np.flatnonzero(keep)


def points_from_network(
    edges: gpd.GeoDataFrame,
    *,
    spacing: float = 15.0,
    merge_distance: float = 1.0,
    crs: str | CRS | None = None,
) -> gpd.GeoDataFrame:
    """Sample points every ``spacing`` metres along street edges.

    Parameters
    ----------
    edges
        Street edges (see :mod:`urbanvis.network`), any CRS; a two-way street once.
    spacing
        Distance between consecutive points along an edge, in metres (the paper: 15).
    merge_distance
        Points closer than this (where edges meet) are merged into one.
    crs
        Projected CRS to measure in; by default the local UTM zone.

    Returns
    -------
    geopandas.GeoDataFrame
        ``point_id``, ``bearing`` (degrees clockwise from true north, along the edge's
        direction), ``edge_id``, ``osmid``, ``highway``, ``source`` and Point geometry in
        EPSG:4326.
    """
    _check_spacing(spacing, merge_distance)
    if edges.crs is None:
        raise InputError("the edges have no CRS; set one (EPSG:4326 for OSM data)")
    if len(edges) == 0:
        return _empty_points()
    crs = CRS.from_user_input(crs) if crs is not None else edges.estimate_utm_crs()
    if not crs.is_projected:
        raise InputError(f"{crs.name} is not a projected CRS; give one in metres, e.g. a UTM zone")
    # Project the vertex arrays, not geometries: no shapely object per vertex or per point.
    coords, vertex_line = shapely.get_coordinates(edges.geometry.values, return_index=True)
    px, py = Transformer.from_crs(edges.crs, crs, always_xy=True).transform(
        coords[:, 0], coords[:, 1]
    )
    projected = np.column_stack((px, py))
    samples = sample_coords(projected, vertex_line, spacing, merge_distance=merge_distance)
    lon, lat = Transformer.from_crs(crs, WGS84, always_xy=True).transform(samples.x, samples.y)
    # Grid bearing -> true bearing: add the meridian convergence of the projection there.
    bearing = (samples.bearing + meridian_convergence(lon, lat, crs)) % 360.0

    def edge_values(name: str, default):
        if name not in edges:
            return np.full(len(samples), default)
        return pd.to_numeric(edges[name], errors="coerce").fillna(default).to_numpy()[samples.line]

    def edge_labels(name: str) -> pd.Categorical:
        values = edges[name] if name in edges else pd.Series("", index=edges.index)
        codes, labels = pd.factorize(values.fillna("").astype(str))
        return pd.Categorical.from_codes(codes[samples.line], labels)

    points = gpd.GeoDataFrame(
        {
            "point_id": np.arange(len(samples), dtype=np.int64),
            "bearing": np.round(bearing, 3),
            "edge_id": edge_values("edge_id", -1).astype(np.int64),
            "osmid": edge_values("osmid", -1).astype(np.int64),
            "highway": edge_labels("highway"),
            "source": pd.Categorical.from_codes(np.zeros(len(samples), np.int8), ["osm"]),
        },
        geometry=gpd.points_from_xy(lon, lat),
        crs=WGS84,
    )
    km = road_length(projected, vertex_line) / 1000
    log.info("sampled %s points every %g m along %.1f km of road", f"{len(points):,}", spacing, km)
    return points


def points_from_grid(
    area: gpd.GeoDataFrame | shapely.Geometry, *, spacing: float = 15.0
) -> gpd.GeoDataFrame:
    """Points on a square grid of ``spacing`` metres inside an area (for poor OSM coverage).

    Grid points have no road, so ``bearing`` is NaN and headings are taken as absolute.
    """
    _check_spacing(spacing, 0.0)
    frame = (
        area if isinstance(area, gpd.GeoDataFrame) else gpd.GeoDataFrame(geometry=[area], crs=WGS84)
    )
    if frame.crs is None:
        raise InputError("the area has no CRS; set one (EPSG:4326 for degrees)")
    crs = frame.estimate_utm_crs()
    polygon = frame.to_crs(crs).union_all()
    minx, miny, maxx, maxy = polygon.bounds
    n_cells = ((maxx - minx) / spacing + 1) * ((maxy - miny) / spacing + 1)
    if n_cells > 50_000_000:
        raise InputError(
            f"a {spacing:g} m grid over this area has {n_cells:,.0f} cells; use a larger "
            f"`spacing` or a smaller area"
        )
    xs = np.arange(minx + spacing / 2, maxx, spacing)
    ys = np.arange(miny + spacing / 2, maxy, spacing)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    shapely.prepare(polygon)
    inside = shapely.contains_xy(polygon, gx, gy)
    lon, lat = Transformer.from_crs(crs, WGS84, always_xy=True).transform(gx[inside], gy[inside])
    n = int(inside.sum())
    points = gpd.GeoDataFrame(
        {
            "point_id": np.arange(n, dtype=np.int64),
            "bearing": np.full(n, np.nan),
            "edge_id": np.full(n, -1, dtype=np.int64),
            "osmid": np.full(n, -1, dtype=np.int64),
            "highway": "",
            "source": "grid",
        },
        geometry=gpd.points_from_xy(lon, lat),
        crs=WGS84,
    )
    if n:  # none: the caller says so, in one line
        log.info("placed %s grid points every %g m", f"{n:,}", spacing)
    return points


def sample(
    *,
    city: str | None = None,
    area: str | os.PathLike[str] | None = None,
    bbox: str | tuple[float, float, float, float] | None = None,
    osm: str | os.PathLike[str] | None = None,
    network: Network = "drive",
    spacing: float = 15.0,
    method: Method = "network",
    merge_distance: float = 1.0,
    nominatim_url: str | None = None,
    overpass_url: str | None = None,
) -> gpd.GeoDataFrame:
    """Sample points for a study from one area source, the way ``urbanvis sample`` does.

    The area comes from ``city`` (geocoded, online), ``area`` (a polygon file) or ``bbox``
    (W,S,E,N degrees); the roads from ``osm`` (a local .osm.pbf/.osm/.graphml, clipped to
    the area when one is given) or else from the Overpass API (online).
    """
    _check_spacing(spacing, merge_distance)
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    given = [f"`{n}`" for n, v in (("city", city), ("area", area), ("bbox", bbox)) if v]
    if len(given) > 1:
        raise InputError(f"give only one of `city`, `area`, `bbox` (got {' and '.join(given)})")
    if not given and osm is None:
        raise InputError(
            "say where to sample: a place name as `city`, a polygon file as `area`, W,S,E,N "
            "as `bbox`, or an OSM file as `osm`"
        )
    if method == "grid" and not given:
        raise InputError("`method` grid needs an area: `city`, `area` or `bbox`")

    if osm is not None:
        check_osm_file(osm)  # before any geocoding, so a typo costs no network round trip
    if bbox:
        region = area_from_bbox(bbox)
    elif area:
        region = area_from_file(area)
    elif city:
        region = area_from_place(city, nominatim_url=nominatim_url)
    else:
        region = None
    if method == "grid":
        points = points_from_grid(region, spacing=spacing)
    else:
        polygon = region.geometry.iloc[0] if region is not None else None
        if osm is not None:
            edges = edges_from_osm_file(osm, network=network, area=polygon)
        else:
            edges = edges_from_polygon(polygon, network=network, overpass_url=overpass_url)
        points = points_from_network(edges, spacing=spacing, merge_distance=merge_distance)
    if len(points) == 0:  # a study with no points would only fail later, less clearly
        raise InputError(
            f"no {'grid ' if method == 'grid' else ''}point falls inside the area at "
            f"`spacing` {spacing:g} m; use a smaller `spacing` or a larger area"
        )
    return points


# ------------------------------------------------------------------------ helpers
MAX_SPACING = 10_000.0
"""Largest `spacing` (metres): beyond it a street holds only its two ends."""


def _check_spacing(spacing: float, merge_distance: float) -> None:
    if not isinstance(spacing, int | float) or not math.isfinite(spacing) or spacing <= 0:
        raise InputError(f"`spacing` must be a positive number of metres, got {spacing!r}; e.g. 15")
    if spacing > MAX_SPACING:
        raise InputError(
            f"`spacing` {spacing:g} m is more than {MAX_SPACING:,.0f} m: streets would keep "
            f"only their ends; give metres between points, e.g. 15"
        )
    if not math.isfinite(merge_distance) or merge_distance < 0:
        raise InputError(f"`merge_distance` must be >= 0 metres, got {merge_distance!r}")
    if merge_distance >= spacing:
        raise InputError(
            f"`spacing` ({spacing:g} m) must be larger than the merge distance, "
            f"`merge_distance` ({merge_distance:g} m)"
        )


def meridian_convergence(
    lon: np.ndarray, lat: np.ndarray, crs: str | CRS, *, exact_below: int = 20_000
) -> np.ndarray:
    """Angle (degrees) to add to a bearing measured in ``crs`` to get a true bearing.

    For many points it is evaluated on a 65 x 65 lattice over their extent and interpolated
    bilinearly (the convergence is smooth; the error is far below 1e-4 degrees).
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    proj = Proj(CRS.from_user_input(crs))
    if len(lon) <= exact_below:
        return np.asarray(proj.get_factors(lon, lat).meridian_convergence, dtype=float)
    n = 65
    glon = np.linspace(lon.min(), lon.max(), n)
    glat = np.linspace(lat.min(), lat.max(), n)
    mlon, mlat = np.meshgrid(glon, glat)  # rows: latitude, columns: longitude
    grid = np.asarray(proj.get_factors(mlon.ravel(), mlat.ravel()).meridian_convergence)
    grid = grid.reshape(n, n)
    fx = (lon - glon[0]) / max(glon[-1] - glon[0], 1e-12) * (n - 1)
    fy = (lat - glat[0]) / max(glat[-1] - glat[0], 1e-12) * (n - 1)
    ix = np.clip(fx.astype(np.int64), 0, n - 2)
    iy = np.clip(fy.astype(np.int64), 0, n - 2)
    tx, ty = fx - ix, fy - iy
    top = grid[iy, ix] * (1 - tx) + grid[iy, ix + 1] * tx
    bottom = grid[iy + 1, ix] * (1 - tx) + grid[iy + 1, ix + 1] * tx
    return top * (1 - ty) + bottom * ty


def _empty_points() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "point_id": pd.Series(dtype="int64"),
            "bearing": pd.Series(dtype="float64"),
            "edge_id": pd.Series(dtype="int64"),
            "osmid": pd.Series(dtype="int64"),
            "highway": pd.Series(dtype="object"),
            "source": pd.Series(dtype="object"),
        },
        geometry=gpd.GeoSeries([], crs=WGS84),
        crs=WGS84,
    )
