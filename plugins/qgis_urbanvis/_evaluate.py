"""What the Evaluate algorithms share: the encoders to compare and the table they write.

The encoders are those of every ``urbanvis eval`` command: checkpoint files (several),
architectures with random weights, and the colour-thumbnail baseline; each becomes one
row of the table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ._base import UrbanvisAlgorithm, cli_param, with_help

_ALIASES = {  # keywords the library's and the command's messages use for the parameters
    "checkpoint": "checkpoints",
    "model": "models",
    "query_patch": "query_patches",
    "zones_layer": "zones",
}


class EvaluateAlgorithm(UrbanvisAlgorithm):
    """An ``urbanvis eval`` command: its encoders, its table (``OUT``) as an output."""

    GROUP, GROUP_ID = "7 Evaluate", "evaluate"
    TORCH = True
    TABLE_LABEL = "Table (CSV)"

    def label_of(self, keyword: str) -> str:
        return super().label_of(_ALIASES.get(keyword, keyword))

    # -- parameters
    def encoder_parameters(self, *, thumbnail: bool = True) -> None:
        """Checkpoints, model names + random weights, the thumbnail baseline."""
        command = self.COMMAND
        self.addParameter(
            with_help(
                QgsProcessingParameterMultipleLayers(
                    "CHECKPOINTS", "Checkpoints", QgsProcessing.TypeFile, optional=True
                ),
                "Checkpoints to evaluate (urbanvis/MoCo v3 or timm/DeiT), one row each.",
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterString(
                    "MODELS", "Model names (random weights)", optional=True
                ),
                "Architectures with random weights, comma-separated (with 'Random weights'), "
                "e.g. vit_small_patch16_224.",
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean("RANDOM_INIT", "Random weights", False),
                cli_param(command, "random_init")[1],
            )
        )
        if thumbnail:
            self.addParameter(
                with_help(
                    QgsProcessingParameterBoolean("THUMBNAIL", "Thumbnail baseline", False),
                    cli_param(command, "thumbnail")[1],
                )
            )

    def run_parameters(self) -> None:
        """Seed, image size, batch size, workers, device (advanced)."""
        for key, label, optional in (
            ("seed", "Seed", False),
            ("image_size", "Image size (px)", True),
            ("batch_size", "Batch size", False),
            ("workers", "Workers", False),
        ):
            default, text = cli_param(self.COMMAND, key)
            self.addParameter(
                with_help(
                    QgsProcessingParameterNumber(
                        key.upper(), label, defaultValue=default, optional=optional, minValue=0
                    ),
                    text,
                    advanced=True,
                )
            )
        default, text = cli_param(self.COMMAND, "device")
        self.addParameter(
            with_help(
                QgsProcessingParameterString("DEVICE", "Device", default), text, advanced=True
            )
        )

    def table_parameter(self) -> None:
        self.addParameter(
            with_help(
                QgsProcessingParameterFileDestination("OUT", self.TABLE_LABEL, "CSV (*.csv)"),
                "Write the table here (CSV, and Markdown beside it).",
            )
        )

    # -- values
    def encoder_keywords(self, parameters, context, *, thumbnail: bool = True) -> dict:
        models = self.parameterAsString(parameters, "MODELS", context)
        out: dict[str, Any] = {
            "checkpoints": [
                f for f in self.parameterAsFileList(parameters, "CHECKPOINTS", context) if f
            ],
            "models": [m.strip() for m in models.split(",") if m.strip()],
            "random_init": self.parameterAsBool(parameters, "RANDOM_INIT", context),
        }
        if thumbnail:
            out["thumbnail"] = self.parameterAsBool(parameters, "THUMBNAIL", context)
        return out

    def run_keywords(self, parameters, context) -> dict:
        out: dict[str, Any] = {
            "seed": self.parameterAsInt(parameters, "SEED", context),
            "batch_size": self.parameterAsInt(parameters, "BATCH_SIZE", context),
            "workers": self.parameterAsInt(parameters, "WORKERS", context),
            "device": self.parameterAsString(parameters, "DEVICE", context),
        }
        if parameters.get("IMAGE_SIZE") not in (None, ""):
            out["image_size"] = self.parameterAsInt(parameters, "IMAGE_SIZE", context)
        return out

    def table_keywords(self, parameters, context) -> dict:
        return {"out": self.parameterAsFileOutput(parameters, "OUT", context)}

    def file_outputs(self, keywords: dict[str, Any], files: dict[str, Path] | None) -> dict:
        table = files.get("table") if files is not None else keywords.get("out")
        return {"OUT": str(table)} if table and os.path.isfile(table) else {}
