"""``urbanvis eval attention``: mean attention distance, Fourier profile and attention maps."""

from __future__ import annotations

import click

from urbanvis._errors import InputError

from ._eval_options import ENCODER_HELP, encoder_options
from ._options import ProgressBar, echo_result


def _query_patch(text: str) -> tuple[int, int]:
    parts = text.split(",")
    try:
        row, col = (int(p) for p in parts)
    except ValueError:
        raise InputError(
            f"`query_patches` takes ROW,COL (two whole numbers), got {text!r}"
        ) from None
    return row, col


@click.command("attention", epilog=ENCODER_HELP)
@click.option(
    "--images",
    type=click.Path(path_type=str),
    default=None,
    metavar="DIR",
    help="Folder of images (searched recursively) [default: a sample of --study's captures].",
)
@click.option(
    "--study",
    "study_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Study whose captures to sample when --images is not given; the run is recorded "
    "there and the report goes to its reports/attention/ unless --out says otherwise.",
)
@click.option(
    "--query-patch",
    "query_patches",
    multiple=True,
    metavar="ROW,COL",
    help="Patch whose attention maps to draw (0-based row,col of the patch grid); "
    "repeatable [default: three patches on the diagonal].",
)
@click.option(
    "--max-images",
    type=int,
    default=32,
    show_default=True,
    help="Use at most this many images (a sample drawn with --seed).",
)
@encoder_options
def eval_attention(
    images, study_dir, query_patches, max_images, checkpoints, models, random_init, thumbnail,
    seed, image_size, batch_size, workers, device, out,
) -> None:  # fmt: skip
    """What the encoders attend to, layer by layer (the paper's Figure 2).

    \b
    Writes --out (CSV: model, layer, head, mean_distance_px, and a Markdown twin), a
    per-layer table with the relative log amplitude of the Fourier-transformed feature maps
    (<out>_fourier.csv), the two per-layer plots with the encoders side by side
    (<out>_distance.png, <out>_fourier.png) and each encoder's attention maps
    (<out>_maps_<model>.png). ViTs only: --thumbnail has no attention.
    """
    from urbanvis import stages

    patches = [_query_patch(q) for q in query_patches] or None
    with ProgressBar("attention", unit="img") as bar:
        result = stages.eval_attention(
            study_dir, images=images, checkpoints=checkpoints, models=models,
            random_init=random_init, thumbnail=thumbnail, seed=seed, image_size=image_size,
            query_patches=patches, max_images=max_images, batch_size=batch_size,
            workers=workers, device=device, out=out, progress=bar,
        )  # fmt: skip
    echo_result(result)
