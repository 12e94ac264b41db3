"""Small OpenStreetMap XML files made by the tests (no blobs in the repository).

Coordinates are given in metres east/north of an origin in Helsinki and converted to degrees
with the local UTM zone, so distances in the tests are exact in that CRS.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from pyproj import Transformer

ORIGIN_UTM = (385_000.0, 6_672_000.0)  # EPSG:32635, central Helsinki
UTM = "EPSG:32635"
_to_wgs84 = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)


def lonlat(east: float, north: float) -> tuple[float, float]:
    """Degrees for a point ``east``/``north`` metres from the origin."""
    return _to_wgs84.transform(ORIGIN_UTM[0] + east, ORIGIN_UTM[1] + north)


@dataclass
class OsmBuilder:
    """Collects nodes and ways and writes them as an .osm XML file."""

    nodes: dict[int, tuple[float, float]] = field(default_factory=dict)
    ways: list[tuple[int, list[int], dict[str, str]]] = field(default_factory=list)
    _next_node: int = 1
    _next_way: int = 1000

    def node(self, east: float, north: float) -> int:
        """Add (or reuse) the node at this spot and return its id."""
        lon, lat = lonlat(east, north)
        for node_id, (x, y) in self.nodes.items():
            if abs(x - lon) < 1e-12 and abs(y - lat) < 1e-12:
                return node_id
        node_id = self._next_node
        self._next_node += 1
        self.nodes[node_id] = (lon, lat)
        return node_id

    def way(self, points: list[tuple[float, float]], **tags: str) -> int:
        """Add a way through these metre coordinates with these tags; return its id."""
        refs = [self.node(e, n) for e, n in points]
        way_id = self._next_way
        self._next_way += 1
        self.ways.append((way_id, refs, dict(tags)))
        return way_id

    def way_with_refs(self, refs: list[int], **tags: str) -> int:
        way_id = self._next_way
        self._next_way += 1
        self.ways.append((way_id, refs, dict(tags)))
        return way_id

    def write(self, path: Path) -> Path:
        root = ET.Element("osm", version="0.6", generator="urbanvis-tests")
        for node_id, (lon, lat) in self.nodes.items():
            ET.SubElement(
                root, "node", id=str(node_id), lat=f"{lat:.9f}", lon=f"{lon:.9f}", version="1"
            )
        for way_id, refs, tags in self.ways:
            way = ET.SubElement(root, "way", id=str(way_id), version="1")
            for ref in refs:
                ET.SubElement(way, "nd", ref=str(ref))
            for k, v in tags.items():
                ET.SubElement(way, "tag", k=k, v=v)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
        return path


def town(path: Path) -> Path:
    """A small town exercising every rule of road sampling.

    - ``Main Street``: a two-way residential street, 0..300 m along y = 0;
    - ``North Road``: two-way, 0..100 m north from (150, 0): a T-junction with Main Street;
    - a divided road: two one-way carriageways 20 m apart, y = 200 eastbound and y = 220
      westbound, 0..150 m;
    - a footway (not drivable), a building outline (not a road), and a residential way
      that references a node missing from the file (dropped).
    """
    osm = OsmBuilder()
    osm.way([(0, 0), (150, 0), (300, 0)], highway="residential", name="Main Street")
    osm.way([(150, 0), (150, 100)], highway="residential", name="North Road")
    osm.way([(0, 200), (150, 200)], highway="primary", oneway="yes", name="Divided East")
    osm.way([(150, 220), (0, 220)], highway="primary", oneway="yes", name="Divided West")
    osm.way([(0, -50), (300, -50)], highway="footway", name="Park Path")
    osm.way([(20, 50), (60, 50), (60, 80), (20, 80), (20, 50)], building="yes")
    ok = osm.node(300, 100)
    osm.way_with_refs([ok, 99_999], highway="residential", name="Broken Way")
    return osm.write(path)


def footpaths_only(path: Path) -> Path:
    """An OSM file with no drivable roads."""
    osm = OsmBuilder()
    osm.way([(0, 0), (100, 0)], highway="footway")
    osm.way([(0, 10), (100, 10)], highway="cycleway")
    return osm.write(path)
