"""US zones from the Census Bureau's TIGER/Line shapefiles (online, cached).

:func:`tiger_zones` returns the block groups or tracts that intersect a study area, read from
the TIGER/Line shapefiles (one zip per state, plus the national state-boundary file that
says which states the area touches).

The zips are cached under ``<cache>/tiger/`` in the server's own layout
(``TIGER2023/BG/tl_2023_06_bg.zip``), so a zip downloaded by hand can be dropped in, and a
cached zip is used without any request. ``<cache>`` is ``$URBANVIS_CACHE`` or
``~/.cache/urbanvis``. ``URBANVIS_TIGER_URL`` (or ``base_url=``) points at a mirror.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from . import _http
from ._census import (
    LEVELS,
    CensusServiceError,
    cache_root,
    check_year,
    make_folder,
    service_url,
)
from ._errors import InputError, first_line
from ._files import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

__all__ = [
    "LEVELS",
    "TIGER_URL",
    "TIGER_URL_ENV",
    "CensusServiceError",
    "cache_root",
    "tiger_zones",
]

log = logging.getLogger(__name__)

TIGER_URL = "https://www2.census.gov/geo/tiger"
TIGER_URL_ENV = "URBANVIS_TIGER_URL"
# The contiguous states, Alaska (both sides of 180°), Hawaii, Puerto Rico and the Virgin
# Islands, Guam and the Northern Marianas, American Samoa; generous boxes, so an area in
# one of them always reaches the exact test against the state-boundary file.
_US_BOXES: tuple[tuple[float, float, float, float], ...] = (
    (-126.0, 23.5, -65.5, 50.0),
    (-180.0, 50.5, -128.5, 72.0),
    (171.5, 50.5, 180.0, 54.0),
    (-179.5, 18.0, -154.0, 29.0),
    (-68.5, 17.0, -64.0, 19.0),
    (144.0, 13.0, 146.5, 21.0),
    (-171.5, -15.0, -168.0, -10.5),
)


def tiger_zones(
    bounds_wgs84: Sequence[float],
    level: Literal["blockgroup", "tract"] = "blockgroup",
    *,
    year: int = 2023,
    base_url: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> gpd.GeoDataFrame:
    """Census block groups or tracts that intersect a bounding box, from TIGER/Line.

    Downloads (or reads from the cache) the national state-boundary file to find the states
    the box touches, then each of those states' block-group or tract zip.

    Parameters
    ----------
    bounds_wgs84
        ``(west, south, east, north)`` in degrees (EPSG:4326), e.g. ``frame.total_bounds``.
    level
        ``blockgroup`` (12-digit GEOIDs) or ``tract`` (11 digits).
    year
        TIGER/Line vintage (``TIGER2023``); block groups and tracts change at each decennial
        census, so match it to the ACS year's geography (2020 boundaries: 2020-2029).
    base_url
        Replaces ``https://www2.census.gov/geo/tiger`` (default: ``$URBANVIS_TIGER_URL``
        when set), e.g. a mirror with the same layout or a ``file://`` folder.
    cache_dir
        Where the zips are kept (default ``$URBANVIS_CACHE/tiger`` or
        ``~/.cache/urbanvis/tiger``); a zip already there is used without any request.

    Returns
    -------
    geopandas.GeoDataFrame
        ``GEOID`` (str) and polygon geometry in EPSG:4326, sorted by GEOID.

    Raises
    ------
    InputError
        The box is outside the US (TIGER/Line covers the US only), or nothing intersects it.
    CensusServiceError
        The server cannot be reached or has no such file.
    """
    import geopandas as gpd
    import pandas as pd
    import shapely

    west, south, east, north = _check_bounds(bounds_wgs84)
    if level not in LEVELS:
        raise InputError(f"unknown Census level {level!r}; choose one of {', '.join(LEVELS)}")
    year = check_year(year, "tiger_year")
    if not any(_overlaps((west, south, east, north), box) for box in _US_BOXES):
        raise InputError(_outside_us(west, south, east, north))
    base = service_url(base_url, TIGER_URL_ENV, TIGER_URL, "tiger_url")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "tiger"
    area = shapely.box(west, south, east, north)
    if area.area == 0:  # a single capture, or captures along one meridian or parallel
        area = area.buffer(1e-9)
    pad = (west - 0.01, south - 0.01, east + 0.01, north + 0.01)  # NAD83 vs WGS84: < 2 m

    states_zip = _tiger_zip(f"TIGER{year}/STATE/tl_{year}_us_state.zip", base=base, cache=cache)
    states = _read_zip(states_zip, bbox=pad)
    fips_field = "STATEFP" if "STATEFP" in states.columns else "GEOID"
    if fips_field not in states.columns:
        raise InputError(f"{states_zip.name} has no STATEFP field; is it a TIGER/Line state file?")
    states = states.to_crs(4326)
    fips = sorted(set(states.loc[states.intersects(area), fips_field].astype(str)))
    if not fips:
        raise InputError(_outside_us(west, south, east, north))

    folder, suffix = ("BG", "bg") if level == "blockgroup" else ("TRACT", "tract")
    parts = []
    for state in fips:
        path = _tiger_zip(f"TIGER{year}/{folder}/tl_{year}_{state}_{suffix}.zip", base=base,
                          cache=cache)  # fmt: skip
        frame = _read_zip(path, bbox=pad)
        frame = gpd.GeoDataFrame(
            {"GEOID": _geoids(frame, level, path.name)}, geometry=frame.geometry, crs=frame.crs
        )
        parts.append(frame.to_crs(4326))
    zones = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry")
    zones = zones[zones.intersects(area)].sort_values("GEOID").reset_index(drop=True)
    noun = "block groups" if level == "blockgroup" else "tracts"
    if zones.empty:
        raise InputError(
            f"no TIGER/Line {year} {noun} intersect the study area ({west:.4f},{south:.4f},"
            f"{east:.4f},{north:.4f}); pass a zones file as `zones`"
        )
    log.info(
        "%d %s from TIGER/Line %d (state%s %s)",
        len(zones), noun, year, "s" if len(fips) > 1 else "", ", ".join(fips),
    )  # fmt: skip
    return zones


def _tiger_zip(relative: str, *, base: str, cache: Path) -> Path:
    """A TIGER/Line zip from the cache, downloading it first when it is not there."""
    import io
    import zipfile

    path = cache / relative
    if path.is_file():
        log.debug("using cached %s", path)
        return path
    url = f"{base}/{relative}"
    host = _http.host_of(url)
    log.info("downloading %s from %s", path.name, host)
    try:
        data = _http.get(url)
    except _http.HttpStatusError as exc:
        what = "has no" if exc.code == 404 else f"answered HTTP {exc.code} for"
        raise CensusServiceError(
            f"the TIGER/Line server at {host} {what} {relative}; check `tiger_year`, pass a "
            f"zones file as `zones`, or point {TIGER_URL_ENV} (`tiger_url`) at a mirror"
        ) from None
    except _http.UnreachableError as exc:
        raise CensusServiceError(
            f"cannot reach the TIGER/Line server at {host} ({exc.reason}); pass a zones file "
            f"as `zones`, or point {TIGER_URL_ENV} (`tiger_url`) at a mirror"
        ) from None
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CensusServiceError(
            f"{host} sent something that is not a zip for {relative} (an error page?); "
            f"check {TIGER_URL_ENV} (`tiger_url`) or pass a zones file as `zones`"
        )
    make_folder(path.parent)
    atomic_write_bytes(path, data)
    return path


def _read_zip(path: Path, *, bbox: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    """The features of the shapefile inside a zip whose envelope meets ``bbox``."""
    import pyogrio

    try:
        frame = pyogrio.read_dataframe(f"/vsizip/{path}", bbox=bbox)
    except Exception as exc:  # pyogrio raises DataSourceError, DataLayerError...
        raise InputError(
            f"cannot read {path} ({first_line(exc)}); delete it so that it is downloaded again"
        ) from exc
    if frame.crs is None:
        raise InputError(f"{path.name} has no CRS (.prj); delete it so that it is downloaded again")
    return frame


def _geoids(frame, level: str, name: str):
    """GEOIDs as text, from ``GEOID`` or assembled from the FIPS code columns."""
    parts = ["STATEFP", "COUNTYFP", "TRACTCE"] + (["BLKGRPCE"] if level == "blockgroup" else [])
    if "GEOID" in frame.columns:
        ids = frame["GEOID"].astype(str)
    elif set(parts) <= set(frame.columns):
        ids = frame[parts[0]].astype(str)
        for column in parts[1:]:
            ids = ids + frame[column].astype(str)
    else:
        raise InputError(f"{name} has no GEOID field; is it a TIGER/Line {level} file?")
    return ids.to_numpy()


def _outside_us(west: float, south: float, east: float, north: float) -> str:
    return (
        f"the study area ({west:.4f},{south:.4f},{east:.4f},{north:.4f}) is outside the US: "
        f"Census TIGER/Line covers the US only; pass your zones file as `zones`"
    )


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _check_bounds(bounds: Sequence[float]) -> tuple[float, float, float, float]:
    import math

    try:
        west, south, east, north = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise InputError(
            f"bounds must be 4 numbers (west, south, east, north), got {bounds!r}"
        ) from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise InputError("the study area's bounds are not finite; does it hold any capture?")
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise InputError(
            f"bounds ({west},{south},{east},{north}) are not west,south,east,north in degrees "
            f"(EPSG:4326)"
        )
    return west, south, east, north
