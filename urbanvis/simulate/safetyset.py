"""A Place Pulse 2.0-shaped safety set rendered from the synthetic city.

:func:`safety_set` renders ``images`` views at random places (a 5 km box over the
Helsinki demo area), headings and daytime capture times, scores each with the city's
safety truth (:func:`~urbanvis.simulate.groundtruth.safety_from_captures`) and draws
pairwise votes from the scores (:func:`~urbanvis.simulate.groundtruth.votes_from_safety`).
It writes, into an empty folder::

    images/<image id>.jpg
    votes.csv     left_id, right_id, winner, left_lat, left_long, right_lat, right_long,
                  category ("safety"): the layout of PP2's votes.csv
    truth.csv     image_id, lat, lon, heading, captured_at, safety (the true 0-10 score)
                  and the simulator's sim_* figures of each image

``urbanvis eval safety --pp2 DIR/votes.csv`` reads it as it reads Place Pulse 2.0.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .._errors import InputError, Stopped

log = logging.getLogger(__name__)

BBOX: tuple[float, float, float, float] = (24.90, 60.150, 24.99, 60.195)
"""lon/lat box of the rendered places (about 5 km square)."""


def safety_set(
    folder: str | os.PathLike[str],
    *,
    images: int = 1000,
    votes_per_image: int = 6,
    seed: int = 0,
    size: int = 160,
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Render a Place Pulse-shaped safety set into ``folder`` (see the module docstring).

    Parameters
    ----------
    folder
        A new or empty folder.
    images
        How many images (at least 10).
    votes_per_image
        Votes drawn = ``votes_per_image * images`` (each vote shows two images).
    seed
        The synthetic city, and the draw of places, times and votes.
    size
        Image side in pixels.

    Returns
    -------
    dict
        ``images`` and ``votes`` written.
    """
    import geopandas as gpd
    from PIL import Image

    from .._files import atomic_file
    from .._geo import utm_xy
    from .city import City
    from .groundtruth import safety_from_captures, votes_from_safety
    from .renderer import capture

    for name, value, low in (("images", images, 10), ("votes_per_image", votes_per_image, 1),
                             ("size", size, 16)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"`{name}` must be a whole number of at least {low}, got {value!r}")
    if size > 1024:
        raise InputError(f"`size` must be 16..1024 pixels, got {size!r}")
    root = Path(folder).expanduser()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(f"`safety_set` folder {root} is not empty; give a new folder")
    rng = np.random.default_rng([seed & ((1 << 63) - 1), 0x5AFE5E7])
    lon = rng.uniform(BBOX[0], BBOX[2], images)
    lat = rng.uniform(BBOX[1], BBOX[3], images)
    heading = rng.uniform(0.0, 360.0, images)
    day = rng.integers(0, 14 * 365, images)
    minute = rng.integers(7 * 60, 19 * 60, images)  # daytime, like street-view imagery
    start = np.datetime64("2010-01-01T00:00")
    when = [
        str(start + np.timedelta64(int(d), "D") + np.timedelta64(int(m), "m"))[:16]
        for d, m in zip(day, minute, strict=True)
    ]
    x, y = utm_xy(lon, lat)
    city = City(seed=seed, latitude=float(np.clip(round(float(lat.mean())), -66, 66)))
    ids = [f"sim{seed}_{i:06d}" for i in range(images)]
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    records = []
    try:
        for i in range(images):
            if should_stop is not None and i % 64 == 0 and should_stop():
                raise Stopped(f"stopped after {i:,} of {images:,} images; nothing kept")
            shot = capture(city, x[i], y[i], heading[i], when[i], size=size)
            Image.fromarray(shot.image).save(image_dir / f"{ids[i]}.jpg", "JPEG", quality=90)
            rec = shot.record
            records.append(rec.dynamic_columns())
            if progress is not None and (i + 1) % 64 == 0:
                progress(i + 1, images, {})
    except BaseException:
        shutil.rmtree(image_dir, ignore_errors=True)
        raise
    captures = gpd.GeoDataFrame(
        {"capture_id": ids, **pd.DataFrame(records).to_dict("list")},
        geometry=gpd.points_from_xy(lon, lat),
        crs="EPSG:4326",
    )
    scores = safety_from_captures(city, captures)
    votes = votes_from_safety(captures, scores, n_votes=votes_per_image * images, seed=seed)
    truth = pd.DataFrame(
        {
            "image_id": ids,
            "lat": lat.round(6),
            "lon": lon.round(6),
            "heading": heading.round(2),
            "captured_at": when,
            "safety": np.round(scores, 4),
        }  # fmt: skip
    ).join(pd.DataFrame(records))
    with atomic_file(root / "truth.csv", "w") as fh:
        truth.to_csv(fh, index=False)
    with atomic_file(root / "votes.csv", "w") as fh:
        votes.to_csv(fh, index=False)
    if progress is not None:
        progress(images, images, {})
    log.info("rendered %d images and %d votes into %s", images, len(votes), root)
    return {"images": images, "votes": len(votes)}
