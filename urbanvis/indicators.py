"""Zone indicator tables: read and check the labels that predictors are fit to, and topics.

Indicators come from a CSV keyed by a zone id (:func:`indicators_from_csv`) or from the
American Community Survey for Census zones (``acs:VAR[,VAR...]``, :func:`indicators_from_acs`)
and are joined to the zones by id (:func:`join_indicators`).

Topics group indicators for the R² table (the paper's Crime, Health, Poverty, Transport).
They are data: a mapping topic -> indicator names or a CSV with columns ``indicator`` and
``topic`` (:func:`topics_from_file`). :func:`resolve_topics` says which map a run uses:
the one given; else ``topics.csv`` beside the indicators CSV when there is one (the
simulated city's ``truth/`` folder has one); else the paper's (:data:`PAPER_TOPICS`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ._errors import InputError, InputFileError
from ._files import not_a_file

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

log = logging.getLogger(__name__)

ACS_PREFIX = "acs:"
TOPICS_FILE = "topics.csv"
"""The name of a topic map beside an indicators CSV that :func:`resolve_topics` picks up."""

PAPER_TOPICS: dict[str, tuple[str, ...]] = {
    "Crime": ("logcrime", "logpetty"),
    "Health": (
        "cancercrud", "diabetescr", "lpacrudepr", "mhlthcrude", "obesitycru", "phlthcrude",
    ),
    "Poverty": ("mhincome_cbg", "povertyline_below100", "povertyline_below200"),
    "Transport": (
        "drove_alone_per_cbg", "estpmiles", "estptrp", "estvmiles", "estvtrp",
        "publictrans_per_cbg", "walkbike_per_cbg",
    ),
}  # fmt: skip
"""The paper's 18 indicators in its 4 topics."""


def builtin_topics() -> dict[str, tuple[str, ...]]:
    """The built-in topic map: the paper's (:data:`PAPER_TOPICS`)."""
    return {k: tuple(v) for k, v in PAPER_TOPICS.items()}


