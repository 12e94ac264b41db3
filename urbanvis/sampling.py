"""Sample points along a road network (or on a grid) for street-view capture.

The paper samples query points every 15 m along OpenStreetMap roads. Here that is one
vectorised pass over the coordinate arrays of all edges at once: shapely 2 gives the vertex
arrays, numpy places the points and their road bearings, a KD-tree merges points that fall
within ``merge_distance`` of each other (where edges meet). There is no Python loop per
point or per edge.

The merge is written here rather than left to scipy alone: a KD-tree over millions of points
costs seconds, yet almost every point has no neighbour within a metre. Four sorted grids
(:func:`_near_candidates`, plain numpy) set those points aside, and the tree holds only the
rest.

EPSG:4326 edges (OSM's) are measured on the WGS 84 ellipsoid without a projection: each
segment's ground length and azimuth come from the ellipsoid's metres per degree at its middle
(:func:`_ground_steps`), a dozen numpy passes, where pyproj's geodesics would cost a
microsecond a segment and projecting to UTM and back with PROJ (the path for other CRSs, or
when a ``crs`` is given) costs twice as long and a meridian convergence for every bearing.
Line ends are vertices, so their coordinates are taken from the input, and the points
between vertices are placed on the input's segments.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Geod, Proj, Transformer

from ._errors import InputError
from .areas import WGS84, area_from_bbox, area_from_file, area_from_place
from .network import Network, check_osm_file, edges_from_osm_file, edges_from_polygon

log = logging.getLogger(__name__)

Method = Literal["network", "grid"]
METHODS: tuple[str, ...] = ("network", "grid")
_MERGE_REMOVES_DUPLICATES = 0.01
"""Merge distance (metres) from which the merge may finish joining shared line ends.

