"""Render one street-level image: the static canyon, the ambiance, the capture's dynamics.

Everything is vectorised over the image: a pinhole camera casts one ray per column into
the street canyon (:mod:`.scene`) to find the facade it meets; rows then split each column
into sky, distant skyline, facade and ground by comparing with that facade's roof and
foot. Windows, storefronts, sidewalk slabs and lane markings are masks computed from the
hit point's coordinates, so they stay fixed to the world as the camera moves. Trees,
poles, cars, people and bikes are billboards painted through a z-buffer (:mod:`._paint`).
Light, shadows, weather and fog are per-pixel array operations at the end.
"""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import numpy as np

from .._errors import InputError
from ._hash import hash_int, hash_uniform
from ._paint import Painter, Palette
from .city import City
from .conditions import WEATHERS, Conditions, conditions_from_time, reference_conditions
from .scene import CAM_HEIGHT, furniture_from_street, lots_from_street, street_from_place

log = logging.getLogger(__name__)

# Class labels of the label image.
SKY, SKYLINE, FACADE, WINDOW, ROAD, SIDEWALK, GRASS, TREE, TRUNK, POLE, SIGN, CAR, PERSON, BIKE = (
    range(14)
)
CLASS_NAMES: tuple[str, ...] = (
    "sky",
    "skyline",
    "facade",
    "window",
    "road",
    "sidewalk",
    "grass",
    "tree",
    "trunk",
    "pole",
    "sign",
    "car",
    "person",
    "bike",
)

MAX_JITTER_M = 3.0
MAX_JITTER_DEG = 5.0
HFOV = 90.0  # degrees
_FAR = 1.0e4


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


@dataclass(frozen=True)
class Capture:
    """One rendered capture: the RGB image, its per-pixel class labels and its record."""

    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) uint8, indices into CLASS_NAMES
    record: CaptureRecord