def topics_from_file(path: str | os.PathLike[str]) -> dict[str, tuple[str, ...]]:
    """Read a topic map: a CSV with columns ``indicator`` and ``topic``."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"topics file {path} {not_a_file(path)}; check `topics`")
    try:
        table = pd.read_csv(path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(
            f"cannot read `topics` file {path.name} as CSV ({type(exc).__name__})"
        ) from exc
    if not {"indicator", "topic"} <= set(table.columns):
        raise InputError(
            f"`topics` file {path.name} needs columns 'indicator' and 'topic' (it has: "
            f"{', '.join(map(str, table.columns)) or 'none'})"
        )
    return {t: tuple(g["indicator"]) for t, g in table.dropna().groupby("topic", sort=False)}


def topics_table(topics: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """A topic map as the table :func:`topics_from_file` reads: ``indicator``, ``topic``."""
    rows = [(name, topic) for topic, names in topics.items() for name in names]
    return pd.DataFrame(rows, columns=["indicator", "topic"])


def resolve_topics(
    topics: str | os.PathLike[str] | Mapping[str, Sequence[str]] | None,
    indicators: str | os.PathLike[str] | None = None,
) -> dict[str, tuple[str, ...]]:
    """The topic map of a run: topic -> indicator names.

    ``topics`` is a mapping topic -> indicators or the path of a CSV with columns
    ``indicator`` and ``topic``. When it is None: ``topics.csv`` beside the ``indicators``
    CSV if there is one, else the paper's topics (:func:`builtin_topics`).
    """
    if isinstance(topics, Mapping):
        return {str(t): tuple(str(n) for n in names) for t, names in topics.items()}
    if topics is not None:
        return topics_from_file(topics)
    if indicators is not None and not str(indicators).startswith(ACS_PREFIX):
        beside = Path(indicators).with_name(TOPICS_FILE)
        if beside.is_file():
            log.debug("grouping indicators by the topics in %s", beside)
            return topics_from_file(beside)
    return builtin_topics()


def acs_names(spec: str) -> list[str]:
    """The variable names of an ``acs:VAR[,VAR...]`` indicators spec, checked for shape.

    Names are raw ACS variables (``B19013_001E``) or aliases from
    :data:`urbanvis.acs.ACS_ALIASES` (``median_income``).
    """
    from .acs import acs_variable

    names = [n.strip() for n in spec[len(ACS_PREFIX) :].split(",") if n.strip()]
    if not names:
        raise InputError(
            "name at least one ACS variable after acs: (e.g. acs:B19013_001E,median_income)"
        )
    for name in names:
        acs_variable(name)
    return names


def check_indicator_spec(indicators: str | os.PathLike[str], columns=None) -> None:
    """Refuse a bad ``acs:`` spec, or ``columns`` with one, before any zone is downloaded."""
    if str(indicators).startswith(ACS_PREFIX):
        acs_names(str(indicators))
        if columns:
            raise InputError("`columns` picks CSV columns; with acs: list the variables instead")


def csv_indicators_first(
    indicators: str | os.PathLike[str],
    id_field: str,
    *,
    level: str,
    zones: str | os.PathLike[str] | None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame | None:
    """The indicators CSV, read and checked before any zone is read, laid or downloaded
    (a bad column then costs nothing); None for an ``acs:`` spec, which needs the zones.

    Grid zones (``level`` hex or buffer without ``zones``) are keyed by ``zone_id``.
    """
    from .zones import GRID_ID

    check_indicator_spec(indicators, columns)
    if str(indicators).startswith(ACS_PREFIX):
        if level not in ("blockgroup", "tract"):
            raise InputError(
                f"ACS indicators need Census zones: set `level` to blockgroup or tract, not {level}"
            )
        return None
    key = GRID_ID if zones is None and level in ("hex", "buffer") else id_field
    return indicators_from_csv(indicators, key, columns=columns)


def indicators_for_zones(
    indicators: str | os.PathLike[str],
    zones: gpd.GeoDataFrame,
    id_field: str,
    *,
    level: str,
    columns: Sequence[str] | None = None,
    acs_year: int = 2022,
    census_url: str | None = None,
) -> pd.DataFrame:
    """The indicator table of ``zones``: ACS estimates for an ``acs:VAR`` spec, else the CSV."""
    if str(indicators).startswith(ACS_PREFIX):
        return indicators_from_acs(
            str(indicators), zones, id_field, level=level, year=acs_year, base_url=census_url
        )
    return indicators_from_csv(indicators, id_field, columns=columns)


def indicators_from_acs(
    spec: str,
    zone_frame: gpd.GeoDataFrame,
    id_field: str,
    *,
    level: str,
    year: int = 2022,
    base_url: str | None = None,
) -> pd.DataFrame:
    """ACS estimates for the zones named by an ``acs:VAR[,VAR...]`` spec.

    The zones' ids must be Census GEOIDs of ``level`` (``blockgroup`` or ``tract``). Returns
    a table shaped like :func:`indicators_from_csv`'s: ``id_field`` and one float column per
    variable (named as written in the spec). A variable without any value for these zones
    (every estimate suppressed) is an InputError.
    """
    from .acs import LEVELS, acs_indicators

    if level not in LEVELS:
        raise InputError(
            f"ACS indicators need Census zones: set `level` to blockgroup or tract, not {level}"
        )
    names = acs_names(spec)
    table = acs_indicators(zone_frame[id_field].astype(str), names, level=level,  # type: ignore[arg-type]
                           year=year, base_url=base_url)  # fmt: skip
    if table.empty:
        raise InputError(
            f"the ACS {year} has none of these zones' GEOIDs; match `acs_year` to the zones' "
            f"boundaries (2020 census geography: ACS 2020 onwards)"
        )
    for name in names:
        if table[name].isna().all():
            raise InputError(
                f"ACS variable '{name}' has no estimate for any of these {len(table)} zones "
                f"(all suppressed); choose another variable or `level` tract"
            )
    return table.rename(columns={"GEOID": id_field})


def indicators_from_csv(
    path: str | os.PathLike[str], id_field: str, *, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read indicators keyed by ``id_field`` (read as text); every other column is numeric.

    Raises InputError for a missing id field, repeated ids, a non-numeric column or a
    column with no value at all.
    """
    if str(path).startswith(ACS_PREFIX):
        raise InputError(
            f"{path} names ACS variables, not a file; fetch them with "
            f"urbanvis.acs.acs_indicators (predict_study does so for `indicators` acs:VAR)"
        )
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"indicators file {path} {not_a_file(path)}; check `indicators`")
    try:
        table = pd.read_csv(path, dtype={id_field: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read indicators from {path.name}: {exc}") from exc
    if id_field not in table.columns:
        raise InputError(
            f"indicators file {path.name} has no column '{id_field}' (it has: "
            f"{', '.join(map(str, table.columns))}); pass the right `id_field`"
        )
    names = list(columns) if columns else [c for c in table.columns if c != id_field]
    missing = [c for c in names if c not in table.columns]
    if missing:
        have = ", ".join(str(c) for c in table.columns if c != id_field) or "none"
        raise InputError(
            f"indicators file {path.name} has no column {', '.join(missing)} (it has: {have}); "
            f"pick `columns` among those"
        )
    if not names:
        raise InputError(f"indicators file {path.name} has no indicator columns")
    for name in names:
        if not pd.api.types.is_numeric_dtype(table[name]) or pd.api.types.is_bool_dtype(
            table[name]
        ):
            raise InputError(
                f"indicator '{name}' in {path.name} is not numeric; fix it or choose columns "
                f"with `columns`"
            )
        if table[name].isna().all():
            raise InputError(f"indicator '{name}' in {path.name} has no values (all empty)")
    table = table[[id_field, *names]].copy()
    table[id_field] = table[id_field].astype(str)
    dupes = table[id_field][table[id_field].duplicated()]
    if len(dupes):
        raise InputError(f"ids in {path.name} repeat (e.g. {dupes.iloc[0]!r}); one row per zone")
    return table


def join_indicators(
    zone_frame: gpd.GeoDataFrame, indicators: pd.DataFrame, *, id_field: str
) -> tuple[gpd.GeoDataFrame, dict[str, int]]:
    """Attach indicators to zones by id (a left join on the zones).

    Returns the joined zones and counts: ``matched``, ``zones_unmatched`` (zones without a
    row), ``rows_unmatched`` (rows without a zone). No match at all is an InputError.
    """
    zone_ids = zone_frame[id_field].astype(str)
    row_ids = indicators[id_field].astype(str)
    matched = int(zone_ids.isin(row_ids).sum())
    counts = {
        "matched": matched,
        "zones_unmatched": len(zone_ids) - matched,
        "rows_unmatched": int((~row_ids.isin(zone_ids)).sum()),
    }
    if matched == 0:
        raise InputError(
            f"no indicator id matches a zone id (zones e.g. {zone_ids.iloc[0]!r}, indicators "
            f"e.g. {row_ids.iloc[0]!r}); check `id_field` and the id format"
        )
    lonely_zones = zone_ids[~zone_ids.isin(row_ids)]
    lonely_rows = row_ids[~row_ids.isin(zone_ids)]
    for side, example in (
        ("zones have no indicator row", lonely_zones),
        ("indicator rows match no zone", lonely_rows),
    ):
        if len(example):
            log.warning("%d %s (e.g. %s)", len(example), side, ", ".join(example.iloc[:3]))
    right = indicators.drop(columns=[c for c in indicators if c in zone_frame and c != id_field])
    joined = zone_frame.assign(**{id_field: zone_ids}).merge(
        right.assign(**{id_field: row_ids}), on=id_field, how="left"
    )
    return joined, counts