Below it, shared ends are found on millimetre keys, which join ends up to 1.5 mm apart.
From it, one sort drops most exact repeats (:func:`_exact_repeats`) and the merge joins the
rest, and any ends that close, since the merge distance is larger."""
POINT_COLUMNS = ["point_id", "bearing", "edge_id", "osmid", "highway", "source", "geometry"]


@dataclass(frozen=True)
class LineSamples:
    """Points sampled along lines, as plain arrays (coordinates in the lines' plane)."""

    x: np.ndarray
    y: np.ndarray
    bearing: np.ndarray  # degrees clockwise from grid north (true north on the ellipsoid)
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
    coords = np.asarray(coords, dtype=float)
    return _sample_xy(coords[:, 0], coords[:, 1], vertex_line, spacing, merge_distance).samples


Refine = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(x, y, segment, fraction of its length) -> (fraction in x and y, bearing): see _sample_xy."""


@dataclass(frozen=True)
class _Sampled:
    """What :func:`_sample_xy` knows of its samples beyond their coordinates.

    ``end_vertex``: for the line ends among the samples (they come first), the vertex each
    one is. ``inner``: for the other samples, when asked for, the segment each lies on (its
    first and last vertex) and how far along it (0 to 1), and the segment's length. Vertex
    indices are positions in the caller's arrays, so a caller can reuse what it knows of
    those vertices (their coordinates in another CRS).
    """

    samples: LineSamples
    end_vertex: np.ndarray
    road_m: float  # total length of the lines
    inner: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


def _sample_xy(
    x: np.ndarray,
    y: np.ndarray,
    vertex_line: np.ndarray,
    spacing: float,
    merge_distance: float,
    *,
    segments: bool = False,
    steps: tuple[np.ndarray, np.ndarray] | None = None,
    merge: Callable[[np.ndarray, np.ndarray, float], np.ndarray] | None = None,
    refine: tuple[float, Refine] | None = None,
) -> _Sampled:
    """:func:`sample_coords` on separate x and y arrays; ``segments`` fills ``inner``.

    ``steps``, when given, are each segment's east and north extent in metres (vertex i to
    i+1, ``len(x) - 1`` of each): lengths and bearings come from them, while ``x`` and ``y``
    (any near-metric plane) place the samples and are what ``merge`` (by default
    :func:`merge_close_points`) is called on. ``refine``, ``(length, function)``: for the
    samples on segments longer than ``length``, ``function(x, y, segment, fraction)`` gives
    their fraction along the segment in ``x``, ``y`` (from their fraction of its length) and
    their bearing, before they are placed and merged.
    """
    _check_spacing(spacing, merge_distance)
    if len(x) == 0:
        empty = np.empty(0)
        no_index = empty.astype(np.int64)
        none = (no_index, no_index, empty, empty) if segments else None
        return _Sampled(LineSamples(empty, empty, empty, no_index, empty), no_index, 0.0, none)
    vertex_line = np.asarray(vertex_line)

    # Drop repeated consecutive vertices so that every segment has a length and a direction.
    same_line = vertex_line[1:] == vertex_line[:-1]
    dx, dy = np.diff(x), np.diff(y)
    east, north = steps if steps is not None else (dx, dy)
    repeated = same_line & (east == 0) & (north == 0)
    vertex_of: np.ndarray | None = None  # position in the caller's arrays, when some dropped
    if repeated.any():
        vertex_of = np.flatnonzero(np.concatenate(([True], ~repeated)))
        x, y, vertex_line = x[vertex_of], y[vertex_of], vertex_line[vertex_of]
        same_line = vertex_line[1:] == vertex_line[:-1]
        dx, dy = np.diff(x), np.diff(y)
        # the segment into each kept vertex: the dropped ones repeat the vertex before it
        into = vertex_of[1:] - 1
        east, north = (east[into], north[into]) if steps is not None else (dx, dy)

    # Segment i runs from vertex i to vertex i+1; segments that join two lines get length 0.
    # Here and below, results go into existing arrays wherever the formula allows: on
    # millions of vertices a fresh array costs page faults as well as a pass over memory.
    n_vertices = len(x)
    seg_len = np.hypot(east, north)
    seg_len[~same_line] = 0.0
    seg_bearing = np.arctan2(east, north)
    del east, north
    np.degrees(seg_bearing, out=seg_bearing)
    np.add(seg_bearing, 360.0, out=seg_bearing, where=seg_bearing < 0)  # into [0, 360)
    cum = np.empty(n_vertices)  # distance travelled at each vertex
    cum[0] = 0.0
    np.cumsum(seg_len, out=cum[1:])

    # vertex_line is sorted: lines start where it changes (empty lines have no vertices).
    first = np.flatnonzero(np.concatenate(([True], ~same_line)))
    last = np.empty_like(first)
    last[:-1] = first[1:] - 1
    last[-1] = n_vertices - 1
    present = vertex_line[first].astype(np.int64)
    start = cum[first]
    length = cum[last] - start

    # Line ends (the start, then the end, of every line) come first in the samples.
    n_lines = len(first)
    end_vertex = np.concatenate((first, last))
    if merge_distance < _MERGE_REMOVES_DUPLICATES:  # each distinct location once
        distinct = ~_duplicated_xy(x[end_vertex], y[end_vertex])
    else:  # most shared ends; the merge joins any left, and the ends 1 mm apart
        distinct = ~_exact_repeats(x[end_vertex], y[end_vertex])
    end_vertex = end_vertex[distinct]
    n_ends = len(end_vertex)

    # Interior points at k*spacing (k >= 1), at least merge_distance before the line's end.
    margin = max(merge_distance, 1e-9)
    counts = np.floor(np.maximum(length - margin, 0.0) / spacing).astype(np.int64)
    n_total = n_ends + int(counts.sum())
    sx, sy, s_bearing, s_along = (np.empty(n_total) for _ in range(4))
    s_line = np.empty(n_total, dtype=np.int64)

    ends = slice(0, n_ends)
    np.take(x, end_vertex, out=sx[ends], mode="clip")
    np.take(y, end_vertex, out=sy[ends], mode="clip")
    end_seg = np.concatenate((np.minimum(first, n_vertices - 2), np.maximum(last - 1, 0)))
    single = np.concatenate((first == last, first == last))  # one vertex: no direction
    end_along = np.concatenate((np.zeros(n_lines), length))
    end_line = np.concatenate((present, present))
    end_seg, single, end_along, end_line = (
        a[distinct] for a in (end_seg, single, end_along, end_line)
    )
    if len(seg_bearing):
        np.take(seg_bearing, end_seg, out=s_bearing[ends], mode="clip")
        s_bearing[ends][single] = np.nan
    else:
        s_bearing[ends] = np.nan
    far: np.ndarray | None = None  # per segment: longer than refine's length
    if refine is not None and len(seg_len):
        far = seg_len > refine[0]
        if far.any():  # a line end's bearing at the end itself: fraction 0 or 1
            on_far = np.flatnonzero(far[end_seg] & ~single)
            at_end = (end_along[on_far] > 0).astype(float)
            s_bearing[on_far] = refine[1](x, y, end_seg[on_far], at_end)[1]
        else:
            far = None
    s_along[ends] = end_along
    s_line[ends] = end_line
    del end_seg, single, end_along, end_line

    inner = slice(n_ends, n_total)
    owner = np.repeat(np.arange(n_lines), counts)
    k = np.arange(1, n_total - n_ends + 1, dtype=np.int64)
    k -= np.repeat(np.cumsum(counts) - counts, counts)
    along = np.multiply(k, float(spacing), out=s_along[inner])
    del k
    travelled = start[owner]
    travelled += along  # ascending, so the search below walks memory in order
    seg = np.searchsorted(cum, travelled, side="right")
    seg -= 1
    t = travelled  # (travelled - cum[seg]) / seg_len[seg], in place
    t -= cum[seg]
    t /= seg_len[seg]
    refined: tuple[np.ndarray, np.ndarray] | None = None
    if far is not None and refine is not None:
        on_far = np.flatnonzero(far[seg])
        t[on_far], bearing = refine[1](x, y, seg[on_far], t[on_far])
        refined = (on_far + n_ends, bearing)
    for out, base, step in ((sx[inner], x, dx), (sy[inner], y, dy)):  # base + t * step
        np.take(step, seg, out=out, mode="clip")
        out *= t
        out += base[seg]
    np.take(seg_bearing, seg, out=s_bearing[inner], mode="clip")
    if refined is not None:
        s_bearing[refined[0]] = refined[1]
    np.take(present, owner, out=s_line[inner], mode="clip")
    del owner, travelled

    samples = LineSamples(sx, sy, s_bearing, s_line, s_along)
    keep = (merge or merge_close_points)(sx, sy, merge_distance)
    kept_ends = n_ends
    if len(keep) < n_total:
        samples = samples.take(keep)
        kept_ends = int(np.searchsorted(keep, n_ends))
        end_vertex = end_vertex[keep[:kept_ends]]
    inner_segments = None
    if segments:
        if len(keep) < n_total:
            kept_inner = keep[kept_ends:] - n_ends
            seg, t = seg[kept_inner], t[kept_inner]
        seg_length = seg_len[seg]
        seg_end = seg + 1
        if vertex_of is not None:  # back to the caller's vertices
            seg, seg_end = vertex_of[seg], vertex_of[seg_end]
        inner_segments = (seg, seg_end, t, seg_length)
    del seg, t
    if vertex_of is not None:
        end_vertex = vertex_of[end_vertex]
    return _Sampled(samples, end_vertex, float(cum[-1]), inner_segments)


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


def _exact_repeats(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True for points found identical to an earlier point; a few repeats may be missed.

    One ``np.sort`` of keys that pack a square cell and the index: a repeat sorts right
    after an earlier point of its cell, and is caught when that point is identical.
    Cheaper than hashing every location; the merge joins the repeats missed here.
    """
    n = len(x)
    repeat = np.zeros(n, dtype=bool)
    if n < 2:
        return repeat
    x0, x1, y0, y1 = float(x.min()), float(x.max()), float(y.min()), float(y.max())
    if not all(map(math.isfinite, (x0, x1, y0, y1))):
        return repeat
    index_bits = int(n - 1).bit_length()
    axis_bits = (63 - index_bits) // 2
    cell = max(1.0, max(x1 - x0, y1 - y0) / (2**axis_bits - 2))  # metres, if they fit
    keys = ((x - x0) / cell).astype(np.int64) << (axis_bits + index_bits)
    keys |= ((y - y0) / cell).astype(np.int64) << index_bits
    keys |= np.arange(n, dtype=np.int64)
    keys.sort()
    cells = keys >> index_bits
    pair = np.flatnonzero(cells[1:] == cells[:-1])
    del cells
    mask = (1 << index_bits) - 1
    before, after = keys[pair] & mask, keys[pair + 1] & mask
    repeat[after[(x[before] == x[after]) & (y[before] == y[after])]] = True
    return repeat


