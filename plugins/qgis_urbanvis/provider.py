"""The "urbanvis" Processing provider: one algorithm per pipeline stage."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider

from ._external import SETTING_EXE


def algorithm_classes():
    from .build_contrastive_pairs import BuildContrastivePairs
    from .embed import Embed
    from .evaluate_attention import EvaluateAttention
    from .evaluate_place_recognition import EvaluatePlaceRecognition
    from .evaluate_safety_perception import EvaluateSafetyPerception
    from .evaluate_socioeconomic_prediction import EvaluateSocioeconomicPrediction
    from .export_embeddings import ExportEmbeddings
    from .harvest_street_views import HarvestStreetViews
    from .predict_indicators import PredictIndicators
    from .pretrain import Pretrain
    from .sample_road_points import SampleRoadPoints
    from .web_map import WebMap

    return [
        SampleRoadPoints,
        HarvestStreetViews,
        BuildContrastivePairs,
        Pretrain,
        Embed,
        ExportEmbeddings,
        PredictIndicators,
        WebMap,
        EvaluatePlaceRecognition,
        EvaluateSafetyPerception,
        EvaluateSocioeconomicPrediction,
        EvaluateAttention,
    ]


class UrbanvisProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "urbanvis"

    def name(self) -> str:
        return "urbanvis"

    def longName(self) -> str:
        from urbanvis import __version__

        return f"urbanvis {__version__}"

    def helpId(self) -> str:
        return "urbanvis"

    def loadAlgorithms(self) -> None:
        for cls in algorithm_classes():
            self.addAlgorithm(cls())

    def load(self) -> bool:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting

        ProcessingConfig.settingIcons[self.name()] = self.icon()
        ProcessingConfig.addSetting(
            Setting(
                self.name(),
                SETTING_EXE,
                "urbanvis command (a venv's bin/urbanvis with torch; empty: found on PATH)",
                "",
                valuetype=Setting.FILE,
            )
        )
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True
