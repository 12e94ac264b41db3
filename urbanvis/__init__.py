"""urbanvis: street-view imagery to urban representations, predictions and maps.

The pipeline's stages, one function each, are in :mod:`urbanvis.stages`
(``from urbanvis import stages as uv``). ``import urbanvis`` stays light: submodules load
on first use, torch only inside ``urbanvis.engine`` and QGIS only inside the plugin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._version import __version__

_SUBMODULES = (
    "acs",
    "areas",
    "demo",
    "export",
    "harvest",
    "indicators",
    "maps",
    "network",
    "pairs",
    "predict",
    "providers",
    "sampling",
    "simulate",
    "stages",
    "study",
    "tiger",
    "vectors",
    "zones",
)

__all__ = ["__version__", *_SUBMODULES]

if TYPE_CHECKING:  # pragma: no cover
    from . import (  # noqa: F401
        acs,
        areas,
        demo,
        export,
        harvest,
        indicators,
        maps,
        network,
        pairs,
        predict,
        providers,
        sampling,
        simulate,
        stages,
        study,
        tiger,
        vectors,
        zones,
    )


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'urbanvis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