def merge_close_points(
    x: np.ndarray,
    y: np.ndarray,
    distance: float,
    *,
    stretch: float = 1.0,
    closer: Callable[[np.ndarray, np.ndarray, float], np.ndarray] | None = None,
) -> np.ndarray:
    """Indices of the points to keep so that no two kept points are closer than ``distance``.

    Points linked by chains of neighbours closer than ``distance`` form one group; the first
    point of each group (lowest index) is kept. Returns sorted indices.

    Most points have no neighbour that close, so they are set aside first (see
    :func:`_near_candidates`) and the KD-tree holds only the few that may.

    When ``x``, ``y`` only approximate the metric (a plane in which no distance is longer
    than the true one times ``stretch``, at least 1), pairs are looked for within
    ``distance * stretch`` and then kept only where ``closer(i, j, distance)`` (index
    arrays) says they are truly that close.
    """
    if closer is not None and not stretch >= 1.0:
        raise ValueError(f"stretch must be at least 1, got {stretch!r}")
    n = len(x)
    if n < 2 or distance <= 0:
        return np.arange(n)
    reach = distance * stretch if closer is not None else distance
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    found = _near_candidates(x, y, reach)
    if found is None:
        duplicate, candidates = np.zeros(0, dtype=np.int64), np.arange(n)
    else:
        duplicate, candidates = found
    keep = np.ones(n, dtype=bool)
    keep[duplicate] = False
    if len(candidates) > 1:
        tree = cKDTree(
            np.column_stack((x[candidates], y[candidates])),
            balanced_tree=False,
            compact_nodes=False,
        )
        pairs = tree.query_pairs(reach * (1 - 1e-12), output_type="ndarray")
        if closer is not None and len(pairs):
            pairs = pairs[closer(candidates[pairs[:, 0]], candidates[pairs[:, 1]], distance)]
        if len(pairs):
            involved = np.unique(pairs)
            local = np.searchsorted(involved, pairs)
            m = len(involved)
            graph = coo_matrix((np.ones(len(local)), (local[:, 0], local[:, 1])), shape=(m, m))
            _, labels = connected_components(graph, directed=False)
            _, first_of_group = np.unique(labels, return_index=True)
            # candidates are sorted, so the first of a group here is its lowest index
            drop = np.setdiff1d(involved, involved[first_of_group], assume_unique=True)
            keep[candidates[drop]] = False
    return np.flatnonzero(keep)


