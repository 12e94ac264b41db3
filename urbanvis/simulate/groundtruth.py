"""Ground truth of the synthetic city: zones, zone indicators and per-image safety.

Because the city is made from known latent fields, the paper's hypotheses can be checked
against a truth that real data never gives. This module derives:

Zones
    Block-group-like polygons tiling the sampled area (:func:`zones_from_points`): k-means
    centres of the points in UTM metres, their Voronoi cells clipped to the points' hull
    buffered by 60 m, sized for about 60 points each (20 to 200).

Indicators (:func:`indicators_from_zones`), per zone, from the zone means of the latent
fields (``style, greenery, density, upkeep, tone`` in [0, 1], :mod:`.fields`) and of two
dynamic rates that the renderer uses for traffic (``traffic = 1 + 6 density`` cars and
``people = 0.5 + 9 density^1.3`` pedestrians per daytime image), plus Gaussian noise whose
size sets how predictable each is from images, strong to weak as in the paper (health
strong, crime weak). With ``e`` a standard normal draw per zone and indicator:

=========  ====================  =======================================================
topic      indicator             formula
=========  ====================  =======================================================
Crime      logcrime              2.0 - 1.6 upkeep + 0.6 density + 0.05 traffic + 0.25 e
Crime      logpetty              1.0 + 0.5 density - 0.4 upkeep + 0.45 e
Health     obesity               38 - 14 greenery - 8 upkeep + 1.2 e
Health     mental_health         16 - 5 greenery + 4 density - 2 upkeep + 1.5 e
Poverty    median_income         35000 + 50000 upkeep + 12000 style + 4000 e
Poverty    poverty_rate          28 - 20 upkeep + 4 density + 7 e
Transport  public_transit        4 + 30 density + 1.5 e
Transport  walk_bike             3 + 1.2 people + 5 greenery + 4 e
Transport  drove_alone           82 - 40 density - 3 greenery + 3 e
=========  ====================  =======================================================

Safety (:func:`safety_from_captures`), per image on 0 to 10: a logistic function of the
static content at the place (upkeep, greenery) and of the dynamic content of the image
(people seen, lighting, visible greenery, cars)::

    s = 10 / (1 + exp(-(3.0 (upkeep - 0.5) + 1.5 (greenery - 0.5) + 2.0 greenery_visible
                         + 0.35 min(pedestrians, 6) + 2.5 (lighting - 0.5)
                         - 0.08 cars + 0.3 e)))

:func:`votes_from_safety` turns the scores into Place Pulse 2.0-style pairwise votes
(Bradley-Terry choices between two images, "equal" when close).
"""

from __future__ import annotations

import logging

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .._errors import InputError
from .._geo import utm_xy
from .city import City

log = logging.getLogger(__name__)

TOPICS: dict[str, tuple[str, ...]] = {
    "Crime": ("logcrime", "logpetty"),
    "Health": ("obesity", "mental_health"),
    "Poverty": ("median_income", "poverty_rate"),
    "Transport": ("public_transit", "walk_bike", "drove_alone"),
}
"""The simulated indicators, grouped like the paper's topics."""

# (intercept, {term: coefficient}, noise sd): see the module docstring
_FORMULAS: dict[str, tuple[float, dict[str, float], float]] = {
    "logcrime": (2.0, {"upkeep": -1.6, "density": 0.6, "traffic": 0.05}, 0.25),
    "logpetty": (1.0, {"density": 0.5, "upkeep": -0.4}, 0.45),
    "obesity": (38.0, {"greenery": -14.0, "upkeep": -8.0}, 1.2),
    "mental_health": (16.0, {"greenery": -5.0, "density": 4.0, "upkeep": -2.0}, 1.5),
    "median_income": (35000.0, {"upkeep": 50000.0, "style": 12000.0}, 4000.0),
    "poverty_rate": (28.0, {"upkeep": -20.0, "density": 4.0}, 7.0),
    "public_transit": (4.0, {"density": 30.0}, 1.5),
    "walk_bike": (3.0, {"people": 1.2, "greenery": 5.0}, 4.0),
    "drove_alone": (82.0, {"density": -40.0, "greenery": -3.0}, 3.0),
}
INDICATORS: tuple[str, ...] = tuple(_FORMULAS)


