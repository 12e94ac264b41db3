"""Evaluate socioeconomic prediction: zone indicator R² per embedding model
(``urbanvis eval socioeconomic``)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from ._base import cli_param, with_help
from ._evaluate import EvaluateAlgorithm
from .predict_indicators import zone_keywords, zone_parameters


class EvaluateSocioeconomicPrediction(EvaluateAlgorithm):
    NAME = "evaluate_socioeconomic_prediction"
    LABEL = "Evaluate socioeconomic prediction"
    STAGE = "eval_socioeconomic"
    COMMAND = "eval socioeconomic"
    TORCH = False  # reads the study's embeddings: it embeds nothing
    TABLE_LABEL = "R² table (CSV)"
    HELP = (
        "Zone indicator R² of the study's embedding models side by side (indicators x "
        "models), each scored by Predict indicators' method on the same zones and folds. "
        "Embed once per encoder first. Writes only the table: no layer, no model file."
    )

    def add_parameters(self) -> None:
        self.addParameter(
            with_help(
                QgsProcessingParameterString("MODELS", "Embedding model ids", optional=True),
                "Embedding model ids in the study, comma-separated (one column each) "
                "[default: all].",
            )
        )
        zone_parameters(self, self.COMMAND)
        self.addParameter(
            with_help(
                QgsProcessingParameterFile(
                    "TOPICS", "Topics (CSV)", optional=True, fileFilter="CSV (*.csv)"
                ),
                cli_param(self.COMMAND, "topics")[1],
                advanced=True,
            )
        )
        self.table_parameter()

    def stage_keywords(self, parameters, context, feedback) -> dict:
        out = zone_keywords(self, parameters, context, feedback)
        if "indicators" not in out:
            raise QgsProcessingException(
                f"Give {self.label_of('indicators')} or {self.label_of('acs')}"
            )
        models = self.parameterAsString(parameters, "MODELS", context)
        out["models"] = [m.strip() for m in models.split(",") if m.strip()]
        topics = self.parameterAsFile(parameters, "TOPICS", context)
        if topics:
            out["topics"] = topics
        return {**out, **self.table_keywords(parameters, context)}
