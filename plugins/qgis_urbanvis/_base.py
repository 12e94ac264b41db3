"""What every urbanvis algorithm shares: CLI help texts, running a stage, errors, outputs.

An algorithm declares its parameters (QGIS types, the CLI's defaults and help) and turns
their values into the stage's keywords; :meth:`UrbanvisAlgorithm.processAlgorithm` makes
the one stage call, in this process or, for torch stages when QGIS's Python has no torch,
as the ``urbanvis`` command (see :mod:`._external`), and loads the layers it wrote.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsVectorLayer,
)

from . import _external

_SETTING_MODE = "urbanvis/run_mode"  # auto | external | in_process


def cli_param(command: str, name: str) -> tuple[Any, str]:
    """``(default, help)`` of option ``name`` of ``urbanvis COMMAND`` (the CLI's own text;
    ``command`` as typed: ``"embed"``, ``"eval vpr"``)."""
    for p in _external.cli_command(command).params:
        if p.name == name:
            default = p.default
            if type(default).__name__ == "Sentinel" or callable(default):
                default = None
            text = re.sub(r"\s+", " ", getattr(p, "help", None) or "").strip()
            return default, text
    raise KeyError(f"urbanvis {command} has no option {name}")


def with_help(param: QgsProcessingParameterDefinition, text: str, *, advanced: bool = False):
    """Set a parameter's tooltip/help (QGIS 3.22 has setHelp) and its advanced flag."""
    if hasattr(param, "setHelp"):
        param.setHelp(text)
    if advanced:
        param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return param


def study_parameter(
    text: str = "Study folder (holds study.gpkg, images/, reports/...).", *, optional=False
) -> QgsProcessingParameterFile:
    return with_help(
        QgsProcessingParameterFile(
            "STUDY", "Study folder", behavior=QgsProcessingParameterFile.Folder, optional=optional
        ),
        text,
    )


def torch_available() -> bool:
    """Whether ``import torch`` works in this Python (QGIS's)."""
    try:
        import torch  # noqa: F401
    except Exception:
        return False
    return True


