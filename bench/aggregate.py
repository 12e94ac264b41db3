"""Benchmark: mean embedding per zone for millions of points in block-group-like polygons.

Lays ``--zones`` Voronoi polygons (seeds denser towards the centre, like block groups in a
metro area) over a 60 km square in UTM, draws ``--points`` capture points around the seeds,
gives each a ``--dim`` float32 vector, and times :func:`urbanvis.zones.zone_embeddings`
(STRtree join + sparse mean). Pinned to one core. Prints the figures and the machine.

    .venv/bin/python bench/aggregate.py                       # 10 M points, 220,000 zones
    .venv/bin/python bench/aggregate.py --points 2000000      # what fits a small machine
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time

TARGET_SECONDS = 60.0
SIDE = 60_000.0  # metres
CRS = "EPSG:32617"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=10_000_000)
    p.add_argument("--zones", type=int, default=220_000)
    p.add_argument("--dim", type=int, default=64, help="vector size (768 for ViT-B needs 30 GB)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def limit_threads() -> None:
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1])


def main(args: argparse.Namespace) -> int:
    limit_threads()
    import geopandas as gpd
    import numpy as np
    import shapely

    from urbanvis.zones import zone_embeddings

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    seeds = np.clip(rng.normal(SIDE / 2, SIDE / 5, (args.zones, 2)), 0, SIDE)
    square = shapely.box(0, 0, SIDE, SIDE)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=square)
    )
    cells = shapely.intersection(cells, square)
    zones = gpd.GeoDataFrame(
        {"GEOID": np.char.add("bg", np.arange(len(cells)).astype(str))}, geometry=cells, crs=CRS
    )
    t_zones = time.perf_counter() - t0

    t0 = time.perf_counter()
    owner = rng.integers(0, args.zones, args.points)
    xy = np.clip(seeds[owner] + rng.normal(0, 150.0, (args.points, 2)), 0, SIDE)
    rows = gpd.GeoDataFrame(geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=CRS)
    del xy, owner
    vectors = rng.standard_normal((args.points, args.dim), dtype=np.float32)
    t_points = time.perf_counter() - t0

    t0 = time.perf_counter()
    frame, means = zone_embeddings(rows, vectors, zones, id_field="GEOID", min_images=5)
    t_agg = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    # spot check 200 zones against a direct per-zone computation
    from shapely import STRtree

    check = rng.choice(len(zones), 200, replace=False)
    hits = STRtree(rows.geometry.values).query(zones.geometry.values[check], predicate="intersects")
    for k, j in enumerate(check):
        members = hits[1][hits[0] == k]
        if len(members) == frame["n_images"].iloc[j] and len(members):
            assert np.allclose(means[j], vectors[members].mean(axis=0), atol=1e-4)
    assert int(frame["n_images"].sum()) == args.points

    print(f"zones: {len(zones):,} Voronoi polygons made in {t_zones:.1f} s")
    print(f"points: {args.points:,} with {args.dim}-d float32 vectors made in {t_points:.1f} s")
    print(
        f"zone_embeddings: {t_agg:.1f} s ({args.points / t_agg / 1e6:.2f} M points/s), "
        f"{int((frame['n_images'] > 0).sum()):,} zones with images, "
        f"{int(frame['flagged'].sum()):,} flagged (< 5); peak RSS {peak:.1f} GiB"
    )
    import shapely as _s

    print(
        f"machine: {platform.platform()}, {os.cpu_count()} logical cores (pinned to 1), "
        f"Python {platform.python_version()}, numpy {np.__version__}, shapely {_s.__version__} "
        f"(GEOS {_s.geos_version_string}), geopandas {gpd.__version__}"
    )
    ok = t_agg < TARGET_SECONDS
    print(f"target < {TARGET_SECONDS:.0f} s: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
