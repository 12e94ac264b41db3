"""GeoTIFF surfaces of a point or zone value, ready to style in QGIS."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ._errors import InputError, StudyError

log = logging.getLogger(__name__)

MAX_CELLS = 25_000_000
_NEIGHBOURS = 16


def raster_from_points(
    frame,
    column: str,
    path: str | os.PathLike[str],
    *,
    cell: float = 50.0,
    method: str = "idw",
    power: float = 2.0,
    radius: float | None = None,
    bandwidth: float | None = None,
    nodata: float = -9999.0,
    crs=None,
) -> Path:
    """Interpolate ``column`` of a point (or zone) layer onto a grid and write a GeoTIFF.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        Points, or polygons (their representative points carry the zone's value).
    column : str
        A numeric column.
    path : path
        The GeoTIFF to write (atomically: a failure leaves no file).
    cell : float
        Cell size in metres, measured in ``crs``.
    method : {"idw", "kernel"}
        Inverse distance weighting (``power``) of the nearest points, or a Gaussian kernel
        average (Nadaraya-Watson, ``bandwidth`` metres, default ``radius / 3``).
    radius : float, optional
        Cells farther than this from every point are nodata. Default: the larger of two
        cells and twice the median distance between neighbouring points.
    nodata : float
        The nodata value written to the file.
    crs : optional
        The raster's CRS; default the layer's local UTM zone.

    Returns
    -------
    Path
        The GeoTIFF: one float32 band, deflate-compressed, tiled, with CRS, nodata,
        average overviews and the column as band description.
    """
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from scipy.spatial import cKDTree

    if not (isinstance(cell, int | float) and math.isfinite(cell) and cell > 0):
        raise InputError(f"`cell` must be a positive number of metres, not {cell}")
    if method not in ("idw", "kernel"):
        raise InputError(f"method must be idw or kernel, not {method!r}")
    if column not in frame.columns:
        have = ", ".join(str(c) for c in frame.columns if c != frame.geometry.name)
        raise InputError(f"the layer has no column '{column}' (it has: {have}); pick one of those")
    values = pd.to_numeric(frame[column], errors="coerce")
    if not pd.api.types.is_numeric_dtype(frame[column]) or values.notna().sum() == 0:
        raise InputError(f"column '{column}' holds no numbers; a surface needs a numeric column")
    if frame.crs is None:
        raise InputError("the layer has no CRS; set one (e.g. frame.set_crs(4326))")
    keep = values.notna().to_numpy() & frame.geometry.notna().to_numpy()
    frame, values = frame[keep], values[keep].to_numpy(float)
    target = crs if crs is not None else frame.estimate_utm_crs()
    geometry = frame.geometry.to_crs(target)
    if not (geometry.geom_type == "Point").all():
        geometry = geometry.representative_point()
    xy = np.column_stack([geometry.x.to_numpy(), geometry.y.to_numpy()])

    tree = cKDTree(xy)
    if radius is None:
        spacing = tree.query(xy, k=2)[0][:, 1] if len(xy) > 1 else np.array([0.0])
        radius = max(2.0 * cell, 2.0 * float(np.median(spacing)))
    if bandwidth is None:
        bandwidth = radius / 3.0
    left = math.floor(xy[:, 0].min() / cell) * cell - cell
    bottom = math.floor(xy[:, 1].min() / cell) * cell - cell
    right = math.ceil(xy[:, 0].max() / cell) * cell + cell
    top = math.ceil(xy[:, 1].max() / cell) * cell + cell
    width, height = round((right - left) / cell), round((top - bottom) / cell)
    if width * height > MAX_CELLS:
        raise InputError(
            f"a {cell:g} m grid over this layer has {width * height:,} cells (limit "
            f"{MAX_CELLS:,}); use a larger `cell`"
        )
    transform = Affine(cell, 0.0, left, 0.0, -cell, top)
    grid = np.full((height, width), nodata, dtype=np.float32)
    k = min(_NEIGHBOURS, len(xy))
    cols = left + (np.arange(width) + 0.5) * cell
    rows_per_chunk = max(1, 1_000_000 // width)
    for r0 in range(0, height, rows_per_chunk):
        ys = top - (np.arange(r0, min(height, r0 + rows_per_chunk)) + 0.5) * cell
        gx, gy = np.meshgrid(cols, ys)
        centres = np.column_stack([gx.ravel(), gy.ravel()])
        dist, idx = tree.query(centres, k=k, distance_upper_bound=radius)
        dist, idx = dist.reshape(len(centres), k), idx.reshape(len(centres), k)
        valid = np.isfinite(dist)
        idx = np.where(valid, idx, 0)
        near = values[idx]
        if method == "idw":
            exact = valid & (dist <= cell * 1e-9)
            with np.errstate(divide="ignore"):
                weight = np.where(valid, 1.0 / np.maximum(dist, 1e-12) ** power, 0.0)
            hit = exact.any(axis=1)
            weight[hit] = exact[hit].astype(float)  # a point on the cell centre wins outright
        else:
            weight = np.where(valid, np.exp(-0.5 * (dist / bandwidth) ** 2), 0.0)
        total = weight.sum(axis=1)
        out = np.full(len(centres), nodata, dtype=float)
        ok = total > 0
        out[ok] = (weight[ok] * near[ok]).sum(axis=1) / total[ok]
        grid[r0 : r0 + len(ys)] = out.reshape(len(ys), width)

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.tif")
    profile = dict(
        driver="GTiff", width=width, height=height, count=1, dtype="float32", crs=target,
        transform=transform, nodata=nodata, compress="deflate", predictor=3,
        tiled=True, blockxsize=256, blockysize=256,
    )  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(grid, 1)
            dst.set_band_description(1, column)
            dst.update_tags(
                column=column, method=method, cell=cell, radius=round(radius, 3),
                power=power if method == "idw" else "", bandwidth=bandwidth if method == "kernel"
                else "", source="urbanvis",
            )  # fmt: skip
            factors: list[int] = []
            f = 2
            while not factors or max(width, height) // f >= 64:
                factors.append(f)
                f *= 2
            dst.build_overviews(factors, Resampling.average)
            dst.update_tags(ns="rio_overview", resampling="average")
        os.replace(tmp, path)
    except (OSError, rasterio.errors.RasterioError) as exc:
        tmp.unlink(missing_ok=True)
        raise StudyError(f"could not write {path}: {exc}") from exc
    finite = grid[grid != nodata]
    log.info(
        "wrote %s: %d x %d cells of %g m, %s from %s (%s)",
        path, width, height, cell,
        f"{finite.min():.4g} to {finite.max():.4g}" if finite.size else "no values",
        column, method,
    )  # fmt: skip
    return path
