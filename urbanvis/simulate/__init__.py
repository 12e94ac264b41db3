"""A procedural street-view city: deterministic street-level images without imagery.

No street imagery can be fetched offline, so urbanvis renders its own. A :class:`City`
(a seed) has three layers:

- static, from the place and heading: a street canyon of buildings (heights, setbacks,
  materials, window grids, storefronts, doors), road, sidewalks, skyline, poles, signs and
  trees (:mod:`.scene`);
- ambiance: smooth latent fields over space (style, greenery, density, upkeep) that shape
  whole neighbourhoods (:func:`latent_fields`);
- dynamic, from the capture time: sun and light, weather, season, cars, pedestrians,
  bikes and a small camera jitter (:mod:`.conditions`).

Examples
--------
>>> from urbanvis.simulate import City, render, capture
>>> city = City(seed=7)
>>> image = render(city, 1200.0, 850.0, 90.0, "2021-06-01T14:30")
>>> image.shape
(224, 224, 3)
>>> capture(city, 1200.0, 850.0, 90.0, "2021-06-01T14:30").record.cars >= 0
True
"""

from __future__ import annotations

from .city import City
from .conditions import WEATHERS, Conditions, conditions_from_time
from .fields import FIELD_NAMES, latent_fields
from .files import save_image
from .renderer import (
    CLASS_NAMES,
    Capture,
    CaptureRecord,
    RenderOptions,
    capture,
    render,
)

__all__ = [
    "CLASS_NAMES",
    "FIELD_NAMES",
    "WEATHERS",
    "Capture",
    "CaptureRecord",
    "City",
    "Conditions",
    "RenderOptions",
    "capture",
    "conditions_from_time",
    "latent_fields",
    "render",
    "save_image",
]
