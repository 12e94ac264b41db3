"""Zones (block groups, tracts, hexagons, square cells) and the mean embedding per zone.

Zones come from a file (:func:`zones_from_file`: shapefile or GeoPackage, any CRS, returned in
EPSG:4326) or from a grid laid over the study area in its UTM zone (:func:`zones_from_grid`).
:func:`zone_embeddings` joins embedded captures to zones in one vectorised STRtree query and
averages the vectors per zone with one sparse matrix product: no Python loop per point or
per zone. :func:`zone_embeddings_from_blocks` does the same with vectors read block by
block (a sparse product per block), for stores too large to hold. Zones with fewer than
``min_images`` captures are kept and flagged, never dropped.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._errors import CRSError, InputError, InputFileError
from ._files import not_a_file
from .areas import check_lonlat_range, check_valid_polygons

log = logging.getLogger(__name__)

WGS84 = "EPSG:4326"
GRID_KINDS: tuple[str, ...] = ("hex", "square")
GRID_ID = "zone_id"


def zones_from_file(
    path: str | os.PathLike[str],
    id_field: str,
    *,
    layer: str | None = None,
    id_option: str = "id_field",
) -> gpd.GeoDataFrame:
    """Read zones from a shapefile or GeoPackage and reproject them to EPSG:4326.

    Parameters
    ----------
    path
        The file; ``file.gpkg:layer`` names a layer when ``layer`` is not given.
    id_field
        The column holding each zone's unique id (e.g. ``GEOID``); ids are read as text.
    layer
        The layer of a multi-layer file (a GeoPackage).
    id_option
        The keyword of the parameter that names the id field (``id_field``, ``zone_id``),
        for error messages; a command-line spelling (``--zone-id``) is read as its keyword.

    Returns
    -------
    geopandas.GeoDataFrame
        ``id_field`` (str) and polygon geometry in EPSG:4326, in the file's order.
    """
    import pyogrio

    id_param = id_option.lstrip("-").replace("-", "_")
    path, layer = _split_layer(path, layer)
    if not path.is_file():
        raise InputFileError(f"zones file {path} {not_a_file(path)}; check `zones`")
    try:
        if layer is not None:
            layers = [str(name) for name, _ in pyogrio.list_layers(path)]
            if layer not in layers:
                raise InputError(
                    f"zones file {path.name} has no layer '{layer}' (it has: "
                    f"{', '.join(layers) or 'none'}); pass the right `zones_layer`"
                )
        info = pyogrio.read_info(path, layer=layer)
    except InputError:
        raise
    except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError...
        raise InputFileError(f"cannot read zones from {path}: {_first(exc)}") from exc
    fields = [str(f) for f in info["fields"]]
    if id_field not in fields:
        raise InputError(
            f"zones file {path.name} has no field '{id_field}' (it has: "
            f"{', '.join(fields) or 'none'}); pass the right `{id_param}`"
        )
    if info.get("crs") is None:
        raise CRSError(
            f"zones file {path.name} has no CRS (no .prj or SRS); set one, e.g. "
            f"ogr2ogr -a_srs EPSG:XXXX out.gpkg {path.name}"
        )
    zones = pyogrio.read_dataframe(path, layer=layer, columns=[id_field])
    zones = zones[~zones.geometry.isna() & ~zones.geometry.is_empty]
    kinds = set(zones.geom_type.unique())
    if not zones.empty and not kinds <= {"Polygon", "MultiPolygon"}:
        raise InputError(f"zones in {path.name} must be polygons, found {', '.join(sorted(kinds))}")
    if zones.empty:
        raise InputError(f"zones file {path.name} holds no polygons")
    zones[id_field] = _id_text(zones[id_field])
    _check_ids(zones[id_field], path.name, id_param)
    check_valid_polygons(zones.geometry, f"zones file {path.name}")
    source_crs = zones.crs
    zones = zones.to_crs(WGS84).reset_index(drop=True)
    check_lonlat_range(zones, f"zones file {path.name}", source_crs)
    log.debug("read %d zones from %s (ids in '%s')", len(zones), path.name, id_field)
    return zones


def zones_from_grid(
    area, *, kind: Literal["hex", "square"] = "hex", cell_size: float = 500.0
) -> gpd.GeoDataFrame:
    """A grid of hexagons or squares over ``area``, laid out in its UTM zone.

    Parameters
    ----------
    area
        A GeoDataFrame or GeoSeries with a CRS (points are covered by their convex hull).
    kind
        ``hex``: hexagons whose neighbouring centres are ``cell_size`` metres apart;
        ``square``: squares of side ``cell_size`` metres.
    cell_size
        Metres.

    Returns
    -------
    geopandas.GeoDataFrame
        ``zone_id`` (``H000001``... or ``S000001``...) and the cells that intersect the
        area, in EPSG:4326.
    """
    if kind not in GRID_KINDS:
        raise InputError(f"unknown grid kind {kind!r}; choose one of {', '.join(GRID_KINDS)}")
    if not (cell_size > 0 and math.isfinite(cell_size)):
        raise InputError(f"cell size must be a positive number of metres, got {cell_size}")
    if area.crs is None:
        raise CRSError("the area has no CRS; set one (e.g. frame.set_crs(4326))")
    if len(area) == 0:
        raise InputError("the area is empty: nothing to lay a grid over")
    utm = area.estimate_utm_crs()
    geoms = area.to_crs(utm).geometry
    shape = shapely.union_all(geoms.values)
    if shape.area == 0:  # points or lines: their hull, padded by half a cell
        shape = shapely.convex_hull(shape).buffer(cell_size / 2)
    x0, y0, x1, y1 = shape.bounds
    n_cells = ((x1 - x0) / cell_size + 2) * ((y1 - y0) / cell_size + 2)
    if n_cells > 5_000_000:
        raise InputError(
            f"a {cell_size:g} m grid over this area would have about {n_cells:,.0f} cells; "
            f"choose a larger `cell_size`"
        )
    cells = (
        _hexagons(x0, y0, x1, y1, cell_size)
        if kind == "hex"
        else _squares(x0, y0, x1, y1, cell_size)
    )
    cells = cells[shapely.STRtree(cells).query(shape, predicate="intersects")]
    cells = cells[np.lexsort((shapely.get_x(shapely.centroid(cells)),
                              shapely.get_y(shapely.centroid(cells))))]  # fmt: skip
    prefix = "H" if kind == "hex" else "S"
    zones = gpd.GeoDataFrame(
        {GRID_ID: [f"{prefix}{i + 1:06d}" for i in range(len(cells))]}, geometry=cells, crs=utm
    ).to_crs(WGS84)
    log.info("laid %d %s cells of %g m over the area", len(zones), kind, cell_size)
    return zones


def zone_embeddings(
    rows: gpd.GeoDataFrame,
    vectors: np.ndarray,
    zones: gpd.GeoDataFrame,
    *,
    id_field: str,
    min_images: int = 1,
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """The mean embedding of the captures inside each zone.

    Parameters
    ----------
    rows, vectors
        Embedded captures (point geometry with a CRS) and their vectors, row ``i`` of
        ``vectors`` belonging to ``rows.iloc[i]`` (as :func:`urbanvis.vectors.read_embeddings`
        returns them).
    zones
        Polygons with a CRS and a unique ``id_field``; reprojected to the rows' CRS.
    id_field
        The zone id column.
    min_images
        Zones with fewer captures are flagged (``flagged`` True), not dropped.

    Returns
    -------
    (geopandas.GeoDataFrame, numpy.ndarray)
        The zones (``id_field``, ``n_images``, ``flagged``, geometry, in the zones' order and
        CRS) and a float32 matrix of their mean vectors; a zone without captures has NaNs.
        A point on a shared border counts in one zone only.
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(vectors) != len(rows):
        raise InputError(
            f"vectors must be a matrix with one row per capture: got shape {vectors.shape} "
            f"for {len(rows)} captures"
        )
    point_at, zone_at = _assign(rows, zones, id_field=id_field, min_images=min_images)
    means, counts = _group_means(vectors, point_at, zone_at, len(zones))
    return _zone_frame(rows, zones, point_at, counts, id_field, min_images), means


