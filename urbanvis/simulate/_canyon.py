"""The street canyon's surfaces: facades found by ray casting, the skyline, the ground.

Each column's ray is cast into the lots of :mod:`.scene` to find the facade it meets;
rows then split the column into sky, distant skyline, facade and ground by comparing with
that facade's roof and foot. Windows, storefronts, doors, sidewalk slabs and lane markings
are masks computed from the hit point's coordinates, so they stay fixed to the world as
the camera moves. Each pass writes the :class:`~._frame.Frame` buffers in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._frame import FACADE, FAR, GRASS, ROAD, SIDEWALK, SKYLINE, WINDOW, Frame
from ._hash import hash_uniform
from ._light import Light
from .city import City
from .conditions import Conditions
from .scene import CAM_HEIGHT, Lots, Street

f32 = np.float32


@dataclass(frozen=True, eq=False)
class Hits:
    """Where each column's ray meets a facade, and the pixels that facade covers."""

    hit: np.ndarray  # (W,) bool: the ray meets a lot
    k: np.ndarray  # (W,) int: which lot
    front: np.ndarray  # (W,) bool: the lot's front face, not its side wall
    zcol: np.ndarray  # (W,) optical depth of the hit, FAR where none
    hcoord: np.ndarray  # (W,) metres along the face from its near edge
    facade: np.ndarray  # (H, W) bool: pixels between the facade's roof and foot


@dataclass(frozen=True, eq=False)
class Ground:
    """The ground rows' street-frame coordinates, for the pools of lamp light."""

    g0: int  # first row below the horizon
    ag: np.ndarray  # (H - g0, W) float32 metres ahead of each ground pixel
    lg: np.ndarray  # (H - g0, W) float32 metres right of the centre line
    mask: np.ndarray  # (H - g0, W) bool: ground, not hidden by a facade


def _wrap(a: np.ndarray, m: float) -> np.ndarray:
    """``a mod m`` for float32 arrays (several times faster than ``np.mod``)."""
    return a - np.float32(m) * np.floor(a * np.float32(1.0 / m))


def cast_rays(frame: Frame, lots: Lots) -> Hits:
    """The first lot each column's ray enters, and the facade's extent in the image."""
    W = frame.width
    a_cam, l_cam, f, cy, rows = frame.a_cam, frame.l_cam, frame.f, frame.cy, frame.rows
    phi = frame.phi
    alpha = phi + frame.delta
    tan_a = np.tan(alpha)
    tan_a = np.where(np.abs(tan_a) < 1e-9, 1e-9, tan_a)
    if len(lots.a0):
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
        zcol = np.where(hit, (ah - a_cam) / np.cos(alpha) * np.cos(phi), FAR)
        lh = l_cam + (ah - a_cam) * tan_a
        hcoord = np.where(front, ah - lots.a0[k], np.abs(lh) - lots.facade[k])
        height_col = np.where(hit, lots.height[k], 0.0)
    else:
        hit, k, front = np.zeros(W, bool), np.zeros(W, int), np.ones(W, bool)
        zcol, hcoord, height_col = np.full(W, FAR), np.zeros(W), np.zeros(W)
    top = np.where(hit, cy - f * (height_col - CAM_HEIGHT) / zcol, np.inf)
    bot = np.where(hit, cy + f * CAM_HEIGHT / zcol, -np.inf)
    facade = (rows >= top.astype(f32)) & (rows < bot.astype(f32))
    return Hits(hit, k, front, zcol, hcoord, facade)


def paint_skyline(frame: Frame, city: City, st: Street, hits: Hits) -> None:
    """The distant skyline: blocky, above the horizon, taller where the city is dense."""
    f, cy, rows = frame.f, frame.cy, frame.rows
    abin = np.floor(frame.az / 1.7).astype(np.int64)
    us = hash_uniform(city.seed, abin, 7)
    elev = np.radians(0.4 + (1.0 + 9.0 * st.fields["density"] ** 1.5) * us * (us > 0.15))
    vsky = (cy - f * np.tan(elev)).astype(f32)
    skyline = (rows >= vsky) & (rows < f32(cy)) & ~hits.facade
    frame.material[skyline] = frame.palette.add((0.44, 0.47, 0.53))
    np.copyto(
        frame.shade,
        (0.8 + 0.4 * hash_uniform(city.seed, abin, 8)).astype(f32)[None, :],
        where=skyline,
    )
    frame.labels[skyline] = SKYLINE
    frame.depth[skyline] = 700.0