def _near_candidates(
    x: np.ndarray, y: np.ndarray, distance: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact duplicates of an earlier point, and the other points that may have a neighbour.

    Two points closer than ``distance`` share a cell in at least one of four square grids of
    side ``2 * distance`` offset by half a cell in x, y or both (in each axis, one of the
    two offsets puts no cell border between them). So a point alone in its cell in all four
    grids has no such neighbour. Each grid is one ``np.sort`` of integer keys that pack the
    cell and the point's index, no hash table and no tree. A point identical to the point
    sorted just before it (an earlier one in the same cell) is a duplicate: it always merges
    into that point and links nothing that point does not, so it is never a candidate.

    Returns (sorted duplicate indices, sorted candidate indices), or None when the keys do
    not fit in 63 bits (a huge extent for ``distance``) or a coordinate is not finite.
    """
    n = len(x)
    x0, x1, y0, y1 = float(x.min()), float(x.max()), float(y.min()), float(y.max())
    if not all(map(math.isfinite, (x0, x1, y0, y1))):
        return None
    # a hair over 2 * distance, so that rounding at cell borders cannot split a close pair
    cell = 2.0 * distance * (1 + 1e-6) + 1e-6
    half = cell / 2
    index_bits = int(n - 1).bit_length()
    x_bits = (int((x1 - x0 + half) // cell) + 1).bit_length()
    y_bits = (int((y1 - y0 + half) // cell) + 1).bit_length()
    if index_bits + x_bits + y_bits > 63:
        return None
    mask = (1 << index_bits) - 1
    x_shift, y_shift = y_bits + index_bits, index_bits

    # Each grid's key is column | row | index, with the column and the row offset by 0 or
    # half a cell: the four shifted codes are made once, so a grid costs one OR and a sort.
    index = np.arange(n, dtype=np.int64)

    def codes(values: np.ndarray, origin: float, offset: float, shift: int) -> np.ndarray:
        """floor((values - origin) / cell + offset) << shift (the values are never below origin)."""
        scaled = values - origin
        scaled /= cell
        scaled += offset
        code = scaled.astype(np.int64)  # non-negative: truncation is the floor
        del scaled
        code <<= shift
        return code

    columns = [codes(x, x0, offset, x_shift) for offset in (0.0, 0.5)]
    rows = [codes(y, y0, offset, y_shift) for offset in (0.0, 0.5)]
    for row in rows:
        row |= index
    del index
    keys_buffer, cells_buffer = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)

    def sorted_keys(x_offset: float, y_offset: float) -> np.ndarray:
        """Sorted keys: column, row (cells offset by 0 or 0.5), index."""
        keys = np.bitwise_or(columns[x_offset > 0], rows[y_offset > 0], out=keys_buffer)
        keys.sort()
        return keys

    def shared_pairs(keys: np.ndarray) -> np.ndarray:
        """Positions i in sorted ``keys`` where points i and i+1 are in the same cell."""
        cells = np.right_shift(keys, index_bits, out=cells_buffer)
        return np.flatnonzero(cells[1:] == cells[:-1])

    candidate = np.zeros(n, dtype=bool)

    def mark(keys: np.ndarray, pair: np.ndarray) -> None:
        candidate[keys[pair] & mask] = True
        candidate[keys[pair + 1] & mask] = True

    keys = sorted_keys(0.0, 0.0)
    pair = shared_pairs(keys)
    before, after = keys[pair] & mask, keys[pair + 1] & mask
    duplicate = np.sort(after[(x[before] == x[after]) & (y[before] == y[after])])
    # A duplicate still marks the points of its cells; that only adds candidates, which
    # the tree then checks exactly, and saves sorting the grids again without them.
    mark(keys, pair)
    for x_offset, y_offset in [(0.5, 0.0), (0.0, 0.5), (0.5, 0.5)]:
        keys = sorted_keys(x_offset, y_offset)
        mark(keys, shared_pairs(keys))
    candidate[duplicate] = False
    return duplicate, np.flatnonzero(candidate)


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
        Projected CRS to measure in. By default EPSG:4326 edges are measured on the WGS 84
        ellipsoid (ground metres), and edges in any other CRS in the local UTM zone.

    Returns
    -------
    geopandas.GeoDataFrame
        ``point_id``, ``bearing`` (degrees clockwise from true north, along the edge's
        direction, to 0.001 in [0, 360)), ``edge_id``, ``osmid``, ``highway``, ``source``
        and Point geometry in EPSG:4326.

    Notes
    -----
    Line ends keep their input coordinates. On EPSG:4326 edges (no ``crs``) a segment
    between two vertices is the straight line in lon/lat, as GIS draws it, and a point
    ``k * spacing`` ground metres along the edge is placed on it within 1 mm on segments up
    to 3 km below 84 degrees of latitude (see ``_ground_steps``, ``_lerp_length`` and
    ``_lonlat_fraction``; the error grows with the cube of a segment's length and with the
    latitude: 0.2 mm on 10 km at 60 degrees, 1.9 mm at 75, about 6 mm on 30 km at 60). A
    bearing is the azimuth of its segment at the segment's middle, within 0.0004 degrees of
    the azimuth at the point below 70 degrees and 0.001 near 84, and, on segments longer
    than ``_lerp_length``, the azimuth at the point (line ends included). Edges across the
    antimeridian or within half a degree of a pole are measured in their UTM zone. The
    ground metres differ from a UTM zone's by its scale, under 0.1% inside the zone. With a
    ``crs``, a segment is straight in that CRS; points between vertices of EPSG:4326 edges
    are placed on the input segment at the fraction of its length measured in ``crs`` when
    that is within 1 mm of projecting them back, and projected back otherwise.
    """
    _check_spacing(spacing, merge_distance)
    if edges.crs is None:
        raise InputError("the edges have no CRS; set one (EPSG:4326 for OSM data)")
    if len(edges) == 0:
        return _empty_points()
    # Work on the vertex arrays, not geometries: no shapely object per vertex or per point.
    coords, vertex_line = shapely.get_coordinates(edges.geometry.values, return_index=True)
    lon_v, lat_v = coords[:, 0], coords[:, 1]
    bounds = (lon_v.min(), lon_v.max(), lat_v.min(), lat_v.max()) if len(coords) else None
    to_wgs84 = CRS.from_user_input(WGS84)
    geographic = CRS.from_user_input(edges.crs) == to_wgs84
    if crs is None and geographic and bounds is not None and _on_ellipsoid(bounds):
        lon, lat, bearing, samples, road_m = _sample_on_ellipsoid(
            lon_v, lat_v, vertex_line, bounds, spacing, merge_distance
        )
    else:
        lon, lat, bearing, samples, road_m = _sample_projected(
            edges, lon_v, lat_v, vertex_line, bounds, crs, spacing, merge_distance, geographic
        )

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
            "bearing": bearing,
            "edge_id": edge_values("edge_id", -1).astype(np.int64),
            "osmid": edge_values("osmid", -1).astype(np.int64),
            "highway": edge_labels("highway"),
            "source": pd.Categorical.from_codes(np.zeros(len(samples), np.int8), ["osm"]),
        },
        geometry=shapely.points(lon, lat),
        crs=WGS84,
        copy=False,  # the columns are new arrays: no need to copy them into blocks
    )
    km = road_m / 1000
    log.info("sampled %s points every %g m along %.1f km of road", f"{len(points):,}", spacing, km)
    return points


