"""Pretrain: MoCo v3 ViT pretraining on a pair table (``urbanvis pretrain``, torch)."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ._base import UrbanvisAlgorithm, cli_param, with_help

_NUMBERS = (  # keyword, label, integer?, advanced?
    ("epochs", "Epochs", True, False),
    ("batch_size", "Batch size", True, False),
    ("base_lr", "Base learning rate", False, True),
    ("weight_decay", "Weight decay", False, True),
    ("momentum", "Momentum", False, True),
    ("temperature", "Temperature", False, True),
    ("crop_min", "Smallest crop (share of the image)", False, True),
    ("photometric", "Photometric augmentation (0-1)", False, True),
    ("image_size", "Image size (px)", True, True),
    ("workers", "Loader workers", True, True),
    ("save_every", "Save every N epochs", True, True),
    ("accumulate", "Accumulate gradients (steps)", True, True),
    ("dim", "Projection dimension", True, True),
    ("mlp_dim", "Projection MLP width", True, True),
    ("seed", "Seed", True, True),
)
_CHOICES = ("precision", "augment", "compile")


class Pretrain(UrbanvisAlgorithm):
    NAME = "pretrain"
    LABEL = "Pretrain"
    GROUP, GROUP_ID = "3 Pretrain", "pretrain"
    STAGE = "pretrain"
    TORCH = True
    HELP = (
        "MoCo v3 ViT pretraining on a pair table; checkpoints in checkpoints/NAME/. Runs "
        "in QGIS when its Python has torch, otherwise as the urbanvis command set in the "
        "plugin's settings. Cancelling keeps the finished epochs; 'Resume' continues."
    )

    def add_parameters(self) -> None:
        default, text = cli_param("pretrain", "pairs_name")
        self.addParameter(
            with_help(
                QgsProcessingParameterString("PAIRS", "Pairs (strategy or .parquet)", default),
                text,
            )
        )
        default, text = cli_param("pretrain", "arch")
        self.addParameter(
            with_help(QgsProcessingParameterString("ARCH", "Architecture", default), text)
        )
        for key, label, integer, adv in _NUMBERS:
            default, text = cli_param("pretrain", key)
            kind = (
                QgsProcessingParameterNumber.Integer
                if integer
                else QgsProcessingParameterNumber.Double
            )
            self.addParameter(
                with_help(
                    QgsProcessingParameterNumber(
                        key.upper(), label, kind, default, optional=default is None, minValue=0
                    ),
                    text,
                    advanced=adv,
                )
            )
        default, text = cli_param("pretrain", "device")
        self.addParameter(
            with_help(
                QgsProcessingParameterString("DEVICE", "Device", default), text, advanced=True
            )
        )
        for key in _CHOICES:
            from urbanvis_cli.pretrain import pretrain as cmd

            p = next(p for p in cmd.params if p.name == key)
            options = list(p.type.choices)
            self.addParameter(
                with_help(
                    QgsProcessingParameterEnum(
                        key.upper(),
                        key.capitalize(),
                        options,
                        defaultValue=options.index(p.default),
                    ),
                    p.help or "",
                    advanced=True,
                )
            )
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean("LEARN_PATCH", "Train the patch projection", False),
                cli_param("pretrain", "learn_patch")[1],
                advanced=True,
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterString("NAME", "Run name", optional=True),
                cli_param("pretrain", "name")[1],
            )
        )
        self.addParameter(
            with_help(
                QgsProcessingParameterBoolean("RESUME", "Resume", False),
                cli_param("pretrain", "resume")[1],
            )
        )
        self.addOutput(QgsProcessingOutputFile("CHECKPOINT", "Checkpoint"))

    def stage_keywords(self, parameters, context, feedback) -> dict:
        out: dict = {
            "pairs": self.parameterAsString(parameters, "PAIRS", context),
            "arch": self.parameterAsString(parameters, "ARCH", context),
            "device": self.parameterAsString(parameters, "DEVICE", context),
            "resume": self.parameterAsBool(parameters, "RESUME", context),
            "learn_patch": self.parameterAsBool(parameters, "LEARN_PATCH", context),
        }
        for key, _, integer, _ in _NUMBERS:
            if parameters.get(key.upper()) in (None, ""):
                continue
            as_ = self.parameterAsInt if integer else self.parameterAsDouble
            out[key] = as_(parameters, key.upper(), context)
        from urbanvis_cli.pretrain import pretrain as cmd

        for key in _CHOICES:
            p = next(p for p in cmd.params if p.name == key)
            out[key] = list(p.type.choices)[self.parameterAsEnum(parameters, key.upper(), context)]
        name = self.parameterAsString(parameters, "NAME", context)
        if name:
            out["name"] = name
        return out