def paint_ground(
    frame: Frame,
    st: Street,
    lots: Lots,
    hits: Hits,
    cond: Conditions,
    light: Light,
    table: np.ndarray,
) -> Ground:
    """Road, curb, sidewalk and yards below the horizon and the facades' feet, with the
    buildings' cast shadows."""
    H, f, cy, rows, xcol = frame.height, frame.f, frame.cy, frame.rows, frame.xcol
    a_cam, l_cam, cd, sd = frame.a_cam, frame.l_cam, frame.cd, frame.sd
    fl = st.fields
    g0 = min(int(math.ceil(cy)), H)
    wet = cond.weather == "rain"
    rg = rows[g0:] - f32(cy)
    zg = f32(f * CAM_HEIGHT) / np.maximum(rg, f32(1e-3))  # (Hg, 1) optical depth
    xg = zg * xcol.astype(f32)
    ag = f32(a_cam) + zg * f32(cd) - xg * f32(sd)
    lg = f32(l_cam) + zg * f32(sd) + xg * f32(cd)
    sg = ag * f32(st.direction) + f32(st.s % 720.0)  # world along coordinate (mod 720 m)
    al = np.abs(lg)
    ground = ~hits.facade[g0:]
    cls = (al >= st.road).astype(np.int32)
    cls += al >= st.road + 0.22
    cls += al >= st.road + st.walk
    road_c = np.array([0.30, 0.30, 0.32]) * (0.8 if wet else 1.0) * (1.1 - 0.2 * fl["upkeep"])
    leaf = cond.foliage
    grass = leaf * np.array([0.30, 0.48, 0.20]) + (1 - leaf) * np.array([0.45, 0.42, 0.30])
    green_yards = fl["greenery"] > 0.45
    yard_c = grass if green_yards else np.array([0.52, 0.50, 0.46])
    wetf = 0.88 if wet else 1.0
    base = frame.palette.add(
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
    np.copyto(frame.material[g0:], gmat, where=ground)
    np.copyto(frame.shade[g0:], gshade, where=ground)
    glab = np.array([ROAD, SIDEWALK, SIDEWALK, GRASS if green_yards else SIDEWALK], np.uint8)[cls]
    np.copyto(frame.labels[g0:], glab, where=ground)
    np.copyto(frame.depth[g0:], zg, where=ground)
    # Cast shadows from the buildings on the sun's side (their mean height).
    gdirect = f32(max(math.sin(light.el), 0.0))
    if light.direct > 0 and len(lots.a0):
        sgn = 1 if light.sun_lat > 0 else -1
        near = lots.side == sgn
        hmean = float(lots.height[near].mean()) if near.any() else 0.0
        reach = hmean * abs(light.sun_lat) / light.tan_el
        glit = np.where(lg * sgn > st.road + st.walk - reach, f32(0.0), gdirect)
    else:
        glit = np.broadcast_to(gdirect, ground.shape)
    np.copyto(frame.direct_f[g0:], glit, where=ground)
    return Ground(g0, ag, lg, ground)


def paint_facades(
    frame: Frame,
    st: Street,
    lots: Lots,
    hits: Hits,
    cond: Conditions,
    light: Light,
    table: np.ndarray,
) -> np.ndarray | None:
    """Walls, windows, storefronts, doors, cornices, graffiti and grime, lit by the sun.

    Returns the windows lit at night, or None by day or where no facade is in view.
    """
    if not hits.hit.any():
        return None
    H, W, f, cy, rows = frame.height, frame.width, frame.f, frame.cy, frame.rows
    palette, facade = frame.palette, hits.facade
    kk, front, zcol, hcoord = hits.k, hits.front, hits.zcol, hits.hcoord
    el, sun_lat, sun_al, tan_el = light.el, light.sun_lat, light.sun_al, light.tan_el
    n_lots = len(lots.a0)
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
    gval = np.take(table, (np.floor(hcoord * 2.5).astype(np.int64) + lots.ident[kk] * 17) & 1023)
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
    np.copyto(frame.material, fmat, where=facade)
    np.copyto(frame.shade, fshade, where=facade)
    frame.labels[facade] = FACADE
    frame.labels[facade & windows & ~boarded] = WINDOW
    np.copyto(frame.depth, zcol.astype(f32)[None, :], where=facade)
    # Direct light: which way each face looks, and the opposite side's shadow.
    side = lots.side[kk]
    lam = np.where(front, np.maximum(0.0, -side * sun_lat), np.maximum(0.0, -sun_al)) * math.cos(el)
    lam = lam.astype(f32)[None, :]
    if light.direct > 0:
        hl = lots.height[lots.side == -1].mean() if (lots.side == -1).any() else 0.0
        hr = lots.height[lots.side == 1].mean() if (lots.side == 1).any() else 0.0
        zsh = np.where(side > 0, hl, hr) - 2 * (st.road + st.walk) * tan_el / max(
            abs(sun_lat), 0.05
        )
        lit = np.where(zsh.astype(f32)[None, :] < Z, lam, f32(0.0))
    else:
        lit = np.broadcast_to(lam, (H, W))
    np.copyto(frame.direct_f, lit, where=facade)
    if cond.daylight < 0.95:
        return facade & windows & ~boarded & (wt < f32(0.45))
    return None
