"""Paint billboard sprites (trees, poles, cars, people) into the frame buffers.

Each call fills one screen-space shape with a palette colour, a class label, a depth and a
light factor, only where the shape is nearer than what is already there (a z-buffer), so
sprites need no sorting and buildings occlude them correctly. Work is numpy slicing over
the shape's bounding box: there is no loop over pixels.
"""

from __future__ import annotations

import math

import numpy as np


class Palette:
    """Colours of one render, added one at a time or in blocks; indices are stable."""

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []
        self.size = 0

    def add(self, rgb) -> int:
        """Add one colour ``(r, g, b)`` or a block ``(n, 3)``; return the first index."""
        block = np.asarray(rgb, dtype=np.float32).reshape(-1, 3)
        self._blocks.append(block)
        first = self.size
        self.size += len(block)
        return first

    def planes(self) -> np.ndarray:
        """All colours as ``(3, n)`` float32 channel rows."""
        return np.ascontiguousarray(np.concatenate(self._blocks).T)


class Painter:
    """Frame buffers of one render: palette index, shade, labels, depth, direct light.

    Painting a colour adds it to ``palette`` (a :class:`Palette`) and writes its index.
    """

    def __init__(self, palette, material, shade, labels, depth, light):
        self.palette = palette
        self.material, self.shade, self.labels = material, shade, labels
        self.depth, self.light = depth, light
        self.height, self.width = labels.shape

    def colour(self, rgb) -> int:
        """The palette index of a new colour."""
        return self.palette.add(rgb)

    def _box(self, u0: float, u1: float, v0: float, v1: float):
        w, h = self.width, self.height
        c0, c1 = max(math.floor(u0 + 0.5), 0), min(math.floor(u1 + 0.5), w)
        r0, r1 = max(math.floor(v0 + 0.5), 0), min(math.floor(v1 + 0.5), h)
        if c1 <= c0 and 0 <= u0 < w and u1 - u0 > 0.25:  # thinner than a pixel: one column
            c0, c1 = int(u0), int(u0) + 1
        if r1 <= r0 and 0 <= v0 < h and v1 - v0 > 0.25:
            r0, r1 = int(v0), int(v0) + 1
        return c0, c1, r0, r1

    def _fill(self, c0, c1, r0, r1, mask, z, rgb, label, light, shade=None) -> int:
        d = self.depth[r0:r1, c0:c1]
        m = d > z if mask is None else (d > z) & mask
        if not m.any():
            return 0
        d[m] = z
        self.material[r0:r1, c0:c1][m] = self.colour(rgb)
        self.labels[r0:r1, c0:c1][m] = label
        self.light[r0:r1, c0:c1][m] = light
        self.shade[r0:r1, c0:c1][m] = 1.0 if shade is None else shade[m]
        return int(np.count_nonzero(m))

    def rect(self, u0, u1, v0, v1, z, rgb, label, light) -> int:
        """Fill the screen rectangle ``[u0, u1) x [v0, v1)``; returns pixels painted."""
        c0, c1, r0, r1 = self._box(u0, u1, v0, v1)
        if c0 >= c1 or r0 >= r1:
            return 0
        return self._fill(c0, c1, r0, r1, None, z, rgb, label, light)

    def quad(self, ua, ta, ba, ub, tb, bb, z, rgb, label, light) -> int:
        """Fill between two vertical edges ``(u, top, bottom)``, interpolating linearly."""
        if ub < ua:
            ua, ta, ba, ub, tb, bb = ub, tb, bb, ua, ta, ba
        c0, c1, r0, r1 = self._box(ua, ub, min(ta, tb), max(ba, bb))
        if c0 >= c1 or r0 >= r1:
            return 0
        t = (np.arange(c0, c1) + 0.5 - ua) / max(ub - ua, 1e-6)
        top, bot = ta + (tb - ta) * t, ba + (bb - ba) * t
        rows = np.arange(r0, r1)[:, None] + 0.5
        return self._fill(c0, c1, r0, r1, (rows >= top) & (rows < bot), z, rgb, label, light)

    def ellipse(self, cu, cv, ru, rv, z, rgb, label, light, pattern=None, texture=None) -> int:
        """Fill an ellipse.

        ``pattern`` (a 2-D bool tile) thins it out (bare branches); ``texture`` (a 2-D
        float tile) shades it, darker towards the bottom (a canopy).
        """
        c0, c1, r0, r1 = self._box(cu - ru, cu + ru, cv - rv, cv + rv)
        if c0 >= c1 or r0 >= r1:
            return 0
        du = (np.arange(c0, c1) + 0.5 - cu) / max(ru, 0.5)
        dv = (np.arange(r0, r1)[:, None] + 0.5 - cv) / max(rv, 0.5)
        mask = du * du + dv * dv <= 1.0
        shade = None
        if pattern is not None or texture is not None:
            tile = pattern if pattern is not None else texture
            ph, pw = tile.shape
            sub = tile[np.arange(r0, r1)[:, None] % ph, np.arange(c0, c1) % pw]
            if pattern is not None:
                mask &= sub
            else:
                shade = (0.95 - 0.3 * dv + 0.5 * (sub - 0.5)).astype(np.float32)
        return self._fill(c0, c1, r0, r1, mask, z, rgb, label, light, shade)
