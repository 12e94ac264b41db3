"""Options shared by several commands."""

from __future__ import annotations

import click

study_option = click.option(
    "--study",
    "study_dir",
    type=click.Path(file_okay=False, path_type=str),
    default=".",
    show_default=True,
    help="Study folder (holds study.gpkg, images/, reports/...).",
)


class ProgressBar:
    """A tqdm bar for the ``progress(done, total, counts)`` callbacks of long library work.

    The first call says where this run starts (so rate and ETA count this run only); later
    calls advance the bar and show the non-zero counts. Use it as a context manager so it
    always closes.
    """

    def __init__(self, desc: str, *, unit: str = "pt") -> None:
        self.desc = desc
        self.unit = unit
        self.bar = None

    def __call__(self, done: int, total: int, counts: dict[str, int]) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=done, unit=self.unit, desc=self.desc, dynamic_ncols=True
            )
            return
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix({k: v for k, v in counts.items() if v or k == "ok"})

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
