"""US zones and labels from the Census Bureau: TIGER/Line polygons and ACS indicators (online).

:func:`tiger_zones` returns the block groups or tracts that intersect a study area, read from
the TIGER/Line shapefiles (one zip per state, plus the national state-boundary file that
says which states the area touches). :func:`acs_indicators` returns American Community
Survey estimates for a list of GEOIDs from the Census Data API, one query per county.

Both cache what they download and reuse it without any request:

- TIGER zips under ``<cache>/tiger/`` in the server's own layout
  (``TIGER2023/BG/tl_2023_06_bg.zip``), so a zip downloaded by hand can be dropped in;
- ACS answers under ``<cache>/acs/``, one JSON file per query, named from a hash of the
  query URL without the API key.

``<cache>`` is ``$URBANVIS_CACHE`` or ``~/.cache/urbanvis``. ``URBANVIS_TIGER_URL`` and
``URBANVIS_CENSUS_URL`` (or ``base_url=``) point at a mirror. The Census API key
(``api_key=`` or ``CENSUS_API_KEY``; optional for light use) is sent to the server only:
it is kept out of cache files, log messages and error messages.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlencode, urlsplit

from ._errors import InputError, OfflineError, first_line
from ._files import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    import pandas as pd

log = logging.getLogger(__name__)

TIGER_URL = "https://www2.census.gov/geo/tiger"
CENSUS_URL = "https://api.census.gov/data"
TIGER_URL_ENV = "URBANVIS_TIGER_URL"
CENSUS_URL_ENV = "URBANVIS_CENSUS_URL"
CACHE_ENV = "URBANVIS_CACHE"
KEY_ENV = "CENSUS_API_KEY"
LEVELS: tuple[str, ...] = ("blockgroup", "tract")
GEOID_DIGITS = {"blockgroup": 12, "tract": 11}
"""Digits of a GEOID: state (2) + county (3) + tract (6) [+ block group (1)]."""

ACS_ALIASES: dict[str, str] = {
    "median_income": "B19013_001E",  # median household income, past 12 months (dollars)
    "poverty": "B17021_002E",  # people whose income is below the poverty level
    "population": "B01003_001E",  # total population
    "median_age": "B01002_001E",  # median age (years)
    "median_rent": "B25064_001E",  # median gross rent (dollars)
    "median_home_value": "B25077_001E",  # median value of owner-occupied homes (dollars)
}
"""Friendly names for a few ACS 5-year variables (block-group level); raw names always work."""

JAM_VALUES = frozenset(
    {-999999999.0, -888888888.0, -666666666.0, -555555555.0, -333333333.0, -222222222.0}
)
"""The API's annotation sentinels ("too few samples", "not applicable"...): read as NaN."""

MAX_VARIABLES = 49  # the API takes 50 names per query; NAME is one of them
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_ATTEMPTS = 3
_TIMEOUT = 60.0
_RESERVED = frozenset(
    {"name", "geo_id", "state", "county", "tract", "block group", "for", "in", "key", "ucgid"}
)
_VARIABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
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


class CensusServiceError(OfflineError, InputError):
    """A Census Bureau server could not be reached or gave an unusable answer.

    Both an :class:`~urbanvis._errors.OfflineError` (a service is down or unreachable) and
    an :class:`~urbanvis._errors.InputError` (pass local files or a mirror instead).
    """


class _Status(Exception):
    """An HTTP answer other than 200, with its (already redacted) body text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


# ------------------------------------------------------------------------- TIGER/Line
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
    year = _check_year(year, "--tiger-year")
    if not any(_overlaps((west, south, east, north), box) for box in _US_BOXES):
        raise InputError(_outside_us(west, south, east, north))
    base = _base_url(base_url, TIGER_URL_ENV, TIGER_URL, "--tiger-url")
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
            f"{east:.4f},{north:.4f}); pass zones with --zones FILE"
        )
    log.info(
        "%d %s from TIGER/Line %d (state%s %s)",
        len(zones), noun, year, "s" if len(fips) > 1 else "", ", ".join(fips),
    )  # fmt: skip
    return zones


def cache_root() -> Path:
    """urbanvis's download cache: ``$URBANVIS_CACHE`` or ``~/.cache/urbanvis``."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/urbanvis").expanduser()


