"""The ``folder`` provider: your own geotagged images instead of a street-view service.

The source is either a folder of images (jpg, jpeg, png, tif; searched recursively, hidden
folders skipped) whose EXIF holds the GPS position, capture time and, optionally, the camera
heading; or a manifest that gives them: a CSV with columns ``path, lon, lat`` and optional
``heading, date``, or a GeoPackage (any file pyogrio reads) with Point geometry and a
``path`` column. Manifest paths are relative to the manifest's folder or absolute.

Each image is attached to the nearest study point within ``radius`` metres (geodesic, on
the WGS84 ellipsoid); images farther from every point are skipped. A point gets one capture
per attached image, stored byte for byte as the file is; a point with no image gets one
``missing`` row so that it is marked done. A study without points can be seeded from the
images with :func:`points_from_images`.

Camera headings are taken as given: EXIF ``GPSImgDirection`` may be relative to magnetic
north (``GPSImgDirectionRef = M``), and it is not corrected. Capture times are the camera's
local time; a time-zone suffix in a manifest date is dropped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._errors import InputError, first_line
from .base import CaptureResult

if TYPE_CHECKING:
    from ..study import Study

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
"""Files a source folder is searched for (case-insensitive)."""

IMAGE_COLUMNS = ["capture_id", "name", "path", "lon", "lat", "heading", "captured_at"]
"""Columns of :meth:`FolderProvider.scan`: ``name`` is the path relative to the source's
folder (absolute when outside it), ``path`` the absolute path, ``heading`` NaN when unknown,
``captured_at`` an ISO date-time or ""."""

_GPS_IFD, _EXIF_IFD = 0x8825, 0x8769
_LAT_REF, _LAT, _LON_REF, _LON, _DIRECTION = 1, 2, 3, 4, 17
_DATETIME_ORIGINAL, _DATETIME = 0x9003, 0x0132
_EARTH_RADIUS = 6_371_008.8  # mean radius (m): only to find candidates for the geodesic test
_MANIFEST_HELP = "a manifest needs columns path, lon, lat (optional heading, date)"
_FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif"}
_ISO = re.compile(
    r"(\d{4})(?:[-:](\d{1,2})(?:[-:](\d{1,2})"  # date
    r"(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?)?)?)?"  # time
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?"  # zone, dropped
)


class FolderProvider:
    """Captures from a folder of geotagged images or a manifest (see the module docstring).

    Parameters
    ----------
    source
        A folder of images with GPS EXIF, a CSV manifest (``path, lon, lat``, optional
        ``heading, date``) or a GeoPackage manifest (Point geometry, ``path``, optional
        ``heading, date``; any CRS, reprojected to EPSG:4326).
    radius
        An image is attached to the nearest point within this many metres.
    headings
        Absolute compass directions (degrees) to keep: an image whose heading is known and
        farther than 45 degrees (or half the smallest gap between the given headings) from
        all of them is skipped. Images of unknown heading are kept. None keeps all.
    since, until
        Years or ISO dates (inclusive) bounding the capture times; images of unknown time
        are kept.
    """

    name = "folder"

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        radius: float = 25.0,
        headings: Sequence[float] | None = None,
        since: int | str | None = None,
        until: int | str | None = None,
    ) -> None:
        self.source = Path(source).expanduser()
        if not self.source.exists():
            raise InputError(
                f"image source {self.source} does not exist; pass a folder of geotagged images "
                f"or a CSV/GeoPackage manifest with path,lon,lat"
            )
        self.source = self.source.resolve()
        try:
            self.radius = float(radius)
        except (TypeError, ValueError):
            self.radius = float("nan")
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise InputError(f"radius must be a positive number of metres, e.g. 25; got {radius!r}")
        self.headings = _check_headings(headings)
        self.since = _time_bound(since, "since")
        self.until = _time_bound(until, "until")
        common = min(len(self.since or ""), len(self.until or ""))
        if common and self.since[:common] > self.until[:common]:  # type: ignore[index]
            raise InputError(f"--since {since} is after --until {until}; give the earlier first")
        self.without_gps: list[str] = []
        """Images of a source folder that have no usable GPS position (after :meth:`scan`)."""
        self._images: pd.DataFrame | None = None
        self._attached: pd.DataFrame | None = None
        self._claimed: set[str] | None = None

    def parameters(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "radius": self.radius,
            "headings": list(self.headings) if self.headings is not None else None,
            "since": self.since,
            "until": self.until,
        }

    # ------------------------------------------------------------------ images
    def scan(self) -> pd.DataFrame:
        """The usable images (columns :data:`IMAGE_COLUMNS`), read once and cached.

        Images without a GPS position are listed in :attr:`without_gps` and logged; images
        outside ``since``/``until`` or ``headings`` are left out.
        """
        if self._images is None:
            folder = self.source.is_dir()
            images = self._scan_folder() if folder else _read_manifest(self.source)
            self._images = self._filtered(images)
        return self._images.copy()

    def _scan_folder(self) -> pd.DataFrame:
        files = _image_files(self.source)
        if not files:
            raise InputError(
                f"{self.source} holds no jpg, jpeg, png or tif images; pass the folder that "
                f"holds them or a CSV manifest with path,lon,lat"
            )
        records = []
        for path in files:
            name = path.relative_to(self.source).as_posix()
            tags = _exif_tags(path)
            if tags is None:
                self.without_gps.append(name)
                continue
            records.append({"name": name, "path": str(path), **tags})
        if not records:
            raise InputError(
                f"none of the {len(files):,} images in {self.source} has GPS EXIF; geotag them "
                f"or pass a CSV manifest with path,lon,lat"
            )
        if self.without_gps:
            log.warning(
                "%s of %s images have no GPS EXIF and are skipped (first: %s); geotag them or "
                "list them in a manifest with path,lon,lat",
                f"{len(self.without_gps):,}",
                f"{len(files):,}",
                self.without_gps[0],
            )
        return _image_frame(pd.DataFrame.from_records(records))

    def _filtered(self, images: pd.DataFrame) -> pd.DataFrame:
        times = images["captured_at"]
        keep = np.ones(len(images), dtype=bool)
        if self.since:
            keep &= [not t or t[: len(self.since)] >= self.since for t in times]
        if self.until:
            keep &= [not t or t[: len(self.until)] <= self.until for t in times]
        if self.headings is not None:
            keep &= _heading_kept(images["heading"].to_numpy(dtype=float), self.headings)
        if not keep.all():
            log.info(
                "kept %s of %s geotagged images (capture time and heading filters)",
                f"{int(keep.sum()):,}",
                f"{len(images):,}",
            )
        return images[keep].reset_index(drop=True)

    # ------------------------------------------------------------------ points
    def prepare(self, study: Study) -> None:
        """Give a study without points the images' positions, then attach every image.

        The engine calls this once before the batches. A study with no (or an empty)
        ``points`` layer gets one from :func:`points_from_images`. Each image is then
        attached to the nearest of *all* the study's points, so that it goes to the same
        point whichever batch or run that point falls in. Without this call, each batch's
        images are chosen among that batch's points only.
        """
        images = self.scan()
        points = (
            study.read_layer("points", columns=["point_id"]) if study.has_layer("points") else None
        )
        if points is None or len(points) == 0:
            if len(images) == 0:
                raise InputError(
                    f"study {study.root} has no points and no image of {self.source} passes "
                    f"--since/--until/--headings; widen them or run 'urbanvis sample' first"
                )
            points = points_from_images(images)
            study.write_layer("points", points)
        self._attached = attach_images(images, points, radius=self.radius)

    def capture_points(self, points: pd.DataFrame) -> list[CaptureResult]:
        """One capture per image attached to each point; a ``missing`` row for the others."""
        if self._attached is not None:
            attached = self._attached[self._attached["point_id"].isin(points["point_id"])]
        else:
            if self._claimed is None:
                self._claimed = set()
            images = self.scan()
            free = images[~images["capture_id"].isin(self._claimed)]
            attached = _attach(free, points, self.radius)
            self._claimed.update(attached["capture_id"])
        by_point = {pid: group for pid, group in attached.groupby("point_id", sort=False)}
        results: list[CaptureResult] = []
        for point in points.itertuples(index=False):
            pid = int(point.point_id)
            group = by_point.get(pid)
            if group is None:
                results.append(_missing(pid, float(point.lon), float(point.lat)))
                continue
            for image in group.itertuples(index=False):
                results.append(_capture(pid, image))
        return results

    def close(self) -> None:
        """Log how many images no harvested point claimed (when :meth:`prepare` was not used)."""
        if self._claimed is not None and self._images is not None:
            left = len(self._images) - len(self._claimed)
            if left:
                log.info(
                    "%s images were farther than %g m from every harvested point and skipped",
                    f"{left:,}",
                    self.radius,
                )
            self._claimed = None


# -------------------------------------------------------------------- functions
def points_from_images(images: pd.DataFrame, *, merge_distance: float = 1.0):
    """Study points at the images' positions, for a study that has none yet.

    Images closer than ``merge_distance`` metres to an earlier image's point (in row order)
    share that point, so that several views taken from one spot become one point.

    Parameters
    ----------
    images
        Rows with ``lon`` and ``lat`` (degrees), e.g. :meth:`FolderProvider.scan`.
    merge_distance
        Metres within which images share a point; 0 gives one point per image.

    Returns
    -------
    geopandas.GeoDataFrame
        The ``points`` layer's columns: ``point_id``, ``bearing`` (NaN: no road),
        ``edge_id`` and ``osmid`` (-1), ``highway`` (""), ``source`` ("folder") and Point
        geometry in EPSG:4326.
    """
    import geopandas as gpd
    from scipy.spatial import cKDTree

    lon = images["lon"].to_numpy(dtype=float)
    lat = images["lat"].to_numpy(dtype=float)
    seeds: list[int] = []
    if len(lon):
        xyz = _xyz(lon, lat)
        tree = cKDTree(xyz)
        taken = np.zeros(len(lon), dtype=bool)
        reach = _chord(max(float(merge_distance), 0.0))
        for i in range(len(lon)):
            if taken[i]:
                continue
            seeds.append(i)
            taken[tree.query_ball_point(xyz[i], r=reach)] = True
    n = len(seeds)
    points = gpd.GeoDataFrame(
        {
            "point_id": np.arange(n, dtype=np.int64),
            "bearing": np.full(n, np.nan),
            "edge_id": np.full(n, -1, dtype=np.int64),
            "osmid": np.full(n, -1, dtype=np.int64),
            "highway": np.full(n, "", dtype=object),
            "source": np.full(n, "folder", dtype=object),
        },
        geometry=gpd.points_from_xy(lon[seeds], lat[seeds]),
        crs="EPSG:4326",
    )
    log.info("placed %s points at the positions of %s images", f"{n:,}", f"{len(lon):,}")
    return points


def attach_images(images: pd.DataFrame, points: pd.DataFrame, *, radius: float = 25.0):
    """Each image with the nearest point within ``radius`` metres; farther images dropped.

    Parameters
    ----------
    images
        Rows with ``lon`` and ``lat`` (degrees), e.g. :meth:`FolderProvider.scan`.
    points
        ``point_id`` with ``lon``/``lat`` columns or Point geometry (any CRS).
    radius
        Greatest geodesic distance, in metres, between an image and its point.

    Returns
    -------
    pandas.DataFrame
        The attached images' rows with ``point_id`` and ``distance_m`` added.
    """
    attached = _attach(images, points, radius)
    log.info(
        "attached %s of %s images to %s points; %s farther than %g m from every point skipped",
        f"{len(attached):,}",
        f"{len(images):,}",
        f"{attached['point_id'].nunique():,}",
        f"{len(images) - len(attached):,}",
        radius,
    )
    return attached


def _attach(images: pd.DataFrame, points: pd.DataFrame, radius: float) -> pd.DataFrame:
    from pyproj import Geod
    from scipy.spatial import cKDTree

    point_id, plon, plat = _point_lonlat(points)
    ilon = images["lon"].to_numpy(dtype=float)
    ilat = images["lat"].to_numpy(dtype=float)
    out = images.iloc[:0].assign(point_id=pd.Series(dtype="int64"), distance_m=0.0)
    good = np.isfinite(plon) & np.isfinite(plat)
    point_id, plon, plat = point_id[good], plon[good], plat[good]
    if len(images) == 0 or len(point_id) == 0:
        return out
    # candidates on a sphere with a margin, then the exact ellipsoidal distance
    tree = cKDTree(_xyz(plon, plat))
    near = tree.query_ball_point(_xyz(ilon, ilat), r=_chord(radius * 1.01 + 1.0))
    counts = np.fromiter((len(c) for c in near), dtype=np.int64, count=len(near))
    if counts.sum() == 0:
        return out
    img = np.repeat(np.arange(len(images)), counts)
    pt = np.concatenate([np.asarray(c, dtype=np.int64) for c in near if c])
    _, _, dist = Geod(ellps="WGS84").inv(ilon[img], ilat[img], plon[pt], plat[pt])
    within = dist <= radius
    img, pt, dist = img[within], pt[within], dist[within]
    order = np.lexsort((point_id[pt], dist, img))  # nearest first; ties: lowest point_id
    img, pt, dist = img[order], pt[order], dist[order]
    first = np.flatnonzero(np.r_[True, img[1:] != img[:-1]]) if len(img) else img
    out = images.iloc[img[first]].reset_index(drop=True)
    out["point_id"] = point_id[pt[first]].astype(np.int64)
    out["distance_m"] = dist[first]
    return out


def _point_lonlat(points: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pid = points["point_id"].to_numpy(dtype=np.int64)
    if "lon" in points.columns and "lat" in points.columns:
        return pid, points["lon"].to_numpy(dtype=float), points["lat"].to_numpy(dtype=float)
    geometry = getattr(points, "geometry", None)
    if geometry is None:
        raise InputError("points need lon/lat columns or a Point geometry")
    if geometry.crs is not None and not geometry.crs.equals("EPSG:4326"):
        geometry = geometry.to_crs("EPSG:4326")
    return pid, geometry.x.to_numpy(dtype=float), geometry.y.to_numpy(dtype=float)


def _xyz(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lam, phi = np.radians(lon), np.radians(lat)
    return _EARTH_RADIUS * np.column_stack(
        (np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi))
    )


def _chord(metres: float) -> float:
    return 2 * _EARTH_RADIUS * math.sin(min(metres / (2 * _EARTH_RADIUS), math.pi / 2))


# ------------------------------------------------------------------- captures
def _capture(point_id: int, image) -> CaptureResult:
    path = Path(image.path)
    row = {
        "capture_id": image.capture_id,
        "point_id": point_id,
        "pano_id": "",
        "heading": float(image.heading),
        "pitch": 0.0,
        "fov": float("nan"),
        "captured_at": image.captured_at,
        "width": 0,
        "height": 0,
        "status": "failed",
        "error": "",
        "lon": float(image.lon),
        "lat": float(image.lat),
    }
    from PIL import Image

    try:
        data = path.read_bytes()
    except OSError as exc:
        row["error"] = f"could not read {image.name}: {exc.strerror or type(exc).__name__}"
        return CaptureResult(row=row)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decode it all: a truncated or corrupt file fails here
            width, height, fmt = im.width, im.height, im.format
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        row["error"] = f"{image.name} does not decode: {first_line(exc)}"[:200]
        return CaptureResult(row=row)
    row.update(width=width, height=height, status="ok")
    suffix = path.suffix.lower() or _FORMAT_SUFFIX.get(fmt or "", ".img")
    return CaptureResult(row=row, image=data, suffix=suffix)


def _missing(point_id: int, lon: float, lat: float) -> CaptureResult:
    return CaptureResult(
        row={
            "capture_id": f"folder-missing-{point_id}",
            "point_id": point_id,
            "pano_id": "",
            "heading": float("nan"),
            "pitch": 0.0,
            "fov": float("nan"),
            "captured_at": "",
            "width": 0,
            "height": 0,
            "status": "missing",
            "error": "",
            "lon": lon,
            "lat": lat,
        }
    )


# ----------------------------------------------------------------------- EXIF
def _image_files(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            Path(root, f)
            for f in files
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)
        ]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _exif_tags(path: Path) -> dict[str, Any] | None:
    """lon, lat, heading and captured_at from an image's EXIF; None without a GPS fix."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow warns about malformed EXIF; it is just absent
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                exif = im.getexif()
                gps = dict(exif.get_ifd(_GPS_IFD))
                stamp = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    lat = _signed(_degrees(gps.get(_LAT)), gps.get(_LAT_REF), "S")
    lon = _signed(_degrees(gps.get(_LON)), gps.get(_LON_REF), "W")
    if not (math.isfinite(lat) and math.isfinite(lon)) or abs(lat) > 90 or abs(lon) > 180:
        return None
    if lat == 0 and lon == 0:  # what cameras write without a fix
        return None
    heading = _degrees(gps.get(_DIRECTION))
    return {
        "lon": lon,
        "lat": lat,
        "heading": heading % 360.0 if math.isfinite(heading) else float("nan"),
        "captured_at": _iso_time(_text(stamp)) or "",
    }