def zones_from_points(
    points: gpd.GeoDataFrame, *, seed: int = 0, points_per_zone: int = 60
) -> gpd.GeoDataFrame:
    """Block-group-like zones tiling the area of ``points`` (EPSG:4326 in and out).

    Returns ``zone_id`` (``Z0001``...), ``n_points`` and Polygon geometry.
    """
    from sklearn.cluster import KMeans

    if len(points) < 20:
        raise InputError(
            f"{len(points)} points are too few for zones of 20 or more; sample a larger area"
        )
    if points_per_zone < 20:
        raise InputError(f"`points_per_zone` must be at least 20, got {points_per_zone}")
    crs = points.estimate_utm_crs()
    xy = shapely.get_coordinates(points.to_crs(crs).geometry.values)
    k = max(1, round(len(points) / points_per_zone))
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(xy)
    # fold zones under 20 points into their neighbours, refitting from the other centres
    while k > 1 and np.bincount(km.labels_, minlength=k).min() < 20:
        small = int(np.argmin(np.bincount(km.labels_, minlength=k)))
        centres = np.delete(km.cluster_centers_, small, axis=0)
        k -= 1
        km = KMeans(n_clusters=k, init=centres, n_init=1, random_state=seed).fit(xy)
    hull = shapely.convex_hull(shapely.multipoints(xy)).buffer(60.0)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(km.cluster_centers_), extend_to=hull)
    )
    # Voronoi cells come in no particular order: match each to the centre inside it
    owner = shapely.STRtree(cells).query(shapely.points(km.cluster_centers_), predicate="within")
    order = np.empty(k, dtype=np.int64)
    order[owner[0]] = owner[1]
    polygons = shapely.intersection(cells[order], hull)
    counts = np.bincount(km.labels_, minlength=k)
    zones = gpd.GeoDataFrame(
        {"zone_id": [f"Z{i + 1:04d}" for i in range(k)], "n_points": counts},
        geometry=polygons,
        crs=crs,
    ).to_crs("EPSG:4326")
    log.info("made %d zones of %d to %d points", k, counts.min(), counts.max())
    return zones


def zone_means(city: City, zones: gpd.GeoDataFrame, points: gpd.GeoDataFrame) -> pd.DataFrame:
    """Per zone, the mean latent fields and dynamic rates over its points."""
    joined = gpd.sjoin(
        points[["geometry"]], zones[["zone_id", "geometry"]], how="inner", predicate="within"
    )
    x, y = utm_xy(joined.geometry.x.to_numpy(), joined.geometry.y.to_numpy())
    fields = pd.DataFrame(city.latent_fields(x, y), index=joined.index)
    fields["traffic"] = 1.0 + 6.0 * fields["density"]
    fields["people"] = 0.5 + 9.0 * fields["density"] ** 1.3
    fields["zone_id"] = joined["zone_id"].to_numpy()
    return fields.groupby("zone_id").mean().reindex(zones["zone_id"])


def indicators_from_zones(
    city: City, zones: gpd.GeoDataFrame, points: gpd.GeoDataFrame
) -> pd.DataFrame:
    """The simulated indicators of each zone (see the module docstring), keyed by zone_id."""
    means = zone_means(city, zones, points)
    rng = np.random.default_rng([city.seed & ((1 << 63) - 1), 0x1D1CA7])
    out = pd.DataFrame({"zone_id": means.index})
    for name, (intercept, terms, noise) in _FORMULAS.items():
        value = np.full(len(means), intercept)
        for term, coef in terms.items():
            value = value + coef * means[term].to_numpy()
        out[name] = value + noise * rng.standard_normal(len(means))
    return out


def safety_from_captures(city: City, captures: pd.DataFrame) -> np.ndarray:
    """True safety score (0 to 10) of each simulator capture (see the module docstring).

    ``captures`` needs the simulator's ``sim_*`` columns and point geometry.
    """
    need = {"sim_lighting", "sim_pedestrians", "sim_cars", "sim_greenery_visible"}
    missing = need - set(captures.columns)
    if missing:
        raise InputError(
            f"captures lack {', '.join(sorted(missing))}; safety truth needs simulator captures"
        )
    x, y = utm_xy(captures.geometry.x.to_numpy(), captures.geometry.y.to_numpy())
    fl = city.latent_fields(x, y)
    rng = np.random.default_rng([city.seed & ((1 << 63) - 1), 0x5AFE])
    z = (
        3.0 * (fl["upkeep"] - 0.5)
        + 1.5 * (fl["greenery"] - 0.5)
        + 2.0 * captures["sim_greenery_visible"].to_numpy(dtype=float)
        + 0.35 * np.minimum(captures["sim_pedestrians"].to_numpy(dtype=float), 6)
        + 2.5 * (captures["sim_lighting"].to_numpy(dtype=float) - 0.5)
        - 0.08 * captures["sim_cars"].to_numpy(dtype=float)
        + 0.3 * rng.standard_normal(len(captures))
    )
    return 10.0 / (1.0 + np.exp(-z))


