"""Deterministic, vectorised hashing of integer keys to uniform numbers (splitmix64).

Every random choice in the synthetic city that must not depend on where the camera
stands (a building's height, a tree's slot) is a hash of the city seed and integer world
keys, so that two cameras that see the same building see the same building.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1


def _mix(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


def hash_u64(seed: int, *keys) -> np.ndarray:
    """A uint64 hash of ``seed`` and integer ``keys`` (broadcast together, at least 1-d)."""
    arrays = [np.atleast_1d(np.asarray(k, dtype=np.int64)) for k in keys]
    shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else (1,)
    h = _mix(np.full(shape, seed & _MASK64, dtype=np.uint64) + _GOLDEN)
    for a in arrays:
        h = _mix(h ^ (a.astype(np.uint64) + _GOLDEN))
    return h


def hash_uniform(seed: int, *keys) -> np.ndarray:
    """Uniform floats in [0, 1) from ``seed`` and integer ``keys`` (broadcast, at least 1-d)."""
    return (hash_u64(seed, *keys) >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def hash_int(seed: int, *keys) -> int:
    """One non-negative Python int from ``seed`` and scalar integer ``keys`` (seeds an RNG)."""
    return int(hash_u64(seed, *keys)[0])
