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


def zone_parameters(alg, command: str) -> None:
    """Zones, indicators and the fitting protocol: predict's and eval socioeconomic's
    parameters (``command``'s defaults and help)."""
    alg.addParameter(
        with_help(
            QgsProcessingParameterVectorLayer(
                "ZONES", "Zones", [QgsProcessing.TypeVectorPolygon], optional=True
            ),
            cli_param(command, "zones")[1],
        )
    )
    default, text = cli_param(command, "id_field")
    alg.addParameter(
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
    alg.addParameter(
        with_help(
            QgsProcessingParameterFile(
                "INDICATORS", "Indicators (CSV)", optional=True, fileFilter="CSV (*.csv)"
            ),
            cli_param(command, "indicators")[1],
        )
    )
    alg.addParameter(
        with_help(
            QgsProcessingParameterString("ACS", "ACS variables (acs:VAR,VAR)", optional=True),
            "Instead of a CSV: American Community Survey variables, e.g. B19013_001E (online).",
            advanced=True,
        )
    )
    alg.addParameter(
        with_help(
            QgsProcessingParameterString("COLUMNS", "Indicator columns", optional=True),
            cli_param(command, "columns")[1],
            advanced=True,
        )
    )
    for name, label, options in (
        ("LEVEL", "Zone level", LEVELS),
        ("PROTOCOL", "Protocol", PROTOCOLS),
    ):
        default, text = cli_param(command, name.lower())
        alg.addParameter(
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
        default, text = cli_param(command, name.lower())
        alg.addParameter(
            with_help(
                QgsProcessingParameterNumber(name, label, kind, default, minValue=0),
                text,
                advanced=True,
            )
        )


def zone_keywords(alg, parameters, context, feedback) -> dict:
    """The stage keywords of :func:`zone_parameters`' values."""
    out: dict = {
        "level": LEVELS[alg.parameterAsEnum(parameters, "LEVEL", context)],
        "protocol": PROTOCOLS[alg.parameterAsEnum(parameters, "PROTOCOL", context)],
        "seed": alg.parameterAsInt(parameters, "SEED", context),
        "min_images": alg.parameterAsInt(parameters, "MIN_IMAGES", context),
        "cell_size": alg.parameterAsDouble(parameters, "CELL_SIZE", context),
        "buffer": alg.parameterAsDouble(parameters, "BUFFER", context),
    }
    if parameters.get("ZONES"):
        out.update(layer_keywords(alg, parameters, "ZONES", context, feedback))
    field = alg.parameterAsString(parameters, "ID_FIELD", context)
    if field:
        out["id_field"] = field
    indicators = alg.parameterAsFile(parameters, "INDICATORS", context)
    acs = alg.parameterAsString(parameters, "ACS", context)
    if indicators:
        out["indicators"] = indicators
    elif acs:
        out["indicators"] = acs if acs.startswith("acs:") else f"acs:{acs}"
    columns = alg.parameterAsString(parameters, "COLUMNS", context)
    if columns:
        out["columns"] = columns
    return out


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
        zone_parameters(self, "predict")
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
        out = zone_keywords(self, parameters, context, feedback)
        model = self.parameterAsString(parameters, "MODEL", context)
        if model:
            out["model"] = model
        apply = self.parameterAsFile(parameters, "APPLY", context)
        if apply:
            out["apply"] = apply
        return out