def _tiger_zip(relative: str, *, base: str, cache: Path) -> Path:
    """A TIGER/Line zip from the cache, downloading it first when it is not there."""
    import io
    import zipfile

    path = cache / relative
    if path.is_file():
        log.debug("using cached %s", path)
        return path
    url = f"{base}/{relative}"
    host = _host(url)
    log.info("downloading %s from %s", path.name, host)
    try:
        data = _get(url)
    except _Status as exc:
        what = "has no" if exc.code == 404 else f"answered HTTP {exc.code} for"
        raise CensusServiceError(
            f"the TIGER/Line server at {host} {what} {relative}; check --tiger-year, pass "
            f"--zones FILE, or point {TIGER_URL_ENV} (--tiger-url) at a mirror"
        ) from None
    except _Unreachable as exc:
        raise CensusServiceError(
            f"cannot reach the TIGER/Line server at {host} ({exc}); pass --zones FILE, or "
            f"point {TIGER_URL_ENV} (--tiger-url) at a mirror"
        ) from None
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CensusServiceError(
            f"{host} sent something that is not a zip for {relative} (an error page?); "
            f"check {TIGER_URL_ENV} (--tiger-url) or pass --zones FILE"
        )
    _make_folder(path.parent)
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
        f"Census TIGER/Line covers the US only; pass your zones with --zones FILE"
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


# ------------------------------------------------------------------------------- ACS
def acs_variable(name: str) -> str:
    """The ACS variable behind a name: an alias from :data:`ACS_ALIASES`, or the name itself."""
    name = name.strip()
    if name.lower() in ACS_ALIASES:
        return ACS_ALIASES[name.lower()]
    if name.lower() in _RESERVED:
        raise InputError(
            f"{name!r} is a geography or query word of the Census API, not an ACS variable; "
            f"ask for a variable such as B19013_001E"
        )
    name = name.upper()  # the API's names are upper case
    if not _VARIABLE.match(name):
        raise InputError(
            f"{name!r} is not an ACS variable name (e.g. B19013_001E) nor an alias "
            f"({', '.join(ACS_ALIASES)})"
        )
    return name


