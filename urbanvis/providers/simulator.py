"""The ``simulator`` provider: synthetic street views of any place, offline.

It writes images and ``captures`` rows exactly as a web provider does. Each point gets
``captures_per_point`` capture times (dates between ``since`` and ``until``, daytime hours,
drawn from the seed and the point id, so temporal pairs exist) and, at each time, one image
per heading (offsets from the road bearing, like a panorama cut into views). Places are put
into the synthetic city by their UTM coordinates, so the same place always looks the same.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from .._dates import bounds, period
from .._errors import InputError
from .._geo import utm_xy
from ._registry import pick
from .base import CaptureResult, Provider

utm_coordinates = utm_xy
"""Deprecated alias of :func:`urbanvis._geo.utm_xy` (the simulator's city coordinates)."""

FOV = 90.0  # the renderer's horizontal field of view, degrees
YEARS_ONLY = "the simulator renders whole years"


@dataclass(frozen=True)
class SimulatorConfig:
    """Settings of the simulator provider (the CLI options map one to one).

    Parameters
    ----------
    seed
        The synthetic city; another seed is another city.
    captures_per_point
        Capture times per point (temporal contrast needs at least 2).
    since, until
        Years bounding the capture dates (inclusive).
    headings
        Viewing directions in degrees: offsets from the road bearing, or absolute when
        ``absolute_headings`` (points without a bearing, e.g. grid points, use 0 as bearing).
    size
        Image side in pixels.
    quality
        JPEG quality.
    workers
        Processes rendering in parallel (rendering is CPU-bound; 1 renders in-process).
    """

    seed: int = 0
    captures_per_point: int = 3
    since: int = 2015
    until: int = 2024
    headings: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    absolute_headings: bool = False
    size: int = 224
    quality: int = 90
    workers: int = 1

    def __post_init__(self) -> None:
        if int(self.captures_per_point) < 1:
            raise InputError(
                f"`captures_per_point` must be at least 1, got {self.captures_per_point}; "
                f"use e.g. 3 (2 or more for temporal pairs)"
            )
        bounds(self.since, self.until, finest="year", note=YEARS_ONLY)
        if not 1900 <= int(self.since) <= 2100 or not 1900 <= int(self.until) <= 2100:
            raise InputError(
                f"`since` and `until` must be years within 1900..2100, got "
                f"{self.since}..{self.until}"
            )
        if not self.headings:
            raise InputError("give at least one heading in `headings`, e.g. 0,90,180,270")
        if not all(math.isfinite(h) for h in self.headings):
            raise InputError(f"`headings` must be finite degrees, got {self.headings}")
        if not 16 <= int(self.size) <= 2048:
            raise InputError(f"`size` must be 16..2048 pixels, got {self.size}")
        if not 1 <= int(self.quality) <= 100:
            raise InputError(f"`quality` (JPEG) must be 1..100, got {self.quality}")
        if int(self.workers) < 1:
            raise InputError(f"`workers` must be at least 1, got {self.workers}")


def create(**options: Any) -> SimulatorProvider:
    """The simulator from its registry options (:mod:`urbanvis.providers._builtin`)."""
    names = ("seed", "captures_per_point", "headings", "absolute_headings", "size", "workers")
    picked = pick(options, names)
    picked["since"] = year_bound(options.get("since"), "since", 2015)
    picked["until"] = year_bound(options.get("until"), "until", 2024)
    return SimulatorProvider(**picked)


def year_bound(value: Any, param: str, default: int) -> int:
    """The year a ``since``/``until`` value names (``default`` when None or empty).

    The simulator renders whole years: a month or a day is refused, in the words of
    :mod:`urbanvis._dates`.
    """
    found = period(value, param, finest="year", note=YEARS_ONLY)
    return default if found is None else found.start.year


class SimulatorProvider(Provider):
    """Render synthetic captures for points (see the module docstring)."""

    name = "simulator"

    def __init__(self, config: SimulatorConfig | None = None, **settings) -> None:
        self.config = config if config is not None else SimulatorConfig(**settings)
        self._pool: Any = None

    def parameters(self) -> dict:
        params = asdict(self.config)
        params.pop("workers")  # how fast, not what: the captures do not depend on it
        return params

    def capture_points(self, points: pd.DataFrame) -> Sequence[CaptureResult]:
        workers = int(self.config.workers)
        if workers == 1 or len(points) < 2:
            return _render_points(self.config, points)
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn")
            )
        chunks = np.array_split(np.arange(len(points)), min(workers * 2, len(points)))
        futures = [self._pool.submit(_render_points, self.config, points.iloc[c]) for c in chunks]
        return [result for future in futures for result in future.result()]

    def close(self) -> None:
        """Stop the worker processes, if any."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _render_points(cfg: SimulatorConfig, points: pd.DataFrame) -> list[CaptureResult]:
    from PIL import Image

    from ..simulate import capture

    results: list[CaptureResult] = []
    x, y = utm_xy(points["lon"].to_numpy(), points["lat"].to_numpy())
    for i, row in enumerate(points.itertuples(index=False)):
        bearing = 0.0 if cfg.absolute_headings or not np.isfinite(row.bearing) else row.bearing
        city = _city(cfg.seed, float(np.clip(round(row.lat), -66, 66)))
        for k, when in enumerate(capture_times(cfg, int(row.point_id))):
            pano = f"sim{cfg.seed}-{int(row.point_id)}-{k}"
            for offset in cfg.headings:
                heading = (bearing + offset) % 360.0
                shot = capture(city, x[i], y[i], heading, when, size=int(cfg.size))
                buffer = io.BytesIO()
                Image.fromarray(shot.image).save(buffer, format="JPEG", quality=cfg.quality)
                rec = shot.record
                results.append(
                    CaptureResult(
                        row={
                            "capture_id": f"{pano}-h{int(round(offset)) % 360:03d}",
                            "point_id": int(row.point_id),
                            "pano_id": pano,
                            "heading": round(heading, 3),
                            "pitch": 0.0,
                            "fov": FOV,
                            "captured_at": when[:16],
                            "width": shot.image.shape[1],
                            "height": shot.image.shape[0],
                            "status": "ok",
                            "error": "",
                            "lon": row.lon,
                            "lat": row.lat,
                        },
                        image=buffer.getvalue(),
                        extra=rec.dynamic_columns(),
                    )
                )
    return results


def capture_times(cfg: SimulatorConfig, point_id: int) -> list[str]:
    """The capture times of a point: distinct dates, daytime hours, from seed and point id."""
    from ..simulate._hash import hash_uniform

    start = datetime(int(cfg.since), 1, 1)
    days = (datetime(int(cfg.until), 12, 31) - start).days + 1
    n = int(cfg.captures_per_point)
    keys = np.arange(n)
    u_day = np.atleast_1d(hash_uniform(cfg.seed, point_id, keys, 1))
    u_hour = np.atleast_1d(hash_uniform(cfg.seed, point_id, keys, 2))
    # spread the captures over the range: one per equal slice of the days, like revisits
    day = np.floor((keys + u_day) * days / n).astype(int)
    minutes = (9 * 60 + u_hour * 8 * 60).astype(int)  # 09:00 to 17:00 local solar time
    return [
        (start + timedelta(days=int(d), minutes=int(m))).strftime("%Y-%m-%dT%H:%M")
        for d, m in zip(day, minutes, strict=True)
    ]


@lru_cache(maxsize=16)
def _city(seed: int, latitude: float):
    from ..simulate import City

    return City(seed=seed, latitude=latitude)