class UrbanvisAlgorithm(QgsProcessingAlgorithm):
    """Base of the urbanvis algorithms: one stage call, errors worded with QGIS labels."""

    NAME = ""
    LABEL = ""
    GROUP = ""
    GROUP_ID = ""
    STAGE = ""  # the function of urbanvis.stages and the urbanvis command
    COMMAND = ""  # the urbanvis command when it is not STAGE ("eval vpr")
    STUDY_HELP = ""  # set: the study is optional, and this is its help
    TORCH = False  # needs torch: runs as the urbanvis command when QGIS's Python lacks it
    EXTERNAL_LAYERS: tuple[str, ...] = ()  # layers the command writes (external runs)
    HELP = ""

    # -- QgsProcessingAlgorithm boilerplate
    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:
        return self.LABEL

    def group(self) -> str:
        return self.GROUP

    def groupId(self) -> str:
        return self.GROUP_ID

    def shortHelpString(self) -> str:
        return self.HELP

    def createInstance(self):
        return type(self)()

    def initAlgorithm(self, config=None) -> None:
        if self.STUDY_HELP:
            self.addParameter(study_parameter(self.STUDY_HELP, optional=True))
        else:
            self.addParameter(study_parameter())
        self.add_parameters()
        for definition in self.parameterDefinitions():  # the CLI's help names its --flags
            if hasattr(definition, "setHelp") and "--" in definition.help():
                definition.setHelp(_external.worded(definition.help(), self.label_of))
        self.addOutput(QgsProcessingOutputString("MESSAGE", "Summary"))

    # -- what subclasses write
    def add_parameters(self) -> None:
        raise NotImplementedError

    def stage_keywords(self, parameters, context, feedback) -> dict[str, Any]:
        """The stage's keywords from the parameter values (checks included)."""
        raise NotImplementedError

    def file_outputs(self, keywords: dict[str, Any], files: dict[str, Path] | None) -> dict:
        """Outputs naming the files the stage wrote: ``files`` as the stage reported them,
        or None when it ran as the urbanvis command (then the subclass knows the paths)."""
        return {}

    def external(self, parameters, context) -> bool:
        """Whether this run goes through the urbanvis command instead of this process."""
        from qgis.core import QgsSettings

        mode = os.environ.get("URBANVIS_QGIS_RUN_MODE") or QgsSettings().value(
            _SETTING_MODE, "auto"
        )
        if mode == "external":
            return True
        if mode == "in_process":
            return False
        return self.TORCH and not torch_available()

    # -- the run
    def label_of(self, keyword: str) -> str:
        """A stage keyword worded as this algorithm's parameter label."""
        definition = self.parameterDefinition(keyword.upper())
        return f"'{definition.description()}'" if definition is not None else keyword

    def processAlgorithm(self, parameters, context, feedback):
        from urbanvis._errors import UrbanvisError

        study = self.parameterAsFile(parameters, "STUDY", context) or None
        if study is None and not self.STUDY_HELP:
            raise QgsProcessingException("Choose a study folder")
        files: dict[str, Path] | None
        try:
            keywords = self.stage_keywords(parameters, context, feedback)
            if self.external(parameters, context):
                message = _external.run_command(
                    self.COMMAND or self.STAGE, study, keywords, feedback, label_of=self.label_of
                )
                layers = [n for n in self.EXTERNAL_LAYERS if study and _has_layer(study, n)]
                files = None
            else:
                result = self.run_in_process(study, keywords, feedback)
                message, layers = result.message, list(result.layers)
                files = {} if result.stopped else result.files
        except UrbanvisError as exc:
            raise QgsProcessingException(exc.worded(self.label_of)) from None
        from urbanvis._errors import word_params

        message = word_params(message, self.label_of)
        feedback.pushInfo(message)
        outputs: dict[str, Any] = {"MESSAGE": message}
        if study is not None:
            outputs.update(self.load_layers(study, layers, context))
        if not feedback.isCanceled():
            outputs.update(self.file_outputs(keywords, files))
        return outputs

    def run_in_process(self, study: str | None, keywords: dict[str, Any], feedback):
        from urbanvis import stages

        def progress(done, total, counts) -> None:
            if total:
                feedback.setProgress(100.0 * done / total)
            if counts:
                shown = ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in counts.items()
                )
                feedback.setProgressText(shown)

        stage = getattr(stages, self.STAGE)
        return stage(
            study,
            progress=progress,
            should_stop=feedback.isCanceled,
            **self.stage_callbacks(feedback),
            **keywords,
        )

    def stage_callbacks(self, feedback) -> dict[str, Any]:
        """Further callbacks of this algorithm's stage, wired to ``feedback`` (none here)."""
        return {}

    def load_layers(self, study: str, layers, context) -> dict[str, str]:
        """Hand the study's layers back to QGIS (loaded when the algorithm finishes)."""
        gpkg = os.path.join(study, "study.gpkg")
        out: dict[str, str] = {}
        for name in layers:
            uri = f"{gpkg}|layername={name}"
            key = name.split("_")[0] if name.startswith(("predictions_", "zones_")) else name
            key = key.upper()
            out[key] = uri
            details = QgsProcessingContext.LayerDetails(name, context.project(), key)
            context.addLayerToLoadOnCompletion(uri, details)
        return out


def _has_layer(study: str, name: str) -> bool:
    gpkg = os.path.join(study, "study.gpkg")
    if not os.path.exists(gpkg):
        return False
    layer = QgsVectorLayer(f"{gpkg}|layername={name}", name, "ogr")
    return layer.isValid()


def enum_value(alg: QgsProcessingAlgorithm, parameters, name: str, options, context) -> str:
    return options[alg.parameterAsEnum(parameters, name, context)]


def optional_number(alg, parameters, name: str, context, kind=float):
    """The value of an optional number parameter, None when it is not set."""
    value = parameters.get(name)
    if value is None or value == "":
        return None
    return kind(alg.parameterAsDouble(parameters, name, context))
