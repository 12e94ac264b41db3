"""Light and atmosphere: from the frame buffers and the conditions to the RGB image.

:func:`light_from_conditions` turns the capture's sun, weather and daylight into sky
colours, direct and ambient light, visibility and the sun's direction in the street frame.
:func:`image_from_frame` then lights the albedo (ambient plus direct), exposes it as a
camera would, paints the sky with clouds and the sun's glow, adds lit windows and street
lamps at night, and lays aerial perspective, fog and rain over it, all as per-pixel array
operations on ``(3, H, W)`` channel planes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._frame import SKY, Frame
from .conditions import Conditions

f32 = np.float32


@dataclass(frozen=True, eq=False)
class Light:
    """The light of one capture, with the sun's direction in the view's street frame."""

    top: np.ndarray  # sky colour at the zenith, RGB
    hor: np.ndarray  # sky colour at the horizon, RGB
    direct: float  # strength of direct sunlight
    sun_rgb: np.ndarray  # its colour
    amb_rgb: np.ndarray  # ambient light, RGB
    visibility: float  # metres over which haze dims the scene by 1/e
    el: float  # sun elevation, radians
    sun_lat: float  # sin and cos of the sun's azimuth from the street axis
    sun_al: float
    tan_el: float  # tan of the elevation, at least 1 degree (shadow lengths)
    sprite: float  # direct-light factor of upright billboards


def _smooth(a, b, x):
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def light_from_conditions(cond: Conditions, axis_dir: float) -> Light:
    """Sky colours, sun and ambient light, fog for the conditions, along ``axis_dir``."""
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
    el_r, rel = math.radians(cond.sun_elevation), math.radians(cond.sun_azimuth - axis_dir)
    return Light(
        top=top,
        hor=hor,
        direct=direct,
        sun_rgb=sun_rgb,
        amb_rgb=amb_rgb,
        visibility=visibility,
        el=el_r,
        sun_lat=math.sin(rel),
        sun_al=math.cos(rel),
        tan_el=math.tan(max(el_r, math.radians(1.0))),
        sprite=max(math.sin(el_r), 0.0) * 0.7 + 0.2 * math.cos(el_r),
    )


def image_from_frame(
    frame: Frame,
    light: Light,
    cond: Conditions,
    clouds: np.ndarray,
    *,
    ground,
    night_win,
    lamps,
    rng,
) -> tuple[np.ndarray, float]:
    """The ``(H, W, 3)`` uint8 image of the painted frame, and the mean light level.

    ``ground`` is the :class:`~._canyon.Ground` (for the lamps' pools of light),
    ``night_win`` the windows lit at night (or None), ``lamps`` the lamp heads from
    :func:`~._furniture.paint_poles`, ``rng`` the capture's generator (None: no rain drops).
    """
    img, pal, gain, lighting = _expose(frame, light, cond)
    hs, sky = _paint_sky(img, frame, light, cond, clouds, gain)
    if 1.0 - cond.daylight > 0.05:
        _emit_night(img, pal, frame, cond, ground, night_win, lamps)
    _add_weather(img, frame, light, cond, hs, sky, rng)
    H, W = frame.height, frame.width
    img *= f32(255.0)
    img += f32(0.5)
    np.clip(img, 0.0, 255.0, out=img)
    out = np.empty((H, W, 3), np.uint8)
    for c in range(3):
        out[..., c] = img[c]
    return out, lighting


def _expose(frame: Frame, light: Light, cond: Conditions):
    """Albedo x (ambient + direct) as channel planes ``(3, H, W)``, after auto-exposure."""
    # Channel planes: numpy is several times faster on them than on a trailing axis of 3.
    H, W = frame.height, frame.width
    material, shade, direct_f = frame.material, frame.shade, frame.direct_f
    direct, sun_rgb, amb_rgb = light.direct, light.sun_rgb, light.amb_rgb
    pal = frame.palette.planes()
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
    return img, pal, gain, lighting


def _paint_sky(img, frame: Frame, light: Light, cond: Conditions, clouds, gain):
    """Sky gradient, clouds and the sun's glow where the labels are sky; the sky's rows
    ``hs`` and its mask over them."""
    H, W = frame.height, frame.width
    cx, cy, f, cols, rows, az = frame.cx, frame.cy, frame.f, frame.cols, frame.rows, frame.az
    heading, jh, el = frame.heading, frame.yaw_jitter, light.el
    top_sky, hor_sky = light.top, light.hor
    hs = max(min(int(math.ceil(cy)), H), 0)  # sky lies above the horizon
    sky = frame.labels[:hs] == SKY
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
    return hs, sky


def _emit_night(img, pal, frame: Frame, cond: Conditions, ground, night_win, lamps) -> None:
    """Emission at night: lit windows, lamps and their pools of light on the ground."""
    H, W = frame.height, frame.width
    f, cols, rows, depth, material = frame.f, frame.cols, frame.rows, frame.depth, frame.material
    g0, ag, lg = ground.g0, ground.ag, ground.lg
    night = 1.0 - cond.daylight
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
        pool = np.minimum(pool, f32(1.0)) * (f32(1.2 * night) * ground.mask)
        for c in range(3):
            img[c, g0:] += pool * np.take(pal[c], material[g0:]) * warm[c]


def _add_weather(img, frame: Frame, light: Light, cond: Conditions, hs, sky, rng) -> None:
    """Aerial perspective and fog towards the horizon colour; rain streaks."""
    H, W = frame.height, frame.width
    hor_sky = light.hor
    fog_c = (hor_sky * 0.9 + 0.1 * cond.daylight).astype(f32)
    haze = np.exp(frame.depth * f32(-1.0 / light.visibility))  # transmittance; sky is far: 0
    haze[:hs][sky] = 1.0
    for c in range(3):
        img[c] -= fog_c[c]
        img[c] *= haze
        img[c] += fog_c[c]
    if cond.weather == "rain" and rng is not None:
        drops = rng.random((H, W), dtype=f32) < f32(0.004)
        streak = drops.copy()
        for s in range(1, max(H // 28, 2)):
            streak[s:] |= drops[:-s]
        for c in range(3):
            img[c][streak] = img[c][streak] * f32(0.6) + f32(0.35)
