"""The vocabulary of pair datasets: strategy names, table columns, settings and summary.

:class:`PairConfig` validates the settings of :func:`urbanvis.pairs.pairs_from_captures`
(its fields match the function's keywords, so the CLI checks options before reading
anything); :class:`PairSummary` says what a dataset holds and why candidates were left out.
Everything here is re-exported by :mod:`urbanvis.pairs`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .._errors import InputError

STRATEGIES = ("self", "temporal", "spatial")
PAIR_COLUMNS = [
    "pair_id",
    "strategy",
    "anchor",
    "capture_a",
    "capture_b",
    "image_a",
    "image_b",
    "point_a",
    "point_b",
    "captured_at_a",
    "captured_at_b",
    "heading_a",
    "heading_b",
    "lon_a",
    "lat_a",
    "lon_b",
    "lat_b",
    "distance_m",
    "days_apart",
    "heading_diff",
    "zone",
]
"""Columns of a pair table. ``anchor`` is the place (temporal), zone (spatial) or capture
(self) a pair was drawn for; ``zone`` is set for spatial pairs only."""

_STR = "string[pyarrow]"  # text columns: fast takes, Parquet strings


@dataclass(frozen=True)
class PairConfig:
    """Settings of a pair dataset; the fields match :func:`pairs_from_captures`' keywords."""

    strategy: str
    max_pairs: int = 1_000_000
    seed: int = 0
    max_distance: float = 5.0
    heading_tol: float = 10.0
    buffer: float = 100.0
    zone_id: str | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(
                f"unknown pair strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}"
            )
        if int(self.max_pairs) <= 0:
            raise InputError(f"`max_pairs` must be a positive number, got {self.max_pairs}")
        if not (self.max_distance > 0 and math.isfinite(self.max_distance)):
            raise InputError(f"`max_distance` must be positive metres, got {self.max_distance}")
        if not 0 <= self.heading_tol <= 180:
            raise InputError(f"`heading_tol` must be 0 to 180 degrees, got {self.heading_tol}")
        if not (self.buffer > 0 and math.isfinite(self.buffer)):
            raise InputError(f"`buffer` must be positive metres, got {self.buffer}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"`seed` must be a whole number of at least 0, got {self.seed!r}")


@dataclass(frozen=True)
class PairSummary:
    """What a pair dataset holds and why candidates were left out.

    ``captures_total == captures_used + sum(dropped_captures.values())`` and
    ``candidates == pairs + dropped_candidates['over_budget']``.
    """

    strategy: str
    pairs: int
    anchors: int
    images: int
    captures_total: int
    captures_used: int
    candidates: int
    zones: str
    settings: dict[str, Any] = field(default_factory=dict)
    dropped_captures: dict[str, int] = field(default_factory=dict)
    dropped_candidates: dict[str, int] = field(default_factory=dict)
    pairs_per_anchor: dict[str, float] = field(default_factory=dict)
    per_zone: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The one-line log summary."""
        where = {"self": "", "temporal": " at {:,} places", "spatial": " in {:,} zones"}
        return (
            f"built {self.pairs:,} {self.strategy} pairs from {self.images:,} images"
            f"{where[self.strategy].format(self.anchors)} (of {self.candidates:,} candidates, "
            f"seed {self.settings.get('seed')})"
        )

    def text(self) -> str:
        """A few lines for the terminal."""
        lines = [self.line()]
        lines.append(
            f"captures: {self.captures_total:,} in the layer, {self.captures_used:,} usable"
        )
        dropped = {k: v for k, v in self.dropped_captures.items() if v}
        if dropped:
            lines.append("captures dropped: " + _counts(dropped))
        dropped = {k: v for k, v in self.dropped_candidates.items() if v}
        if dropped:
            lines.append("candidate pairs dropped: " + _counts(dropped))
        if self.pairs_per_anchor:
            s = self.pairs_per_anchor
            lines.append(
                f"pairs per anchor: min {s['min']:g}, median {s['median']:g}, max {s['max']:g}"
            )
        if self.strategy == "spatial":
            lines.append(f"zones: {self.zones}, {len(self.per_zone):,} with images")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The summary as a Markdown report."""
        out = [f"# {self.strategy} pairs", "", self.line() + ".", ""]
        out += ["| setting | value |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in self.settings.items() if v is not None]
        out += ["", "| count | value |", "|---|---|"]
        for key in ("pairs", "anchors", "images", "captures_total", "captures_used", "candidates"):
            out.append(f"| {key} | {getattr(self, key):,} |")
        for title, counts in (
            ("captures dropped", self.dropped_captures),
            ("candidate pairs dropped", self.dropped_candidates),
        ):
            out += ["", f"| {title} | count |", "|---|---|"]
            out += [f"| {k} | {v:,} |" for k, v in counts.items()]
        if self.per_zone:
            top = sorted(self.per_zone.items(), key=lambda kv: (-kv[1]["pairs"], kv[0]))[:20]
            out += ["", f"Zones ({self.zones}): {len(self.per_zone):,}; the 20 with most pairs:"]
            out += ["", "| zone | images | pairs |", "|---|---|---|"]
            out += [f"| {z} | {c['images']:,} | {c['pairs']:,} |" for z, c in top]
        return "\n".join(out) + "\n"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items())
