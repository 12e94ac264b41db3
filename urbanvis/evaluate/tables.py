"""Result tables of the evaluations: one row per encoder, written as CSV and Markdown.

Every evaluation returns a :class:`pandas.DataFrame` whose first column is ``model`` and
writes it with :func:`write_table`: the CSV to ``out`` (the columns the issue of each
evaluation fixes, in that order) and a Markdown twin beside it, both atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .._errors import InputError
from .._files import atomic_write_text


def markdown_table(table: pd.DataFrame, *, title: str | None = None, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned, ``digits`` decimals)."""
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    head = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    lines = [f"### {title}", ""] if title else []
    lines += [head, rule]
    for row in table.itertuples(index=False):
        cells = []
        for value, is_number in zip(row, numeric, strict=True):
            if is_number and isinstance(value, float):
                cells.append("" if pd.isna(value) else f"{value:.{digits}f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(
    table: pd.DataFrame, out: str | os.PathLike[str], *, title: str | None = None
) -> tuple[Path, Path]:
    """Write ``table`` to ``out`` (.csv) and its Markdown to ``out`` with suffix .md."""
    path = Path(out).expanduser()
    if path.suffix.lower() != ".csv":
        raise InputError(f"`out` must be a .csv file, got {path.name!r}")
    if path.is_dir():
        raise InputError(f"`out` {path} is a folder; give a file name ending in .csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, table.to_csv(index=False))
    md = path.with_suffix(".md")
    atomic_write_text(md, markdown_table(table, title=title))
    return path, md
