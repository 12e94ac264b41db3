"""US zone indicators from the American Community Survey, via the Census Data API (online).

:func:`acs_indicators` returns ACS estimates for a list of GEOIDs, one query per county.
Answers are cached under ``<cache>/acs/``, one JSON file per query, named from a hash of the
query URL without the API key, and a query answered before is not sent again. ``<cache>`` is
``$URBANVIS_CACHE`` or ``~/.cache/urbanvis``; ``URBANVIS_CENSUS_URL`` (or ``base_url=``)
points at a mirror. The Census API key (``api_key=`` or ``CENSUS_API_KEY``; optional for
light use) is sent to the server only: it is kept out of cache files, log messages and
error messages.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlencode

from . import _http, _secrets
from ._census import (
    GEOID_DIGITS,
    LEVELS,
    CensusServiceError,
    cache_root,
    check_year,
    make_folder,
    service_url,
)
from ._errors import InputError
from ._files import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "ACS_ALIASES", "CENSUS_URL", "CENSUS_URL_ENV", "JAM_VALUES", "KEY_ENV", "LEVELS",
    "MAX_VARIABLES", "CensusServiceError", "acs_indicators", "acs_variable", "cache_root",
]  # fmt: skip

log = logging.getLogger(__name__)

CENSUS_URL = "https://api.census.gov/data"
CENSUS_URL_ENV = "URBANVIS_CENSUS_URL"
KEY_ENV = _secrets.CENSUS_KEY_ENV
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
_RESERVED = frozenset(
    {"name", "geo_id", "state", "county", "tract", "block group", "for", "in", "key", "ucgid"}
)
_VARIABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


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
    year = check_year(year, "acs_year")
    names = list(dict.fromkeys(str(v).strip() for v in variables if str(v).strip()))
    if not names:
        raise InputError("no ACS variable given; name one, e.g. acs:B19013_001E")
    codes = {name: acs_variable(name) for name in names}
    ids = _check_geoids(geoids, level)
    if not _VARIABLE.match(dataset.replace("/", "_")):
        raise InputError(f"{dataset!r} is not a Census API dataset path (e.g. acs/acs5)")
    base = service_url(base_url, CENSUS_URL_ENV, CENSUS_URL, "census_url")
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
            table = _acs_table(rows, chunk, level, host=_http.host_of(base))
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
            f"need Census zones: leave out `zones` to use TIGER/Line, or pass a {noun} file "
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
    host = _http.host_of(base)
    try:
        body = _http.get(url, secrets=(key,))
    except _http.UnreachableError as exc:
        raise CensusServiceError(
            f"cannot reach the Census API at {host} ({exc.reason}); check the "
            f"connection, point {CENSUS_URL_ENV} (`census_url`) at a mirror, or pass a CSV "
            f"as `indicators`"
        ) from None
    except _http.HttpStatusError as exc:
        raise _acs_status_error(exc, year, dataset, host, names, key) from None
    rows = _parse_acs(body, host=host, key=key)
    _acs_table(rows, codes, level, host=host)  # checked before it is cached, not after
    make_folder(cache)
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
            f"pass a CSV as `indicators`"
        ) from None
    if not (isinstance(rows, list) and rows and all(isinstance(r, list) for r in rows)):
        raise CensusServiceError(
            f"the Census API at {host} answered in an unexpected shape (not a table); check "
            f"{CENSUS_URL_ENV} (`census_url`)"
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
            f"{CENSUS_URL_ENV} (`census_url`)"
        )
    frame = pd.DataFrame(body, columns=header, dtype=object)
    out = pd.DataFrame({"GEOID": frame[geo].astype(str).agg("".join, axis=1)})
    for code in codes:
        values = pd.to_numeric(frame[code], errors="coerce").astype(float)
        out[code] = values.where(~values.isin(JAM_VALUES), np.nan)
    return out


def _acs_status_error(
    exc: _http.HttpStatusError,
    year: int,
    dataset: str,
    host: str,
    names: dict[str, str],
    key: str | None,
) -> InputError:
    text = _secrets.redact(exc.text.strip().splitlines()[0] if exc.text.strip() else "", key)
    text = text.replace("`", "'")  # the server's words name no parameter of ours
    unknown = re.search(r"unknown variable '([^']*)'", exc.text)
    if exc.code == 400 and unknown:
        code = unknown.group(1)
        name = next((n for n, c in names.items() if c == code), code)
        close = difflib.get_close_matches(name.lower(), list(ACS_ALIASES), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        shown = _secrets.redact(name, key)
        return InputError(
            f"the ACS {year} ({dataset}) has no variable '{shown}'; {hint}check "
            f"it at https://api.census.gov/data/{year}/{dataset}/variables.html or use an "
            f"alias ({', '.join(ACS_ALIASES)})"
        )
    if exc.code == 404:
        return InputError(
            f"the Census API at {host} has no dataset {year}/{dataset} (HTTP 404); choose "
            f"another `acs_year` (ACS 5-year: 2009 onwards, block groups from 2013)"
        )
    if exc.code in (400, 401, 403):
        return InputError(
            f"the Census API at {host} refused the query (HTTP {exc.code}: {text or 'no reason'}"
            f"); check the variables, `acs_year` and CENSUS_API_KEY"
        )
    return CensusServiceError(
        f"the Census API at {host} answered HTTP {exc.code}; try again later, point "
        f"{CENSUS_URL_ENV} (`census_url`) at a mirror, or pass a CSV as `indicators`"
    )
