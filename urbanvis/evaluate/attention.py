"""What a ViT attends to, layer by layer: the attention analysis of the paper's Figure 2.

Three views of each encoder, from the attention probabilities and output tokens of every
block (:mod:`urbanvis.engine.attention` records them; nothing here imports torch):

- **Mean attention distance** per layer and head (Dosovitskiy et al. 2021, Fig. 7): for a
  query patch, the distance in pixels to every other patch weighted by its attention,
  averaged over query patches and images. The [CLS] token is dropped as query and as key
  and each patch's remaining attention row is renormalised to sum to 1, so the figure is
  the distance *among patches* whatever share of attention goes to [CLS] (without the
  renormalisation a head that attends mostly to [CLS] would look local). Distances are
  between patch centres: ``patch_size`` times the distance on the patch grid.
- **Relative log amplitude** of the Fourier-transformed feature maps per layer (Park & Kim
  2022, "How do vision transformers work?", Fig. 2a/3): each block's patch tokens are
  reshaped to ``(h, w, C)``, Fourier-transformed over ``h, w``, ``log(|F| + 1e-6)`` is
  averaged over channels and images, and the value at the highest diagonal frequency minus
  the value at zero frequency is reported. As in the reference implementation the profile
  runs along the diagonal of the (centred) spectrum; unlike it, the profile includes the
  Nyquist frequency ``(pi, pi)`` on even grids (the reference's slice stops one step short,
  at ``pi - 2 pi / h``), so a checkerboard is seen. Negative: the layer passes mostly low
  frequencies (self-attention as a low-pass filter); near zero or positive: high frequencies
  survive.
- **Attention maps** of chosen query patches through all layers (mean over heads, [CLS]
  dropped and renormalised as above), drawn over the first image as a PNG grid: rows are
  layers, columns query patches, the query patch outlined.

:func:`evaluate_attention` computes them for several encoders over the same images;
:func:`write_attention_report` writes the tables (CSV + Markdown) and the PNGs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._errors import InputError
from .encoders import EncoderSpec

log = logging.getLogger(__name__)

__all__ = [
    "AttentionResult",
    "attention_maps",
    "default_query_patches",
    "evaluate_attention",
    "image_list",
    "log_amplitude_profile",
    "mean_attention_distance",
    "patch_distances",
    "relative_log_amplitude",
    "write_attention_report",
]

EPS = 1e-6
"""Added to the Fourier amplitude before the log, as in Park & Kim's reference code."""


