"""Embed: ViT [CLS] vectors of every capture into the embeddings layer (``urbanvis embed``)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ._base import UrbanvisAlgorithm, cli_param, with_help

PRECISIONS = ["auto", "fp32", "bf16"]
DECODES = ["auto", "cpu", "gpu"]
COMPILES = ["auto", "on", "off"]


class Embed(UrbanvisAlgorithm):
    NAME = "embed"
    LABEL = "Embed"
    GROUP, GROUP_ID = "4 Embed", "embed"
    STAGE = "embed"
    TORCH = True
    EXTERNAL_LAYERS = ("embeddings",)
    HELP = (
        "Embed every ok capture with a ViT ([CLS] vectors into embeddings/, pc1..pc3 into "
        "the embeddings layer), resumably. Give a checkpoint, or a model name with 'Random "
        "weights'. Runs in QGIS when its Python has torch, otherwise as the urbanvis command "
        "set in the plugin's settings; cancelling keeps the finished batches."
    )

    def add_parameters(self) -> None:
        self.addParameter(
            with_help(
                QgsProcessingParameterFile(
                    "CHECKPOINT",
                    "Checkpoint",
                    optional=True,
                    fileFilter="Checkpoints (*.pth.tar *.pth *.pt *.safetensors)",
                ),
                cli_param("embed", "checkpoint")[1],
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterString("MODEL", "Model name", optional=True),
                cli_param("embed", "model")[1],
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean("RANDOM_INIT", "Random weights", False),
                cli_param("embed", "random_init")[1],
            )
        )
        for key, label, optional, adv in (
            ("seed", "Seed", False, True),
            ("batch_size", "Batch size", False, False),
            ("workers", "Workers", False, True),
            ("image_size", "Image size (px)", True, True),
            ("limit", "Limit (captures)", True, False),
        ):
            default, text = cli_param("embed", key)
            self.addParameter(
                with_help(
                    QgsProcessingParameterNumber(
                        key.upper(), label, defaultValue=default, optional=optional, minValue=0
                    ),
                    text,
                    advanced=adv,
                )
            )
        default, text = cli_param("embed", "device")
        self.addParameter(
            with_help(
                QgsProcessingParameterString("DEVICE", "Device", default), text, advanced=True
            )
        )
        for key, options in (("precision", PRECISIONS), ("decode", DECODES), ("compile", COMPILES)):
            default, text = cli_param("embed", key)
            self.addParameter(
                with_help(
                    QgsProcessingParameterEnum(
                        key.upper(), key.capitalize(), options, defaultValue=options.index(default)
                    ),
                    text,
                    advanced=True,
                )
            )
        self.addOutput(QgsProcessingOutputVectorLayer("EMBEDDINGS", "Embeddings"))

    def stage_keywords(self, parameters, context, feedback) -> dict:
        out: dict = {
            "checkpoint": self.parameterAsFile(parameters, "CHECKPOINT", context) or None,
            "model": self.parameterAsString(parameters, "MODEL", context) or None,
            "random_init": self.parameterAsBool(parameters, "RANDOM_INIT", context),
            "seed": self.parameterAsInt(parameters, "SEED", context),
            "batch_size": self.parameterAsInt(parameters, "BATCH_SIZE", context),
            "workers": self.parameterAsInt(parameters, "WORKERS", context),
            "device": self.parameterAsString(parameters, "DEVICE", context),
            "precision": PRECISIONS[self.parameterAsEnum(parameters, "PRECISION", context)],
            "decode": DECODES[self.parameterAsEnum(parameters, "DECODE", context)],
            "compile": COMPILES[self.parameterAsEnum(parameters, "COMPILE", context)],
        }
        for key in ("IMAGE_SIZE", "LIMIT"):
            if parameters.get(key) not in (None, ""):
                out[key.lower()] = self.parameterAsInt(parameters, key, context)
        return out
