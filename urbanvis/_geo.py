"""Small geodesy helpers shared by the stages."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def utm_coordinates(lon, lat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Easting, northing (metres) and EPSG code of each point in its own UTM zone.

    Each point uses its own zone, so a place always gets the same coordinates whatever
    else is being projected with it.
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    zone = np.clip(np.floor((lon + 180.0) / 6.0).astype(np.int64) + 1, 1, 60)
    epsg = np.where(lat >= 0, 32600, 32700) + zone
    x = np.empty_like(lon)
    y = np.empty_like(lat)
    for code in np.unique(epsg):
        sel = epsg == code
        x[sel], y[sel] = _to_utm(int(code)).transform(lon[sel], lat[sel])
    return x, y, epsg


def utm_xy(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Easting and northing of each point in its own UTM zone (metres), without the EPSG.

    The synthetic city is laid out in these coordinates: the simulator provider renders
    at them and the ground truth (:mod:`urbanvis.simulate.groundtruth`) reads them.
    """
    x, y, _ = utm_coordinates(lon, lat)
    return x, y


@lru_cache(maxsize=16)
def _to_utm(epsg: int):
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
