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

import io
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._dates import bounds
from .._errors import InputError, first_line
from ._exif import IMAGE_SUFFIXES, exif_tags, image_files
from ._manifest import IMAGE_COLUMNS, image_frame, read_manifest
from ._registry import pick
from .base import CaptureResult, Provider

if TYPE_CHECKING:
    from ..study import Study

__all__ = [
    "IMAGE_COLUMNS",
    "IMAGE_SUFFIXES",
    "FolderProvider",
    "attach_images",
    "points_from_images",
]

log = logging.getLogger(__name__)

_EARTH_RADIUS = 6_371_008.8  # mean radius (m): only to find candidates for the geodesic test
_FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif"}


class FolderProvider(Provider):
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
        Dates bounding the capture times, both periods included (a year, ``YYYY-MM``,
        ``YYYY-MM-DD`` or a time: :mod:`urbanvis._dates`); a time zone is dropped, as
        cameras write local times. Images of unknown time are kept.
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
                f"or a CSV/GeoPackage manifest with path,lon,lat",
                param="images",
            )
        self.source = self.source.resolve()
        try:
            self.radius = float(radius)
        except (TypeError, ValueError):
            self.radius = float("nan")
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise InputError(
                f"`radius` must be a positive number of metres, e.g. 25; got {radius!r}"
            )
        self.headings = _check_headings(headings)
        first, last = bounds(since, until, zones=False)  # camera times are local
        self.since: str | None = first.iso if first is not None else None
        self.until: str | None = last.iso if last is not None else None
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
            images = self._scan_folder() if folder else read_manifest(self.source)
            self._images = self._filtered(images)
        return self._images.copy()

    def _scan_folder(self) -> pd.DataFrame:
        files = image_files(self.source)
        if not files:
            raise InputError(
                f"{self.source} holds no jpg, jpeg, png or tif images; pass the folder that "
                f"holds them or a CSV manifest with path,lon,lat"
            )
        records = []
        for path in files:
            name = path.relative_to(self.source).as_posix()
            tags = exif_tags(path)
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
        return image_frame(pd.DataFrame.from_records(records))

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
    def check(self) -> None:
        """Read the images or the manifest now (cached), so a bad one is refused before
        the harvest locks or writes anything in the study."""
        self.scan()

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
                    f"`since`/`until`/`headings`; widen them or run 'urbanvis sample' first"
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
def create(**options: Any) -> FolderProvider:
    """The folder provider from its registry options (:mod:`urbanvis.providers._builtin`)."""
    source = options.get("images")
    if not source:
        raise InputError(
            "the folder provider needs `images` PATH: a folder of geotagged images or a "
            "CSV/GeoPackage manifest with path, lon, lat"
        )
    return FolderProvider(source, **pick(options, ("radius", "since", "until")))


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


# ----------------------------------------------------------------------- shared
def _check_headings(headings: Sequence[float] | None) -> tuple[float, ...] | None:
    if headings is None:
        return None
    try:
        values = tuple(float(h) for h in headings)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"`headings` must be degrees, e.g. 0,90,180,270; got {headings!r}"
        ) from exc
    if not values or not all(math.isfinite(h) for h in values):
        raise InputError(f"`headings` must be finite degrees, e.g. 0,90,180,270; got {headings!r}")
    return values


def _heading_kept(heading: np.ndarray, wanted: tuple[float, ...]) -> np.ndarray:
    centres = np.unique(np.mod(wanted, 360.0))
    gaps = np.diff(np.r_[centres, centres[0] + 360.0])
    tolerance = min(45.0, float(gaps.min()) / 2) if len(centres) > 1 else 45.0
    diff = np.abs((heading[:, None] - centres[None, :] + 180.0) % 360.0 - 180.0)
    return ~np.isfinite(heading) | (diff.min(axis=1) <= tolerance + 1e-9)
