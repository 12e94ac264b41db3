"""Contrastive pair datasets from the ``captures`` layer: self, temporal and spatial.

The three datasets of the paper (section 3 and 4.1), each sized by a pair budget and drawn
reproducibly from a seed:

``self``
    One image per pair (``capture_a == capture_b``); the two views come from augmentation.
``temporal``
    Two captures of the same place at different dates: within ``max_distance`` metres of
    each other and with headings within ``heading_tol`` degrees. Captures need not share a
    point or a panorama id, so real providers, whose captures of one place drift by a few
    metres, pair as well as the simulator. A *place* (the anchor) is a group of captures
    linked by the distance-and-heading rule; every pair inside it satisfies both rules.
``spatial``
    Two different images inside the same zone, any heading. The global version uses square
    cells of a ``buffer``-metre grid laid in each capture's UTM zone, aligned on the UTM
    origin (zone id ``<epsg>:<easting>:<northing>`` of the cell's south-west corner); the
    local version uses polygons, e.g. census block groups, identified by ``zone_id``.

The budget is spread evenly over anchors (places, zones or images): every anchor gets one
pair before any gets a second, like the paper's "two images randomly selected from each
area", repeated until the budget is spent. Everything is vectorised (a KD-tree for
temporal neighbours, group arithmetic for zones), so millions of captures take seconds.

:func:`write_pairs` stores the table as ``pairs/<strategy>.parquet`` with a summary
(``.json`` and ``.md``) beside it and, optionally, WebDataset tar shards.

This package's front re-exports the public names; the pieces live in its modules:
:mod:`.types` (:data:`PAIR_COLUMNS`, :class:`PairConfig`, :class:`PairSummary`),
:mod:`.build` (:func:`pairs_from_captures`, :func:`zones_for_pairs`), :mod:`.rules` (the
three rules and their zones), :mod:`.sampling` (spreading the budget), :mod:`.write`
(:func:`write_pairs`) and :mod:`.shards` (WebDataset shards, :func:`iter_shard`).
"""

from __future__ import annotations

from .build import pairs_from_captures, zones_for_pairs
from .shards import iter_shard
from .types import PAIR_COLUMNS, STRATEGIES, PairConfig, PairSummary
from .write import PairFiles, write_pairs

__all__ = [
    "PAIR_COLUMNS",
    "STRATEGIES",
    "PairConfig",
    "PairFiles",
    "PairSummary",
    "iter_shard",
    "pairs_from_captures",
    "write_pairs",
    "zones_for_pairs",
]
