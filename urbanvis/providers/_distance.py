"""How far a provider's image lies from the point it was asked for, and whether that is too far.

Every web provider records where its image was taken (``pano_lon``, ``pano_lat``) and the
geodesic distance from the point (``distance_m``, on the WGS84 ellipsoid). A service that
answers with an image farther than the search ``radius`` allows (a panorama kilometres away,
a stale index) would otherwise slip into the study as ``ok``: :func:`too_far` names the
distance so the capture is recorded ``missing`` instead.

The default limit is ``radius`` plus :data:`TOLERANCE_M`; a ``max_distance`` replaces it
(larger to accept more, smaller to be stricter than the search).
"""

from __future__ import annotations

import functools
import math
from typing import Any

TOLERANCE_M = 5.0
"""Metres allowed beyond ``radius`` by default. A service measures its radius to where it
placed the panorama in its own index, while the location it reports is rounded (Google's
metadata gives about 7 decimals, Mapillary's computed positions move as sequences are
re-aligned) and may be the camera's position rather than the snapped road position: a
few metres of disagreement are normal and harmless. A wrong answer is off by far more."""

COLUMNS = ("pano_lon", "pano_lat", "distance_m")
"""The capture row's columns this module fills (NaN where no image was found)."""


@functools.lru_cache(maxsize=1)
def _geod() -> Any:
    from pyproj import Geod

    return Geod(ellps="WGS84")


def geodesic_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Metres between two WGS84 points along the ellipsoid (NaN if either is not finite)."""
    values = (lon1, lat1, lon2, lat2)
    if not all(math.isfinite(float(v)) for v in values):
        return math.nan
    _, _, dist = _geod().inv(float(lon1), float(lat1), float(lon2), float(lat2))
    return float(dist)


def limit_m(radius: float, max_distance: float | None) -> float:
    """The farthest an image may lie from its point: ``max_distance``, else ``radius`` plus
    :data:`TOLERANCE_M`."""
    if max_distance is not None:
        return float(max_distance)
    return float(radius) + TOLERANCE_M


def located(point_lon: float, point_lat: float, lon: float, lat: float) -> dict[str, float]:
    """The row fields of an image taken at (``lon``, ``lat``) for a point."""
    return {
        "pano_lon": float(lon),
        "pano_lat": float(lat),
        "distance_m": round(geodesic_m(point_lon, point_lat, lon, lat), 2),
    }


def nowhere() -> dict[str, float]:
    """The row fields of a capture without an image location."""
    return dict.fromkeys(COLUMNS, math.nan)


def too_far(distance: float, limit: float, what: str = "panorama") -> str | None:
    """The ``missing`` reason when ``distance`` exceeds ``limit`` metres, else None."""
    if math.isfinite(distance) and distance > limit:
        return (
            f"the {what} found is {distance:,.0f} m from the point, farther than the "
            f"{limit:g} m allowed (`radius` plus {TOLERANCE_M:g} m, or `max_distance`)"
        )
    return None


def check_max_distance(value: float | None) -> float | None:
    """``max_distance`` as a float, or an InputError naming the parameter."""
    from .._errors import InputError

    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"`max_distance` must be metres, got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise InputError(f"`max_distance` must be positive metres, got {value}")
    return out
