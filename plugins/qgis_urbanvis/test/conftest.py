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


def simulator_index() -> int:
    from urbanvis.providers import PROVIDERS

    return list(PROVIDERS).index("simulator")


SIM = simulator_index()


def open_layer(study: Path, name: str):
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(f"{study / 'study.gpkg'}|layername={name}", name, "ogr")
    assert layer.isValid(), name
    return layer


@pytest.fixture(scope="session")
def harvested(sampled) -> Path:
    out = run(
        "harvest_street_views",
        {
            "STUDY": str(sampled),
            "PROVIDER": SIM,
            "CAPTURES_PER_POINT": 2,
            "HEADINGS": "0,180",
            "SIZE": 48,
        },
    )
    assert out["CAPTURES"].endswith("layername=captures")
    return sampled


@pytest.fixture(scope="session")
def embedded(harvested, urbanvis_exe) -> Path:
    """Embeddings through the subprocess path (this Python has no torch)."""
    from qgis.core import QgsSettings
    from qgis_urbanvis._base import torch_available

    assert not torch_available(), "the QGIS venv has torch: the subprocess path is untested"
    QgsSettings().setValue("urbanvis/executable", urbanvis_exe)
    feedback = Recorder()
    run(
        "embed",
        {
            "STUDY": str(harvested),
            "MODEL": "vit_test_patch8",
            "RANDOM_INIT": True,
            "DEVICE": "cpu",
            "WORKERS": 0,
            "BATCH_SIZE": 16,
        },
        feedback,
    )
    assert feedback.progress and max(feedback.progress) == 100
    assert any("urbanvis" in c and " embed " in c for c in feedback.commands)
    return harvested


class Recorder:
    """A QgsProcessingFeedback that keeps what it was told (and can cancel on a cue)."""

    def __new__(cls, cancel_at: float | None = None):
        from qgis.core import QgsProcessingFeedback

        class Recorder(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.progress: list[float] = []
                self.commands: list[str] = []
                self.infos: list[str] = []
                self.progressChanged.connect(self._on)

            def _on(self, value):
                self.progress.append(value)
                if cancel_at is not None and value >= cancel_at and not self.isCanceled():
                    self.cancel()

            def pushCommandInfo(self, info):  # noqa: N802
                self.commands.append(info)
                super().pushCommandInfo(info)

            def pushInfo(self, info):  # noqa: N802
                self.infos.append(info)
                super().pushInfo(info)

        return Recorder()


@pytest.fixture(scope="session")
def predicted(embedded) -> Path:
    from urbanvis import stages

    stages.simulate(embedded, truth=True, points_per_zone=20)
    zones = f"{embedded / 'study.gpkg'}|layername=zones_sim"
    out = run(
        "predict_indicators",
        {
            "STUDY": str(embedded),
            "ZONES": zones,
            "ID_FIELD": "zone_id",
            "INDICATORS": str(embedded / "truth" / "indicators.csv"),
        },
    )
    assert out["PREDICTIONS"].endswith("predictions_blockgroup")
    assert "R²" in out["MESSAGE"]
    return embedded
