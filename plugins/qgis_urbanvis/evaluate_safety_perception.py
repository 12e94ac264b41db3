"""Evaluate safety perception: a linear probe on frozen features (``urbanvis eval safety``)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ._base import cli_param, with_help
from ._evaluate import EvaluateAlgorithm


class EvaluateSafetyPerception(EvaluateAlgorithm):
    NAME = "evaluate_safety_perception"
    LABEL = "Evaluate safety perception"
    STAGE = "eval_safety"
    COMMAND = "eval safety"
    STUDY_HELP = "Optional: a study to record the run in."
    TABLE_LABEL = "Scores table (CSV)"
    HELP = (
        "Safety perception (Place Pulse 2.0): votes become Q-scores on 0-10, images over 6.5 "
        "are safe and under 3.5 unsafe; a logistic-regression probe on each encoder's frozen "
        "features is scored on a held-out share (accuracy, precision, recall, F1, AUC). One "
        "row per encoder. Runs in QGIS when its Python has torch, otherwise as the urbanvis "
        "command set in the plugin's settings."
    )

    def add_parameters(self) -> None:
        self.addParameter(
            with_help(
                QgsProcessingParameterFile(
                    "PP2", "Place Pulse votes (CSV)", fileFilter="CSV (*.csv)"
                ),
                cli_param(self.COMMAND, "pp2")[1],
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterFile(
                    "IMAGES",
                    "Images folder",
                    behavior=QgsProcessingParameterFile.Folder,
                    optional=True,
                ),
                cli_param(self.COMMAND, "images")[1],
            )
        )
        self.encoder_parameters()
        default, text = cli_param(self.COMMAND, "category")
        self.addParameter(
            with_help(
                QgsProcessingParameterString("CATEGORY", "Category", default), text, advanced=True
            )
        )
        for key, label, kind in (
            ("test_size", "Held-out share", QgsProcessingParameterNumber.Double),
            ("epochs", "Probe epochs", QgsProcessingParameterNumber.Integer),
        ):
            default, text = cli_param(self.COMMAND, key)
            self.addParameter(
                with_help(
                    QgsProcessingParameterNumber(key.upper(), label, kind, default, minValue=0),
                    text,
                    advanced=True,
                )
            )
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean("HARD_AUC", "AUC of 0/1 predictions", False),
                cli_param(self.COMMAND, "hard_auc")[1],
                advanced=True,
            )
        )
        self.run_parameters()
        self.table_parameter()

    def stage_keywords(self, parameters, context, feedback) -> dict:
        out = {
            "pp2": self.parameterAsFile(parameters, "PP2", context),
            **self.encoder_keywords(parameters, context),
            "category": self.parameterAsString(parameters, "CATEGORY", context),
            "test_size": self.parameterAsDouble(parameters, "TEST_SIZE", context),
            "epochs": self.parameterAsInt(parameters, "EPOCHS", context),
            "hard_auc": self.parameterAsBool(parameters, "HARD_AUC", context),
            **self.run_keywords(parameters, context),
            **self.table_keywords(parameters, context),
        }
        images = self.parameterAsFile(parameters, "IMAGES", context)
        if images:
            out["images"] = images
        return out
