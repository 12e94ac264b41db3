"""Build contrastive pairs: self, temporal or spatial pair tables (``urbanvis pairs``)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputFile,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorLayer,
)

from ._base import UrbanvisAlgorithm, cli_param, with_help
from .predict_indicators import layer_keywords

STRATEGIES = ["self", "temporal", "spatial"]


class BuildContrastivePairs(UrbanvisAlgorithm):
    NAME = "build_contrastive_pairs"
    LABEL = "Build contrastive pairs"
    GROUP, GROUP_ID = "3 Pretrain", "pretrain"
    STAGE = "pairs"
    HELP = (
        "A table of positive pairs from the study's captures (pairs/STRATEGY.parquet): the "
        "same image (self), the same place at two dates (temporal) or two places of one "
        "zone (spatial: grid cells of 'Buffer' metres, or the polygons of a zones layer)."
    )

    def add_parameters(self) -> None:
        self.addParameter(
            with_help(
                QgsProcessingParameterEnum("STRATEGY", "Strategy", STRATEGIES, defaultValue=1),
                cli_param("pairs", "strategy")[1],
            )
        )
        for name, label, kind, adv in (
            ("MAX_PAIRS", "Most pairs", QgsProcessingParameterNumber.Integer, False),
            ("SEED", "Seed", QgsProcessingParameterNumber.Integer, True),
            (
                "MAX_DISTANCE",
                "Temporal: most metres apart",
                QgsProcessingParameterNumber.Double,
                True,
            ),
            (
                "HEADING_TOL",
                "Temporal: heading tolerance (°)",
                QgsProcessingParameterNumber.Double,
                True,
            ),
            ("SHARD_SIZE", "Pairs per shard", QgsProcessingParameterNumber.Integer, True),
        ):
            default, text = cli_param("pairs", name.lower())
            self.addParameter(
                with_help(
                    QgsProcessingParameterNumber(name, label, kind, default, minValue=0),
                    text,
                    advanced=adv,
                )
            )
        self.addParameter(
            with_help(
                QgsProcessingParameterNumber(
                    "BUFFER",
                    "Spatial: grid cell (m)",
                    QgsProcessingParameterNumber.Double,
                    optional=True,
                    minValue=0,
                ),
                cli_param("pairs", "buffer")[1],
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterVectorLayer(
                    "ZONES", "Spatial: zones", [QgsProcessing.TypeVectorPolygon], optional=True
                ),
                cli_param("pairs", "zones")[1],
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterField(
                    "ZONE_ID",
                    "Spatial: zone id field",
                    parentLayerParameterName="ZONES",
                    optional=True,
                ),
                cli_param("pairs", "zone_id")[1],
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean("SHARDS", "Also write WebDataset shards", False),
                cli_param("pairs", "shards")[1],
                advanced=True,
            )
        )
        self.addOutput(QgsProcessingOutputFile("TABLE", "Pair table"))

    def stage_keywords(self, parameters, context, feedback) -> dict:
        out = {
            "strategy": STRATEGIES[self.parameterAsEnum(parameters, "STRATEGY", context)],
            "max_pairs": self.parameterAsInt(parameters, "MAX_PAIRS", context),
            "seed": self.parameterAsInt(parameters, "SEED", context),
            "max_distance": self.parameterAsDouble(parameters, "MAX_DISTANCE", context),
            "heading_tol": self.parameterAsDouble(parameters, "HEADING_TOL", context),
            "shards": self.parameterAsBool(parameters, "SHARDS", context),
            "shard_size": self.parameterAsInt(parameters, "SHARD_SIZE", context),
        }
        if parameters.get("BUFFER") not in (None, ""):
            out["buffer"] = self.parameterAsDouble(parameters, "BUFFER", context)
        if parameters.get("ZONES"):
            zones = layer_keywords(self, parameters, "ZONES", context, feedback)
            out["zones"] = zones["zones"]
            out["zone_id"] = self.parameterAsString(parameters, "ZONE_ID", context) or None
        return out