def zone_embeddings_from_blocks(
    rows: gpd.GeoDataFrame,
    blocks: Iterable[tuple[np.ndarray, np.ndarray]],
    zones: gpd.GeoDataFrame,
    *,
    id_field: str,
    min_images: int = 1,
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """:func:`zone_embeddings` for vectors read block by block, never all held at once.

    Parameters
    ----------
    rows
        Embedded captures: ``capture_id`` (unique) and point geometry with a CRS (as
        :func:`urbanvis.vectors.read_embedding_rows` returns them).
    blocks
        ``(capture_ids, float32 matrix)`` blocks holding a vector for every row of ``rows``
        (as :func:`urbanvis.vectors.iter_vectors` yields them); vectors of other captures
        are skipped.
    zones, id_field, min_images
        As in :func:`zone_embeddings`.

    Returns
    -------
    (geopandas.GeoDataFrame, numpy.ndarray)
        As :func:`zone_embeddings` returns for the same rows and vectors (sums in float64,
        so equal to its means up to float32 rounding).

    Raises
    ------
    InputError
        A row has no vector in ``blocks``.
    """
    point_at, zone_at = _assign(rows, zones, id_field=id_field, min_images=min_images)
    zone_of = np.full(len(rows), -1, dtype=np.int64)
    zone_of[point_at] = zone_at
    index = pd.Index(rows["capture_id"])
    if not index.is_unique:
        raise InputError("the rows repeat capture ids; pass each capture's row once")
    seen = np.zeros(len(rows), dtype=bool)
    sums: np.ndarray | None = None
    for ids, block in blocks:
        at = index.get_indexer(ids)
        mine = at >= 0
        at, block = at[mine], np.asarray(block)[mine]
        seen[at] = True
        inside = zone_of[at] >= 0
        part, _ = _group_sums(block[inside], zone_of[at][inside], len(zones))
        sums = part if sums is None else sums + part
    if not seen.all():
        raise InputError(
            f"{int((~seen).sum()):,} of the {len(rows):,} captures have no vector; rerun "
            f"'urbanvis embed'"
        )
    counts = np.bincount(zone_at, minlength=len(zones))
    if sums is None:  # no rows at all
        sums = np.zeros((len(zones), 0))
    return _zone_frame(rows, zones, point_at, counts, id_field, min_images), _means(sums, counts)


def _assign(
    rows: gpd.GeoDataFrame, zones: gpd.GeoDataFrame, *, id_field: str, min_images: int
) -> tuple[np.ndarray, np.ndarray]:
    """Check the inputs; (row index, zone index) of each row inside a zone."""
    if min_images < 0:
        raise InputError(f"`min_images` must be 0 or more, got {min_images}")
    if id_field not in zones.columns:
        raise InputError(f"zones have no column '{id_field}'; pass the right `id_field`")
    if rows.crs is None or zones.crs is None:
        raise CRSError("captures and zones both need a CRS; set one (e.g. frame.set_crs(4326))")
    _check_ids(zones[id_field], "the zones")
    point_at, zone_at = _points_in_zones(rows.geometry.values, zones.to_crs(rows.crs))
    if len(point_at) == 0:
        bounds = ", ".join(f"{v:.4f}" for v in zones.to_crs(WGS84).total_bounds)
        raise InputError(
            f"none of the {len(rows):,} embedded captures lies in any of the {len(zones):,} "
            f"zones (zones span {bounds} in EPSG:4326); check that the zones cover the study "
            f"area and their CRS is right"
        )
    return point_at, zone_at


def _zone_frame(rows, zones, point_at, counts, id_field: str, min_images: int):
    frame = gpd.GeoDataFrame(
        {
            id_field: zones[id_field].to_numpy(),
            "n_images": counts.astype(np.int64),
            "flagged": counts < min_images,
        },
        geometry=zones.geometry.to_numpy(),
        crs=zones.crs,
    )
    outside = len(rows) - len(point_at)
    log.info(
        "%s captures in %s of %s zones (%s under %d images flagged); %s captures outside",
        f"{len(point_at):,}",
        f"{int((counts > 0).sum()):,}",
        f"{len(zones):,}",
        f"{int(frame['flagged'].sum()):,}",
        min_images,
        f"{outside:,}",
    )
    return frame


# ---------------------------------------------------------------------- helpers
def _points_in_zones(points: np.ndarray, zones: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(point index, zone index) for each point inside a zone; one zone per point."""
    tree = shapely.STRtree(zones.geometry.values)
    point_at, zone_at = tree.query(points, predicate="intersects")
    if len(point_at):  # a point on a shared border: keep its first zone
        first = np.r_[True, point_at[1:] != point_at[:-1]]
        if not first.all():
            order = np.lexsort((zone_at, point_at))
            point_at, zone_at = point_at[order], zone_at[order]
            first = np.r_[True, point_at[1:] != point_at[:-1]]
            point_at, zone_at = point_at[first], zone_at[first]
    return point_at, zone_at


def _group_sums(
    vectors: np.ndarray, zone_at: np.ndarray, n_zones: int, point_at: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-zone float64 sums of ``vectors[point_at]`` (all rows when None) grouped by
    ``zone_at`` (one sparse product), and the counts."""
    from scipy import sparse

    if point_at is None:
        point_at = np.arange(len(zone_at))
    counts = np.bincount(zone_at, minlength=n_zones)
    member = sparse.csr_matrix(
        (np.ones(len(point_at), dtype=np.float64), (zone_at, point_at)),
        shape=(n_zones, len(vectors)),
    )
    return member @ vectors.astype(np.float64, copy=False), counts


def _means(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """float32 means from sums and counts (NaN for a zone without captures)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts[:, None]).astype(np.float32)


def _group_means(
    vectors: np.ndarray, point_at: np.ndarray, zone_at: np.ndarray, n_zones: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-zone means of ``vectors[point_at]`` grouped by ``zone_at`` (sparse product)."""
    sums, counts = _group_sums(vectors, zone_at, n_zones, point_at)
    return _means(sums, counts), counts


def _hexagons(x0: float, y0: float, x1: float, y1: float, width: float) -> np.ndarray:
    """Pointy-top hexagons, centres ``width`` apart, covering the box."""
    radius = width / math.sqrt(3.0)
    dy = 1.5 * radius
    rows = np.arange(math.floor((y0 - radius) / dy), math.ceil((y1 + radius) / dy) + 1)
    cols = np.arange(math.floor((x0 - width) / width), math.ceil((x1 + width) / width) + 1)
    cj, ci = np.meshgrid(rows, cols, indexing="ij")
    cx = (ci * width + (cj % 2) * width / 2).ravel()
    cy = (cj * dy).ravel()
    angles = np.deg2rad(30.0 + 60.0 * np.arange(6))
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
    coords = np.stack([cx, cy], axis=1)[:, None, :] + ring[None]
    return shapely.polygons(coords)


def _squares(x0: float, y0: float, x1: float, y1: float, side: float) -> np.ndarray:
    xs = np.arange(math.floor(x0 / side), math.ceil(x1 / side)) * side
    ys = np.arange(math.floor(y0 / side), math.ceil(y1 / side)) * side
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys, indexing="ij"))
    return shapely.box(gx, gy, gx + side, gy + side)


def _split_layer(path, layer: str | None) -> tuple[Path, str | None]:
    text = os.fspath(path)
    if layer is None and not Path(text).exists() and ":" in text:
        head, _, tail = text.rpartition(":")
        if Path(head).exists():
            return Path(head), tail
    return Path(text), layer


def _id_text(values: pd.Series) -> pd.Series:
    """Ids as text; whole floats (from shapefiles) lose their ``.0``."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == np.round(whole)).all():
            values = values.astype("Int64")
    return values.astype("string").astype(object)


def _check_ids(ids: pd.Series, where: str, id_param: str = "id_field") -> None:
    if ids.isna().any():
        raise InputError(f"{int(ids.isna().sum())} zones in {where} have no id; fill the id field")
    dupes = ids[ids.duplicated()]
    if len(dupes):
        raise InputError(
            f"zone ids in {where} must be unique; {len(dupes)} repeat (e.g. {dupes.iloc[0]!r}); "
            f"dissolve the zones or pick another `{id_param}`"
        )


def _first(exc: BaseException) -> str:
    from ._errors import first_line

    return first_line(exc)
