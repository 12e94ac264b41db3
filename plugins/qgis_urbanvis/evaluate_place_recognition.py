"""Evaluate place recognition: Recall@K of frozen encoders on a VPR set (``urbanvis eval vpr``)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)

from ._base import cli_param, enum_value, with_help
from ._evaluate import EvaluateAlgorithm

DESCRIPTORS = ["cls", "tokens"]


class EvaluatePlaceRecognition(EvaluateAlgorithm):
    NAME = "evaluate_place_recognition"
    LABEL = "Evaluate place recognition"
    STAGE = "eval_vpr"
    COMMAND = "eval vpr"
    STUDY_HELP = "Optional: a study to record the run in."
    TABLE_LABEL = "Recall table (CSV)"
    HELP = (
        "Recall@1, 5, 10, 15, 20 and 25 of frozen encoders on a place-recognition set: each "
        "query's nearest database images by [CLS] descriptor (or 16x16 thumbnail; or by patch "
        "tokens, which keep the picture's layout), a hit when one lies within the threshold. "
        "One row per encoder: checkpoints, model names with "
        "random weights, the thumbnail baseline. Runs in QGIS when its Python has torch, "
        "otherwise as the urbanvis command set in the plugin's settings."
    )

    def add_parameters(self) -> None:
        self.addParameter(
            with_help(
                QgsProcessingParameterFile(
                    "DATASET", "VPR set", behavior=QgsProcessingParameterFile.Folder
                ),
                cli_param(self.COMMAND, "dataset")[1],
            )
        )
        default, text = cli_param(self.COMMAND, "threshold")
        self.addParameter(
            with_help(
                QgsProcessingParameterNumber(
                    "THRESHOLD",
                    "Positive within (m)",
                    QgsProcessingParameterNumber.Double,
                    default,
                    minValue=0,
                ),
                text,
            )
        )
        default, text = cli_param(self.COMMAND, "descriptor")
        self.addParameter(
            with_help(
                QgsProcessingParameterEnum(
                    "DESCRIPTOR", "Descriptor", DESCRIPTORS,
                    defaultValue=DESCRIPTORS.index(default),
                ),
                text,
            )
        )  # fmt: skip
        self.encoder_parameters()
        self.run_parameters()
        self.table_parameter()

    def stage_keywords(self, parameters, context, feedback) -> dict:
        return {
            "dataset": self.parameterAsFile(parameters, "DATASET", context),
            "threshold": self.parameterAsDouble(parameters, "THRESHOLD", context),
            "descriptor": enum_value(self, parameters, "DESCRIPTOR", DESCRIPTORS, context),
            **self.encoder_keywords(parameters, context),
            **self.run_keywords(parameters, context),
            **self.table_keywords(parameters, context),
        }