def _degrees(value: Any) -> float:
    """Degrees from an EXIF rational, a number, or (degrees, minutes, seconds)."""
    if value is None:
        return float("nan")
    try:
        if isinstance(value, tuple | list):
            parts = [float(v) for v in value][:3]
            return sum(p / 60.0**k for k, p in enumerate(parts)) if parts else float("nan")
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return float("nan")


def _signed(value: float, ref: Any, negative: str) -> float:
    return -abs(value) if _text(ref).upper() == negative else value


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    return str(value).strip("\x00 ").strip() if value is not None else ""


def _iso_time(text: str) -> str | None:
    """An ISO date-time at the precision given ("2021", "2021-06-03T10:15"...), or None.

    Also reads EXIF's "2021:06:03 10:15:00". "" for empty text; None when not a date.
    """
    text = text.strip()
    if not text:
        return ""
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    parts = [int(p) for p in match.groups() if p is not None]
    year, month, day, hour, minute, second = parts + [1, 1, 0, 0, 0][len(parts) - 1 :]
    try:
        datetime(year, month, day, hour, minute, second)  # a real calendar date and time
    except ValueError:
        return None
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    return text[: {1: 4, 2: 7, 3: 10, 5: 16, 6: 19}[len(parts)]]


# ------------------------------------------------------------------- manifests
def _read_manifest(path: Path) -> pd.DataFrame:
    """The images a CSV or GeoPackage manifest lists, checked (see the module docstring)."""
    frame = _manifest_table(path)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    geometry = getattr(frame, "geometry", None) if "geometry" in frame.columns else None
    need = ["path"] if geometry is not None else ["path", "lon", "lat"]
    lacking = [c for c in need if c not in frame.columns]
    if lacking:
        what = "Point geometry and a path column" if geometry is not None else "path, lon, lat"
        raise InputError(
            f"manifest {path.name} lacks column {', '.join(lacking)}; it needs {what} "
            f"(optional heading, date)"
        )
    if len(frame) == 0:
        raise InputError(f"manifest {path.name} lists no images; {_MANIFEST_HELP}")
    names = frame["path"].fillna("").astype(str).str.strip().tolist()
    where = [f"manifest {path.name} row {i + 1} (path {n!r})" for i, n in enumerate(names)]
    if geometry is not None:
        lon, lat = _geometry_lonlat(frame, path, where)
    else:
        lon = _numbers(frame["lon"], "lon", where)
        lat = _numbers(frame["lat"], "lat", where)
    for values, label, limit in ((lat, "lat", 90), (lon, "lon", 180)):
        bad = np.flatnonzero(np.abs(values) > limit)
        if len(bad):
            i = int(bad[0])
            raise InputError(
                f"{where[i]}: {label} {values[i]:g} is outside -{limit}..{limit}; give lon, lat "
                f"in degrees (WGS84) in that row"
            )
    heading = (
        _numbers(frame["heading"], "heading", where, empty_ok=True) % 360.0
        if "heading" in frame.columns
        else np.full(len(frame), np.nan)
    )
    dates = _manifest_dates(frame["date"], where) if "date" in frame.columns else [""] * len(frame)
    files, labels = _manifest_files(path, names)
    images = pd.DataFrame(
        {
            "name": labels,
            "path": [str(f) for f in files],
            "lon": lon,
            "lat": lat,
            "heading": heading,
            "captured_at": dates,
        }
    )
    return _image_frame(images)


