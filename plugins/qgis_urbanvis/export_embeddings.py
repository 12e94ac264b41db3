"""Export embeddings: one model's vectors as a GeoParquet file (``urbanvis export``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qgis.core import QgsProcessingParameterFileDestination, QgsProcessingParameterString

from ._base import UrbanvisAlgorithm, cli_param, with_help


class ExportEmbeddings(UrbanvisAlgorithm):
    NAME = "export_embeddings"
    LABEL = "Export embeddings (GeoParquet)"
    GROUP, GROUP_ID = "4 Embed", "embed"
    STAGE = "export"
    HELP = (
        "Write one model's embeddings as a GeoParquet file: one row per capture with its "
        "metadata, pc1..pc3, the vector (a fixed-size float32 list) and its point in "
        "EPSG:4326. geopandas, DuckDB, pyarrow and GDAL 3.8+ read it; "
        "urbanvis.vectors.read_embeddings reads it back. Written in chunks; the file "
        "appears only when complete."
    )

    def add_parameters(self) -> None:
        self.addParameter(
            with_help(
                QgsProcessingParameterString("MODEL", "Model id", optional=True),
                cli_param("export", "model")[1],
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterFileDestination(
                    "OUT",
                    "GeoParquet file",
                    "GeoParquet (*.parquet)",
                    optional=True,
                    createByDefault=False,
                ),
                cli_param("export", "out")[1],
            )
        )

    def stage_keywords(self, parameters, context, feedback) -> dict:
        out: dict[str, Any] = {"format": "geoparquet"}
        model = self.parameterAsString(parameters, "MODEL", context)
        if model:
            out["model"] = model
        path = self.parameterAsFileOutput(parameters, "OUT", context)
        if path:
            out["out"] = path
        return out

    def file_outputs(self, keywords: dict[str, Any], files: dict[str, Path] | None) -> dict:
        path = files.get("geoparquet") if files is not None else keywords.get("out")
        return {"OUT": str(path)} if path and os.path.isfile(path) else {}