@lru_cache(maxsize=8)
def _textures(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-city tables: window/graffiti hashes, a cloud tile, a leaf mask and a leaf shade."""
    rng = np.random.default_rng([seed & ((1 << 63) - 1), 0x7E47])
    table = rng.random(1024).astype(np.float32)
    # Clouds: low-pass filtered noise, periodic in azimuth (columns span 360 degrees).
    noise = np.fft.fft2(rng.normal(size=(64, 512)))
    fy, fx = np.fft.fftfreq(64)[:, None], np.fft.fftfreq(512)[None, :]
    clouds = np.fft.ifft2(noise * np.exp(-((fy / 0.05) ** 2 + (fx / 0.012) ** 2))).real
    clouds = (clouds - clouds.min()) / np.ptp(clouds)
    leaves = rng.random((16, 16))
    return table, clouds.astype(np.float32), leaves < 0.35, leaves.astype(np.float32)


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


# --------------------------------------------------------------------------- the renderer


def _wrap(a: np.ndarray, m: float) -> np.ndarray:
    """``a mod m`` for float32 arrays (several times faster than ``np.mod``)."""
    return a - np.float32(m) * np.floor(a * np.float32(1.0 / m))


def _smooth(a, b, x):
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _light(cond: Conditions):
    """Sky colours, sun and ambient light, fog for the conditions."""
    el, w, day = cond.sun_elevation, cond.weather, cond.daylight
    low = float(_smooth(0.0, 20.0, el))  # 0 at sunrise/sunset, 1 high sun
    top_day = np.array([0.30, 0.50, 0.85]) * (0.6 + 0.4 * low) + np.array([0.1, 0.05, 0]) * (
        1 - low
    )
    hor_day = np.array([0.95, 0.72, 0.50]) * (1 - low) + np.array([0.78, 0.86, 0.96]) * low
    grey = {"clear": 0.0, "overcast": 0.85, "rain": 1.0, "fog": 1.0}[w]
    grey_level = {"clear": 0.8, "overcast": 0.72, "rain": 0.52, "fog": 0.80}[w]
    top = top_day * (1 - grey) + np.full(3, grey_level * 0.92) * grey
    hor = hor_day * (1 - grey) + np.full(3, grey_level) * grey
    night_top, night_hor = np.array([0.02, 0.03, 0.07]), np.array([0.14, 0.11, 0.12])
    top = night_top + (top - night_top) * day
    hor = night_hor + (hor - night_hor) * day
    direct = {"clear": 0.6, "overcast": 0.1, "rain": 0.0, "fog": 0.05}[w] * float(
        _smooth(-1.0, 8.0, el)
    )
    sun_rgb = np.array([1.0, 0.68, 0.42]) * (1 - low) + np.array([1.0, 0.97, 0.92]) * low
    amb = 0.025 + (0.6 + 0.2 * grey) * day * (0.85 if w == "rain" else 1.0)
    amb_rgb = amb * (hor * 0.5 + top * 0.5) / max(float((hor * 0.5 + top * 0.5).mean()), 1e-3)
    amb_rgb = amb_rgb * (0.35 + 0.65 * day) + np.array([0.03, 0.025, 0.02]) * (1 - day)
    visibility = {"clear": 900.0, "overcast": 500.0, "rain": 250.0, "fog": 45.0}[w]
    return top, hor, direct, sun_rgb, amb_rgb, visibility


def _render(city, x, y, heading, jit, cond: Conditions, rng, size):
    H, W = size
    jx, jy, jh = jit
    table, clouds, leaves, leaf_shade = _textures(city.seed)
    st = street_from_place(city, x, y, heading)
    lots = lots_from_street(city, st)
    furn = furniture_from_street(city, st)
    fl = st.fields
    f32 = np.float32

    # Camera in the street frame: offset (a_cam, l_cam), yaw from the view axis.
    th = math.radians(st.axis)
    a_cam = st.direction * (jx * math.sin(th) + jy * math.cos(th))
    l_cam = st.direction * (jx * math.cos(th) - jy * math.sin(th))
    axis_dir = st.axis if st.direction > 0 else st.axis + 180
    delta = math.radians(((heading + jh - axis_dir + 180.0) % 360.0) - 180.0)
    cd, sd = math.cos(delta), math.sin(delta)
    f = (W / 2) / math.tan(math.radians(HFOV / 2))
    cx, cy = W / 2, H / 2 - 0.04 * H  # horizon a little above the centre

    cols = np.arange(W) + 0.5
    xcol = (cols - cx) / f  # tan(phi) per column
    phi = np.arctan(xcol)
    alpha = phi + delta
    tan_a = np.tan(alpha)
    tan_a = np.where(np.abs(tan_a) < 1e-9, 1e-9, tan_a)

    # ---- ray cast: the first lot each column's ray enters
    n_lots = len(lots.a0)
    if n_lots:
        P = (lots.side * lots.facade)[None, :]
        a_enter = a_cam + (P - l_cam) / tan_a[:, None]
        a_hit = np.maximum(lots.a0[None, :], a_enter)
        ok = (lots.side[None, :] * tan_a[:, None] > 0) & (a_hit <= lots.a1) & (a_hit > a_cam + 0.3)
        a_hit = np.where(ok, a_hit, np.inf)
        k = np.argmin(a_hit, axis=1)
        ah = a_hit[np.arange(W), k]
        hit = np.isfinite(ah)
        ah = np.where(hit, ah, a_cam + 1.0)
        front = a_enter[np.arange(W), k] >= lots.a0[k]
        zcol = np.where(hit, (ah - a_cam) / np.cos(alpha) * np.cos(phi), _FAR)
        lh = l_cam + (ah - a_cam) * tan_a
        hcoord = np.where(front, ah - lots.a0[k], np.abs(lh) - lots.facade[k])
        height_col = np.where(hit, lots.height[k], 0.0)
    else:
        hit, k, front = np.zeros(W, bool), np.zeros(W, int), np.ones(W, bool)
        zcol, hcoord, height_col = np.full(W, _FAR), np.zeros(W), np.zeros(W)
    top = np.where(hit, cy - f * (height_col - CAM_HEIGHT) / zcol, np.inf)
    bot = np.where(hit, cy + f * CAM_HEIGHT / zcol, -np.inf)

    rows = (np.arange(H, dtype=f32) + f32(0.5))[:, None]
    facade = (rows >= top.astype(f32)) & (rows < bot.astype(f32))
    # Frame buffers: palette index and shade (albedo = palette[index] * shade), labels,
    # depth, direct-light factor. Palette 0 is the sky (painted separately).
    palette = Palette()
    palette.add((0.0, 0.0, 0.0))
    material = np.zeros((H, W), np.intp)
    shade = np.ones((H, W), f32)
    labels = np.full((H, W), SKY, np.uint8)
    depth = np.full((H, W), f32(_FAR))
    direct_f = np.zeros((H, W), f32)

    top_sky, hor_sky, direct, sun_rgb, amb_rgb, visibility = _light(cond)
    el, rel = math.radians(cond.sun_elevation), math.radians(cond.sun_azimuth - axis_dir)
    sun_lat, sun_al = math.sin(rel), math.cos(rel)
    tan_el = math.tan(max(el, math.radians(1.0)))

    # ---- distant skyline, blocky, above the horizon
    az = heading + jh + np.degrees(phi)
    abin = np.floor(az / 1.7).astype(np.int64)
    us = hash_uniform(city.seed, abin, 7)
    elev = np.radians(0.4 + (1.0 + 9.0 * fl["density"] ** 1.5) * us * (us > 0.15))
    vsky = (cy - f * np.tan(elev)).astype(f32)
    skyline = (rows >= vsky) & (rows < f32(cy)) & ~facade
    material[skyline] = palette.add((0.44, 0.47, 0.53))
    np.copyto(
        shade, (0.8 + 0.4 * hash_uniform(city.seed, abin, 8)).astype(f32)[None, :], where=skyline
    )
    labels[skyline] = SKYLINE
    depth[skyline] = 700.0

    # ---- ground: road, curb, sidewalk, yards, below the horizon and the facades' feet
    g0 = min(int(math.ceil(cy)), H)
    wet = cond.weather == "rain"
    rg = rows[g0:] - f32(cy)
    zg = f32(f * CAM_HEIGHT) / np.maximum(rg, f32(1e-3))  # (Hg, 1) optical depth
    xg = zg * xcol.astype(f32)
    ag = f32(a_cam) + zg * f32(cd) - xg * f32(sd)
    lg = f32(l_cam) + zg * f32(sd) + xg * f32(cd)
    sg = ag * f32(st.direction) + f32(st.s % 720.0)  # world along coordinate (mod 720 m)
    al = np.abs(lg)
    ground = ~facade[g0:]
    cls = (al >= st.road).astype(np.int32)
    cls += al >= st.road + 0.22
    cls += al >= st.road + st.walk
    road_c = np.array([0.30, 0.30, 0.32]) * (0.8 if wet else 1.0) * (1.1 - 0.2 * fl["upkeep"])
    leaf = cond.foliage
    grass = leaf * np.array([0.30, 0.48, 0.20]) + (1 - leaf) * np.array([0.45, 0.42, 0.30])
    green_yards = fl["greenery"] > 0.45
    yard_c = grass if green_yards else np.array([0.52, 0.50, 0.46])
    wetf = 0.88 if wet else 1.0
    base = palette.add(
        [
            road_c * wetf,
            (0.68 * wetf, 0.67 * wetf, 0.64 * wetf),
            (0.62 * wetf, 0.60 * wetf, 0.56 * wetf),
            yard_c * wetf,
            (0.85, 0.83, 0.75),
        ]
    )
    on_road = cls == 0
    mark = (al < 0.1) & (_wrap(sg, 9.0) < 4.5)
    mark |= np.abs(al - (st.road - 0.3)) < 0.08
    mark &= on_road
    gmat = cls + base
    gmat[mark] = base + 4
    gshade = np.where(
        (cls == 2) & ((_wrap(sg, 1.6) < 0.06) | (_wrap(al - f32(st.road), 1.6) < 0.05)),
        f32(0.8),
        f32(1.0),
    )
    if fl["upkeep"] < 0.5:  # cracked, patched asphalt
        patch = np.take(
            table,
            (np.floor(sg / 1.5).astype(np.int64) * 7 + np.floor(lg / 1.2).astype(np.int64) * 13)
            & 1023,
        )
        gshade[on_road & (patch < 0.5 - fl["upkeep"])] = 0.82
    np.copyto(material[g0:], gmat, where=ground)
    np.copyto(shade[g0:], gshade, where=ground)
    glab = np.array([ROAD, SIDEWALK, SIDEWALK, GRASS if green_yards else SIDEWALK], np.uint8)[cls]
    np.copyto(labels[g0:], glab, where=ground)
    np.copyto(depth[g0:], zg, where=ground)
    # Cast shadows from the buildings on the sun's side (their mean height).
    gdirect = f32(max(math.sin(el), 0.0))
    if direct > 0 and n_lots:
        sgn = 1 if sun_lat > 0 else -1
        near = lots.side == sgn
        hmean = float(lots.height[near].mean()) if near.any() else 0.0
        reach = hmean * abs(sun_lat) / tan_el
        glit = np.where(lg * sgn > st.road + st.walk - reach, f32(0.0), gdirect)
    else:
        glit = np.broadcast_to(gdirect, ground.shape)
    np.copyto(direct_f[g0:], glit, where=ground)

    # ---- facades: wall, windows, storefronts, doors, trim
    night_win = None
    if hit.any():
        kk = k
        Z = f32(CAM_HEIGHT) + (f32(cy) - rows) * (zcol / f).astype(f32)[None, :]
        fz = Z / lots.floor[kk].astype(f32)
        fi = np.floor(fz)
        fr = fz - fi
        hx = hcoord / lots.spacing[kk]
        ci = np.floor(hx)
        cr = np.abs(hx - ci - 0.5)
        hgt = lots.height[kk].astype(f32)
        wincol = ((cr < lots.win_width[kk] / 2) & (hcoord > 0.7) & front) | (~front & (cr < 0.2))
        shop = lots.shop[kk] & front
        win = (fr >= lots.win_low[kk].astype(f32)) & (fr < lots.win_high[kk].astype(f32))
        win &= wincol & (hgt - f32(0.8) > Z)
        win &= (fi >= 1) | ~shop
        fh = lots.floor[kk].astype(f32)
        glass = shop & (cr < 0.44) & (f32(0.3) < Z) & (fh * f32(0.78) > Z)
        band = shop & (fh * f32(0.8) <= Z) & (fh * f32(0.97) > Z)
        door = (~shop & front & (np.abs(hcoord - lots.door[kk] - 0.6) < 0.6)) & (f32(2.3) > Z)
        win &= ~door
        cornice = hgt - f32(0.6) < Z
        gval = np.take(
            table, (np.floor(hcoord * 2.5).astype(np.int64) + lots.ident[kk] * 17) & 1023
        )
        graffiti = (f32(2.2) > Z) & ((gval < lots.grime[kk] * 0.5) & front)
        windows = win | glass
        wcol_key = (ci * 31 + lots.ident[kk] * 7).astype(np.int32)[None, :]
        wt = np.take(table, (fi.astype(np.int32) * 131 + wcol_key) & 1023, mode="clip")
        boarded = win & (wt > f32(1.0) - lots.boarded[kk].astype(f32))
        # Palette blocks: walls, trims, doors, signs, graffiti per lot; glass, boards shared.
        gh = np.take(table, (lots.ident * 5 + 3) & 1023)[:, None]
        wall0 = palette.add(lots.colour)
        palette.add(lots.trim)
        palette.add(lots.colour * 0.45)
        palette.add(0.3 + 0.6 * np.hstack([gh, 1 - gh, gh * gh]))
        palette.add(np.hstack([0.9 * gh, 0.3 + 0.5 * (1 - gh), 0.9 - 0.6 * gh]))
        glass_i = palette.add([(0.22, 0.25, 0.30), (0.42, 0.33, 0.22)])
        board_i = glass_i + 1
        lot_i = (wall0 + kk).astype(np.int32)[None, :]
        fmat = np.where(cornice, lot_i + n_lots, lot_i)
        fmat = np.where(graffiti, lot_i + 4 * n_lots, fmat)
        fmat = np.where(door, lot_i + 2 * n_lots, fmat)
        fmat = np.where(band, lot_i + 3 * n_lots, fmat)
        fmat[windows] = glass_i
        fmat[boarded] = board_i
        grime = (lots.grime[kk] * (0.15 + 0.35 * gval)).astype(f32)
        fshade = f32(1.0) - grime * np.clip(f32(1.0) - Z / f32(8.0), f32(0.0), f32(1.0))
        fshade[(fr < f32(0.05)) & (fi >= 1)] *= f32(0.88)
        np.copyto(fshade, f32(0.75) + f32(0.6) * wt, where=windows & ~boarded)
        np.copyto(material, fmat, where=facade)
        np.copyto(shade, fshade, where=facade)
        labels[facade] = FACADE
        labels[facade & windows & ~boarded] = WINDOW
        np.copyto(depth, zcol.astype(f32)[None, :], where=facade)
        # Direct light: which way each face looks, and the opposite side's shadow.
        side = lots.side[kk]
        lam = np.where(
            front, np.maximum(0.0, -side * sun_lat), np.maximum(0.0, -sun_al)
        ) * math.cos(el)
        lam = lam.astype(f32)[None, :]
        if direct > 0:
            hl = lots.height[lots.side == -1].mean() if (lots.side == -1).any() else 0.0
            hr = lots.height[lots.side == 1].mean() if (lots.side == 1).any() else 0.0
            zsh = np.where(side > 0, hl, hr) - 2 * (st.road + st.walk) * tan_el / max(
                abs(sun_lat), 0.05
            )
            lit = np.where(zsh.astype(f32)[None, :] < Z, lam, f32(0.0))
        else:
            lit = np.broadcast_to(lam, (H, W))
        np.copyto(direct_f, lit, where=facade)
        if cond.daylight < 0.95:
            night_win = facade & windows & ~boarded & (wt < f32(0.45))

    # ---- billboards: trees, poles, and (dynamic) cars, people, bikes
    paint = Painter(palette, material, shade, labels, depth, direct_f)
    sprite_light = max(math.sin(el), 0.0) * 0.7 + 0.2 * math.cos(el)

    def project(a, lat, z_up):
        ar, lr = a - a_cam, lat - l_cam
        zc = ar * cd + lr * sd
        xc = -ar * sd + lr * cd
        return cx + f * xc / zc, cy - f * (z_up - CAM_HEIGHT) / zc, zc

    leafy = cond.foliage
    for a, lat, h, r, hue in zip(
        furn.tree_a, furn.tree_l, furn.tree_height, furn.tree_radius, furn.tree_hue, strict=True
    ):
        u, v_foot, zc = project(a, lat, 0.0)
        if zc < 1.0 or zc > 170:
            continue
        px = f / zc  # pixels per metre
        if u + r * px < 0 or u - r * px > W:
            continue
        paint.rect(
            u - 0.15 * px,
            u + 0.15 * px,
            v_foot - (h - 1.6 * r) * px,
            v_foot,
            zc,
            (0.30, 0.24, 0.18),
            TRUNK,
            sprite_light,
        )
        cv = v_foot - (h - r) * px
        if leafy > 0.2:
            autumn = cond.autumn * (0.5 + 0.5 * hue)
            c = (
                np.array([0.22 + 0.15 * hue, 0.40 + 0.1 * hue, 0.16]) * (1 - autumn)
                + np.array([0.75, 0.42 - 0.2 * hue, 0.12]) * autumn
            )
            paint.ellipse(
                u,
                cv,
                r * px,
                1.1 * r * px,
                zc - 0.3,
                c * (0.6 + 0.4 * leafy),
                TREE,
                sprite_light,
                texture=leaf_shade,
            )
        else:
            paint.ellipse(
                u,
                cv,
                r * px,
                1.1 * r * px,
                zc - 0.3,
                (0.33, 0.28, 0.23),
                TRUNK,
                sprite_light,
                pattern=leaves,
            )

    sign_cols = ((0.75, 0.1, 0.1), (0.1, 0.3, 0.7), (0.9, 0.9, 0.9), (0.1, 0.5, 0.25))
    metal = (0.22, 0.23, 0.25)
    lamps = []
    for a, lat, sgn in zip(furn.pole_a, furn.pole_l, furn.pole_sign, strict=True):
        u, v_foot, zc = project(a, lat, 0.0)
        if zc < 1.0 or zc > 170 or u < -W or u > 2 * W:
            continue
        px = f / zc
        paint.rect(
            u - 0.08 * px, u + 0.08 * px, v_foot - 7.5 * px, v_foot, zc, metal, POLE, sprite_light
        )
        la = lat - math.copysign(1.6, lat)
        ua, va, _ = project(a, la, 7.5)
        paint.quad(
            u,
            v_foot - 7.6 * px,
            v_foot - 7.4 * px,
            ua,
            va - 0.1 * px,
            va + 0.1 * px,
            zc,
            metal,
            POLE,
            sprite_light,
        )
        paint.rect(
            ua - 0.3 * px,
            ua + 0.3 * px,
            va,
            va + 0.2 * px,
            zc - 0.1,
            (0.85, 0.82, 0.7),
            POLE,
            sprite_light,
        )
        lamps.append((a, la, ua, va, zc))
        if sgn >= 0:
            paint.rect(
                u - 0.35 * px,
                u + 0.35 * px,
                v_foot - 3.1 * px,
                v_foot - 2.4 * px,
                zc - 0.1,
                sign_cols[sgn],
                SIGN,
                sprite_light,
            )

    counts = [0, 0, 0]
    if rng is not None:
        counts = _paint_traffic(rng, paint, project, st, fl, cond, sprite_light, f)

    # ---- light: albedo x (ambient + direct), then the sky. Channel planes (3, H, W):
    # numpy is several times faster on them than on a trailing axis of 3.
    pal = palette.planes()
    img = np.empty((3, H, W), f32)
    sun_c = (direct * sun_rgb).astype(f32)
    amb_c = amb_rgb.astype(f32)
    for c in range(3):
        np.take(pal[c], material, out=img[c], mode="clip")
        lum = direct_f * sun_c[c]
        lum += amb_c[c]
        lum *= shade
        img[c] *= lum
    lighting = float(np.mean(direct_f) * direct + amb_rgb.mean())
    # Auto-exposure, as a camera does: scale the scene towards a mid-grey mean, within limits.
    scene = material[::3, ::3] != 0
    level = float(img[:, ::3, ::3][:, scene].mean()) if scene.any() else 0.42
    gain = f32(min(max(0.42 / max(level, 1e-3), 0.7), 1.8 if cond.daylight > 0.5 else 1.2))
    img *= gain

    hs = max(min(int(math.ceil(cy)), H), 0)  # sky lies above the horizon
    sky = labels[:hs] == SKY
    elev_row = np.clip((f32(cy) - rows[:hs]) / f32(cy + 1e-6), 0.0, 1.0)  # 0 horizon .. 1 top
    ramp = np.sqrt(elev_row)
    cov = {"clear": 0.45, "overcast": 0.9, "rain": 1.0, "fog": 1.0}[cond.weather]
    ch, cw = clouds.shape
    cr_i = np.minimum((elev_row[:, 0] * 1.5 * (ch - 1)).astype(np.int64), ch - 1)
    cc_i = np.floor((az % 360.0) / 360.0 * cw).astype(np.int64) % cw
    cl = clouds[cr_i[:, None], cc_i[None, :]]
    cl = np.clip((cl - f32(1 - cov)) * f32(3.0), f32(0.0), f32(1.0)) * f32(0.35 + 0.65 * cov)
    cloud_c = f32(0.55 + 0.45 * cond.daylight) * f32(hor_sky.max() * 0.9 + 0.1)
    # The sun's glow, when it is in view and not hidden by rain or fog.
    sun_rel = math.radians(((cond.sun_azimuth - heading - jh + 180) % 360) - 180)
    glow = None
    if cond.sun_elevation > -1 and cond.weather in ("clear", "overcast") and abs(sun_rel) < 1.0:
        sun_u = cx + f * math.tan(sun_rel)
        sun_v = cy - f * math.tan(el) / math.cos(sun_rel)
        d2 = ((cols[None, :] - sun_u) ** 2 + (rows[:hs] - sun_v) ** 2) / (0.05 * W) ** 2
        glow = np.exp(-d2).astype(f32) * f32(1.0 if cond.weather == "clear" else 0.3)
    sky_gain = gain**0.5
    for c, tint in enumerate((1.0, 0.9, 0.7)):
        row_c = (hor_sky[c] + (top_sky[c] - hor_sky[c]) * ramp).astype(f32)
        plane = row_c + (cloud_c - row_c) * cl
        if glow is not None:
            plane += glow * f32(tint)
        plane *= sky_gain
        np.copyto(img[c, :hs], plane, where=sky)

    # ---- emission at night: lit windows, lamps and their pools of light
    night = 1.0 - cond.daylight
    if night > 0.05:
        warm = np.array([1.0, 0.85, 0.55], f32)
        if night_win is not None:
            for c, v in enumerate((1.0, 0.8, 0.5)):
                img[c][night_win] += f32(0.75 * night * v)
        for _a, _lat, ua, va, zc in lamps:
            px = f / zc
            rad = 2.5 * px + 3
            r0, r1 = max(int(va - rad), 0), min(int(va + rad) + 1, H)
            c0, c1 = max(int(ua - rad), 0), min(int(ua + rad) + 1, W)
            if r0 < r1 and c0 < c1:
                d2 = ((cols[None, c0:c1] - ua) ** 2 + (rows[r0:r1] - va) ** 2) / (0.6 * px + 1) ** 2
                vis = depth[r0:r1, c0:c1] >= zc - 0.5
                spot = ((night * np.exp(-d2)) * vis).astype(f32)
                img[:, r0:r1, c0:c1] += spot[None] * warm[:, None, None]
        if g0 < H and lamps:
            pool = np.zeros(ag.shape, f32)
            for a, lat, *_ in lamps[:8]:
                pool += np.exp(-((ag - f32(a)) ** 2 + (lg - f32(lat)) ** 2) / f32(40.0))
            pool = np.minimum(pool, f32(1.0)) * (f32(1.2 * night) * ground)
            for c in range(3):
                img[c, g0:] += pool * np.take(pal[c], material[g0:]) * warm[c]

    # ---- aerial perspective, fog and rain
    fog_c = (hor_sky * 0.9 + 0.1 * cond.daylight).astype(f32)
    haze = np.exp(depth * f32(-1.0 / visibility))  # transmittance; sky depth is far: 0
    haze[:hs][sky] = 1.0
    for c in range(3):
        img[c] -= fog_c[c]
        img[c] *= haze
        img[c] += fog_c[c]
    if wet and rng is not None:
        drops = rng.random((H, W), dtype=f32) < f32(0.004)
        streak = drops.copy()
        for s in range(1, max(H // 28, 2)):
            streak[s:] |= drops[:-s]
        for c in range(3):
            img[c][streak] = img[c][streak] * f32(0.6) + f32(0.35)
    img *= f32(255.0)
    img += f32(0.5)
    np.clip(img, 0.0, 255.0, out=img)
    out = np.empty((H, W, 3), np.uint8)
    for c in range(3):
        out[..., c] = img[c]
    return out, labels, counts, lighting


def _paint_traffic(rng, paint, project, st, fl, cond, light, f):
    """Cars, pedestrians and bikes for this capture; returns visible counts."""
    hour = cond.hour
    activity = 0.15 + 0.85 * math.exp(-(((hour - 13.0) / 5.0) ** 2))
    rush = (
        1.0
        + 0.6 * math.exp(-(((hour - 8.5) / 1.2) ** 2))
        + 0.6 * math.exp(-(((hour - 17.5) / 1.5) ** 2))
    )
    bad = {"clear": 1.0, "overcast": 0.9, "rain": 0.45, "fog": 0.7}[cond.weather]
    dens = fl["density"]
    n_cars = rng.poisson((1.0 + 6.0 * dens) * activity * rush)
    n_parked = rng.poisson(1.0 + 5.0 * dens * (1 - 0.3 * activity))
    n_ped = rng.poisson((0.5 + 9.0 * dens**1.3) * activity * bad)
    n_bike = rng.poisson(
        (0.3 + 1.5 * dens) * activity * bad * (0.3 if cond.season == "winter" else 1.0)
    )
    night = 1 - cond.daylight
    car_cols = np.array(
        [
            [0.8, 0.8, 0.8],
            [0.1, 0.1, 0.12],
            [0.6, 0.1, 0.1],
            [0.15, 0.25, 0.5],
            [0.5, 0.5, 0.52],
            [0.85, 0.85, 0.8],
            [0.3, 0.35, 0.3],
        ],
        np.float32,
    )
    cars = []
    lane = st.road / 2
    for _ in range(n_cars):
        cars.append(
            (rng.uniform(4, 110), lane * (1 if rng.random() < 0.5 else -1) + rng.normal(0, 0.2))
        )
    for _ in range(n_parked):
        cars.append((rng.uniform(2, 90), (st.road - 1.1) * (1 if rng.random() < 0.5 else -1)))
    seen = [0, 0, 0]
    dark, glass = (0.05, 0.05, 0.05), (0.12, 0.14, 0.17)
    tail = (0.9, 0.1, 0.08) if night < 0.5 else (1.0, 0.3, 0.2)
    for a, lat in cars:
        col = car_cols[rng.integers(len(car_cols))]
        u, vb, zc = project(a, lat, 0.25)
        if zc < 2.0:
            continue
        px = f / zc
        # Visible side, from the near face to the far face.
        sl = lat - math.copysign(0.9, lat)
        ua, ta, _ = project(a, sl, 1.45)
        ub, tb, zb = project(a + 4.3, sl, 1.45)
        if max(ua, ub, u + px) < 0 or min(ua, ub, u - px) > paint.width:
            continue
        n = 0
        if zb > 0:
            ba, bb = project(a, sl, 0.25)[1], project(a + 4.3, sl, 0.25)[1]
            n += paint.quad(ua, ta, ba, ub, tb, bb, zc + 1.0, col * 0.8, CAR, light)
        n += paint.rect(u - 0.9 * px, u + 0.9 * px, vb - 0.85 * px, vb, zc, col, CAR, light)
        cab = (u - 0.75 * px, u + 0.75 * px, vb - 1.25 * px, vb - 0.85 * px)
        n += paint.rect(*cab, zc, col * 0.9, CAR, light)
        if px > 3:  # details only where they cover pixels
            zd = zc - 0.01
            paint.rect(
                u - 0.65 * px, u + 0.65 * px, vb - 1.2 * px, vb - 0.88 * px, zd, glass, CAR, light
            )
            paint.rect(u - 0.85 * px, u - 0.55 * px, vb, vb + 0.25 * px, zd, dark, CAR, light)
            paint.rect(u + 0.55 * px, u + 0.85 * px, vb, vb + 0.25 * px, zd, dark, CAR, light)
            lt = 1.0 + 4 * night
            paint.rect(
                u - 0.85 * px, u - 0.6 * px, vb - 0.7 * px, vb - 0.55 * px, zd, tail, CAR, lt
            )
            paint.rect(
                u + 0.6 * px, u + 0.85 * px, vb - 0.7 * px, vb - 0.55 * px, zd, tail, CAR, lt
            )
        seen[0] += n > 0
    shirt = np.array(
        [
            [0.7, 0.15, 0.15],
            [0.15, 0.3, 0.6],
            [0.9, 0.9, 0.85],
            [0.1, 0.1, 0.1],
            [0.8, 0.6, 0.2],
            [0.3, 0.5, 0.3],
            [0.55, 0.45, 0.6],
        ],
        np.float32,
    )
    for kind, count in ((1, n_ped), (2, n_bike)):
        for _ in range(count):
            side = 1 if rng.random() < 0.5 else -1
            if kind == 1:
                a, lat = (
                    rng.uniform(2, 70),
                    side * (st.road + rng.uniform(0.4, max(st.walk - 0.3, 0.5))),
                )
            else:
                a, lat = rng.uniform(4, 70), side * (st.road - 0.7)
            h = rng.uniform(1.55, 1.9)
            u, vb, zc = project(a, lat, 0.0)
            if zc < 1.5:
                continue
            px = f / zc
            top = (h + 0.3) if kind == 2 else h
            c = shirt[rng.integers(len(shirt))]
            lab = PERSON if kind == 1 else BIKE
            n = 0
            if kind == 2:
                n += paint.rect(
                    u - 0.04 * px,
                    u + 0.04 * px,
                    vb - 0.7 * px,
                    vb,
                    zc,
                    (0.08, 0.08, 0.08),
                    lab,
                    light,
                )
                n += paint.rect(
                    u - 0.12 * px,
                    u + 0.12 * px,
                    vb - 1.05 * px,
                    vb - 0.6 * px,
                    zc - 0.01,
                    (0.15, 0.15, 0.2),
                    lab,
                    light,
                )
            else:
                n += paint.rect(
                    u - 0.14 * px,
                    u + 0.14 * px,
                    vb - 0.85 * px,
                    vb,
                    zc,
                    (0.15, 0.15, 0.2),
                    lab,
                    light,
                )
            n += paint.rect(
                u - 0.2 * px,
                u + 0.2 * px,
                vb - (top - 0.25) * px,
                vb - (top - 0.85) * px,
                zc,
                c,
                lab,
                light,
            )
            n += paint.ellipse(
                u, vb - (top - 0.12) * px, 0.11 * px, 0.13 * px, zc, (0.75, 0.58, 0.45), lab, light
            )
            seen[kind] += n > 0
    return seen
