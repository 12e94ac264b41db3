"""The ambiance layer: smooth latent fields over the city that shape whole neighbourhoods.

Each field is a sum of a few plane waves with random directions and phases, whose
length scales (wavelength / 2 pi) lie between ``City.field_scale`` metres and 2.7 times
that (300 to 800 m by default), mapped to [0, 1]. Nearby places share values; places a
few kilometres apart are nearly independent. The fields are the hidden truth that the
static layer renders and that later ground truth (zone indicators, safety) is derived
from.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from .._errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from .city import City

FIELD_NAMES: tuple[str, ...] = ("style", "greenery", "density", "upkeep", "tone")
"""style: 0 old (brick, stone, tall windows) to 1 modern (concrete, glass, ribbon windows);
greenery: street trees and front gardens; density: building height, lot continuity, road
width, commerce and traffic; upkeep: clean, saturated facades to grime, boarded windows,
graffiti and cracked asphalt; tone: the dominant facade colour within the style (dark to
pale)."""

_WAVES = 6


@lru_cache(maxsize=32)
def _waves(seed: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed & ((1 << 63) - 1), 0x5EED])
    n = (len(FIELD_NAMES), _WAVES)
    length = rng.uniform(scale, scale * 8 / 3, n)  # correlation length: 1 / wavenumber
    angle = rng.uniform(0, 2 * np.pi, n)
    kx = np.cos(angle) / length
    ky = np.sin(angle) / length
    phase = rng.uniform(0, 2 * np.pi, n)
    amp = rng.uniform(0.5, 1.0, n)
    amp /= np.sqrt((amp**2).sum(axis=1, keepdims=True) / 2)  # each field ~ unit variance
    return kx, ky, phase, amp


def latent_fields(city: City, x, y) -> dict[str, np.ndarray]:
    """The latent fields of ``city`` at projected coordinates ``x``, ``y`` (metres).

    Parameters
    ----------
    city : City
        The synthetic city (its seed and field length scale).
    x, y : array_like
        Easting and northing in metres, in the city's local frame; broadcast together.

    Returns
    -------
    dict of str to numpy.ndarray
        One float64 array in [0, 1] per name in :data:`FIELD_NAMES`, shaped like the
        broadcast of ``x`` and ``y``.

    Raises
    ------
    InputError
        If a coordinate is NaN or infinite.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("x and y must be finite numbers (metres); drop or fill NaN locations")
    kx, ky, phase, amp = _waves(city.seed, city.field_scale)
    shape = np.broadcast_shapes(x.shape, y.shape)
    xf, yf = np.broadcast_to(x, shape).ravel(), np.broadcast_to(y, shape).ravel()
    arg = kx[..., None] * xf + ky[..., None] * yf + phase[..., None]  # (fields, waves, n)
    z = (amp[..., None] * np.cos(arg)).sum(axis=1)  # ~ N(0, 1) per field
    values = 0.5 + 0.5 * np.tanh(0.9 * z)
    return {name: values[i].reshape(shape) for i, name in enumerate(FIELD_NAMES)}
