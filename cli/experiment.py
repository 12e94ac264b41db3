"""``urbanvis experiment``: the paper's experiment, one command, one report."""

from __future__ import annotations

import click

from ._options import ProgressBar, echo_result


class _PhaseBars:
    """One progress bar per phase of the experiment (the ``phase`` of each update)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.phase: str | None = None
        self.bar: ProgressBar | None = None

    def __call__(self, done: int, total: int, counts: dict) -> None:
        counts = dict(counts)
        phase = str(counts.pop("phase", ""))
        if phase != self.phase:
            self.close()
            self.phase, self.bar = phase, ProgressBar(phase, unit="step")
        assert self.bar is not None
        self.bar(done, total, counts)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

    def __enter__(self) -> _PhaseBars | None:
        return self if self.enabled else None

    def __exit__(self, *exc) -> None:
        self.close()


@click.command()
@click.option(
    "--study",
    "study_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Study folder; a new or empty one gets the synthetic city of the bundled Helsinki "
    "roads. Rerunning the same command resumes.",
)
@click.option(
    "--preset",
    type=click.Choice(["cpu", "paper"]),
    default="cpu",
    show_default=True,
    help="cpu: a 4-layer ViT at 64 px, under 30 minutes on 2 cores. paper: the paper's "
    "ViT-B/16 recipe at 224 px (300 epochs, batch 1024), for GPUs.",
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=str),
    metavar="CHECKPOINT",
    help="Also evaluate this checkpoint (e.g. an ImageNet DeiT file); repeatable.",
)
@click.option("--epochs", type=int, default=None, help="Epochs per encoder [preset's].")
@click.option(
    "--max-pairs", type=int, default=None, help="Pairs per strategy, the budget [preset's]."
)
@click.option("--batch-size", type=int, default=None, help="Pairs per step [preset's].")
@click.option("--base-lr", type=float, default=None, help="Learning rate per 256 pairs [preset's].")
@click.option(
    "--device", default=None, help="auto, cpu, cuda or cuda:N [cpu preset: cpu; paper: auto]."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of everything.")
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
def experiment(study_dir, preset, baselines, epochs, max_pairs, batch_size, base_lr, device,
               seed, progress):  # fmt: skip
    """Self vs temporal vs spatial contrast on one budget, judged four ways.

    \b
    Pretrains one encoder per pair strategy with the same recipe, pairs and steps; embeds
    the study with each, with a random-init ViT and with 16x16 colour thumbnails (two
    baselines that learned nothing), plus any --baseline checkpoint; then runs place
    recognition on unseen places (queries by day and after sunset; [CLS] and patch-token
    descriptors), safety perception, zone indicator R² and attention. The cpu preset
    eases the augmentation for its short run (no colour jitter, crops of half the image
    or more; see urbanvis pretrain --help); the paper preset is MoCo v3's recipe.
    The report (reports/experiment/report.md and report.html) says whether each of the
    paper's hypotheses held (temporal best at place recognition, spatial at zone
    indicators, self at safety), with the numbers, and whether each encoder learned at
    all: its loss against chance, the spread of its embeddings, and R@1 against both
    baselines.

    \b
    Examples:
      urbanvis experiment --study exp
      urbanvis experiment --study exp --baseline deit_base_patch16_224.pth
      urbanvis experiment --study la --preset paper --device cuda
    """
    from urbanvis import stages

    with _PhaseBars(progress) as bars:
        result = stages.experiment(
            study_dir, preset=preset, baselines=baselines, seed=seed, progress=bars,
            epochs=epochs, max_pairs=max_pairs, batch_size=batch_size, base_lr=base_lr,
            device=device,
        )  # fmt: skip
    echo_result(result)
