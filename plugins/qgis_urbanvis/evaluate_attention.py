"""Evaluate attention: mean attention distance, Fourier profile and attention maps of ViT
encoders (``urbanvis eval attention``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputString,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMatrix,
    QgsProcessingParameterNumber,
)

from ._base import cli_param, with_help
from ._evaluate import EvaluateAlgorithm

TABLE = "attention.csv"  # the report's table in the report folder; the rest is named after it


class EvaluateAttention(EvaluateAlgorithm):
    NAME = "evaluate_attention"
    LABEL = "Evaluate attention"
    STAGE = "eval_attention"
    COMMAND = "eval attention"
    STUDY_HELP = (
        "Optional: a study whose captures to sample when 'Images folder' is empty; the run "
        "is recorded there."
    )
    HELP = (
        "What ViT encoders attend to, layer by layer: the mean attention distance per head, "
        "the relative log amplitude of the Fourier-transformed feature maps, and each "
        "encoder's attention maps of the query patches. Writes attention.csv (+ _fourier.csv) "
        "and PNG plots into the report folder. Runs in QGIS when its Python has torch, "
        "otherwise as the urbanvis command set in the plugin's settings."
    )

    started = 0.0  # when this run's keywords were made (its files are newer)

    def add_parameters(self) -> None:
        self.addParameter(
            with_help(
                QgsProcessingParameterFile(
                    "IMAGES",
                    "Images folder",
                    behavior=QgsProcessingParameterFile.Folder,
                    optional=True,
                ),
                "Folder of images (searched recursively) [default: a sample of the study's "
                "captures].",
            )
        )
        self.encoder_parameters(thumbnail=False)
        self.addParameter(
            with_help(
                QgsProcessingParameterMatrix(
                    "QUERY_PATCHES",
                    "Query patches",
                    hasFixedNumberRows=False,
                    headers=["Row", "Column"],
                    optional=True,
                ),
                "Patches whose attention maps to draw, one per row (0-based row and column of "
                "the patch grid) [default: three patches on the diagonal].",
                advanced=True,
            )
        )
        self.run_parameters()
        default, text = cli_param(self.COMMAND, "max_images")
        self.addParameter(
            with_help(
                QgsProcessingParameterNumber(
                    "MAX_IMAGES", "Most images", defaultValue=default, minValue=1
                ),
                text,
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterFolderDestination("OUT", "Report folder"),
                "Folder for the tables (attention.csv, attention_fourier.csv, and Markdown) "
                "and PNGs (attention_distance.png, attention_fourier.png, "
                "attention_maps_<model>.png).",
            )
        )
        self.addOutput(QgsProcessingOutputFile("TABLE", "Attention distance table"))
        self.addOutput(QgsProcessingOutputFile("DISTANCE_PLOT", "Attention distance plot"))
        self.addOutput(QgsProcessingOutputFile("FOURIER_PLOT", "Relative log amplitude plot"))
        self.addOutput(QgsProcessingOutputString("MAPS", "Attention maps (PNGs, ;-separated)"))

    def query_patches(self, parameters, context) -> list[tuple[int, int]] | None:
        cells = self.parameterAsMatrix(parameters, "QUERY_PATCHES", context)
        cells = [c for c in cells if str(c).strip() not in ("", "NULL")]  # unset: [NULL]
        if len(cells) % 2:
            raise QgsProcessingException(
                f"{self.label_of('query_patches')} takes a row and a column per patch, "
                f"got {len(cells)} numbers"
            )
        try:
            numbers = [int(float(str(c))) for c in cells]
        except ValueError:
            raise QgsProcessingException(
                f"{self.label_of('query_patches')} takes whole numbers (row, column), got "
                f"{', '.join(str(c) for c in cells)}"
            ) from None
        return list(zip(numbers[::2], numbers[1::2], strict=True)) or None

    def stage_keywords(self, parameters, context, feedback) -> dict:
        self.started = time.time()
        folder = self.parameterAsFileOutput(parameters, "OUT", context)
        out: dict[str, Any] = {
            **self.encoder_keywords(parameters, context, thumbnail=False),
            "query_patches": self.query_patches(parameters, context),
            "max_images": self.parameterAsInt(parameters, "MAX_IMAGES", context),
            **self.run_keywords(parameters, context),
            "out": os.path.join(folder, TABLE),
        }
        images = self.parameterAsFile(parameters, "IMAGES", context)
        if images:
            out["images"] = images
        return out

    def file_outputs(self, keywords: dict[str, Any], files: dict[str, Path] | None) -> dict:
        table = Path(keywords["out"])
        if files is None:  # ran as the command: its files are named after the table
            stem = table.with_suffix("")
            files = {
                "table": table,
                "distance_png": Path(f"{stem}_distance.png"),
                "fourier_png": Path(f"{stem}_fourier.png"),
            }
            for i, found in enumerate(sorted(table.parent.glob(f"{stem.name}_maps_*.png"))):
                if found.stat().st_mtime >= self.started - 1:  # this run's, not an earlier one's
                    files[f"maps:{i}"] = found
        if not files.get("table") or not Path(files["table"]).is_file():
            return {}
        maps = [str(p) for k, p in files.items() if k.startswith("maps:") and p.is_file()]
        return {
            "OUT": str(table.parent),
            "TABLE": str(files["table"]),
            "DISTANCE_PLOT": str(files["distance_png"]),
            "FOURIER_PLOT": str(files["fourier_png"]),
            "MAPS": ";".join(maps),
        }
