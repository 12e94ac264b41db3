"""Pair datasets: two views from a pair table's images (Parquet from ``urbanvis pairs``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .._errors import InputError, InputFileError


def read_pair_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A pair table (needs ``image_a`` and ``image_b``, paths relative to the study)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"pair table {path} does not exist; run 'urbanvis pairs' first")
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow errors on a corrupt file
        raise InputFileError(f"cannot read pair table {path.name} ({exc})") from exc
    missing = {"image_a", "image_b"} - set(table.columns)
    if missing:
        raise InputError(f"pair table {path.name} lacks {', '.join(sorted(missing))}")
    if len(table) == 0:
        raise InputError(f"pair table {path.name} is empty; build pairs from more captures")
    return table


def check_images(root: Path, table: pd.DataFrame, *, on_missing: str = "stop") -> pd.DataFrame:
    """Drop (``skip``) or refuse (``stop``) pairs whose image files are missing."""
    if on_missing not in ("skip", "stop"):
        raise InputError(f"`on_missing` must be skip or stop, got {on_missing!r}")
    paths = pd.unique(pd.concat([table["image_a"], table["image_b"]]))
    absent = {p for p in paths if not (root / p).is_file()}
    if not absent:
        return table
    bad = table["image_a"].isin(absent) | table["image_b"].isin(absent)
    if on_missing == "stop":
        raise InputFileError(
            f"{len(absent):,} images of the pair table are missing under {root} "
            f"({int(bad.sum()):,} pairs), e.g. {sorted(absent)[0]}; rerun the harvest or "
            f"pass `on_missing` skip"
        )
    kept = table[~bad].reset_index(drop=True)
    if len(kept) == 0:
        raise InputFileError(f"every pair has a missing image under {root}; rerun the harvest")
    return kept


class PairDataset(torch.utils.data.Dataset):
    """Item ``i`` is ``(view1(image_a), view2(image_b))`` of pair ``i``."""

    def __init__(self, root: str | os.PathLike[str], table: pd.DataFrame, view1, view2):
        self.root = Path(root)
        self.a = table["image_a"].to_numpy()
        self.b = table["image_b"].to_numpy()
        self.view1, self.view2 = view1, view2

    def __len__(self) -> int:
        return len(self.a)

    def _load(self, rel: str) -> Image.Image:
        path = self.root / rel
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except OSError as exc:
            raise InputFileError(
                f"image {rel} cannot be decoded ({exc}); rerun the harvest"
            ) from exc

    def __getitem__(self, i: int):
        a = self._load(self.a[i])
        b = a if self.b[i] == self.a[i] else self._load(self.b[i])
        return self.view1(a), self.view2(b)


def epoch_order(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """The permutation of pairs for an epoch: a function of seed and epoch only, so that a
    resumed run sees the same data order as an uninterrupted one."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class PairBytesDataset(torch.utils.data.Dataset):
    """Item ``i`` is the encoded file bytes of pair ``i``'s two images, as ``bytes`` (decoded
    on the device, see :mod:`.gpu_views`)."""

    def __init__(self, root: str | os.PathLike[str], table: pd.DataFrame):
        self.root = Path(root)
        self.a = table["image_a"].to_numpy()
        self.b = table["image_b"].to_numpy()

    def __len__(self) -> int:
        return len(self.a)

    def _read(self, rel: str) -> bytes:
        # plain bytes: a tensor per image would cost one shared-memory file descriptor each
        return (self.root / rel).read_bytes()

    def __getitem__(self, i: int):
        a = self._read(self.a[i])
        b = a if self.b[i] == self.a[i] else self._read(self.b[i])
        return a, b


def collate_bytes(items):
    """Keep the encoded images (of different lengths) as two lists."""
    return [a for a, _ in items], [b for _, b in items]
