"""Render one capture: the public entry points, their options and record, the pass order.

:func:`capture` and :func:`render` check their input, draw the camera jitter and the
capture-time conditions, then run the drawing passes over one frame (:mod:`._frame`):

1. the street canyon, static: facades by ray casting, skyline, ground (:mod:`._canyon`);
2. billboards through a z-buffer: trees, poles and signs (:mod:`._furniture`) and, for
   the dynamic layer, cars, pedestrians and bikes (:mod:`._traffic`);
3. light and atmosphere: shading, exposure, sky, night lights, haze, fog and rain
   (:mod:`._light`).

The scene they draw is :mod:`.scene` (geometry), :mod:`.fields` (ambiance) and
:mod:`.conditions` (capture time); the per-city textures are :mod:`._textures`.
"""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from .._errors import InputError
from ._canyon import cast_rays, paint_facades, paint_ground, paint_skyline
from ._frame import CLASS_NAMES, FACADE, GRASS, SKY, TREE, WINDOW, frame_from_street
from ._furniture import paint_poles, paint_trees
from ._hash import hash_int
from ._light import image_from_frame, light_from_conditions
from ._textures import textures_from_seed
from ._traffic import paint_traffic
from .city import City
from .conditions import WEATHERS, Conditions, conditions_from_time, reference_conditions
from .scene import furniture_from_street, lots_from_street, street_from_place

log = logging.getLogger(__name__)

MAX_JITTER_M = 3.0
MAX_JITTER_DEG = 5.0


@dataclass(frozen=True)
class RenderOptions:
    """Options of :func:`render`; the field names are its keywords.

    Parameters
    ----------
    size : int or (int, int)
        Image side, or ``(height, width)``, in pixels.
    dynamic : bool
        Render the capture-time layer (light, weather, season, traffic, people). Off, the
        image is a function of the place and heading alone, under fixed summer-noon light.
    jitter : bool
        Perturb the camera by up to 3 m and 5 degrees, drawn from place, heading and time.
    weather : str, optional
        Force one of ``clear``, ``overcast``, ``rain``, ``fog`` (default: drawn per day).
    """

    size: int | tuple[int, int] = 224
    dynamic: bool = True
    jitter: bool = True
    weather: str | None = None

    def __post_init__(self) -> None:
        size = self.size
        if isinstance(size, int | np.integer):
            pair: tuple = (size, size)
        else:
            try:
                pair = tuple(size)
            except TypeError:
                pair = ()
        if (
            len(pair) != 2
            or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair)
            or min(pair) < 1
            or max(pair) > 8192
        ):
            raise InputError(
                f"size must be a positive pixel count or (height, width), at most 8192, "
                f"got {size!r}; pass e.g. size=224"
            )
        object.__setattr__(self, "size", (int(pair[0]), int(pair[1])))
        for name in ("dynamic", "jitter"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.weather is not None and self.weather not in WEATHERS:
            raise InputError(
                f"unknown weather {self.weather!r}; choose one of {', '.join(WEATHERS)}"
            )


OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(RenderOptions))


def options_from_keywords(**options) -> RenderOptions:
    """:class:`RenderOptions` from keywords; an unknown name suggests the close ones."""
    unknown = [k for k in options if k not in OPTION_NAMES]
    if unknown:
        close = difflib.get_close_matches(unknown[0], OPTION_NAMES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputError(
            f"unknown option {unknown[0]!r}; {hint}options are {', '.join(OPTION_NAMES)}"
        )
    return RenderOptions(**options)


@dataclass(frozen=True)
class CaptureRecord:
    """What one image shows, for ground truth: the place, the camera, the dynamic content.

    Counts are objects visible in the image (at least one pixel). ``lighting`` is the mean
    light level on the scene, 0 (dark) to about 1 (full sun). ``greenery_visible`` and the
    other ``*_visible`` figures are shares of the image's pixels. ``style`` ... ``tone``
    are the latent fields at the place.
    """

    x: float
    y: float
    heading: float
    when: str
    camera_x: float
    camera_y: float
    camera_heading: float
    dynamic: bool
    hour: float
    day_of_year: int
    season: str
    weather: str
    sun_elevation: float
    sun_azimuth: float
    lighting: float
    cars: int
    pedestrians: int
    bikes: int
    greenery_visible: float
    sky_visible: float
    building_visible: float
    style: float
    greenery: float
    density: float
    upkeep: float
    tone: float

    def to_dict(self) -> dict:
        """The record as a plain dict (for a table row)."""
        return asdict(self)

    def dynamic_columns(self) -> dict:
        """The ``sim_*`` columns a capture row keeps: what the safety truth is made from."""
        return {
            "sim_weather": self.weather,
            "sim_lighting": round(self.lighting, 4),
            "sim_cars": self.cars,
            "sim_pedestrians": self.pedestrians,
            "sim_bikes": self.bikes,
            "sim_greenery_visible": round(self.greenery_visible, 4),
        }


@dataclass(frozen=True)
class Capture:
    """One rendered capture: the RGB image, its per-pixel class labels and its record."""

    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) uint8, indices into CLASS_NAMES
    record: CaptureRecord


def _check_place(x, y, heading) -> tuple[float, float, float]:
    try:
        x, y, heading = float(x), float(y), float(heading)
    except (TypeError, ValueError):
        raise InputError(
            f"x, y and heading must be numbers, got {x!r}, {y!r}, {heading!r}"
        ) from None
    if not all(math.isfinite(v) for v in (x, y, heading)):
        raise InputError(
            f"location and heading must be finite, got x={x}, y={y}, heading={heading}; "
            "drop points with NaN coordinates or bearings"
        )
    return x, y, heading