def _manifest_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        try:
            return pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                sep="\t" if path.suffix.lower() == ".tsv" else ",",
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(
                f"could not read manifest {path.name} as CSV ({first_line(exc)}); {_MANIFEST_HELP}"
            ) from exc
    import pyogrio

    try:
        return pyogrio.read_dataframe(path)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise InputError(
            f"could not read {path.name} as a manifest ({first_line(exc)}); pass a folder of "
            f"images, a CSV with path,lon,lat or a GeoPackage with Point geometry and path"
        ) from exc


def _geometry_lonlat(frame, path: Path, where: list[str]) -> tuple[np.ndarray, np.ndarray]:
    import shapely

    if frame.crs is None:
        raise InputError(f"manifest {path.name} has no CRS; set one (e.g. EPSG:4326) in the file")
    geoms = frame.geometry.to_crs("EPSG:4326").array
    kinds = shapely.get_type_id(geoms)
    bad = np.flatnonzero((kinds != 0) | shapely.is_empty(geoms))
    if len(bad):
        i = int(bad[0])
        kind = "no geometry" if geoms[i] is None else f"an empty {geoms[i].geom_type}"
        if kinds[i] > 0:
            kind = f"a {geoms[i].geom_type}"
        raise InputError(f"{where[i]} has {kind}, not a Point; give each image a point position")
    lon, lat = shapely.get_x(geoms), shapely.get_y(geoms)
    bad = np.flatnonzero(~(np.isfinite(lon) & np.isfinite(lat)))
    if len(bad):
        raise InputError(
            f"{where[int(bad[0])]}: the point does not convert to lon/lat; check the file's CRS"
        )
    return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)


