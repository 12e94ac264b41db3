"""The synthetic city: a seed, an extent and the few constants every layer shares."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._errors import InputError


@dataclass(frozen=True)
class City:
    """A procedural city, deterministic from its seed.

    Coordinates are metres in a local projected frame: ``x`` east, ``y`` north. The city is
    unbounded (every place renders); ``extent`` is the area that samplers and ground-truth
    zones use.

    Parameters
    ----------
    seed : int
        Everything the city contains follows from this number.
    extent : tuple of float
        ``(xmin, ymin, xmax, ymax)`` in metres.
    latitude : float
        Degrees north; sets the sun's path through the day and the year.
    field_scale : float
        Shortest length scale of the latent fields in metres (neighbourhood size).
    """

    seed: int = 0
    extent: tuple[float, float, float, float] = (0.0, 0.0, 5000.0, 5000.0)
    latitude: float = 40.0
    field_scale: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise InputError(f"seed must be an integer, got {self.seed!r}; pass e.g. seed=0")
        object.__setattr__(self, "seed", int(self.seed))
        try:
            extent = tuple(float(v) for v in self.extent)
        except (TypeError, ValueError):
            extent = ()
        if (
            len(extent) != 4
            or not all(math.isfinite(v) for v in extent)
            or not (extent[0] < extent[2] and extent[1] < extent[3])
        ):
            raise InputError(
                f"extent must be (xmin, ymin, xmax, ymax) with xmin < xmax and ymin < ymax, "
                f"got {self.extent!r}"
            )
        object.__setattr__(self, "extent", extent)
        if not (math.isfinite(self.latitude) and -66.0 <= self.latitude <= 66.0):
            raise InputError(f"latitude must be within -66..66 degrees, got {self.latitude!r}")
        if not (math.isfinite(self.field_scale) and self.field_scale > 0):
            raise InputError(f"field_scale must be positive metres, got {self.field_scale!r}")

    def latent_fields(self, x, y) -> dict[str, np.ndarray]:
        """The latent fields at ``x``, ``y``; see :func:`urbanvis.simulate.latent_fields`."""
        from .fields import latent_fields

        return latent_fields(self, x, y)