def _sample_on_ellipsoid(
    lon_v: np.ndarray,
    lat_v: np.ndarray,
    vertex_line: np.ndarray,
    bounds: tuple[float, float, float, float],
    spacing: float,
    merge_distance: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LineSamples, float]:
    """Samples of EPSG:4326 vertex arrays in ground metres: lon, lat, bearing, samples, road m.

    No projection: segment lengths and azimuths come from the ellipsoid's metres per degree
    (:func:`_ground_steps`), the merge works in a plate around the network checked on the
    ellipsoid (:class:`_Plate`), and points between vertices are placed on the input's
    lon/lat segments. On segments longer than :func:`_lerp_length` a point's fraction and
    bearing are worked out where it lies (:meth:`_Plate.refine`), before the merge. Measuring
    takes 0.23-0.27 s on the bench's LA-sized network where projecting to UTM took 0.50-0.55
    s, and the projected path adds a meridian convergence for every bearing (0.32 s).
    """
    plate = _Plate.over(bounds)
    x, y = plate.forward(lon_v, lat_v)
    steps = _ground_steps(lon_v, lat_v)
    top = _top_latitude(bounds, _ELLIPSOID_TOP)
    assert top is not None  # the caller checked _on_ellipsoid
    longest = _lerp_length(top)
    sampled = _sample_xy(
        x,
        y,
        vertex_line,
        spacing,
        merge_distance,
        segments=True,
        steps=steps,
        merge=plate.merge,
        refine=(longest, plate.refine),
    )
    del x, y, steps
    samples, end_vertex = sampled.samples, sampled.end_vertex
    assert sampled.inner is not None
    first, last, t, _ = sampled.inner
    n_ends = len(end_vertex)
    lon, lat = np.empty(len(samples)), np.empty(len(samples))
    lon[:n_ends], lat[:n_ends] = lon_v[end_vertex], lat_v[end_vertex]
    _place_between(lon[n_ends:], lat[n_ends:], lon_v, lat_v, first, last, t)
    del first, last, t
    # true bearings already: the steps point east and north
    return lon, lat, _compass(samples.bearing), samples, sampled.road_m


def _lonlat_fraction(
    fraction: np.ndarray, dlon: np.ndarray, dlat: np.ndarray, lat_a: np.ndarray, lat_b: np.ndarray
) -> np.ndarray:
    """Where along a lon/lat segment (0 to 1) a point ``fraction`` of its ground length lies.

    The ground speed along the segment, metres per unit of the lon/lat parameter, goes from
    v0 at its start to v1 at its end, near enough linearly: the distance covered by ``u`` is
    ``L (u + c (u**2 - u))`` with ``c = (v1 - v0) / (v1 + v0)``, solved here for ``u``.
    """
    speeds = []
    for lat in (lat_a, lat_b):
        east, north = _metres_per_degree(np.array(lat, dtype=float))
        speeds.append(np.hypot(east * dlon, north * dlat))
    c = (speeds[1] - speeds[0]) / (speeds[1] + speeds[0])
    # u = 2 f / ((1 - c) + sqrt((1 - c)**2 + 4 c f)): no cancellation when c is near 0
    return 2 * fraction / ((1 - c) + np.sqrt((1 - c) ** 2 + 4 * c * fraction))


