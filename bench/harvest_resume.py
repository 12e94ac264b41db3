"""How long a harvest takes to start (resume) on a study with many committed captures.

Writes a study with ``--points`` points and ``--per-point`` capture rows each (rows only,
no image files), then times ``harvest(..., limit=10)`` with every point already done: the
cost of finding what is finished and sweeping what a killed run left.

    python bench/harvest_resume.py --points 300000 --per-point 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from urbanvis.harvest import _frame, harvest  # noqa: E402
from urbanvis.providers.simulator import SimulatorProvider  # noqa: E402
from urbanvis.study import open_study  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=300_000)
    ap.add_argument("--per-point", type=int, default=4)
    args = ap.parse_args()
    n, per = args.points, args.per_point
    with tempfile.TemporaryDirectory() as tmp:
        st = open_study(Path(tmp) / "big")
        lon = 24.9 + np.arange(n) * 1e-6
        points = gpd.GeoDataFrame(
            {"point_id": np.arange(n), "bearing": np.zeros(n)},
            geometry=gpd.points_from_xy(lon, np.full(n, 60.17)),
            crs="EPSG:4326",
        )
        st.write_layer("points", points)
        m = n * per
        rows = pd.DataFrame(
            {
                "capture_id": [f"sim0-{i // per}-0-h{i % per:03d}" for i in range(m)],
                "point_id": np.repeat(np.arange(n), per),
                "provider": "simulator",
                "pano_id": "p",
                "heading": 0.0,
                "pitch": 0.0,
                "fov": 90.0,
                "captured_at": "2020-01-01T10:00",
                "image_path": [f"images/simulator/x/{i}.jpg" for i in range(m)],
                "sha256": "0" * 64,
                "width": 224,
                "height": 224,
                "status": "ok",
                "error": "",
                "lon": 24.9,
                "lat": 60.17,
            }
        )
        st.write_layer("captures", _frame(rows.to_dict("records")))
        del rows
        walls = []
        for _ in range(2):  # the first start also builds the captures indexes
            provider = SimulatorProvider(headings=(0.0,), size=32, captures_per_point=1)
            t0 = time.perf_counter()
            summary = harvest(st, provider, limit=10)
            walls.append(time.perf_counter() - t0)
    print(
        f"{n:,} points, {m:,} committed captures: harvest start to return "
        f"{walls[0]:.2f} s (first, indexes built), {walls[1]:.2f} s (next)"
    )
    print(summary.line())


if __name__ == "__main__":
    main()
