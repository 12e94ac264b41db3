"""Spreading a pair budget over anchors and drawing the pairs, vectorised.

Every anchor (place, zone or image) gets one pair before any gets a second
(:func:`_quotas`); :func:`_pick_per_group` keeps a random quota of explicit candidates and
:func:`_sample_triangle` draws distinct pairs of a zone's images by number, without
listing the n(n-1)/2 candidates of large zones.
"""

from __future__ import annotations

import numpy as np


def _quotas(caps: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Pairs per anchor: equal shares (capped by what each holds) summing to the budget."""
    caps = np.asarray(caps, dtype=np.int64)
    if caps.sum() <= budget:
        return caps.copy()
    lo, hi = 0, int(caps.max())
    while lo < hi:  # the largest level L with sum(min(caps, L)) <= budget
        mid = (lo + hi + 1) // 2
        if np.minimum(caps, mid).sum() <= budget:
            lo = mid
        else:
            hi = mid - 1
    quota = np.minimum(caps, lo)
    rest = int(budget - quota.sum())
    if rest:
        extra = rng.choice(np.flatnonzero(caps > lo), size=rest, replace=False)
        quota[extra] += 1
    return quota


def _pick_per_group(group: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of explicit candidates to keep: a random ``quota[g]`` of each group ``g``."""
    quota = _quotas(np.bincount(group).astype(np.int64), budget, rng)
    return _pick_per_group_quota(group, quota, rng)


def _sample_triangle(caps, quota, rng) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``quota[z]`` distinct pair numbers in ``[0, caps[z])`` for every zone ``z``."""
    zones = np.flatnonzero(quota > 0)
    dense = zones[2 * quota[zones] >= caps[zones]]  # enumerate, then keep a random subset
    sparse = zones[2 * quota[zones] < caps[zones]]  # draw, then redraw duplicates
    z_parts, k_parts = [], []
    if dense.size:
        n = caps[dense]
        z = np.repeat(dense, n)
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        keep = _pick_per_group_quota(z, quota, rng)
        z_parts.append(z[keep])
        k_parts.append(k[keep])
    if sparse.size:
        z = np.empty(0, dtype=np.int64)
        k = np.empty(0, dtype=np.int64)
        want = quota[sparse].copy()
        while want.sum():
            zz = np.repeat(sparse, want)
            kk = np.floor(rng.random(zz.size) * caps[zz]).astype(np.int64)
            z, k = np.concatenate([z, zz]), np.concatenate([k, kk])
            z, k = _unique_pairs(z, k, int(caps.max()))
            want = quota[sparse] - np.bincount(z, minlength=caps.size)[sparse]
        z_parts.append(z)
        k_parts.append(k)
    return np.concatenate(z_parts), np.concatenate(k_parts)


def _unique_pairs(z: np.ndarray, k: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    if width * (int(z.max()) + 1) < 2**62:  # one integer key: a sort is fastest
        key = np.sort(z * width + k)
        key = key[np.concatenate([[True], key[1:] != key[:-1]])]
        return key // width, key % width
    order = np.lexsort((k, z))
    z, k = z[order], k[order]
    unique = np.concatenate([[True], (z[1:] != z[:-1]) | (k[1:] != k[:-1])])
    return z[unique], k[unique]


def _pick_per_group_quota(group, quota, rng) -> np.ndarray:
    """Indices of a random ``quota[g]`` of the items of each group ``g``."""
    order = np.lexsort((rng.random(group.size), group))
    sizes = np.bincount(group, minlength=quota.size)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(group.size) - start[group[order]]
    return np.sort(order[rank < quota[group[order]]])
