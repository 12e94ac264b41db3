"""The static layer's geometry: the street canyon seen from a place along a heading.

The camera stands on a street whose axis is the heading, rounded to a whole degree and
taken modulo 180 (looking north or south along one street shows the same buildings).
Along that axis, the world is cut into 30 m blocks, each split into one to three lots of
10, 20 or 30 m on either side. Every lot's building (height, setback, material, window
grid, storefront), every tree slot and every pole is a hash of the city seed, the street
and the lot's world index, shaped by the latent fields at the lot. So cameras a few metres
apart on one street see the same buildings from slightly different positions, and cameras
100 m apart see other ones.

Coordinates here are the *street frame* of one view: ``a`` metres ahead along the
viewing direction from the place, ``l`` metres to the right of the street's centre line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._hash import hash_uniform
from .city import City
from .fields import latent_fields

LOT = 10.0  # metres; lots are 1-3 of these
BLOCK = 3  # lots per block
STREET_BIN = 60.0  # metres across the axis that count as one street
AHEAD = 180.0  # metres of street modelled ahead of the camera
BEHIND = 15.0
CAM_HEIGHT = 2.5  # metres (a car roof)
TREE_SPACING = 8.0
POLE_SPACING = 32.0

# Lot patterns of a block, as (start, end) in lots; -1 marks an unused slot.
_STARTS = np.array([[0, 1, 2], [0, 2, -1], [0, 1, -1], [0, -1, -1]])
_ENDS = np.array([[1, 2, 3], [2, 3, -1], [1, 3, -1], [3, -1, -1]])

# Facade materials: old (brick, stone, render) and modern (concrete, glass, panels).
_OLD = np.array(  # sorted from dark brick to pale stone, so that a tone picks a range
    [
        [0.50, 0.26, 0.20],
        [0.58, 0.30, 0.22],
        [0.66, 0.38, 0.26],
        [0.74, 0.55, 0.40],
        [0.80, 0.66, 0.52],
        [0.78, 0.70, 0.56],
        [0.82, 0.74, 0.62],
        [0.62, 0.64, 0.58],
    ]
)
_MODERN = np.array(  # sorted from dark glass to white panels
    [
        [0.30, 0.34, 0.40],
        [0.30, 0.38, 0.45],
        [0.42, 0.52, 0.60],
        [0.36, 0.36, 0.38],
        [0.55, 0.55, 0.58],
        [0.62, 0.62, 0.60],
        [0.70, 0.72, 0.74],
        [0.86, 0.85, 0.82],
    ]
)


@dataclass(frozen=True)
class Street:
    """The street a view stands on."""

    axis: int  # degrees clockwise from north, 0-179
    direction: int  # +1 looking along the axis, -1 against it
    s: float  # the place's coordinate along the axis (world metres)
    t: float  # the place's coordinate across the axis
    key: int  # which street across the axis
    road: float  # half-width of the carriageway
    walk: float  # sidewalk width
    fields: dict  # latent fields at the place

    def world(self, s, side, offset: float):
        """World ``(x, y)`` at axis coordinate ``s``, ``offset`` metres to one world side.

        Measured from the middle of the street's band across the axis, not from the
        camera, so that every view of the street puts a lot at the same world point.
        """
        th = math.radians(self.axis)
        s = np.asarray(s, dtype=np.float64)
        t = (self.key + 0.5) * STREET_BIN + np.asarray(side) * offset
        return s * math.sin(th) + t * math.cos(th), s * math.cos(th) - t * math.sin(th)


def street_from_place(city: City, x: float, y: float, heading: float) -> Street:
    """The street seen from ``(x, y)`` looking along ``heading`` (degrees from north)."""
    axis = int(round(heading % 180.0)) % 180
    diff = (heading - axis) % 360.0
    direction = 1 if diff < 90.0 or diff > 270.0 else -1
    th = math.radians(axis)
    s = x * math.sin(th) + y * math.cos(th)
    t = x * math.cos(th) - y * math.sin(th)
    key = int(math.floor(t / STREET_BIN))
    fields = {k: float(v) for k, v in latent_fields(city, x, y).items()}
    u = hash_uniform(city.seed, axis, key, 11, np.arange(2))
    dens = fields["density"]
    road = 3.2 + 4.0 * dens + 1.2 * float(u[0])
    walk = 1.8 + 2.2 * dens + 0.8 * float(u[1])
    return Street(axis, direction, s, t, key, road, walk, fields)


@dataclass(frozen=True)
class Lots:
    """Buildings on both sides of the street, in the view's street frame (one row each)."""

    a0: np.ndarray  # near end along the view
    a1: np.ndarray  # far end
    side: np.ndarray  # +1 right, -1 left
    facade: np.ndarray  # distance of the facade from the centre line
    height: np.ndarray
    colour: np.ndarray  # (n, 3) albedo
    trim: np.ndarray  # (n, 3) cornice / sign band albedo
    floor: np.ndarray  # floor height
    spacing: np.ndarray  # window spacing along the facade
    win_width: np.ndarray  # fraction of spacing
    win_low: np.ndarray  # fraction of floor height
    win_high: np.ndarray
    shop: np.ndarray  # bool: storefront on the ground floor
    door: np.ndarray  # door position along the facade (metres from a0)
    grime: np.ndarray  # 0 clean .. 1 filthy
    boarded: np.ndarray  # share of boarded-up windows
    yard: np.ndarray  # bool: a green front yard between sidewalk and facade
    ident: np.ndarray  # integer id (for window hashing)


