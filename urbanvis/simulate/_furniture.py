"""Street furniture of the static layer as billboards: trees, lamp poles and their signs.

Each item of :class:`~.scene.Furniture` is projected to the screen and painted through the
z-buffer of :class:`~._paint.Painter`, so buildings and nearer sprites occlude it. Trees
are leafy or bare with the season; lamps are kept for the night emission of
:mod:`._light`.
"""

from __future__ import annotations

import math

import numpy as np

from ._frame import POLE, SIGN, TREE, TRUNK, Frame
from ._light import Light
from ._paint import Painter
from ._textures import Textures
from .conditions import Conditions
from .scene import Furniture

# A lamp head: street-frame (a, l) and screen (u, v) of the lamp, and its depth.
Lamp = tuple[float, float, float, float, float]

_SIGN_COLOURS = ((0.75, 0.1, 0.1), (0.1, 0.3, 0.7), (0.9, 0.9, 0.9), (0.1, 0.5, 0.25))
_METAL = (0.22, 0.23, 0.25)


def paint_trees(
    paint: Painter, frame: Frame, furn: Furniture, cond: Conditions, light: Light, tex: Textures
) -> None:
    """Trunks and crowns: a shaded canopy in leaf (green to autumn colours), else branches."""
    W, f, project, sprite_light = frame.width, frame.f, frame.project, light.sprite
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
                texture=tex.leaf_shade,
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
                pattern=tex.leaves,
            )


def paint_poles(paint: Painter, frame: Frame, furn: Furniture, light: Light) -> list[Lamp]:
    """Lamp poles with their arms and heads, and a sign on some; returns the lamps."""
    W, f, project, sprite_light = frame.width, frame.f, frame.project, light.sprite
    lamps: list[Lamp] = []
    for a, lat, sgn in zip(furn.pole_a, furn.pole_l, furn.pole_sign, strict=True):
        u, v_foot, zc = project(a, lat, 0.0)
        if zc < 1.0 or zc > 170 or u < -W or u > 2 * W:
            continue
        px = f / zc
        paint.rect(
            u - 0.08 * px, u + 0.08 * px, v_foot - 7.5 * px, v_foot, zc, _METAL, POLE, sprite_light
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
            _METAL,
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
                _SIGN_COLOURS[sgn],
                SIGN,
                sprite_light,
            )
    return lamps