def _numbers(column: pd.Series, label: str, where: list[str], *, empty_ok=False) -> np.ndarray:
    text = column.astype(object).where(column.notna(), "").astype(str).str.strip()
    values = pd.to_numeric(text.where(text != "", "nan"), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) & ~((text == "").to_numpy() & empty_ok)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        shown = "empty" if not text.iloc[i] else f"{text.iloc[i]!r}, not a finite number"
        raise InputError(f"{where[i]}: {label} is {shown}; fix that row")
    return values


def _manifest_dates(column: pd.Series, where: list[str]) -> list[str]:
    if pd.api.types.is_datetime64_any_dtype(column):
        return [
            ""
            if pd.isna(t)
            else t.strftime("%Y-%m-%d" if t == t.normalize() else "%Y-%m-%dT%H:%M:%S")
            for t in column
        ]
    out = []
    for i, value in enumerate(column):
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
        iso = _iso_time(str(text))
        if iso is None:
            raise InputError(
                f"{where[i]}: date {text!r} is not a year or ISO date (e.g. 2021-06 or "
                f"2021-06-03T10:15); fix it or leave it empty"
            )
        out.append(iso)
    return out


def _manifest_files(manifest: Path, names: list[str]) -> tuple[list[Path], list[str]]:
    folder = manifest.parent
    files, labels, absent = [], [], []
    for i, name in enumerate(names):
        file = (folder / Path(name).expanduser()).resolve() if name else folder / "<empty>"
        if not name or not file.is_file():
            absent.append((i, name))
        files.append(file)
        labels.append(
            file.relative_to(folder).as_posix() if file.is_relative_to(folder) else str(file)
        )
    if absent:
        i, name = absent[0]
        raise InputError(
            f"{len(absent):,} of the {len(names):,} paths in manifest {manifest.name} do not exist "
            f"(first: {name!r}, row {i + 1}); paths are relative to {folder} or absolute"
        )
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        if label in seen:
            raise InputError(
                f"manifest {manifest.name} lists {label} twice (rows {seen[label] + 1} and "
                f"{i + 1}); keep one row per image"
            )
        seen[label] = i
    return files, labels


