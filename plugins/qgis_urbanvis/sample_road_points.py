"""Sample road points: points every N metres along the streets (``urbanvis sample``)."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ._base import UrbanvisAlgorithm, cli_param, with_help

NETWORKS = ["drive", "walk", "all"]
METHODS = ["network", "grid"]


def area_parameters(alg: UrbanvisAlgorithm, command: str) -> None:
    """Where: a polygon layer, an extent, a local OSM file (shared by sample and harvest)."""
    alg.addParameter(
        with_help(
            QgsProcessingParameterFeatureSource(
                "AREA", "Area (polygon layer)", [QgsProcessing.TypeVectorPolygon], optional=True
            ),
            cli_param(command, "area")[1],
        )
    )
    alg.addParameter(
        with_help(
            QgsProcessingParameterExtent("BBOX", "Area (extent)", optional=True),
            cli_param(command, "bbox")[1],
        )
    )
    alg.addParameter(
        with_help(
            QgsProcessingParameterFile(
                "OSM",
                "OSM extract (.osm.pbf, .osm, .graphml)",
                optional=True,
                fileFilter="OSM files (*.osm.pbf *.pbf *.osm *.graphml)",
            ),
            cli_param(command, "osm")[1],
        )
    )
    alg.addParameter(
        with_help(
            QgsProcessingParameterString("CITY", "City (geocoded online)", optional=True),
            cli_param(command, "city")[1],
            advanced=True,
        )
    )


def area_keywords(alg: UrbanvisAlgorithm, parameters, context, feedback) -> dict:
    out: dict = {}
    if parameters.get("AREA"):
        if alg.parameterAsSource(parameters, "AREA", context) is None:
            raise QgsProcessingException(alg.invalidSourceError(parameters, "AREA"))
        out["area"] = alg.parameterAsCompatibleSourceLayerPath(
            parameters, "AREA", context, ["gpkg", "shp", "geojson"], "gpkg", feedback
        )
    if parameters.get("BBOX"):
        r = alg.parameterAsExtent(
            parameters, "BBOX", context, QgsCoordinateReferenceSystem("EPSG:4326")
        )
        if not r.isEmpty():
            out["bbox"] = f"{r.xMinimum()},{r.yMinimum()},{r.xMaximum()},{r.yMaximum()}"
    osm = alg.parameterAsFile(parameters, "OSM", context)
    if osm:
        out["osm"] = osm
    city = alg.parameterAsString(parameters, "CITY", context)
    if city:
        out["city"] = city
    return out


class SampleRoadPoints(UrbanvisAlgorithm):
    NAME = "sample_road_points"
    LABEL = "Sample road points"
    GROUP, GROUP_ID = "1 Sample", "sample"
    STAGE = "sample"
    EXTERNAL_LAYERS = ("points",)
    HELP = (
        "Points every 'Spacing' metres along the streets of an area (a polygon layer, an "
        "extent or a local OSM extract) into the study's points layer. Without an OSM "
        "extract the roads are downloaded from Overpass (online)."
    )

    def add_parameters(self) -> None:
        area_parameters(self, "sample")
        for name, label, options in (("NETWORK", "Roads", NETWORKS), ("METHOD", "Method", METHODS)):
            default, text = cli_param("sample", name.lower())
            self.addParameter(
                with_help(
                    QgsProcessingParameterEnum(
                        name, label, options, defaultValue=options.index(default)
                    ),
                    text,
                )
            )
        for name, label, adv in (
            ("SPACING", "Spacing (m)", False),
            ("MERGE_DISTANCE", "Merge distance (m)", True),
        ):
            default, text = cli_param("sample", name.lower())
            self.addParameter(
                with_help(
                    QgsProcessingParameterNumber(
                        name, label, QgsProcessingParameterNumber.Double, default, minValue=0.0
                    ),
                    text,
                    advanced=adv,
                )
            )
        self.addOutput(QgsProcessingOutputVectorLayer("POINTS", "Road points"))

    def stage_keywords(self, parameters, context, feedback) -> dict:
        return {
            **area_keywords(self, parameters, context, feedback),
            "network": NETWORKS[self.parameterAsEnum(parameters, "NETWORK", context)],
            "method": METHODS[self.parameterAsEnum(parameters, "METHOD", context)],
            "spacing": self.parameterAsDouble(parameters, "SPACING", context),
            "merge_distance": self.parameterAsDouble(parameters, "MERGE_DISTANCE", context),
        }
