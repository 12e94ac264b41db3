"""Web map / GeoTIFF: a folium map and/or an interpolated surface of a layer (``urbanvis map``)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputHtml,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from ._base import UrbanvisAlgorithm, cli_param, with_help

METHODS = ["idw", "nearest", "linear"]


class WebMap(UrbanvisAlgorithm):
    NAME = "web_map"
    LABEL = "Web map / GeoTIFF"
    GROUP, GROUP_ID = "6 Map", "map"
    STAGE = "map"
    HELP = (
        "A web map (HTML, folium) of a study layer coloured by a column and/or a GeoTIFF "
        "surface interpolated from its points ('GeoTIFF surface' with a 'Column')."
    )

    def add_parameters(self) -> None:
        for key, label in (
            ("layer", "Layer"),
            ("column", "Column"),
            ("title", "Title"),
            ("zones_layer", "Zones layer for popups"),
        ):
            default, text = cli_param("map", key)
            self.addParameter(
                with_help(
                    QgsProcessingParameterString(key.upper(), label, default, optional=True),
                    text,
                    advanced=key in ("title", "zones_layer"),
                )
            )
        self.addParameter(
            with_help(
                QgsProcessingParameterFileDestination(
                    "OUT", "Web map", "HTML (*.html)", optional=True, createByDefault=False
                ),
                cli_param("map", "out")[1],
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterRasterDestination(
                    "RASTER", "GeoTIFF surface", optional=True, createByDefault=False
                ),
                cli_param("map", "raster")[1],
            )
        )
        default, text = cli_param("map", "cell")
        self.addParameter(
            with_help(
                QgsProcessingParameterNumber(
                    "CELL",
                    "Cell size (m)",
                    QgsProcessingParameterNumber.Double,
                    default,
                    minValue=0,
                ),
                text,
                advanced=True,
            )
        )
        from urbanvis_cli.map import map_command

        p = next(p for p in map_command.params if p.name == "method")
        self.methods = list(getattr(p.type, "choices", METHODS))
        self.addParameter(
            with_help(
                QgsProcessingParameterEnum(
                    "METHOD",
                    "Interpolation",
                    self.methods,
                    defaultValue=self.methods.index(p.default),
                ),
                p.help or "",
                advanced=True,
            )
        )
        self.addOutput(QgsProcessingOutputHtml("HTML", "Web map"))

    def stage_keywords(self, parameters, context, feedback) -> dict:
        out: dict = {
            "cell": self.parameterAsDouble(parameters, "CELL", context),
            "method": self.methods[self.parameterAsEnum(parameters, "METHOD", context)],
        }
        for key in ("LAYER", "COLUMN", "TITLE", "ZONES_LAYER"):
            value = self.parameterAsString(parameters, key, context)
            if value:
                out[key.lower()] = value
        html = self.parameterAsFileOutput(parameters, "OUT", context)
        raster = self.parameterAsOutputLayer(parameters, "RASTER", context)
        if html:
            out["out"] = html
        if raster:
            out["raster"] = raster
        return out

    def processAlgorithm(self, parameters, context, feedback):
        outputs = super().processAlgorithm(parameters, context, feedback)
        kw = self.stage_keywords(parameters, context, feedback)
        if kw.get("out"):
            outputs["HTML"] = kw["out"]
        if kw.get("raster"):
            outputs["RASTER"] = kw["raster"]
        return outputs