def lots_from_street(city: City, st: Street) -> Lots:
    """The buildings a view of ``st`` can see (empty lots left out)."""
    seed = city.seed
    if st.direction > 0:
        lo, hi = st.s - BEHIND, st.s + AHEAD
    else:
        lo, hi = st.s - AHEAD, st.s + BEHIND
    j = np.arange(math.floor(lo / (LOT * BLOCK)), math.floor(hi / (LOT * BLOCK)) + 1)
    wside = np.array([-1, 1])[:, None]  # world side of the axis
    jj = np.broadcast_to(j, (2, len(j)))
    pattern = np.minimum((hash_uniform(seed, st.axis, st.key, wside, jj, 1) * 4).astype(int), 3)
    starts, ends = _STARTS[pattern], _ENDS[pattern]  # (2, J, 3)
    ok = starts >= 0
    side_w = np.broadcast_to(wside[:, :, None], starts.shape)[ok]
    ident = (jj[:, :, None] * BLOCK + starts)[ok]
    s0 = ident * LOT
    s1 = (jj[:, :, None] * BLOCK + ends)[ok] * LOT
    n = len(ident)

    # Latent fields at each lot, about 10 m behind the sidewalk.
    f = latent_fields(city, *st.world((s0 + s1) / 2, side_w, 15.0))
    u = hash_uniform(seed, st.axis, st.key, side_w[:, None], ident[:, None], 2 + np.arange(16))
    dens, style, upkeep, green = f["density"], f["style"], f["upkeep"], f["greenery"]
    tone = f["tone"]

    empty = u[:, 0] < 0.03 + 0.30 * (1 - dens) ** 2
    floors = np.clip(np.round(1 + (0.3 + 11 * dens**1.6) * (0.45 + 0.9 * u[:, 1])), 1, 16)
    modern = u[:, 2] < 0.1 + 0.8 * style
    floor_h = np.where(modern, 3.1, 3.5) + 0.4 * u[:, 3]
    setback = np.where(u[:, 4] < dens * 1.2, 0.0, (1 - dens) * (1.0 + 6.0 * u[:, 5]))
    idx = np.clip(((tone + 0.35 * (u[:, 6] - 0.5)) * len(_OLD)).astype(int), 0, len(_OLD) - 1)
    base = np.where(modern[:, None], _MODERN[idx], _OLD[idx])
    dirt = (1 - upkeep) * (0.3 + 0.7 * u[:, 7])
    bright = 0.85 + 0.3 * u[:, 8]
    grey = base.mean(axis=1, keepdims=True)
    colour = (base + (grey - base) * (0.6 * dirt[:, None])) * (bright * (1 - 0.35 * dirt))[:, None]
    trim = np.where(modern[:, None], colour * 1.15 + 0.05, colour * 0.7)
    spacing = np.where(modern, 2.2 + 1.6 * u[:, 9], 2.6 + 1.0 * u[:, 9])
    win_width = np.where(modern, 0.6 + 0.35 * u[:, 10], 0.35 + 0.15 * u[:, 10])
    win_low = np.where(modern, 0.2 + 0.1 * u[:, 11], 0.25 + 0.05 * u[:, 11])
    win_high = np.where(modern, 0.8 + 0.12 * u[:, 12], 0.75 + 0.08 * u[:, 12])
    shop = u[:, 13] < 0.1 + 0.8 * dens**1.5
    door = 1.0 + (s1 - s0 - 3.0) * u[:, 14]
    yard = (setback > 1.5) & (u[:, 15] < 0.2 + 0.8 * green)

    a0 = st.direction * (np.where(st.direction > 0, s0, s1) - st.s)
    a1 = st.direction * (np.where(st.direction > 0, s1, s0) - st.s)
    keep = ~empty
    return Lots(
        a0=a0[keep],
        a1=a1[keep],
        side=(side_w * st.direction)[keep],
        facade=(st.road + st.walk + setback)[keep],
        height=(floors * floor_h + 0.6)[keep],
        colour=colour[keep],
        trim=trim[keep],
        floor=floor_h[keep],
        spacing=spacing[keep],
        win_width=win_width[keep],
        win_low=win_low[keep],
        win_high=win_high[keep],
        shop=shop[keep],
        door=door[keep],
        grime=dirt[keep],
        boarded=(0.25 * (1 - upkeep) ** 2 * (u[:, 7] > 0.4))[keep],
        yard=yard[keep],
        ident=ident[keep] * 2 + (side_w > 0)[keep] if n else ident,
    )


