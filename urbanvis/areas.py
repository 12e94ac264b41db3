"""Study areas: a polygon in EPSG:4326 from a bbox, a polygon file or a place name."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import geopandas as gpd
import shapely

from ._errors import (
    CRSError,
    InputError,
    InputFileError,
    PlaceNotFoundError,
    first_line,
)

log = logging.getLogger(__name__)

WGS84 = "EPSG:4326"


def area_from_bbox(bbox: Sequence[float] | str) -> gpd.GeoDataFrame:
    """An area from a bounding box ``(west, south, east, north)`` in degrees.

    ``bbox`` may also be the string ``"W,S,E,N"`` as typed on the command line.
    """
    if isinstance(bbox, str):
        try:
            values = [float(v) for v in bbox.replace(" ", "").split(",")]
        except ValueError:
            raise InputError(
                f"bbox {bbox!r} is not four numbers; write it as W,S,E,N in degrees, "
                f"e.g. 24.93,60.16,24.96,60.18"
            ) from None
    else:
        values = [float(v) for v in bbox]
    if len(values) != 4:
        raise InputError(f"bbox needs four numbers W,S,E,N, got {len(values)}")
    west, south, east, north = values
    if not west < east:
        raise InputError(f"bbox west ({west}) must be less than east ({east}); write it as W,S,E,N")
    if not south < north:
        raise InputError(
            f"bbox south ({south}) must be less than north ({north}); write it as W,S,E,N"
        )
    if not (
        -180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= 90 and -90 <= north <= 90
    ):
        raise InputError(
            f"bbox {values} is outside longitude -180..180 / latitude -90..90; "
            f"give it in degrees (EPSG:4326) as W,S,E,N"
        )
    return gpd.GeoDataFrame(
        {"name": ["bbox"]}, geometry=[shapely.box(west, south, east, north)], crs=WGS84
    )


def area_from_file(path: str | os.PathLike[str], *, layer: str | None = None) -> gpd.GeoDataFrame:
    """An area from any polygon file GDAL reads (GeoPackage, shapefile, GeoJSON...).

    All polygons are dissolved into one (Multi)Polygon, reprojected to EPSG:4326.
    """
    import pyogrio

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"area file {path} does not exist; check the path given as `area`")
    try:
        frame = pyogrio.read_dataframe(path, layer=layer)
    except Exception as exc:  # pyogrio raises DataSourceError/DataLayerError
        raise InputFileError(f"cannot read area file {path}: {first_line(exc)}") from exc
    if not hasattr(frame, "geometry") or len(frame) == 0:
        raise InputError(f"area file {path} has no features; give a file with polygons")
    polys = frame[frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if len(polys) == 0:
        kinds = ", ".join(sorted(frame.geometry.geom_type.dropna().unique())) or "no geometry"
        raise InputError(
            f"area file {path} has no polygons (it has {kinds}); give a polygon layer, "
            f"or use `bbox` W,S,E,N"
        )
    if polys.crs is None:
        raise CRSError(
            f"area file {path} has no CRS; add one (e.g. a .prj file, or "
            f"ogr2ogr -a_srs EPSG:4326 fixed.gpkg {path.name})"
        )
    check_valid_polygons(polys.geometry, f"area file {path}")
    projected = polys.to_crs(WGS84)
    check_lonlat_range(projected, f"area file {path}", polys.crs)
    area = projected.union_all()
    return gpd.GeoDataFrame({"name": [path.stem]}, geometry=[area], crs=WGS84)


def check_valid_polygons(geometry: gpd.GeoSeries, what: str) -> None:
    """Refuse polygons GEOS cannot work with (self-intersections, bow ties...), naming the fix.

    They are not repaired silently: ``make_valid`` turns a bow tie into two triangles, an
    area the user did not draw.
    """
    valid = shapely.is_valid(geometry.values)
    if valid.all():
        return
    bad = int((~valid).sum())
    reason = shapely.is_valid_reason(geometry.values[~valid][0])
    found = re.match(r"(.*?)\[(\S+) (\S+)\]$", reason)
    where = f"{found.group(1).lower()} at {found.group(2)} {found.group(3)}" if found else reason
    raise InputError(
        f"{what} has {bad:,} invalid polygon{'s' if bad > 1 else ''} ({where}); repair "
        f"{'them' if bad > 1 else 'it'} (QGIS: Fix geometries; shapely: make_valid) and try again"
    )


def check_lonlat_range(frame: gpd.GeoDataFrame, what: str, crs) -> None:
    """Refuse coordinates outside longitude/latitude after reprojection to EPSG:4326.

    They come from a file whose CRS label is wrong: metres (a UTM or national grid) labelled
    EPSG:4326, say. Reprojecting them gives nonsense, so say so before anything else does.
    """
    if len(frame) == 0:
        return
    west, south, east, north = (float(v) for v in frame.total_bounds)
    if -180 <= west <= east <= 180 and -90 <= south <= north <= 90:
        return
    label = crs.to_string() if crs is not None else "no CRS"
    raise CRSError(
        f"{what} is labelled {label} but its coordinates ({west:.6g}, {south:.6g} .. "
        f"{east:.6g}, {north:.6g}) are not longitudes and latitudes: its CRS label is wrong; "
        f"set the right one (QGIS: Assign projection; ogr2ogr -a_srs EPSG:XXXX)"
    )


@contextlib.contextmanager
def osm_endpoints(
    *, nominatim_url: str | None = None, overpass_url: str | None = None, timeout: float = 60
) -> Iterator[None]:
    """Temporarily point osmnx at other Nominatim/Overpass servers (mirrors, test servers)."""
    import osmnx as ox

    saved = {
        k: getattr(ox.settings, k)
        for k in (
            "nominatim_url",
            "overpass_url",
            "requests_timeout",
            "doh_url_template",
            "use_cache",
            "overpass_rate_limit",
        )
    }
    try:
        if nominatim_url:
            ox.settings.nominatim_url = nominatim_url.rstrip("/") + "/"
        if overpass_url:
            ox.settings.overpass_url = overpass_url.rstrip("/")
            ox.settings.overpass_rate_limit = False
        ox.settings.requests_timeout = timeout
        ox.settings.doh_url_template = None  # never send host names to a third-party resolver
        ox.settings.use_cache = False  # osmnx would write ./cache in the user's folder
        yield
    finally:
        for k, v in saved.items():
            setattr(ox.settings, k, v)


def area_from_place(
    name: str, *, nominatim_url: str | None = None, timeout: float = 60
) -> gpd.GeoDataFrame:
    """An area from a place name, geocoded to its boundary polygon by Nominatim (online)."""
    import osmnx as ox

    from ._http import osmnx_errors

    if not name or not name.strip():
        raise InputError("the city name is empty; give a place such as 'Helsinki, Finland'")
    try:
        with (
            osmnx_errors(
                unreachable=f"cannot reach the geocoder to look up {name!r} (offline?); "
                f"download an OSM extract and pass it as `osm` (with `bbox` or `area` to clip it)",
                failed=f"the geocoder failed looking up {name!r} ({{reason}}); try again later "
                f"or pass an OSM extract as `osm`",
            ),
            osm_endpoints(nominatim_url=nominatim_url, timeout=timeout),
        ):
            frame = ox.geocode_to_gdf(name)
    except ox._errors.InsufficientResponseError as exc:
        raise PlaceNotFoundError(
            f"no place called {name!r} was found; check the spelling, add the country "
            f"('Springfield, Illinois, USA'), or pass `area` or `bbox`"
        ) from exc
    except TypeError as exc:  # a result that is a point or line, not an area
        raise PlaceNotFoundError(
            f"{name!r} geocodes to a point or line, not an area; name a city or district, "
            f"or pass `area` or `bbox`"
        ) from exc
    frame = frame.to_crs(WGS84)
    return gpd.GeoDataFrame({"name": [name]}, geometry=[frame.union_all()], crs=WGS84)