def _place_between(
    lon: np.ndarray,
    lat: np.ndarray,
    lon_v: np.ndarray,
    lat_v: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    t: np.ndarray,
) -> None:
    """Fill ``lon``, ``lat`` with the points ``t`` of the way from vertex ``first`` to ``last``."""
    for out, values in ((lon, lon_v), (lat, lat_v)):
        start = values[first]  # start + t * (end - start)
        np.take(values, last, out=out)
        out -= start
        out *= t
        out += start


def _sample_projected(
    edges: gpd.GeoDataFrame,
    lon_v: np.ndarray,
    lat_v: np.ndarray,
    vertex_line: np.ndarray,
    bounds: tuple[float, float, float, float] | None,
    crs: str | CRS | None,
    spacing: float,
    merge_distance: float,
    geographic: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LineSamples, float]:
    """Samples measured in a projected CRS (``crs``, or the UTM zone): as for the ellipsoid.

    ``lon_v``, ``lat_v`` are the vertices in the edges' own CRS, whatever it is;
    ``geographic``: that CRS is EPSG:4326.
    """
    if crs is None:
        crs = _utm_crs(edges, lon_v, lat_v, bounds)
    else:
        crs = CRS.from_user_input(crs)
        if not crs.is_projected:
            raise InputError(
                f"{crs.name} is not a projected CRS; give one in metres, e.g. a UTM zone"
            )
    # The UTM zones of WGS 84 are measured in with PROJ's faster algorithm near the central
    # meridian: the same metres to 5 micrometres, in half the time (see _measuring_crs).
    measure = _measuring_crs(crs)
    px, py = Transformer.from_crs(edges.crs, measure, always_xy=True).transform(lon_v, lat_v)
    # Between vertices, in a UTM zone, the input's own segments give the points' lon/lat.
    lerp_limit = _lerp_limit(bounds) if geographic and measure is not crs else 0.0
    sampled = _sample_xy(px, py, vertex_line, spacing, merge_distance, segments=lerp_limit > 0)
    samples, end_vertex = sampled.samples, sampled.end_vertex
    del px, py
    # Line ends are vertices: their input coordinates are already known (exactly, when the
    # input is EPSG:4326); only the points between vertices are projected back, or, on
    # segments short enough, placed on the input segment at the same fraction of its length.
    n_ends = len(end_vertex)
    lon, lat = np.empty(len(samples)), np.empty(len(samples))
    back_from = n_ends if geographic else 0
    if geographic:
        lon[:n_ends], lat[:n_ends] = lon_v[end_vertex], lat_v[end_vertex]
    to_lonlat = Transformer.from_crs(measure, WGS84, always_xy=True)
    if sampled.inner is None:
        lon[back_from:], lat[back_from:] = samples.x[back_from:], samples.y[back_from:]
        to_lonlat.transform(lon[back_from:], lat[back_from:], inplace=True)
    else:
        first, last, t, seg_length = sampled.inner
        _place_between(lon[n_ends:], lat[n_ends:], lon_v, lat_v, first, last, t)
        del first, last, t
        far = np.flatnonzero(seg_length > lerp_limit)
        if len(far):
            far += n_ends
            lon[far], lat[far] = to_lonlat.transform(samples.x[far], samples.y[far])
    # Grid bearing -> true bearing: add the meridian convergence of the projection there.
    bearing = _compass(samples.bearing + meridian_convergence(lon, lat, crs))
    return lon, lat, bearing, samples, sampled.road_m


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
    # bilinear interpolation, written in place: (lon - lon0) / width * (n - 1) and so on
    tx = lon - glon[0]
    tx /= max(glon[-1] - glon[0], 1e-12)
    tx *= n - 1
    ty = lat - glat[0]
    ty /= max(glat[-1] - glat[0], 1e-12)
    ty *= n - 1
    corner = np.clip(ty.astype(np.int64), 0, n - 2)  # the lattice point (ix, iy), flat
    ty -= corner
    corner *= n
    ix = np.clip(tx.astype(np.int64), 0, n - 2)
    tx -= ix
    corner += ix
    del ix
    flat = grid.ravel()
    top = flat[corner]
    top *= 1 - tx
    corner += 1
    right = flat[corner]
    right *= tx
    top += right
    corner += n
    np.take(flat, corner, out=right)
    right *= tx
    corner -= 1
    bottom = flat[corner]
    bottom *= 1 - tx
    bottom += right
    top *= 1 - ty
    bottom *= ty
    top += bottom
    return top


def _utm_crs(
    edges: gpd.GeoDataFrame,
    lon: np.ndarray,
    lat: np.ndarray,
    bounds: tuple[float, float, float, float] | None,
) -> CRS:
    """The UTM zone ``edges.estimate_utm_crs()`` picks, from vertex arrays already at hand.

    geopandas takes the centre of the total bounds; in a geographic CRS those are the
    extremes of the vertex coordinates, which saves a bounds pass over every geometry.
    No zone covers the polar caps: that is an ``InputError`` asking for a ``crs``.
    """
    if bounds is None or not CRS.from_user_input(edges.crs).is_geographic:
        return _estimate_utm_crs(edges)
    from pyproj.aoi import AreaOfInterest
    from pyproj.database import query_utm_crs_info

    box = list(bounds)  # (lon min, lon max, lat min, lat max) of lon and lat
    if np.isnan(box).any():  # total_bounds skips missing values: do the same
        box = [np.nanmin(lon), np.nanmax(lon), np.nanmin(lat), np.nanmax(lat)]
    x = float(np.mean(box[:2]))
    y = float(np.mean(box[2:]))
    zones = query_utm_crs_info(datum_name="WGS 84", area_of_interest=AreaOfInterest(x, y, x, y))
    return CRS.from_epsg(zones[0].code) if zones else _estimate_utm_crs(edges)


