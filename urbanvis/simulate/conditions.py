"""The dynamic layer's conditions from a capture time: sun, light, weather and season.

Time is local solar time at the city (a timezone, if any, is ignored). Weather is one draw
per city and calendar day, so that all captures of a day share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from .._errors import InputError
from ._hash import hash_uniform
from .city import City

WEATHERS: tuple[str, ...] = ("clear", "overcast", "rain", "fog")
SEASONS: tuple[str, ...] = ("winter", "spring", "summer", "autumn")


@dataclass(frozen=True)
class Conditions:
    """What the capture time sets: light, weather, season."""

    when: datetime
    hour: float  # local solar time, 0-24
    day_of_year: int
    season: str
    weather: str
    sun_elevation: float  # degrees above the horizon (negative at night)
    sun_azimuth: float  # degrees clockwise from north
    daylight: float  # 0 night .. 1 full day
    foliage: float  # 0 leaf-off .. 1 full leaf
    autumn: float  # 0 green .. 1 full autumn colour


def time_from_value(when) -> datetime:
    """A naive ``datetime`` from a ``datetime``, a ``date`` or an ISO 8601 string."""
    if isinstance(when, datetime):
        return when.replace(tzinfo=None)
    if isinstance(when, date):
        return datetime(when.year, when.month, when.day, 12)
    if isinstance(when, np.datetime64):
        when = str(when.astype("datetime64[s]"))
    if isinstance(when, str):
        try:
            return datetime.fromisoformat(when.strip().replace("Z", "+00:00")).replace(tzinfo=None)
        except ValueError:
            pass
    raise InputError(
        f"capture time {when!r} is not a datetime or ISO 8601 string; "
        "pass e.g. when='2021-06-01T14:30'"
    )


def _smoothstep(a: float, b: float, x: float) -> float:
    t = min(max((x - a) / (b - a), 0.0), 1.0)
    return t * t * (3 - 2 * t)


def sun_position(latitude: float, day_of_year: int, hour: float) -> tuple[float, float]:
    """Sun elevation and azimuth in degrees (a textbook declination/hour-angle model)."""
    lat = math.radians(latitude)
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year) / 365.0)
    ha = math.radians(15.0 * (hour - 12.0))
    sin_el = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(ha)
    el = math.asin(max(-1.0, min(1.0, sin_el)))
    az = math.atan2(
        math.sin(ha), math.cos(ha) * math.sin(lat) - math.tan(decl) * math.cos(lat)
    )  # from south, westward positive
    return math.degrees(el), (math.degrees(az) + 180.0) % 360.0


def conditions_from_time(city: City, when, *, weather: str | None = None) -> Conditions:
    """The conditions of a capture in ``city`` at ``when``.

    Parameters
    ----------
    city : City
        The synthetic city (seed and latitude).
    when : datetime, date or str
        Capture time, local solar time; an ISO 8601 string is parsed.
    weather : str, optional
        Force one of :data:`WEATHERS`; by default it is drawn per city and day.

    Returns
    -------
    Conditions
    """
    t = time_from_value(when)
    if weather is not None and weather not in WEATHERS:
        raise InputError(f"unknown weather {weather!r}; choose one of {', '.join(WEATHERS)}")
    doy = t.timetuple().tm_yday
    hour = t.hour + t.minute / 60.0 + t.second / 3600.0
    south = city.latitude < 0
    sdoy = (doy + 182) % 365 if south else doy  # seasons flip south of the equator
    season = SEASONS[0 if sdoy < 80 or sdoy >= 355 else 1 if sdoy < 172 else 2 if sdoy < 266 else 3]
    if weather is None:
        u = float(hash_uniform(city.seed, t.toordinal(), 0x57EA)[0])
        wet = 0.2 if season in ("autumn", "winter") else 0.12
        cuts = np.cumsum([0.5 - wet / 2, 0.3, wet])
        weather = WEATHERS[int(np.searchsorted(cuts, u, side="right"))]
    el, az = sun_position(city.latitude, doy, hour)
    foliage = _smoothstep(95, 135, sdoy) * (1 - _smoothstep(290, 325, sdoy))
    autumn = _smoothstep(245, 295, sdoy)
    return Conditions(
        when=t,
        hour=hour,
        day_of_year=doy,
        season=season,
        weather=weather,
        sun_elevation=el,
        sun_azimuth=az,
        daylight=_smoothstep(-6.0, 8.0, el),
        foliage=foliage,
        autumn=autumn,
    )


def reference_conditions(city: City) -> Conditions:
    """Fixed conditions for the static render (dynamic layer off): a bright summer noon."""
    t = datetime(2000, 7, 1, 11)
    el, az = sun_position(city.latitude, 183, 11.0)
    return Conditions(t, 11.0, 183, "summer", "clear", el, az, 1.0, 1.0, 0.0)