def acs_indicators(
    geoids: Iterable[str],
    variables: Sequence[str],
    *,
    level: Literal["blockgroup", "tract"],
    year: int = 2022,
    dataset: str = "acs/acs5",
    base_url: str | None = None,
    api_key: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """ACS estimates for block groups or tracts from the Census Data API, one query per county.

    Parameters
    ----------
    geoids
        12-digit block-group or 11-digit tract GEOIDs (as in TIGER/Line).
    variables
        ACS variable names (``B19013_001E``) or aliases from :data:`ACS_ALIASES`
        (``median_income``); each becomes a column of that name.
    level
        ``blockgroup`` or ``tract``: what the GEOIDs are.
    year
        ACS vintage: the 5-year estimates ending that year (2022: 2018-2022).
    dataset
        API dataset path; ``acs/acs5`` is the only one with block groups.
    base_url
        Replaces ``https://api.census.gov/data`` (default: ``$URBANVIS_CENSUS_URL`` when
        set).
    api_key
        Census API key (default: ``$CENSUS_API_KEY``; without one the API allows a few
        hundred queries a day). Sent to the server only, never written or logged.
    cache_dir
        Where answers are kept (default ``$URBANVIS_CACHE/acs`` or ``~/.cache/urbanvis/acs``);
        a query answered before is not sent again.

    Returns
    -------
    pandas.DataFrame
        ``GEOID`` (str) and one float column per variable, one row per requested GEOID the
        API knows, in the order given; jam values (the API's negative sentinels for "no
        estimate") are NaN.

    Raises
    ------
    InputError
        GEOIDs of the wrong shape, an unknown variable or year.
    CensusServiceError
        The API cannot be reached or gives no usable answer.
    """
    import pandas as pd

    if level not in LEVELS:
        raise InputError(f"unknown Census level {level!r}; choose one of {', '.join(LEVELS)}")
    year = _check_year(year, "--acs-year")
    names = list(dict.fromkeys(str(v).strip() for v in variables if str(v).strip()))
    if not names:
        raise InputError("no ACS variable given; name one, e.g. acs:B19013_001E")
    codes = {name: acs_variable(name) for name in names}
    ids = _check_geoids(geoids, level)
    if not _VARIABLE.match(dataset.replace("/", "_")):
        raise InputError(f"{dataset!r} is not a Census API dataset path (e.g. acs/acs5)")
    base = _base_url(base_url, CENSUS_URL_ENV, CENSUS_URL, "--census-url")
    key = api_key if api_key is not None else os.environ.get(KEY_ENV)
    key = key.strip() if key and key.strip() else None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "acs"

    unique = list(dict.fromkeys(codes.values()))
    chunks = [unique[i : i + MAX_VARIABLES] for i in range(0, len(unique), MAX_VARIABLES)]
    counties = sorted({g[:5] for g in ids})
    tables, fetched = [], 0
    for county in counties:
        merged = None
        for chunk in chunks:
            rows, was_fetched = _acs_query(
                base, year, dataset, level, county, chunk, key=key, cache=cache, names=codes
            )
            fetched += was_fetched
            table = _acs_table(rows, chunk, level, host=_host(base))
            merged = table if merged is None else merged.merge(table, on="GEOID", how="outer")
        tables.append(merged)
    values = pd.concat(tables, ignore_index=True).drop_duplicates("GEOID").set_index("GEOID")
    found = [g for g in ids if g in values.index]
    out = pd.DataFrame({"GEOID": found})
    for name, code in codes.items():
        out[name] = values[code].reindex(found).to_numpy(dtype=float)
    if len(found) < len(ids):
        missing = [g for g in ids if g not in values.index]
        log.warning(
            "the ACS %d has no row for %d of %d GEOIDs (e.g. %s); are they %d boundaries?",
            year, len(missing), len(ids), ", ".join(missing[:3]), 2020 if year >= 2020 else 2010,
        )  # fmt: skip
    queries = len(counties) * len(chunks)
    log.info(
        "ACS %d %s: %d variable%s for %d %s in %d count%s (%d of %d quer%s from the cache)",
        year, dataset, len(names), "" if len(names) == 1 else "s", len(found),
        "block groups" if level == "blockgroup" else "tracts", len(counties),
        "y" if len(counties) == 1 else "ies", queries - fetched, queries,
        "y" if queries == 1 else "ies",
    )  # fmt: skip
    return out


def _check_geoids(geoids: Iterable[str], level: str) -> list[str]:
    ids = list(dict.fromkeys(str(g) for g in geoids))
    if not ids:
        raise InputError("no GEOIDs to fetch ACS indicators for")
    digits = GEOID_DIGITS[level]
    bad = [g for g in ids if len(g) != digits or not g.isdigit()]
    if bad:
        noun = "block-group" if level == "blockgroup" else "tract"
        raise InputError(
            f"zone ids such as {bad[0]!r} are not {digits}-digit {noun} GEOIDs; ACS indicators "
            f"need Census zones: leave out --zones to use TIGER/Line, or pass a {noun} file "
            f"keyed by GEOID"
        )
    return ids


def _acs_query(
    base: str,
    year: int,
    dataset: str,
    level: str,
    county: str,
    codes: Sequence[str],
    *,
    key: str | None,
    cache: Path,
    names: dict[str, str],
) -> tuple[list[list], bool]:
    """One county's rows (header first), from the cache or the API; and whether it was sent."""
    state, county_fips = county[:2], county[2:]
    if level == "blockgroup":
        where = [("for", "block group:*"), ("in", f"state:{state} county:{county_fips} tract:*")]
    else:
        where = [("for", "tract:*"), ("in", f"state:{state} county:{county_fips}")]
    query = urlencode([("get", ",".join(["NAME", *codes])), *where], quote_via=quote, safe=":*,")
    public = f"{base}/{year}/{dataset}?{query}"
    digest = hashlib.sha256(public.encode()).hexdigest()[:20]
    path = cache / f"{year}-{dataset.replace('/', '-')}-{county}-{digest}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            _acs_table(cached, codes, level, host="the cache")  # only a usable answer counts
            return cached, False
        except (OSError, ValueError, CensusServiceError):
            log.warning("ignoring unusable cache file %s; asking the API again", path)
    url = public + (f"&key={quote(key, safe='')}" if key else "")
    host = _host(base)
    try:
        body = _get(url, secret=key)
    except _Unreachable as exc:
        raise CensusServiceError(
            f"cannot reach the Census API at {host} ({_redact(str(exc), key)}); check the "
            f"connection, point {CENSUS_URL_ENV} (--census-url) at a mirror, or pass "
            f"--indicators FILE.csv"
        ) from None
    except _Status as exc:
        raise _acs_status_error(exc, year, dataset, host, names, key) from None
    rows = _parse_acs(body, host=host, key=key)
    _acs_table(rows, codes, level, host=host)  # checked before it is cached, not after
    _make_folder(cache)
    atomic_write_bytes(path, json.dumps(rows).encode())
    return rows, True


def _parse_acs(body: bytes, *, host: str, key: str | None) -> list[list]:
    if not body.strip():  # 204 No Content: no such geography in this county
        return []
    try:
        rows = json.loads(body)
    except ValueError:
        hint = " (is CENSUS_API_KEY valid?)" if key else ""
        raise CensusServiceError(
            f"the Census API at {host} did not answer with JSON{hint}; try again later or "
            f"pass --indicators FILE.csv"
        ) from None
    if not (isinstance(rows, list) and rows and all(isinstance(r, list) for r in rows)):
        raise CensusServiceError(
            f"the Census API at {host} answered in an unexpected shape (not a table); check "
            f"{CENSUS_URL_ENV} (--census-url)"
        )
    return rows


def _acs_table(rows: list[list], codes: Sequence[str], level: str, *, host: str):
    """GEOID and the float columns of one answer (jam values as NaN)."""
    import numpy as np
    import pandas as pd

    if len(rows) < 2:
        return pd.DataFrame({"GEOID": pd.Series(dtype=str), **{c: [] for c in codes}})
    header, body = [str(h) for h in rows[0]], rows[1:]
    geo = ["state", "county", "tract"] + (["block group"] if level == "blockgroup" else [])
    missing = [c for c in [*codes, *geo] if c not in header]
    if missing:
        raise CensusServiceError(
            f"the Census API at {host} answered without column {', '.join(missing)}; check "
            f"{CENSUS_URL_ENV} (--census-url)"
        )
    frame = pd.DataFrame(body, columns=header, dtype=object)
    out = pd.DataFrame({"GEOID": frame[geo].astype(str).agg("".join, axis=1)})
    for code in codes:
        values = pd.to_numeric(frame[code], errors="coerce").astype(float)
        out[code] = values.where(~values.isin(JAM_VALUES), np.nan)
    return out


def _acs_status_error(
    exc: _Status, year: int, dataset: str, host: str, names: dict[str, str], key: str | None
) -> InputError:
    text = _redact(exc.text.strip().splitlines()[0] if exc.text.strip() else "", key)
    unknown = re.search(r"unknown variable '([^']*)'", exc.text)
    if exc.code == 400 and unknown:
        code = unknown.group(1)
        name = next((n for n, c in names.items() if c == code), code)
        close = difflib.get_close_matches(name.lower(), list(ACS_ALIASES), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return InputError(
            f"the ACS {year} ({dataset}) has no variable '{_redact(name, key)}'; {hint}check "
            f"it at https://api.census.gov/data/{year}/{dataset}/variables.html or use an "
            f"alias ({', '.join(ACS_ALIASES)})"
        )
    if exc.code == 404:
        return InputError(
            f"the Census API at {host} has no dataset {year}/{dataset} (HTTP 404); choose "
            f"another --acs-year (ACS 5-year: 2009 onwards, block groups from 2013)"
        )
    if exc.code in (400, 401, 403):
        return InputError(
            f"the Census API at {host} refused the query (HTTP {exc.code}: {text or 'no reason'}"
            f"); check the variables, --acs-year and CENSUS_API_KEY"
        )
    return CensusServiceError(
        f"the Census API at {host} answered HTTP {exc.code}; try again later, point "
        f"{CENSUS_URL_ENV} (--census-url) at a mirror, or pass --indicators FILE.csv"
    )


# ------------------------------------------------------------------------------ HTTP
class _Unreachable(Exception):
    """No HTTP answer at all (refused, DNS, timeout); the text names no URL."""


def _get(url: str, *, secret: str | None = None, timeout: float = _TIMEOUT) -> bytes:
    """GET ``url``; retries 429/5xx and timeouts with backoff.

    Returns the body of a 200 (or 204) answer. Raises :class:`_Status` for any other HTTP
    status and :class:`_Unreachable` when no answer came; neither message holds the URL,
    and ``secret`` is redacted from the server's text. Standard-library ``urllib`` is used
    so that no HTTP library logs the URL (which holds the key) at debug level.
    """
    from ._version import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"urbanvis/{__version__}"})
    for attempt in range(_ATTEMPTS):
        last = attempt == _ATTEMPTS - 1
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    text = _redact(exc.read(4096).decode("utf-8", "replace"), secret)
                except (OSError, http.client.HTTPException):  # the body never came
                    text = ""
            if exc.code in _RETRY_STATUS and not last:
                _backoff(attempt, exc.headers.get("Retry-After"))
                continue
            raise _Status(exc.code, text) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError) and not last:
                _backoff(attempt, None)
                continue
            raise _Unreachable(_redact(_reason(reason), secret)) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            if not last:  # timed out, dropped or cut short: worth another try
                _backoff(attempt, None)
                continue
            raise _Unreachable(_redact(_reason(exc), secret)) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    if isinstance(reason, TimeoutError):
        return "timed out"
    return str(reason) or type(reason).__name__


