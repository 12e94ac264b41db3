"""``urbanvis eval safety``: Place Pulse 2.0 safe/unsafe with a linear probe (Table 3)."""

from __future__ import annotations

import click

from ._eval_options import ENCODER_HELP, encoder_options
from ._options import ProgressBar, echo_result


@click.command("safety", epilog=ENCODER_HELP)
@click.option(
    "--study",
    "study_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Record the run in this study; the table goes to its reports/ unless --out.",
)
@click.option(
    "--pp2",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    metavar="CSV",
    help="Place Pulse 2.0 votes.csv (left_id, right_id, winner, category; Q-scores per "
    "image) or a CSV of image_id, score (0-10).",
)
@click.option(
    "--images",
    type=click.Path(file_okay=False, path_type=str),
    metavar="DIR",
    default=None,
    help="Folder of <image id>.jpg (or .png) [default: images/ beside --pp2].",
)
@click.option(
    "--category",
    default="safety",
    show_default=True,
    help="Which question's votes count (safety also matches safer/safe).",
)
@click.option(
    "--test-size", type=float, default=0.2, show_default=True, help="Share of images held out."
)
@click.option(
    "--epochs", type=int, default=20, show_default=True, help="Passes of the linear probe."
)
@click.option(
    "--hard-auc",
    is_flag=True,
    help="AUC of the 0/1 predictions (what the paper reports) instead of probabilities.",
)
@encoder_options
def safety(study_dir, pp2, images, category, test_size, epochs, hard_auc, checkpoints, models,
           random_init, thumbnail, seed, image_size, batch_size, workers, device, out):  # fmt: skip
    """Safety perception: a linear probe on frozen features, safe (> 6.5) vs unsafe (< 3.5).

    \b
    Votes become Q-scores (Salesses et al. 2013) on 0-10; images between 3.5 and 6.5 are
    dropped; a seeded stratified split (--test-size) trains StandardScaler + logistic
    regression by SGD for --epochs passes on each encoder's [CLS] features. Columns:
    model, n_train, n_test, accuracy, precision, recall, f1, auc (percent).

    \b
    Examples:
      urbanvis simulate --safety-set pp --images 1000
      urbanvis eval safety --pp2 pp/votes.csv --thumbnail --out safety.csv
      urbanvis eval safety --pp2 pp2/votes.csv --images pp2/images \\
          --checkpoint runs/temporal/checkpoint_0099.pth.tar --thumbnail --out t3.csv
    """
    from urbanvis import stages

    with ProgressBar("encoders", unit="model") as bar:
        result = stages.eval_safety(
            study_dir, pp2=pp2, images=images, checkpoints=checkpoints, models=models,
            random_init=random_init, thumbnail=thumbnail, category=category, seed=seed,
            test_size=test_size, epochs=epochs, hard_auc=hard_auc, image_size=image_size,
            batch_size=batch_size, workers=workers, device=device, out=out, progress=bar,
        )  # fmt: skip
    echo_result(result)