@dataclass(frozen=True)
class Furniture:
    """Trees and poles along the curbs, in the view's street frame."""

    tree_a: np.ndarray
    tree_l: np.ndarray
    tree_height: np.ndarray
    tree_radius: np.ndarray
    tree_hue: np.ndarray  # 0..1, picks the autumn colour and the green shade
    pole_a: np.ndarray
    pole_l: np.ndarray
    pole_sign: np.ndarray  # -1 no sign, else a sign colour index


def furniture_from_street(city: City, st: Street) -> Furniture:
    """Street trees and lamp poles seen from the view of ``st``."""
    seed = city.seed
    lo, hi = (st.s - BEHIND, st.s + AHEAD) if st.direction > 0 else (st.s - AHEAD, st.s + BEHIND)
    wside = np.array([-1, 1])[:, None]
    k = np.arange(math.floor(lo / TREE_SPACING), math.floor(hi / TREE_SPACING) + 1)
    kk = np.broadcast_to(k, (2, len(k)))
    u = hash_uniform(seed, st.axis, st.key, wside[:, :, None], kk[:, :, None], 40 + np.arange(5))
    s = (kk + 0.2 + 0.6 * u[..., 1]) * TREE_SPACING
    a = st.direction * (s - st.s)
    lside = np.broadcast_to(wside * st.direction, kk.shape)
    green = latent_fields(city, *st.world(s, wside, 6.0))["greenery"]
    has = u[..., 0] < np.clip(1.5 * green - 0.45, 0.0, 0.95)
    tree_l = lside * (st.road + np.minimum(1.0, st.walk * 0.4))

    kp = np.arange(math.floor(lo / POLE_SPACING) - 1, math.floor(hi / POLE_SPACING) + 2)
    kpp = np.broadcast_to(kp, (2, len(kp)))
    up = hash_uniform(seed, st.axis, st.key, wside[:, :, None], kpp[:, :, None], 60 + np.arange(2))
    sp = (kpp + 0.5 * (wside > 0)) * POLE_SPACING
    pole_a = st.direction * (sp - st.s)
    pole_side = np.broadcast_to(wside * st.direction, kpp.shape)
    sign = np.where(
        up[..., 0] < 0.35 + 0.3 * st.fields["density"], (up[..., 1] * 4).astype(int), -1
    )
    return Furniture(
        tree_a=a[has],
        tree_l=tree_l[has],
        tree_height=(4.5 + 5.0 * u[..., 2])[has],
        tree_radius=(1.6 + 1.6 * u[..., 3])[has],
        tree_hue=u[..., 4][has],
        pole_a=pole_a.ravel(),
        pole_l=(pole_side * (st.road + 0.35)).ravel(),
        pole_sign=sign.ravel(),
    )
