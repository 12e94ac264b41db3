"""The encoders an evaluation compares, and their descriptors of image files.

An :class:`EncoderSpec` is one of

- a checkpoint file (urbanvis/MoCo v3 or timm/DeiT), embedded by the engine;
- a named architecture with random weights (``random_init``): the "no pretraining" baseline;
- the colour thumbnail (``thumbnail``): each image shrunk to ``side x side`` RGB pixels and
  flattened, the classic non-learned place-recognition baseline. It needs no torch, and a
  learned encoder that does not beat it has not learned places.

Each gives one of two descriptors (``descriptor``; :mod:`urbanvis.engine.features`):
``cls``, the paper's [CLS] vector, or ``tokens``, the patch tokens minus the image's mean
token. For the thumbnail, ``tokens`` means its pixels minus the image's mean colour: the
same per-image centring, so neither side of a comparison gets a correction the other lacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError, InputFileError, Stopped

THUMBNAIL_SIDE = 16
"""Side of the colour-thumbnail baseline (16 x 16 x 3 = 768 values, a ViT-B's width)."""
DESCRIPTORS = ("cls", "tokens")
"""The descriptors an encoder can give (see the module docstring)."""


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder to evaluate. Build them with :func:`encoder_specs`."""

    label: str
    checkpoint: str | None = None
    model: str | None = None
    random_init: bool = False
    seed: int = 0
    thumbnail: int | None = None

    @property
    def kind(self) -> str:
        if self.thumbnail:
            return "thumbnail"
        return "checkpoint" if self.checkpoint else "random-init"


def check_descriptor(descriptor: str) -> None:
    """Refuse a descriptor name that is not one of :data:`DESCRIPTORS`."""
    if descriptor not in DESCRIPTORS:
        raise InputError(f"`descriptor` must be {' or '.join(DESCRIPTORS)}, not {descriptor!r}")


def encoder_specs(
    checkpoints: Sequence[str | os.PathLike[str]] = (),
    *,
    models: Sequence[str] = (),
    random_init: bool = False,
    thumbnail: bool = False,
    seed: int = 0,
    labels: Sequence[str] = (),
) -> list[EncoderSpec]:
    """The encoders named by an evaluation's parameters, in the order given.

    ``checkpoints`` are files; ``models`` are architecture names, which need
    ``random_init`` (no pretrained weights ship offline); ``thumbnail`` adds the
    colour-thumbnail baseline. ``labels`` name the checkpoints in tables (default: the
    run folder and file name).
    """
    specs: list[EncoderSpec] = []
    for i, path in enumerate(checkpoints):
        p = Path(path).expanduser()
        if not p.is_file():
            raise InputFileError(f"checkpoint {p} does not exist; check `checkpoint`")
        label = labels[i] if i < len(labels) else _checkpoint_label(p)
        specs.append(EncoderSpec(label=label, checkpoint=str(p)))
    if models and not random_init:
        raise InputError(
            "`model` names an architecture without weights; add `random_init` for the "
            "random-weights baseline, or give a `checkpoint`"
        )
    for name in models:
        specs.append(EncoderSpec(label=f"{name} (random init)", model=name, random_init=True,
                                 seed=seed))  # fmt: skip
    if thumbnail:
        specs.append(
            EncoderSpec(
                label=f"thumbnail {THUMBNAIL_SIDE}x{THUMBNAIL_SIDE}", thumbnail=THUMBNAIL_SIDE
            )  # fmt: skip
        )
    if not specs:
        raise InputError(
            "name at least one encoder: `checkpoint` FILE, `model` NAME with `random_init`, "
            "or `thumbnail`"
        )
    seen: set[str] = set()
    for spec in specs:
        if spec.label in seen:
            raise InputError(f"two encoders are both labelled {spec.label!r}; label them apart")
        seen.add(spec.label)
    return specs


def _checkpoint_label(path: Path) -> str:
    stem = path.name.removesuffix(".pth.tar").removesuffix(".pth").removesuffix(".pt")
    return f"{path.parent.name}/{stem}" if path.parent.name else stem


def features_from_files(
    paths: Sequence[str | os.PathLike[str]],
    spec: EncoderSpec,
    *,
    image_size: int | None = None,
    batch_size: int = 64,
    workers: int = 0,
    device: str = "auto",
    descriptor: str = "cls",
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One descriptor per image file (float32 rows, in the order of ``paths``).

    Learned encoders give their [CLS] vector, or their centred patch tokens with
    ``descriptor="tokens"`` (see :func:`urbanvis.engine.features.image_features`); the
    thumbnail gives the image's ``side x side`` RGB pixels in [0, 1], flattened (minus the
    image's mean colour with ``descriptor="tokens"``). Descriptors are not normalised.
    """
    check_descriptor(descriptor)
    if spec.thumbnail:
        pixels = thumbnail_features(
            paths, side=spec.thumbnail, progress=progress, should_stop=should_stop
        )
        if descriptor == "tokens":
            pixels = centre_colours(pixels)
        return pixels, {"model": spec.label, "dim": 3 * spec.thumbnail**2,
                        "descriptor": descriptor}  # fmt: skip
    from ..engine.features import image_features

    return image_features(
        paths,
        checkpoint=spec.checkpoint,
        model=spec.model,
        random_init=spec.random_init,
        seed=spec.seed,
        image_size=image_size,
        batch_size=batch_size,
        workers=workers,
        device=device,
        descriptor=descriptor,
        progress=progress,
        should_stop=should_stop,
    )


def centre_colours(pixels: np.ndarray) -> np.ndarray:
    """Flattened RGB thumbnails minus each image's mean colour (per channel), in place."""
    rgb = pixels.reshape(len(pixels), -1, 3)
    rgb -= rgb.mean(axis=1, keepdims=True)
    return pixels


def thumbnail_features(
    paths: Sequence[str | os.PathLike[str]],
    *,
    side: int = THUMBNAIL_SIDE,
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Each image shrunk to ``side x side`` RGB (PIL's box filter), flattened, in [0, 1]."""
    from PIL import Image

    out = np.empty((len(paths), 3 * side * side), dtype=np.float32)
    for i, path in enumerate(paths):
        if should_stop is not None and i % 256 == 0 and should_stop():
            raise Stopped("stopped while computing thumbnails; nothing written")
        try:
            with Image.open(path) as im:
                small = im.convert("RGB").resize((side, side), Image.Resampling.BOX)
        except Exception as exc:  # PIL raises more than OSError on a bad file
            raise InputFileError(f"cannot read image {path}: {exc}; fix or remove it") from exc
        out[i] = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
        if progress is not None and (i + 1) % 256 == 0:
            progress(i + 1, len(paths), {})
    if progress is not None:
        progress(len(paths), len(paths), {})
    return out
