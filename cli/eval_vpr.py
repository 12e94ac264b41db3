"""``urbanvis eval vpr``: visual place recognition, Recall@K per encoder (Table 1)."""

from __future__ import annotations

import click

from ._eval_options import ENCODER_HELP, encoder_options
from ._options import ProgressBar, echo_result


@click.command("vpr", epilog=ENCODER_HELP)
@click.option(
    "--dataset",
    required=True,
    type=click.Path(path_type=str),
    metavar="DIR",
    help="VPR set: a folder with database/ and queries/ (@utm_east@utm_north@...@.jpg), or "
    "gsv-cities <ds>_dbImages.npy, <ds>_qImages.npy and <ds>_gt.npy files.",
)
@click.option(
    "--threshold",
    type=float,
    default=25.0,
    show_default=True,
    help="Metres within which a database image is a positive (database/queries layout).",
)
@click.option(
    "--descriptor",
    type=click.Choice(["cls", "tokens"]),
    default="cls",
    show_default=True,
    help="cls: the [CLS] vector (the paper's). tokens: each image's patch tokens minus "
    "their mean, flattened (keeps the picture's layout; thumbnail: pixels minus the mean "
    "colour). Tokens are patches x width long: for small models or sets.",
)
@click.option(
    "--study",
    "study_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Record the run in this study and write reports/eval_vpr.csv (unless --out).",
)
@encoder_options
def eval_vpr(study_dir, dataset, threshold, **options):
    """Recall@1, 5, 10, 15, 20 and 25 of frozen encoders on a place-recognition set.

    \b
    Every image gets its [CLS] descriptor (or 16x16 thumbnail; --descriptor tokens for
    patch tokens instead); each query's 25 nearest
    database images are found exactly (faiss when installed, cosine similarity); a query
    counts at K when one of its K nearest is within --threshold metres. Queries with no
    database image that close are excluded and counted.

    \b
    Examples:
      urbanvis simulate --vpr-set vpr --places 200
      urbanvis eval vpr --dataset vpr --thumbnail --model vit_small_patch16_224 --random-init
      urbanvis eval vpr --dataset vpr --thumbnail --checkpoint run/last.pth.tar --descriptor tokens
      urbanvis eval vpr --dataset pitts30k --checkpoint run/checkpoint_0099.pth.tar --out t1.csv
    """
    from urbanvis import stages

    with ProgressBar("describing images", unit="img") as bar:
        result = stages.eval_vpr(
            study_dir, dataset=dataset, threshold=threshold, progress=bar, **options
        )
    echo_result(result)
