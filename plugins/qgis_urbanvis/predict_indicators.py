"""Predict indicators: zone indicators from mean embeddings (``urbanvis predict``)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
)

from ._base import UrbanvisAlgorithm, cli_param, with_help

LEVELS = ["blockgroup", "tract", "hex", "buffer"]
PROTOCOLS = ["holdout", "kfold5"]


def layer_keywords(alg, parameters, name: str, context, feedback) -> dict:
    """A vector layer parameter as the library's ``zones`` file (+ ``zones_layer``)."""
    layer = alg.parameterAsVectorLayer(parameters, name, context)
    if layer is None or not layer.isValid():
        raise QgsProcessingException(alg.invalidSourceError(parameters, name))
    if layer.providerType() == "ogr" and not layer.subsetString():
        parts = layer.source().split("|")
        out = {"zones": parts[0]}
        for part in parts[1:]:
            if part.startswith("layername="):
                out["zones_layer"] = part[len("layername=") :]
        return out
    path = alg.parameterAsCompatibleSourceLayerPath(
        parameters, name, context, ["gpkg"], "gpkg", feedback
    )
    return {"zones": path.split("|")[0]}


class PredictIndicators(UrbanvisAlgorithm):
    NAME = "predict_indicators"
    LABEL = "Predict indicators"
    GROUP, GROUP_ID = "5 Predict", "predict"
    STAGE = "predict"
    HELP = (
        "Zone indicators from the mean embedding of each zone's images (StandardScaler, "
        "PCA, LassoCV), scored on held-out zones. Writes the layers zones_LEVEL and "
        "predictions_LEVEL (opened as a choropleth of the predictions) and a report."
    )

    def add_parameters(self) -> None:
        self.addParameter(
            with_help(
                QgsProcessingParameterVectorLayer(
                    "ZONES", "Zones", [QgsProcessing.TypeVectorPolygon], optional=True
                ),
                cli_param("predict", "zones")[1],
            )
        )
        default, text = cli_param("predict", "id_field")
        self.addParameter(
            with_help(
                QgsProcessingParameterField(
                    "ID_FIELD",
                    "Zone id field",
                    default,
                    parentLayerParameterName="ZONES",
                    optional=True,
                ),
                text,
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterFile(
                    "INDICATORS", "Indicators (CSV)", optional=True, fileFilter="CSV (*.csv)"
                ),
                cli_param("predict", "indicators")[1],
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterString("ACS", "ACS variables (acs:VAR,VAR)", optional=True),
                "Instead of a CSV: American Community Survey variables, e.g. B19013_001E (online).",
                advanced=True,
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterString("COLUMNS", "Indicator columns", optional=True),
                cli_param("predict", "columns")[1],
                advanced=True,
            )
        )
        for name, label, options in (
            ("LEVEL", "Zone level", LEVELS),
            ("PROTOCOL", "Protocol", PROTOCOLS),
        ):
            default, text = cli_param("predict", name.lower())
            self.addParameter(
                with_help(
                    QgsProcessingParameterEnum(
                        name, label, options, defaultValue=options.index(default)
                    ),
                    text,
                    advanced=name == "LEVEL",
                )
            )
        for name, label, kind in (
            ("SEED", "Seed", QgsProcessingParameterNumber.Integer),
            ("MIN_IMAGES", "Fewest images per zone", QgsProcessingParameterNumber.Integer),
            ("CELL_SIZE", "Hex cell size (m)", QgsProcessingParameterNumber.Double),
            ("BUFFER", "Buffer side (m)", QgsProcessingParameterNumber.Double),
        ):
            default, text = cli_param("predict", name.lower())
            self.addParameter(
                with_help(
                    QgsProcessingParameterNumber(name, label, kind, default, minValue=0),
                    text,
                    advanced=True,
                )
            )
        self.addParameter(
            with_help(
                QgsProcessingParameterString("MODEL", "Embedding model id", optional=True),
                cli_param("predict", "model")[1],
                advanced=True,
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterFile("APPLY", "Saved models (apply)", optional=True),
                cli_param("predict", "apply_path")[1],
                advanced=True,
            )
        )
        self.addOutput(QgsProcessingOutputVectorLayer("PREDICTIONS", "Predictions"))
        self.addOutput(QgsProcessingOutputVectorLayer("ZONES", "Zones with indicators"))

    def label_of(self, keyword: str) -> str:
        keyword = {"zones_layer": "zones", "indicators": "indicators", "apply": "apply"}.get(
            keyword, keyword
        )
        return super().label_of(keyword)

    def stage_keywords(self, parameters, context, feedback) -> dict:
        out: dict = {
            "level": LEVELS[self.parameterAsEnum(parameters, "LEVEL", context)],
            "protocol": PROTOCOLS[self.parameterAsEnum(parameters, "PROTOCOL", context)],
            "seed": self.parameterAsInt(parameters, "SEED", context),
            "min_images": self.parameterAsInt(parameters, "MIN_IMAGES", context),
            "cell_size": self.parameterAsDouble(parameters, "CELL_SIZE", context),
            "buffer": self.parameterAsDouble(parameters, "BUFFER", context),
        }
        if parameters.get("ZONES"):
            out.update(layer_keywords(self, parameters, "ZONES", context, feedback))
        field = self.parameterAsString(parameters, "ID_FIELD", context)
        if field:
            out["id_field"] = field
        indicators = self.parameterAsFile(parameters, "INDICATORS", context)
        acs = self.parameterAsString(parameters, "ACS", context)
        if indicators:
            out["indicators"] = indicators
        elif acs:
            out["indicators"] = acs if acs.startswith("acs:") else f"acs:{acs}"
        for name in ("COLUMNS", "MODEL"):
            value = self.parameterAsString(parameters, name, context)
            if value:
                out[name.lower()] = value
        apply = self.parameterAsFile(parameters, "APPLY", context)
        if apply:
            out["apply"] = apply
        return out