# ----------------------------------------------------------------------- shared
def _image_frame(images: pd.DataFrame) -> pd.DataFrame:
    images = images.sort_values("name", kind="stable").reset_index(drop=True)
    images["capture_id"] = [
        "folder-" + hashlib.sha1(n.encode("utf-8")).hexdigest()[:16] for n in images["name"]
    ]
    images["heading"] = images["heading"].astype(float)
    return images[IMAGE_COLUMNS]


def _check_headings(headings: Sequence[float] | None) -> tuple[float, ...] | None:
    if headings is None:
        return None
    try:
        values = tuple(float(h) for h in headings)
    except (TypeError, ValueError) as exc:
        raise InputError(f"headings must be degrees, e.g. 0,90,180,270; got {headings!r}") from exc
    if not values or not all(math.isfinite(h) for h in values):
        raise InputError(f"headings must be finite degrees, e.g. 0,90,180,270; got {headings!r}")
    return values


def _heading_kept(heading: np.ndarray, wanted: tuple[float, ...]) -> np.ndarray:
    centres = np.unique(np.mod(wanted, 360.0))
    gaps = np.diff(np.r_[centres, centres[0] + 360.0])
    tolerance = min(45.0, float(gaps.min()) / 2) if len(centres) > 1 else 45.0
    diff = np.abs((heading[:, None] - centres[None, :] + 180.0) % 360.0 - 180.0)
    return ~np.isfinite(heading) | (diff.min(axis=1) <= tolerance + 1e-9)


def _time_bound(value: int | str | None, label: str) -> str | None:
    if value is None or value == "":
        return None
    text = f"{value:04d}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    iso = _iso_time(text)
    if not iso:
        raise InputError(
            f"--{label} {value!r} is not a year or ISO date; use e.g. 2019 or 2019-06-01"
        )
    return iso