# ------------------------------------------------------------------------- metrics
def patch_distances(grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """Pixel distances between the centres of all patches, ``(h*w, h*w)``, row-major order."""
    h, w = grid
    rows, cols = np.divmod(np.arange(h * w), w)
    return patch_size * np.hypot(rows[:, None] - rows[None, :], cols[:, None] - cols[None, :])


def _patch_attention(attentions: np.ndarray, prefix: int) -> np.ndarray:
    """Patch-to-patch attention with the prefix tokens dropped, rows renormalised to 1."""
    a = np.asarray(attentions, dtype=np.float64)[..., prefix:, prefix:]
    total = a.sum(axis=-1, keepdims=True)
    return np.divide(a, total, out=np.zeros_like(a), where=total > 0)


def mean_attention_distance(
    attentions: np.ndarray, grid: tuple[int, int], patch_size: int, *, prefix: int = 1
) -> np.ndarray:
    """Mean attention distance in pixels per head, ``(heads,)``.

    Parameters
    ----------
    attentions
        Softmax attention of one layer, ``(B, heads, N, N)`` with ``N = prefix + h*w``.
    grid, patch_size
        The patch grid ``(h, w)`` and the side of a patch in pixels.
    prefix
        Tokens before the patches ([CLS]: 1); dropped as queries and keys, and each query's
        patch attention renormalised to sum to 1.

    Returns
    -------
    numpy.ndarray
        ``sum_j a_ij d_ij`` averaged over query patches ``i`` and images.
    """
    a = _patch_attention(attentions, prefix)
    if a.shape[-1] != grid[0] * grid[1]:
        raise InputError(
            f"attention has {a.shape[-1]} patch tokens but the grid {grid[0]}x{grid[1]} has "
            f"{grid[0] * grid[1]}; check `prefix`"
        )
    per_query = (a * patch_distances(grid, patch_size)).sum(axis=-1)  # (B, heads, P)
    return per_query.mean(axis=(0, 2))


def log_amplitude_profile(
    tokens: np.ndarray, grid: tuple[int, int], *, prefix: int = 1
) -> np.ndarray:
    """Mean log Fourier amplitude along the spectrum's diagonal, zero frequency first.

    ``tokens`` ``(B, N, C)`` of one layer are reshaped to ``(B, h, w, C)`` (prefix tokens
    dropped), transformed with a 2-D FFT over ``h, w``; ``log(|F| + 1e-6)`` is averaged
    over images and channels and read at frequencies ``(k, k) * 2 pi / (h, w)`` for
    ``k = 0 .. min(h, w) // 2`` (the last is ``(pi, pi)`` on an even square grid).
    """
    h, w = grid
    x = np.asarray(tokens, dtype=np.float64)[:, prefix:, :]
    if x.shape[1] != h * w:
        raise InputError(
            f"tokens hold {x.shape[1]} patches but the grid {h}x{w} has {h * w}; check `prefix`"
        )
    x = x.reshape(x.shape[0], h, w, x.shape[-1])
    amplitude = np.log(np.abs(np.fft.fft2(x, axes=(1, 2))) + EPS).mean(axis=(0, 3))
    k = np.arange(min(h, w) // 2 + 1)
    return amplitude[k, k]


def relative_log_amplitude(tokens: np.ndarray, grid: tuple[int, int], *, prefix: int = 1) -> float:
    """Log amplitude at the highest diagonal frequency minus at zero frequency (one layer)."""
    profile = log_amplitude_profile(tokens, grid, prefix=prefix)
    return float(profile[-1] - profile[0])


def attention_maps(
    attentions: np.ndarray,
    grid: tuple[int, int],
    query_patches: Sequence[tuple[int, int]],
    *,
    prefix: int = 1,
) -> np.ndarray:
    """Attention of each query patch to the patches of one image, mean over heads.

    ``attentions`` is one image's layer, ``(heads, N, N)``; returns ``(len(query_patches),
    h, w)``, each map the renormalised patch attention of that query.
    """
    h, w = grid
    a = _patch_attention(attentions, prefix).mean(axis=0)  # (P, P)
    rows = [a[r * w + c] for r, c in query_patches]
    return np.stack(rows).reshape(len(rows), h, w)


def default_query_patches(grid: tuple[int, int]) -> list[tuple[int, int]]:
    """Three query patches on the diagonal: a quarter, half and three quarters across."""
    h, w = grid
    picks = [(h // 4, w // 4), (h // 2, w // 2), ((3 * h) // 4, (3 * w) // 4)]
    return list(dict.fromkeys(picks))


def check_query_patches(
    query_patches: Sequence[tuple[int, int]], grid: tuple[int, int], label: str
) -> list[tuple[int, int]]:
    """The query patches as (row, col) ints, each inside ``grid``."""
    h, w = grid
    out = []
    for q in query_patches:
        if len(q) != 2:
            raise InputError(f"`query_patches` entries are (row, col) pairs, got {q!r}")
        r, c = int(q[0]), int(q[1])
        if not (0 <= r < h and 0 <= c < w):
            raise InputError(
                f"`query_patches` ({r}, {c}) is outside the {h}x{w} patch grid of {label}; "
                f"rows run 0..{h - 1} and columns 0..{w - 1}"
            )
        out.append((r, c))
    return out


# ------------------------------------------------------------------------- images
def image_list(
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    max_images: int | None = None,
    seed: int = 0,
) -> list[Path]:
    """Image files from a folder (searched recursively) or a list of files.

    More than ``max_images`` files: a sample of that many drawn with ``seed``, kept in
    file order.
    """
    from .._errors import InputFileError
    from ..providers._exif import IMAGE_SUFFIXES, image_files

    if isinstance(images, (str, os.PathLike)):
        folder = Path(images).expanduser()
        if not folder.is_dir():
            raise InputFileError(f"`images` {folder} is not a folder; give a folder of images")
        files = image_files(folder)
        if not files:
            raise InputError(
                f"`images` {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                f"point it at a folder of images"
            )
    else:
        files = [Path(p).expanduser() for p in images]
        if not files:
            raise InputError("no images to analyse; give `images` (a folder or image files)")
        for f in files:
            if not f.is_file():
                raise InputFileError(f"image {f} does not exist; check `images`")
    if max_images is not None and len(files) > max_images:
        keep = np.random.default_rng(seed).choice(len(files), max_images, replace=False)
        files = [files[i] for i in sorted(keep)]
    return files


# ------------------------------------------------------------------------- evaluation
@dataclass
class EncoderAttention:
    """One encoder's attention figures."""

    label: str
    meta: dict[str, Any]
    distance: np.ndarray  # (layers, heads), pixels
    profile: np.ndarray  # (layers, k), log amplitude along the diagonal
    maps: np.ndarray  # (layers, queries, h, w) for the first image
    image: np.ndarray  # the first image as the model saw it, float RGB
    query_patches: list[tuple[int, int]]

    @property
    def relative_log_amplitude(self) -> np.ndarray:
        return self.profile[:, -1] - self.profile[:, 0]


@dataclass
class AttentionResult:
    """The attention analysis of several encoders over the same images."""

    encoders: list[EncoderAttention] = field(default_factory=list)
    n_images: int = 0

    def distance_table(self) -> pd.DataFrame:
        """Columns model, layer, head, mean_distance_px (layers and heads from 1)."""
        rows = [
            (e.label, layer + 1, head + 1, float(e.distance[layer, head]))
            for e in self.encoders
            for layer in range(e.distance.shape[0])
            for head in range(e.distance.shape[1])
        ]
        return pd.DataFrame(rows, columns=["model", "layer", "head", "mean_distance_px"])

    def fourier_table(self) -> pd.DataFrame:
        """Columns model, layer, mean_distance_px (mean over heads), relative_log_amplitude."""
        rows = [
            (e.label, layer + 1, float(e.distance[layer].mean()), float(rel))
            for e in self.encoders
            for layer, rel in enumerate(e.relative_log_amplitude)
        ]
        return pd.DataFrame(
            rows, columns=["model", "layer", "mean_distance_px", "relative_log_amplitude"]
        )


def evaluate_attention(
    paths: Sequence[str | os.PathLike[str]],
    specs: Sequence[EncoderSpec],
    *,
    image_size: int | None = None,
    query_patches: Sequence[tuple[int, int]] | None = None,
    batch_size: int = 8,
    workers: int = 0,
    device: str = "auto",
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> AttentionResult:
    """Mean attention distance, Fourier profile and attention maps of each encoder.

    Parameters
    ----------
    paths
        Image files, all shown to every encoder (resized and centre-cropped as embedding
        does).
    specs
        Learned encoders (:func:`urbanvis.evaluate.encoders.encoder_specs`); the thumbnail
        baseline has no attention and is refused.
    query_patches
        (row, col) patches for the attention maps; default :func:`default_query_patches`.
    """
    if not paths:
        raise InputError("no images to analyse; give `images` (a folder or image files)")
    for spec in specs:
        if spec.thumbnail:
            raise InputError(
                "the thumbnail baseline has no attention; drop `thumbnail` and name ViT "
                "encoders (`checkpoint`, or `model` with `random_init`)"
            )
    from ..engine.attention import attention_batches

    result = AttentionResult(n_images=len(paths))
    total = len(paths) * len(specs)
    done = 0
    runs = []  # every model built and its query patches checked before any runs
    for spec in specs:
        meta, batches = attention_batches(
            paths, checkpoint=spec.checkpoint, model=spec.model, random_init=spec.random_init,
            seed=spec.seed, image_size=image_size, batch_size=batch_size, workers=workers,
            device=device, should_stop=should_stop,
        )  # fmt: skip
        where = f"{spec.label} at {meta['image_size']} px"
        grid = meta["grid"]
        queries = check_query_patches(
            default_query_patches(grid) if query_patches is None else query_patches, grid, where
        )
        runs.append((spec, meta, batches, queries))
    if progress is not None:
        progress(0, total, {})
    for spec, meta, batches, queries in runs:
        grid, patch, prefix = meta["grid"], meta["patch_size"], meta["prefix"]
        distance = profile = maps = image = None
        seen = 0
        for images, attentions, tokens in batches:
            n = len(images)
            d = np.stack([mean_attention_distance(a, grid, patch, prefix=prefix)
                          for a in attentions])  # fmt: skip
            p = np.stack([log_amplitude_profile(t, grid, prefix=prefix) for t in tokens])
            # running means over images (both figures are means of per-image values)
            distance = d if distance is None else distance + (d - distance) * n / (seen + n)
            profile = p if profile is None else profile + (p - profile) * n / (seen + n)
            if maps is None:
                image = images[0]
                maps = np.stack([attention_maps(a[0], grid, queries, prefix=prefix)
                                 for a in attentions])  # fmt: skip
            seen += n
            done += n
            if progress is not None:
                progress(done, total, {})
        assert distance is not None and profile is not None and maps is not None
        assert image is not None
        result.encoders.append(
            EncoderAttention(spec.label, meta, distance, profile, maps, image, queries)
        )
        log.info(
            "%s: mean attention distance %.1f px in layer 1, %.1f px in layer %d",
            spec.label, distance[0].mean(), distance[-1].mean(), len(distance),
        )  # fmt: skip
    return result


# ------------------------------------------------------------------------- writing
def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "model"


def report_paths(result: AttentionResult, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Where :func:`write_attention_report` writes, by kind (nothing is written)."""
    path = Path(out).expanduser()
    if path.suffix.lower() != ".csv":
        raise InputError(f"`out` must be a .csv file, got {path.name!r}")
    stem = path.with_suffix("")
    paths = {
        "table": path,
        "fourier_table": Path(f"{stem}_fourier.csv"),
        "distance_png": Path(f"{stem}_distance.png"),
        "fourier_png": Path(f"{stem}_fourier.png"),
    }
    for e in result.encoders:
        paths[f"maps:{e.label}"] = Path(f"{stem}_maps_{_slug(e.label)}.png")
    return paths


def write_attention_report(result: AttentionResult, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the tables (CSV + Markdown) and PNGs beside ``out`` (a .csv); returns the paths.

    ``out`` gets the per-head distance table, ``<stem>_fourier.csv`` the per-layer table,
    ``<stem>_distance.png`` and ``<stem>_fourier.png`` the encoders side by side, and
    ``<stem>_maps_<model>.png`` each encoder's attention maps.
    """
    from .._files import atomic_write_bytes
    from ._draw import heatmap_grid, line_plot
    from .tables import write_table

    paths = report_paths(result, out)
    figures: dict[str, bytes] = {}  # drawn before anything is written
    layers = {e.label: np.arange(1, len(e.distance) + 1) for e in result.encoders}
    figures["distance_png"] = line_plot(
        {e.label: (layers[e.label], e.distance.mean(axis=1)) for e in result.encoders},
        points={
            e.label: (np.repeat(layers[e.label], e.distance.shape[1]), e.distance)
            for e in result.encoders
        },
        xlabel="layer",
        ylabel="mean attention distance (px)",
        title=f"Mean attention distance per layer (squares: mean of heads; circles: heads; "
        f"{result.n_images} images)",
    )
    figures["fourier_png"] = line_plot(
        {e.label: (layers[e.label], e.relative_log_amplitude) for e in result.encoders},
        xlabel="layer",
        ylabel="log amp. (high - zero freq.)",
        title="Relative log amplitude of the Fourier-transformed feature maps",
    )
    for e in result.encoders:
        figures[f"maps:{e.label}"] = heatmap_grid(
            e.image,
            e.maps,
            e.query_patches,
            patch_size=int(e.meta["patch_size"]),
            row_labels=[f"layer {i + 1}" for i in range(len(e.maps))],
            col_labels=[f"patch {r},{c}" for r, c in e.query_patches],
            title=f"{e.label}: attention of the outlined patch (mean over heads)",
        )
    write_table(result.distance_table(), paths["table"], title="Mean attention distance (px)")
    write_table(
        result.fourier_table(),
        paths["fourier_table"],
        title="Per layer: mean attention distance and relative log amplitude",
    )
    for kind, data in figures.items():
        atomic_write_bytes(paths[kind], data)
    return paths