def votes_from_safety(
    captures: pd.DataFrame, scores: np.ndarray, *, n_votes: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """Place Pulse 2.0-style pairwise safety votes between captures.

    Columns: ``left_id, right_id, winner`` (left/right/equal), ``left_lat, left_long,
    right_lat, right_long, category`` ("safety"). A voter prefers the image with the higher
    score with Bradley-Terry probability; near-ties (|p - 0.5| < 0.05) are "equal".
    """
    n = len(captures)
    if n < 2:
        raise InputError("need at least 2 captures to simulate votes")
    rng = np.random.default_rng(seed)
    m = n_votes if n_votes is not None else 6 * n
    left = rng.integers(0, n, m)
    right = (left + rng.integers(1, n, m)) % n  # never the same image
    p_left = 1.0 / (1.0 + np.exp(-(scores[left] - scores[right])))
    draw = rng.random(m)
    winner = np.where(
        np.abs(p_left - 0.5) < 0.05, "equal", np.where(draw < p_left, "left", "right")
    )
    ids = captures["capture_id"].to_numpy()
    lon = captures.geometry.x.to_numpy()
    lat = captures.geometry.y.to_numpy()
    return pd.DataFrame(
        {
            "left_id": ids[left],
            "right_id": ids[right],
            "winner": winner,
            "left_lat": lat[left],
            "left_long": lon[left],
            "right_lat": lat[right],
            "right_long": lon[right],
            "category": "safety",
        }
    )


def write_truth(study, *, seed: int = 0, points_per_zone: int = 60) -> dict[str, int]:
    """Write the ground truth of a simulated study.

    Writes the ``zones_sim`` layer, ``truth/indicators.csv`` keyed by ``zone_id``,
    ``truth/topics.csv`` (the indicators' :data:`TOPICS`, columns ``indicator`` and
    ``topic``, which ``urbanvis predict`` uses for indicators read from this folder) and, when
    the study has simulator captures, ``truth/safety_scores.csv`` (capture_id, image_path,
    lat, lon, safety) and ``truth/safety_votes.csv`` (Place Pulse 2.0 shape).
    """
    from ..indicators import TOPICS_FILE, topics_table

    city = City(seed=seed)
    points = study.read_layer("points")
    zones = zones_from_points(points, seed=seed, points_per_zone=points_per_zone)
    indicators = indicators_from_zones(city, zones, points)
    folder = study.root / "truth"
    folder.mkdir(exist_ok=True)
    written = {"zones": len(zones)}
    safety = votes = None
    if study.has_layer("captures"):
        caps = study.read_layer("captures", where="provider = 'simulator' AND status = 'ok'")
        if len(caps) >= 2:
            scores = safety_from_captures(city, caps)
            safety = pd.DataFrame(
                {
                    "capture_id": caps["capture_id"],
                    "image_path": caps["image_path"],
                    "lat": caps.geometry.y,
                    "lon": caps.geometry.x,
                    "safety": np.round(scores, 4),
                }
            )
            votes = votes_from_safety(caps, scores, seed=seed)
    study.write_layer("zones_sim", zones.merge(indicators, on="zone_id"))
    _write_csv(indicators, folder / "indicators.csv")
    _write_csv(topics_table(TOPICS), folder / TOPICS_FILE)
    written["indicators"] = len(indicators)
    if safety is not None and votes is not None:
        _write_csv(safety, folder / "safety_scores.csv")
        _write_csv(votes, folder / "safety_votes.csv")
        written["safety_scores"] = len(safety)
        written["safety_votes"] = len(votes)
    return written


def _write_csv(frame: pd.DataFrame, path) -> None:
    from .._files import atomic_file

    with atomic_file(path, "w") as fh:
        frame.to_csv(fh, index=False)