def capture(city: City, x: float, y: float, heading: float, when, **options) -> Capture:
    """Render the view from ``(x, y)`` along ``heading`` at time ``when``, with its record.

    Parameters
    ----------
    city : City
        The synthetic city.
    x, y : float
        Place in metres (east, north) in the city's frame.
    heading : float
        Viewing direction, degrees clockwise from north.
    when : datetime, date or str
        Capture time (local solar time), e.g. ``"2021-06-01T14:30"``. It sets the dynamic
        layer and the camera jitter.
    **options
        Fields of :class:`RenderOptions`: ``size``, ``dynamic``, ``jitter``, ``weather``.

    Returns
    -------
    Capture
        The image, its class labels and a :class:`CaptureRecord`.

    Raises
    ------
    InputError
        On a non-finite location, an unknown option, a bad size or an unreadable time.
    """
    if not isinstance(city, City):
        raise InputError(f"city must be a urbanvis.simulate.City, got {type(city).__name__}")
    opts = options_from_keywords(**options)
    x, y, heading = _check_place(x, y, heading)
    if opts.dynamic:
        cond = conditions_from_time(city, when, weather=opts.weather)
    else:
        cond = conditions_from_time(city, when)  # validates `when`; seeds the jitter
    key = hash_int(
        city.seed,
        round(x * 100),
        round(y * 100),
        round(heading * 100),
        int(cond.when.timestamp() * 1000) if cond.when.year > 1970 else cond.when.toordinal(),
    )
    rng = np.random.default_rng(key)
    jit = rng.normal(size=3)  # GPS and compass errors: about 1 m and 1.5 degrees, capped
    if opts.jitter:
        r = min(abs(jit[0]), MAX_JITTER_M)
        ang = 2 * math.pi * (rng.random())
        jx, jy = r * math.cos(ang), r * math.sin(ang)
        jh = max(-MAX_JITTER_DEG, min(MAX_JITTER_DEG, 1.5 * jit[2]))
    else:
        jx = jy = jh = 0.0
    light_cond = cond if opts.dynamic else reference_conditions(city)
    image, labels, counts, lighting = _render(
        city, x, y, heading, (jx, jy, jh), light_cond, rng if opts.dynamic else None, opts.size
    )
    n = labels.size
    share = np.bincount(labels.ravel(), minlength=len(CLASS_NAMES)) / n
    st_fields = city.latent_fields(x, y)
    record = CaptureRecord(
        x=x,
        y=y,
        heading=heading % 360.0,
        when=cond.when.isoformat(),
        camera_x=x + jx,
        camera_y=y + jy,
        camera_heading=(heading + jh) % 360.0,
        dynamic=bool(opts.dynamic),
        hour=light_cond.hour,
        day_of_year=light_cond.day_of_year,
        season=light_cond.season,
        weather=light_cond.weather,
        sun_elevation=light_cond.sun_elevation,
        sun_azimuth=light_cond.sun_azimuth,
        lighting=lighting,
        cars=counts[0],
        pedestrians=counts[1],
        bikes=counts[2],
        greenery_visible=float(share[GRASS] + share[TREE]),
        sky_visible=float(share[SKY]),
        building_visible=float(share[FACADE] + share[WINDOW]),
        **{k: float(v) for k, v in st_fields.items()},
    )
    height, width = opts.size  # type: ignore[misc]  # normalised to a pair in __post_init__
    log.debug("rendered %dx%d at (%.1f, %.1f) heading %.0f", width, height, x, y, heading)
    return Capture(image, labels, record)


def render(city: City, x: float, y: float, heading: float, when, **options) -> np.ndarray:
    """The RGB image of :func:`capture` alone, ``(H, W, 3)`` uint8.

    Options are the fields of :class:`RenderOptions` (``size=224``, ``dynamic=True``,
    ``jitter=True``, ``weather=None``). Same city, place, heading, time and options give
    byte-identical images.
    """
    return capture(city, x, y, heading, when, **options).image


def _render(city, x, y, heading, jit, cond: Conditions, rng, size):
    """Image, labels, visible (cars, pedestrians, bikes) and mean light of one view.

    ``jit`` is the camera error ``(east m, north m, degrees)``; ``rng`` the capture's
    generator, or None for the static layer alone (no traffic, no rain drops).
    """
    tex = textures_from_seed(city.seed)
    st = street_from_place(city, x, y, heading)
    lots = lots_from_street(city, st)
    furn = furniture_from_street(city, st)
    frame = frame_from_street(st, heading, jit, size)
    light = light_from_conditions(cond, frame.axis_dir)

    hits = cast_rays(frame, lots)
    paint_skyline(frame, city, st, hits)
    ground = paint_ground(frame, st, lots, hits, cond, light, tex.table)
    night_win = paint_facades(frame, st, lots, hits, cond, light, tex.table)

    paint = frame.painter()
    paint_trees(paint, frame, furn, cond, light, tex)
    lamps = paint_poles(paint, frame, furn, light)
    counts = [0, 0, 0]
    if rng is not None:
        counts = paint_traffic(paint, frame, st, cond, light.sprite, rng)

    image, lighting = image_from_frame(
        frame, light, cond, tex.clouds, ground=ground, night_win=night_win, lamps=lamps, rng=rng
    )
    return image, frame.labels, counts, lighting
