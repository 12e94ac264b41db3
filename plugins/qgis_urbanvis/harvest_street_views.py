"""Harvest street views: street-level images for the study's points (``urbanvis harvest``).

The provider's options are those of :func:`urbanvis.providers.option_specs`, each as the
QGIS parameter of its type (advanced, and only passed on when set).
"""

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
from .sample_road_points import area_keywords, area_parameters


def _providers() -> list[str]:
    from urbanvis.providers import PROVIDERS

    return list(PROVIDERS)


def _specs():
    from urbanvis.providers import option_specs

    return [s for s in option_specs() if s.name not in ("metadata_only",)]


class HarvestStreetViews(UrbanvisAlgorithm):
    NAME = "harvest_street_views"
    LABEL = "Harvest street views"
    GROUP, GROUP_ID = "2 Harvest", "harvest"
    STAGE = "harvest"
    EXTERNAL_LAYERS = ("points", "captures")
    HELP = (
        "Street-level images for the study's points into its captures layer, resumably: "
        "a rerun continues where a cancelled or failed run stopped. A study without points "
        "is sampled first from the area given. Web providers need a key file; "
        "'Run as the urbanvis command' keeps long harvests out of QGIS's process."
    )

    def add_parameters(self) -> None:
        providers = _providers()
        default, text = cli_param("harvest", "provider")
        self.addParameter(
            with_help(
                QgsProcessingParameterEnum(
                    "PROVIDER", "Provider", providers, defaultValue=providers.index(default)
                ),
                text,
            )
        )
        area_parameters(self, "harvest")
        default, text = cli_param("harvest", "batch_size")
        self.addParameter(
            with_help(
                QgsProcessingParameterNumber(
                    "BATCH_SIZE", "Batch size", defaultValue=default, minValue=1
                ),
                text,
                advanced=True,
            )
        )
        _, text = cli_param("harvest", "limit")
        self.addParameter(
            with_help(
                QgsProcessingParameterNumber("LIMIT", "Limit (points)", optional=True, minValue=1),
                text,
            )
        )
        _, text = cli_param("harvest", "retry_failed")
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean("RETRY_FAILED", "Retry failed points", False),
                text,
                advanced=True,
            )
        )
        for spec in _specs():
            self.addParameter(self._option(spec))
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean("EXTERNAL", "Run as the urbanvis command", False),
                "Run the harvest as a separate urbanvis process (long web harvests).",
                advanced=True,
            )
        )
        self.addOutput(QgsProcessingOutputVectorLayer("CAPTURES", "Captures"))

    @staticmethod
    def _option(spec):
        name, label = spec.name.upper(), spec.name.replace("_", " ").capitalize()
        low, high = spec.range or (None, None)
        if spec.type is bool:
            param = QgsProcessingParameterBoolean(name, label, bool(spec.default), optional=True)
        elif spec.type in (int, float):
            kind = (
                QgsProcessingParameterNumber.Integer
                if spec.type is int
                else QgsProcessingParameterNumber.Double
            )
            param = QgsProcessingParameterNumber(name, label, kind, spec.default, optional=True)
            if low is not None:
                param.setMinimum(low)
            if high is not None:
                param.setMaximum(high)
        elif spec.choices:
            param = QgsProcessingParameterEnum(
                name, label, list(spec.choices), defaultValue=list(spec.choices).index(spec.default)
            )
        elif spec.name.endswith("_file"):
            param = QgsProcessingParameterFile(name, label, optional=True)
        else:
            default = spec.default
            if isinstance(default, tuple):
                default = ",".join(f"{v:g}" for v in default)
            param = QgsProcessingParameterString(name, label, default, optional=True)
        return with_help(param, spec.help, advanced=True)

    def external(self, parameters, context) -> bool:
        return super().external(parameters, context) or self.parameterAsBool(
            parameters, "EXTERNAL", context
        )

    def stage_callbacks(self, feedback) -> dict:
        # a paid provider's cost line (requests, time, money) before it requests anything:
        # the same line the command prints, which the external path shows through pushInfo
        from urbanvis._errors import word_params

        return {"notice": lambda line: feedback.pushInfo(word_params(line, self.label_of))}

    def stage_keywords(self, parameters, context, feedback) -> dict:
        out = {
            "provider": _providers()[self.parameterAsEnum(parameters, "PROVIDER", context)],
            **area_keywords(self, parameters, context, feedback),
            "batch_size": self.parameterAsInt(parameters, "BATCH_SIZE", context),
            "retry_failed": self.parameterAsBool(parameters, "RETRY_FAILED", context) or None,
        }
        if parameters.get("LIMIT") not in (None, ""):
            out["limit"] = self.parameterAsInt(parameters, "LIMIT", context)
        for spec in _specs():
            name = spec.name.upper()
            if spec.type is bool:
                value = self.parameterAsBool(parameters, name, context)
                if value != bool(spec.default):
                    out[spec.name] = value
                continue
            if parameters.get(name) in (None, ""):
                continue
            if spec.choices:
                value = list(spec.choices)[self.parameterAsEnum(parameters, name, context)]
            elif spec.type is int:
                value = self.parameterAsInt(parameters, name, context)
            elif spec.type is float:
                value = self.parameterAsDouble(parameters, name, context)
            elif spec.name.endswith("_file"):
                value = self.parameterAsFile(parameters, name, context)
            else:
                value = self.parameterAsString(parameters, name, context)
            if value in ("", None):
                continue
            if isinstance(spec.default, tuple) and value == ",".join(
                f"{v:g}" for v in spec.default
            ):
                continue
            if value != spec.default:
                out[spec.name] = value
        return {k: v for k, v in out.items() if v is not None}
