"""The dynamic layer's people and vehicles: cars, pedestrians and bikes as billboards.

How many there are follows the capture: busier by day and at the rush hours, denser where
the ``density`` field is high, fewer in rain, fog and (bikes) winter; the base rates are
the ones :mod:`.groundtruth` builds its indicators on. Everything is drawn from the
capture's generator, so a capture is reproducible, and painted through the z-buffer of
:class:`~._paint.Painter`; the counts returned are of the objects covering a pixel or more.
"""

from __future__ import annotations

import math

import numpy as np

from ._frame import BIKE, CAR, PERSON, Frame
from ._paint import Painter
from .conditions import Conditions
from .scene import Street

_CAR_COLOURS = np.array(
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
_SHIRTS = np.array(
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


def paint_traffic(
    paint: Painter, frame: Frame, st: Street, cond: Conditions, light: float, rng
) -> list[int]:
    """Cars, pedestrians and bikes for this capture; returns their visible counts.

    ``light`` is the billboards' direct-light factor, ``rng`` the capture's generator.
    """
    hour = cond.hour
    activity = 0.15 + 0.85 * math.exp(-(((hour - 13.0) / 5.0) ** 2))
    rush = (
        1.0
        + 0.6 * math.exp(-(((hour - 8.5) / 1.2) ** 2))
        + 0.6 * math.exp(-(((hour - 17.5) / 1.5) ** 2))
    )
    bad = {"clear": 1.0, "overcast": 0.9, "rain": 0.45, "fog": 0.7}[cond.weather]
    dens = st.fields["density"]
    n_cars = rng.poisson((1.0 + 6.0 * dens) * activity * rush)
    n_parked = rng.poisson(1.0 + 5.0 * dens * (1 - 0.3 * activity))
    n_ped = rng.poisson((0.5 + 9.0 * dens**1.3) * activity * bad)
    n_bike = rng.poisson(
        (0.3 + 1.5 * dens) * activity * bad * (0.3 if cond.season == "winter" else 1.0)
    )
    night = 1 - cond.daylight
    cars = _paint_cars(paint, frame, st, n_cars, n_parked, night, light, rng)
    pedestrians, bikes = _paint_people(paint, frame, st, n_ped, n_bike, light, rng)
    return [cars, pedestrians, bikes]


def _paint_cars(paint, frame: Frame, st: Street, n_cars, n_parked, night, light, rng) -> int:
    """Moving cars in the lanes and cars parked at the curbs; returns the visible count."""
    project, f = frame.project, frame.f
    cars = []
    lane = st.road / 2
    for _ in range(n_cars):
        cars.append(
            (rng.uniform(4, 110), lane * (1 if rng.random() < 0.5 else -1) + rng.normal(0, 0.2))
        )
    for _ in range(n_parked):
        cars.append((rng.uniform(2, 90), (st.road - 1.1) * (1 if rng.random() < 0.5 else -1)))
    seen = 0
    dark, glass = (0.05, 0.05, 0.05), (0.12, 0.14, 0.17)
    tail = (0.9, 0.1, 0.08) if night < 0.5 else (1.0, 0.3, 0.2)
    for a, lat in cars:
        col = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))]
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
        seen += n > 0
    return seen


def _paint_people(paint, frame: Frame, st: Street, n_ped, n_bike, light, rng) -> list[int]:
    """Pedestrians on the sidewalks, then cyclists by the curbs; returns the visible counts."""
    project, f = frame.project, frame.f
    seen = [0, 0]
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
            c = _SHIRTS[rng.integers(len(_SHIRTS))]
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
            seen[kind - 1] += n > 0
    return seen
