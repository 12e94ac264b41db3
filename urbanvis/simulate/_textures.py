"""Per-city texture tables: the hash table, cloud tile and leaf tiles the drawing passes share.

They are drawn once per city seed and cached, so every image of a city shows the same
window lights, graffiti, asphalt patches, clouds and foliage.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np


class Textures(NamedTuple):
    """The tables of one city."""

    table: np.ndarray  # (1024,) float32 uniforms: window lights, graffiti, asphalt patches
    clouds: np.ndarray  # (64, 512) float32 in 0..1, periodic in azimuth
    leaves: np.ndarray  # (16, 16) bool: the branches of a bare tree
    leaf_shade: np.ndarray  # (16, 16) float32: the shading of a canopy


@lru_cache(maxsize=8)
def textures_from_seed(seed: int) -> Textures:
    """Per-city tables: window/graffiti hashes, a cloud tile, a leaf mask and a leaf shade."""
    rng = np.random.default_rng([seed & ((1 << 63) - 1), 0x7E47])
    table = rng.random(1024).astype(np.float32)
    # Clouds: low-pass filtered noise, periodic in azimuth (columns span 360 degrees).
    noise = np.fft.fft2(rng.normal(size=(64, 512)))
    fy, fx = np.fft.fftfreq(64)[:, None], np.fft.fftfreq(512)[None, :]
    clouds = np.fft.ifft2(noise * np.exp(-((fy / 0.05) ** 2 + (fx / 0.012) ** 2))).real
    clouds = (clouds - clouds.min()) / np.ptp(clouds)
    leaves = rng.random((16, 16))
    return Textures(table, clouds.astype(np.float32), leaves < 0.35, leaves.astype(np.float32))
