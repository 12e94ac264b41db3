"""Options shared by several commands."""

from __future__ import annotations

import click

from urbanvis._errors import word_params

study_option = click.option(
    "--study",
    "study_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=".",
    show_default=True,
    help="Study folder (holds study.gpkg, images/, reports/...).",
)


def _short(value):
    return f"{value:.4g}" if isinstance(value, float) else value


_FLAGS = {
    # stage keywords whose command-line option is not simply --keyword-with-dashes
    "source": "--outdoor-only/--any-imagery",
    "study": "--study",
    "study_dir": "--study",
    "apply_path": "--apply",
    "models": "--model",  # the repeatable options of the eval commands
    "checkpoints": "--checkpoint",
    "query_patches": "--query-patch",
    "baselines": "--baseline",
}


def flag_name(param: str) -> str:
    """How the command line names a stage parameter: ``merge_distance`` -> ``--merge-distance``."""
    return _FLAGS.get(param) or "--" + param.replace("_", "-")


def echo_result(result) -> None:
    """Print a stage's summary, its parameter references worded as options."""
    click.echo(word_params(result.message, flag_name))


class ProgressBar:
    """A tqdm bar for the ``progress(done, total, counts)`` callbacks of long library work.

    The first call says where this run starts (so rate and ETA count this run only); later
    calls advance the bar and show the non-zero counts. Use it as a context manager so it
    always closes; a command that fails clears its bar, leaving the error's one line.
    """

    def __init__(self, desc: str, *, unit: str = "pt", enabled: bool = True) -> None:
        self.desc = desc
        self.unit = unit
        self.enabled = enabled
        self.bar = None

    def __call__(self, done: int, total: int, counts: dict[str, int]) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=done, unit=self.unit, desc=self.desc, dynamic_ncols=True
            )
            return
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix({k: _short(v) for k, v in counts.items() if v or k == "ok"})

    def __enter__(self) -> ProgressBar | None:
        return self if self.enabled else None

    def __exit__(self, kind, *exc) -> None:
        if self.bar is not None:
            if kind is not None:  # an error: its one line stands alone on the terminal
                self.bar.leave = False
            self.bar.close()