def _estimate_utm_crs(edges: gpd.GeoDataFrame) -> CRS:
    """``edges.estimate_utm_crs()``, with its error where there is no zone made one line."""
    try:
        return edges.estimate_utm_crs()
    except RuntimeError as error:  # geopandas: "Unable to determine UTM CRS"
        raise InputError(
            "no UTM zone covers these edges (a polar cap); give a projected CRS in "
            "metres as `crs`, e.g. EPSG:3413 in the Arctic or EPSG:3031 in the Antarctic"
        ) from error


def _measuring_crs(crs: CRS) -> CRS:
    """``crs``, or for a WGS 84 UTM zone the same zone with PROJ's ``+algo=auto``.

    PROJ projects Transverse Mercator with the Poder/Engsager series by default. With
    ``algo=auto`` it takes, point by point, the faster Evenden/Snyder formulas within 3
    degrees of the central meridian (where a zone's cities are) and Poder/Engsager beyond.
    Measured with PROJ 9.5: within 5 micrometres of the exact projection at any latitude
    (the worst just inside 3 degrees), and on the LA-sized bench network (9.2 M vertices)
    every vertex within 1.4e-7 m, in 0.5 s instead of 1.1 s. Any other CRS is used as given.
    """
    code = crs.to_epsg(min_confidence=100)
    if code is None or not (32601 <= code <= 32660 or 32701 <= code <= 32760):
        return crs
    zone, south = code % 100, " +south" if code > 32700 else ""
    return CRS.from_proj4(
        f"+proj=utm +zone={zone}{south} +datum=WGS84 +units=m +algo=auto +type=crs"
    )


def _compass(bearing: np.ndarray) -> np.ndarray:
    """Bearings (degrees, in place) to 0.001 degree in [0, 360): 359.9996 is 0, not 360."""
    bearing %= 360.0
    np.round(bearing, 3, out=bearing)
    bearing[bearing >= 360.0] = 0.0
    return bearing


_LERP_TOLERANCE_M = 1e-3
"""How far (metres) a sample placed on an input lon/lat segment may lie from its exact place."""


def _lerp_length(top: float) -> float:
    """Longest segment (metres) on which placing points by their lon/lat fraction stays
    within tolerance, for vertices reaching latitude ``top`` (degrees, north or south).

    A point a fraction t along a straight segment in a UTM zone, projected back, and the
    point t along the same segment's ends in lon/lat differ by a second-order term: at most
    about ``L**2 * tan(|lat|) / (8 R)`` for a segment of length L (0.39 mm for 100 m at 60
    degrees). Measured on the ellipsoid, the same bound holds between a point's fraction of
    a segment's ground length and its fraction in lon/lat (the ground metres per degree
    change along the segment). This length keeps ``L**2 * (1 + tan(|lat|)) / (8 R)``, with
    R = 6,000 km (under any radius of curvature of the WGS 84 ellipsoid), within
    ``_LERP_TOLERANCE_M``; ``tests/test_sampling.py`` checks the bound against PROJ from the
    equator to 80 degrees.
    """
    return math.sqrt(8 * 6.0e6 * _LERP_TOLERANCE_M / (1 + math.tan(math.radians(top))))


def _top_latitude(bounds: tuple[float, float, float, float] | None, below: float) -> float | None:
    """The vertices' largest latitude (degrees, north or south), or None when they straddle
    the antimeridian, reach ``below`` or have a missing coordinate. ``bounds`` are the
    vertices' (lon min, lon max, lat min, lat max)."""
    if bounds is None:
        return None
    lon_min, lon_max, lat_min, lat_max = map(float, bounds)
    top = max(abs(lat_min), abs(lat_max))
    return top if lon_max - lon_min < 180.0 and top < below else None  # None for NaN too


def _lerp_limit(bounds: tuple[float, float, float, float] | None) -> float:
    """:func:`_lerp_length` for the projected path: zero (project every point back) when the
    vertices straddle the antimeridian, reach the polar caps (no UTM there) or have a missing
    coordinate."""
    top = _top_latitude(bounds, 84.0)
    return 0.0 if top is None else _lerp_length(top)


_ELLIPSOID_TOP = 89.5
"""Highest latitude (degrees) measured on the ellipsoid; networks nearer a pole, where a
plate around them no longer approximates distances, are measured in a projected CRS."""


def _on_ellipsoid(bounds: tuple[float, float, float, float] | None) -> bool:
    """Whether vertices with these bounds can be measured on the ellipsoid: every
    coordinate finite, less than 180 degrees of longitude (none across the antimeridian),
    and no nearer a pole than ``_ELLIPSOID_TOP``."""
    return _top_latitude(bounds, _ELLIPSOID_TOP) is not None


