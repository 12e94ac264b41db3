"""Fixtures of the QGIS plugin tests: QGIS with Processing and the urbanvis provider."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2]
BBOX_4326 = "24.935,24.945,60.165,60.170 [EPSG:4326]"  # QGIS extent: xmin,xmax,ymin,ymax
sys.path.insert(0, str(PLUGINS))
sys.path.insert(0, "/usr/share/qgis/python/plugins")


@pytest.fixture(scope="session")
def provider(qgis_processing):
    from qgis.core import QgsApplication
    from qgis_urbanvis.provider import UrbanvisProvider

    registry = QgsApplication.processingRegistry()
    found = registry.providerById("urbanvis")
    if found is None:
        found = UrbanvisProvider()
        assert registry.addProvider(found)
    return found


@pytest.fixture(scope="session")
def urbanvis_exe() -> str:
    exe = os.environ.get("URBANVIS_EXE") or str(PLUGINS.parent / ".venv" / "bin" / "urbanvis")
    if not Path(exe).is_file():
        pytest.skip(f"no urbanvis executable with torch at {exe} (set URBANVIS_EXE)")
    return exe


def run(alg: str, params: dict, feedback=None, context=None) -> dict:
    import processing
    from qgis.core import QgsProcessingContext, QgsProject

    if context is None:
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
    return processing.run(f"urbanvis:{alg}", params, feedback=feedback, context=context)


@pytest.fixture(scope="session")
def sampled(provider, tmp_path_factory) -> Path:
    """A study sampled on a corner of the bundled Helsinki extract (through the plugin)."""
    from urbanvis.demo import helsinki_pbf

    study = tmp_path_factory.mktemp("q") / "hel"
    study.mkdir()
    run("sample_road_points", {"STUDY": str(study), "OSM": str(helsinki_pbf()), "BBOX": BBOX_4326})
    return study
