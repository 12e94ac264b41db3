"""WebDataset tar shards of a pair table: writing them and reading one back.

Per pair, the members ``<key>.a.<ext>`` and ``<key>.b.<ext>`` (the two image files) and
``<key>.json`` (the pair's row), with ``key`` the 9-digit pair_id; every member has mtime 0,
so the same pairs give byte-identical shards. :func:`iter_shard` is re-exported by
:mod:`urbanvis.pairs`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._errors import InputFileError


def _write_shards(study, pairs, final: Path, strategy, shard_size, progress) -> list[str]:
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names: list[str] = []
    total = len(pairs)
    try:
        for number, begin in enumerate(range(0, max(total, 1), shard_size)):
            name = f"{strategy}-{number:06d}.tar"
            chunk = pairs.iloc[begin : begin + shard_size].to_dict(orient="records")
            with tarfile.open(tmp / name, "w", format=tarfile.USTAR_FORMAT) as tar:
                for row in chunk:
                    _add_pair(tar, study.root, row)
            names.append(name)
            if progress is not None:
                progress(min(begin + shard_size, total), total)
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return names


def _add_pair(tar: tarfile.TarFile, root: Path, row: dict[str, Any]) -> None:
    key = f"{int(row['pair_id']):09d}"
    for side in ("a", "b"):
        path = root / row[f"image_{side}"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(
                f"image {row[f'image_{side}']} of capture {row[f'capture_{side}']} cannot be "
                f"read ({exc.strerror}); rerun 'urbanvis harvest' to fetch it again"
            ) from exc
        ext = path.suffix.lower().lstrip(".") or "jpg"
        _add_member(tar, f"{key}.{side}.{'jpg' if ext == 'jpeg' else ext}", data)
    doc = {k: _json_value(v) for k, v in row.items()}
    _add_member(tar, f"{key}.json", json.dumps(doc, sort_keys=True).encode())


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # the same pairs give byte-identical shards
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def iter_shard(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Read one pair shard back: a dict per pair as WebDataset would group it.

    Each sample holds ``__key__``, the image bytes under their extensions (``a.jpg``,
    ``b.jpg``...) and ``json`` (the pair's row, decoded).
    """
    sample: dict[str, Any] = {}
    with tarfile.open(path, "r") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            handle = tar.extractfile(member)
            data = handle.read() if handle is not None else b""
            sample["__key__"] = key
            sample[ext] = json.loads(data) if ext == "json" else data
    if sample:
        yield sample