def _backoff(attempt: int, retry_after: str | None) -> None:
    delay = 2.0**attempt
    if retry_after and retry_after.isdigit():
        delay = min(float(retry_after), 30.0)
    log.debug("server busy; retrying in %.0f s", delay)
    time.sleep(delay)


def _redact(text: str, secret: str | None) -> str:
    """``text`` with the secret (plain or URL-quoted) replaced by ``***``."""
    if not secret:
        return text
    for form in {secret, quote(secret, safe="")}:
        text = text.replace(form, "***")
    return text


def _host(url: str) -> str:
    """The host (and port) of a URL, without any user or password."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return "a local folder"
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def _base_url(given: str | None, env: str, default: str, option: str) -> str:
    url = (given or os.environ.get(env) or default).strip().rstrip("/")
    if urlsplit(url).scheme not in ("http", "https", "file"):
        raise InputError(f"{option} / {env} must be an http(s):// or file:// URL")
    return url


def _check_year(year: int, option: str) -> int:
    try:
        value = int(year)
    except (TypeError, ValueError):
        raise InputError(f"{option} must be a year such as 2022, got {year!r}") from None
    if not 2000 <= value <= 2100:
        raise InputError(f"{option} must be a year such as 2022, got {year!r}")
    return value


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"cannot create the download cache {path} ({exc.strerror or exc}); set "
            f"{CACHE_ENV} to a writable folder"
        ) from exc
