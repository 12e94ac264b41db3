"""A visual place recognition test set from the synthetic city.

Places never seen by a study: a straight street far outside the city's sampling extent
(every ``spacing`` metres along it), each photographed once for the *database* on a
summer noon and once as a *query*, so appearance changes (light, season, weather,
traffic, camera jitter) while the place stays. ``queries`` picks the query's conditions:

- ``evening`` (the default): an overcast autumn evening after sunset, lit by street
  lamps and windows. Street-view services capture by day (the simulator provider's
  captures are at 09:00-17:00; about 2% of them are dark), so this is day-to-night
  recognition, a condition the encoders hardly see in training.
- ``day``: an overcast spring afternoon: another season, weather and light, the kind of
  change between the dates of a study's own captures. Images are written
in the Pitts30k-style layout that :mod:`urbanvis.evaluate.vpr` reads::

    <folder>/database/@<utm_east>@<utm_north>@33@U@<place>@<date>@.jpg
    <folder>/queries/@<utm_east>@<utm_north>@33@U@<place>@<date>@.jpg

The UTM coordinates are synthetic: the city's metres shifted to easting 500,000 and
northing 5,000,000 of zone 33U. With the default 15 m spacing and the 25 m positive
threshold, each query has three positives (its own place and both neighbours).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .._errors import InputError, Stopped
from .city import City

DATABASE_WHEN = "2019-07-04T12:00"
QUERIES = {"evening": ("2022-10-20T17:30", "overcast"), "day": ("2022-04-12T14:10", "overcast")}
"""The query conditions by name: (local time, weather)."""
ORIGIN = (40000.0, 40000.0)
"""Start of the street in city metres: far outside any study's extent (0..5000 m)."""
UTM_OFFSET = (500000.0, 5000000.0)
UTM_ZONE = "33@U"


def vpr_name(x: float, y: float, place: int, when: str) -> str:
    """The image name of a place: ``@east@north@33@U@place@date@.jpg``."""
    east, north = UTM_OFFSET[0] + x, UTM_OFFSET[1] + y
    return f"@{east:.2f}@{north:.2f}@{UTM_ZONE}@{place:05d}@{when[:10]}@.jpg"


def check_queries(queries: str) -> None:
    """Refuse a query condition that is not one of :data:`QUERIES`."""
    if queries not in QUERIES:
        raise InputError(f"`queries` must be {' or '.join(QUERIES)}, not {queries!r}")


def write_vpr_set(
    folder: str | os.PathLike[str],
    *,
    places: int = 200,
    seed: int = 0,
    size: int = 160,
    spacing: float = 15.0,
    queries: str = "evening",
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Render ``places`` database and query images into ``folder`` (created; must be empty).

    ``queries`` names the queries' conditions: ``evening`` or ``day`` (module docstring).

    The set appears whole or not at all: it is rendered in a temporary folder beside
    ``folder`` and moved into place at the end.

    Returns
    -------
    dict
        ``{"database": places, "queries": places}``.
    """
    from PIL import Image

    from .renderer import render

    if isinstance(places, bool) or not isinstance(places, int) or places < 2:
        raise InputError(f"`places` must be a whole number of at least 2, got {places!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 1024:
        raise InputError(f"`size` must be 32..1024 pixels, got {size!r}")
    check_queries(queries)
    query_when, query_weather = QUERIES[queries]
    target = Path(folder).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"`vpr_set` {target} exists and is not empty; name a new folder")
    city = City(seed=seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for part in ("database", "queries"):
            (tmp / part).mkdir()
        for k in range(places):
            if should_stop is not None and should_stop():
                raise Stopped("stopped while rendering the VPR set; nothing written")
            x, y = ORIGIN[0] + spacing * k, ORIGIN[1]
            shots = (("database", DATABASE_WHEN, None), ("queries", query_when, query_weather))
            for part, when, weather in shots:
                image = render(city, x, y, 90.0, when, size=size, weather=weather)
                Image.fromarray(image).save(tmp / part / vpr_name(x, y, k, when), quality=92)
            if progress is not None:
                progress(k + 1, places, {})
        if target.exists():
            target.rmdir()
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"database": places, "queries": places}
