"""Writing a pair dataset into the study: the Parquet table, its summary and shards.

:func:`write_pairs` and :class:`PairFiles` are re-exported by :mod:`urbanvis.pairs`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .._errors import InputError
from .._files import atomic_file, atomic_write_bytes
from ..study import Study
from .shards import _write_shards
from .types import STRATEGIES, PairSummary

log = logging.getLogger("urbanvis.pairs")  # the package's logger, as before the split


@dataclass(frozen=True)
class PairFiles:
    """Where :func:`write_pairs` put a dataset (paths relative to the study)."""

    table: str
    summary_json: str
    summary_md: str
    shards: tuple[str, ...] = ()
    shard_pattern: str | None = None


def write_pairs(
    study: Study,
    pairs: pd.DataFrame,
    summary: PairSummary,
    *,
    strategy: str,
    shards: bool = False,
    shard_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> PairFiles:
    """Write ``pairs/<strategy>.parquet``, its summary and optionally WebDataset shards.

    Every file is written under a temporary name and renamed into place, shards first and
    the table last, so that an interrupted run leaves the previous dataset (or nothing).

    Parameters
    ----------
    study
        The study the pairs' image paths are relative to.
    pairs, summary
        As returned by :func:`pairs_from_captures`.
    strategy
        Names the files: ``pairs/<strategy>.parquet``, ``.json``, ``.md``.
    shards
        Also write ``pairs/<strategy>-shards/<strategy>-000000.tar``...: per pair the
        members ``<key>.a.<ext>``, ``<key>.b.<ext>`` (the two image files; a self pair holds
        its image twice) and ``<key>.json`` (the pair's row), with ``key`` the 9-digit
        pair_id. WebDataset reads them as they are; see :func:`iter_shard`.
    shard_size
        Pairs per shard.
    progress
        ``progress(pairs_done, pairs_total)`` while writing shards.
    """
    if strategy not in STRATEGIES:
        raise InputError(f"unknown pair strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if shard_size < 1:
        raise InputError(f"`shard_size` must be at least 1, got {shard_size}")
    folder = study.pairs
    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda p: p.relative_to(study.root).as_posix()  # noqa: E731
    shard_paths: tuple[str, ...] = ()
    pattern = None
    if shards:
        final = folder / f"{strategy}-shards"
        names = _write_shards(study, pairs, final, strategy, shard_size, progress)
        shard_paths = tuple(rel(final / n) for n in names)
        last = len(names) - 1
        pattern = rel(final / f"{strategy}-{{000000..{last:06d}}}.tar")
    meta = summary.to_dict() | {"shards": list(shard_paths), "shard_pattern": pattern}
    text = json.dumps(meta, indent=2, sort_keys=False) + "\n"
    md = summary.markdown()
    if pattern:
        md += f"\nWebDataset shards: `{pattern}` ({len(shard_paths)} files)\n"
    table_path = folder / f"{strategy}.parquet"
    atomic_write_bytes(folder / f"{strategy}.json", text.encode())
    atomic_write_bytes(folder / f"{strategy}.md", md.encode())
    _write_parquet(pairs, table_path, meta)
    files = PairFiles(
        table=rel(table_path),
        summary_json=rel(folder / f"{strategy}.json"),
        summary_md=rel(folder / f"{strategy}.md"),
        shards=shard_paths,
        shard_pattern=pattern,
    )
    log.info(
        "wrote %s pairs to %s%s",
        f"{len(pairs):,}",
        files.table,
        f" and {len(shard_paths)} shards" if shards else "",
    )
    return files


def _write_parquet(pairs: pd.DataFrame, path: Path, meta: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(pairs, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[b"urbanvis.pairs"] = json.dumps(meta).encode()
    table = table.replace_schema_metadata(schema_meta)
    with atomic_file(path) as fh:
        pq.write_table(table, fh)
