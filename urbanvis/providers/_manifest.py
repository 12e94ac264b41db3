"""Image tables of the ``folder`` provider (:mod:`.folder`), and reading them from a manifest.

A manifest is a CSV with columns ``path, lon, lat`` and optional ``heading, date``, or a
GeoPackage (any file pyogrio reads) with Point geometry and a ``path`` column. Manifest paths
are relative to the manifest's folder or absolute. A time-zone suffix in a date is dropped.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .._errors import InputError, first_line
from ._exif import iso_time

IMAGE_COLUMNS = ["capture_id", "name", "path", "lon", "lat", "heading", "captured_at"]
"""Columns of :meth:`FolderProvider.scan <urbanvis.providers.folder.FolderProvider.scan>`:
``name`` is the path relative to the source's folder (absolute when outside it), ``path`` the
absolute path, ``heading`` NaN when unknown, ``captured_at`` an ISO date-time or ""."""

_MANIFEST_HELP = "a manifest needs columns path, lon, lat (optional heading, date)"


def read_manifest(path: Path) -> pd.DataFrame:
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
    return image_frame(images)


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
        iso = iso_time(str(text))
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


def image_frame(images: pd.DataFrame) -> pd.DataFrame:
    images = images.sort_values("name", kind="stable").reset_index(drop=True)
    images["capture_id"] = [
        "folder-" + hashlib.sha1(n.encode("utf-8")).hexdigest()[:16] for n in images["name"]
    ]
    images["heading"] = images["heading"].astype(float)
    return images[IMAGE_COLUMNS]