_WGS84_A = Geod(ellps="WGS84").a
"""Semi-major axis of the WGS 84 ellipsoid (metres), as PROJ knows it."""
_WGS84_E2 = (2 - Geod(ellps="WGS84").f) * Geod(ellps="WGS84").f
"""First eccentricity squared of the WGS 84 ellipsoid, f (2 - f)."""


def _metres_per_degree(lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Metres per degree of longitude and of latitude at ``lat`` (degrees) on WGS 84.

    ``N cos(lat)`` and ``M``, the ellipsoid's radii of curvature in the prime vertical and
    the meridian, times pi/180. ``lat`` (a float array) is overwritten.
    """
    cos = np.cos(np.radians(lat, out=lat), out=lat)
    inv_w = np.multiply(cos, cos)  # 1 / sqrt(1 - e2 sin^2) = 1 / sqrt(1 - e2 + e2 cos^2)
    inv_w *= _WGS84_E2
    inv_w += 1.0 - _WGS84_E2
    np.sqrt(inv_w, out=inv_w)
    np.reciprocal(inv_w, out=inv_w)
    east = cos
    east *= inv_w
    east *= _WGS84_A * math.pi / 180
    north = np.multiply(inv_w, inv_w)
    north *= inv_w
    north *= _WGS84_A * (1 - _WGS84_E2) * math.pi / 180
    return east, north


def _ground_steps(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """East and north metres from each vertex to the next, on WGS 84 (``len - 1`` of each).

    The metres per degree at the segment's middle latitude times its degrees: the length of
    the segment drawn straight in lon/lat to a relative (L / R)**2 (3e-5 mm on 100 m), and
    its azimuth at the middle. Written here because pyproj's geodesics cost 0.63 us a
    segment (measured here), where this is a dozen numpy passes: 0.23-0.27 s for the bench's
    9.2 M vertices, against 0.50-0.55 s for PROJ's projection to UTM.
    """
    dlat = np.diff(lat)
    middle = np.multiply(dlat, 0.5)
    middle += lat[:-1]
    east, north = _metres_per_degree(middle)
    del middle
    dlon = np.diff(lon)
    east *= dlon
    del dlon
    north *= dlat
    return east, north


@dataclass(frozen=True)
class _Plate:
    """An equirectangular plane around a network, in metres at its middle, for the merge.

    ``x = (lon - lon0) * east``, ``y = (lat - lat0) * north``: cheap, and no distance in it
    is longer than the true one times ``stretch`` anywhere in ``bounds``, so a merge looks
    for neighbours within ``distance * stretch`` here and keeps the pairs truly that close.
    """

    lon0: float
    lat0: float
    east: float  # metres per degree at lat0
    north: float
    stretch: float

    @classmethod
    def over(cls, bounds: tuple[float, float, float, float]) -> _Plate:
        lon_min, lon_max, lat_min, lat_max = map(float, bounds)
        lat0 = (lat_min + lat_max) / 2
        probes = [lat0, lat_min, lat_max] + ([0.0] if lat_min < 0 < lat_max else [])
        east, north = _metres_per_degree(np.array(probes))
        stretch = max(1.0, float((east[0] / east).max()), float((north[0] / north).max()))
        return cls((lon_min + lon_max) / 2, lat0, float(east[0]), float(north[0]), stretch)

    def forward(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = lon - self.lon0
        x *= self.east
        y = lat - self.lat0
        y *= self.north
        return x, y

    def latitude(self, y: np.ndarray) -> np.ndarray:
        """Latitude (degrees) of plate ``y``: the inverse of :meth:`forward` in y."""
        return y / self.north + self.lat0

    def refine(
        self, x: np.ndarray, y: np.ndarray, segment: np.ndarray, fraction: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """For points ``fraction`` of a segment's ground length along it (segment i runs from
        plate point i to i+1): their fraction along it in lon/lat, and their bearing there."""
        a, b = segment, segment + 1
        dlon, dlat = (x[b] - x[a]) / self.east, (y[b] - y[a]) / self.north
        lat_a = self.latitude(y[a])
        u = _lonlat_fraction(fraction, dlon, dlat, lat_a, lat_a + dlat)
        east, north = _metres_per_degree(lat_a + u * dlat)
        east *= dlon
        north *= dlat
        bearing = np.degrees(np.arctan2(east, north))
        bearing[bearing < 0] += 360.0
        return u, bearing

    def merge(self, x: np.ndarray, y: np.ndarray, distance: float) -> np.ndarray:
        """:func:`merge_close_points` with distances on the ellipsoid."""

        def closer(i: np.ndarray, j: np.ndarray, limit: float) -> np.ndarray:
            lat_i, lat_j = self.latitude(y[i]), self.latitude(y[j])
            east, north = _metres_per_degree((lat_i + lat_j) / 2)
            east *= (x[i] - x[j]) / self.east
            north *= lat_i - lat_j
            return np.hypot(east, north) < limit

        return merge_close_points(x, y, distance, stretch=self.stretch * (1 + 1e-9), closer=closer)


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
