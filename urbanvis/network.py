"""Road networks as edge GeoDataFrames, from local OSM files or from Overpass (online).

Every loader returns the same shape: one row per street segment, a two-way street once,
columns ``edge_id`` (0..n-1), ``osmid``, ``highway``, ``oneway``, ``name`` and a LineString
geometry in EPSG:4326.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._errors import InputError, InputFileError, NoRoadsError, first_line

log = logging.getLogger(__name__)

Network = Literal["drive", "walk", "all"]
NETWORKS: tuple[str, ...] = ("drive", "walk", "all")

DRIVE_HIGHWAYS = frozenset(
    {
        "motorway",
        "motorway_link",
        "trunk",
        "trunk_link",
        "primary",
        "primary_link",
        "secondary",
        "secondary_link",
        "tertiary",
        "tertiary_link",
        "unclassified",
        "residential",
        "living_street",
        "road",
    }
)
WALK_HIGHWAYS = (DRIVE_HIGHWAYS - {"motorway", "motorway_link", "trunk", "trunk_link"}) | {
    "footway",
    "path",
    "pedestrian",
    "steps",
    "track",
    "service",
    "bridleway",
    "corridor",
}
_NOT_ROADS = frozenset(
    {
        "abandoned",
        "construction",
        "planned",
        "proposed",
        "razed",
        "raceway",
        "no",
        "platform",
        "bus_guideway",
        "elevator",
        "escalator",
        "bus_stop",
        "crossing",
        "street_lamp",
        "traffic_signals",
        "turning_circle",
        "give_way",
        "stop",
        "milestone",
        "rest_area",
        "services",
        "emergency_access_point",
    }
)
_PYROSM_NETWORK = {"drive": "driving", "walk": "walking", "all": "all"}
EDGE_COLUMNS = ["edge_id", "osmid", "highway", "oneway", "name", "geometry"]


def highway_filter(network: Network):
    """A predicate on the OSM ``highway`` value for a network type."""
    _check_network(network)
    if network == "drive":
        return DRIVE_HIGHWAYS.__contains__
    if network == "walk":
        return WALK_HIGHWAYS.__contains__
    return lambda value: bool(value) and value not in _NOT_ROADS


def edges_from_osm_file(
    path: str | os.PathLike[str],
    *,
    network: Network = "drive",
    area: shapely.Geometry | None = None,
) -> gpd.GeoDataFrame:
    """Street edges from a local OSM file: ``.osm.pbf`` (pyrosm), ``.osm`` XML or ``.graphml``.

    Parameters
    ----------
    path
        The OSM file.
    network
        ``drive``, ``walk`` or ``all``.
    area
        Optional polygon in EPSG:4326; edges are clipped to it.
    """
    _check_network(network)
    path = check_osm_file(path)
    name = path.name.lower()
    if name.endswith(".pbf"):
        edges = _edges_from_pbf(path, network, area)
    elif name.endswith((".osm", ".xml", ".osm.xml")):
        edges = _edges_from_xml(path, network)
    elif name.endswith(".graphml"):
        edges = _edges_from_graphml(path, network)
    else:
        raise InputFileError(
            f"do not know how to read {path.name}; give an .osm.pbf, .osm (XML) or .graphml file"
        )
    if area is not None:
        edges = clip_edges(edges, area)
    edges = normalize_edges(edges)
    if len(edges) == 0:
        where = " inside the area" if area is not None else ""
        raise NoRoadsError(
            f"{path.name} has no {network} roads{where}; check that the file covers the area, "
            f"or try `network` all"
        )
    return edges


def check_osm_file(path: str | os.PathLike[str]) -> Path:
    """The path of a readable, non-empty OSM file, or an InputFileError saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"OSM file {path} does not exist; check the path given as `osm`")
    if path.is_dir():
        raise InputFileError(
            f"OSM path {path} is a folder; give an .osm.pbf, .osm or .graphml file"
        )
    if path.stat().st_size == 0:
        raise InputFileError(f"OSM file {path} is empty; download the extract again")
    return path


def edges_from_polygon(
    polygon: shapely.Geometry,
    *,
    network: Network = "drive",
    overpass_url: str | None = None,
    timeout: float = 180,
) -> gpd.GeoDataFrame:
    """Street edges inside a polygon (EPSG:4326), downloaded from Overpass by osmnx (online)."""
    import osmnx as ox

    from ._http import osmnx_errors
    from .areas import osm_endpoints

    _check_network(network)
    try:
        with (
            osmnx_errors(
                unreachable="cannot reach the Overpass API to download roads (offline?); "
                "download an OSM extract and pass it as `osm`",
                failed="the Overpass API failed ({reason}); try again later or pass an OSM "
                "extract as `osm`",
            ),
            osm_endpoints(overpass_url=overpass_url, timeout=timeout),
        ):
            graph = ox.graph_from_polygon(
                polygon, network_type=network, simplify=True, retain_all=True
            )
    except (ox._errors.InsufficientResponseError, ValueError) as exc:
        raise NoRoadsError(
            f"OpenStreetMap has no {network} roads in this area ({first_line(exc)}); "
            f"widen the area or try `network` all"
        ) from exc
    edges = edges_from_graph(graph)
    # the server should have filtered by highway type; a mirror might not have
    edges = normalize_edges(edges[edges["highway"].map(highway_filter(network))])
    if len(edges) == 0:
        raise NoRoadsError(f"OpenStreetMap has no {network} roads in this area; widen the area")
    return edges


def edges_from_graph(graph) -> gpd.GeoDataFrame:
    """Edges of an osmnx (networkx MultiDiGraph) graph, in EPSG:4326, not yet deduplicated."""
    import osmnx as ox

    if graph.number_of_edges() == 0:
        return _empty_edges()
    frame = ox.graph_to_gdfs(graph, nodes=False, fill_edge_geometry=True).reset_index()
    frame = frame.to_crs("EPSG:4326")
    return gpd.GeoDataFrame(
        {
            "osmid": frame["osmid"].map(_first_int) if "osmid" in frame else -1,
            "highway": frame["highway"].map(_first_str) if "highway" in frame else "",
            "oneway": frame["oneway"].map(_truthy) if "oneway" in frame else False,
            "name": frame["name"].map(_first_str) if "name" in frame else "",
        },
        geometry=frame.geometry.values,
        crs="EPSG:4326",
    )


def clip_edges(edges: gpd.GeoDataFrame, area: shapely.Geometry) -> gpd.GeoDataFrame:
    """Clip edges to a polygon (EPSG:4326), keeping only their line parts inside it."""
    if len(edges) == 0:
        return edges
    geoms = edges.geometry.values
    inside = shapely.intersects(geoms, area)
    clipped = edges[inside].copy()
    covered = shapely.covered_by(clipped.geometry.values, area)
    cut = shapely.intersection(clipped.geometry.values[~covered], area)
    values = np.asarray(clipped.geometry.values, dtype=object)
    values[~covered] = np.asarray(cut, dtype=object)
    clipped = clipped.set_geometry(gpd.GeoSeries(values, index=clipped.index, crs=edges.crs))
    return clipped


def normalize_edges(edges: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Explode to LineStrings, drop empty and zero-length parts and keep a two-way street once.

    A street drawn in both directions (as osmnx graphs hold two-way streets) has the same
    geometry reversed; it is kept once, in shapely's canonical direction. Two one-way
    carriageways of a divided road have different geometry and are both kept. The result
    is sorted by OSM way id and position, so ``edge_id`` does not depend on input order.
    """
    if len(edges) == 0:
        return _empty_edges()
    frame = edges.explode(index_parts=False, ignore_index=True)
    geoms = frame.geometry.values
    keep = shapely.get_type_id(geoms) == 1  # LineString
    keep &= ~shapely.is_empty(geoms)
    keep &= shapely.get_num_coordinates(geoms) >= 2
    frame = frame[keep]
    normalized = shapely.normalize(frame.geometry.values)
    canonical = pd.Series(shapely.to_wkb(normalized))
    # a street drawn both ways keeps its canonical direction, whichever copy came first
    twin = canonical.duplicated(keep=False).to_numpy()
    if twin.any():
        frame = frame.copy()
        values = np.asarray(frame.geometry.values, dtype=object)
        values[twin] = np.asarray(normalized, dtype=object)[twin]
        frame = frame.set_geometry(gpd.GeoSeries(values, index=frame.index, crs=frame.crs))
        if "oneway" in frame:
            frame.loc[twin, "oneway"] = False
    unique = ~canonical.duplicated().to_numpy()
    frame = frame[unique]
    # a stable order (OSM way id, then position), so that edge and point ids do not depend
    # on the order a reader or a graph library happened to return the edges in
    first = shapely.get_coordinates(shapely.get_point(normalized[unique], 0))
    osmid = (
        pd.to_numeric(frame["osmid"], errors="coerce").fillna(-1).to_numpy()
        if "osmid" in frame
        else np.zeros(len(frame))
    )
    length = shapely.length(frame.geometry.values)
    frame = frame.iloc[np.lexsort((length, first[:, 1], first[:, 0], osmid))]
    frame = frame.reset_index(drop=True)
    frame["edge_id"] = np.arange(len(frame), dtype=np.int64)
    for col, default in (("osmid", -1), ("highway", ""), ("oneway", False), ("name", "")):
        if col not in frame:
            frame[col] = default
    frame["osmid"] = frame["osmid"].fillna(-1).astype(np.int64)
    frame["highway"] = frame["highway"].fillna("").astype(str)
    frame["name"] = frame["name"].fillna("").astype(str)
    frame["oneway"] = frame["oneway"].astype(bool)
    return gpd.GeoDataFrame(frame[EDGE_COLUMNS], geometry="geometry", crs=edges.crs)


# ------------------------------------------------------------------------ readers
def _edges_from_pbf(
    path: Path, network: Network, area: shapely.Geometry | None
) -> gpd.GeoDataFrame:
    import pyrosm

    try:
        with warnings.catch_warnings():
            # pyrosm warns "Could not find any edges for given area." and returns None; the
            # caller says so in one line (NoRoadsError), so the warning would only repeat it
            warnings.filterwarnings("ignore", message="Could not find any", category=UserWarning)
            osm = pyrosm.OSM(str(path), bounding_box=area)
            edges = osm.get_network(network_type=_PYROSM_NETWORK[network])
    except Exception as exc:  # pyrosm raises bare Exceptions/ValueErrors on corrupt input
        raise InputFileError(
            f"cannot read {path.name} as an OSM PBF extract ({first_line(exc)}); "
            f"download the extract again"
        ) from exc
    if edges is None or len(edges) == 0:
        return _empty_edges()
    if edges.crs is None:
        edges = edges.set_crs("EPSG:4326")
    return gpd.GeoDataFrame(
        {
            "osmid": pd.to_numeric(edges.get("id"), errors="coerce").fillna(-1).astype(np.int64),
            "highway": edges.get("highway", pd.Series("", index=edges.index)).fillna(""),
            "oneway": edges.get("oneway", pd.Series(None, index=edges.index)).map(_truthy),
            "name": edges.get("name", pd.Series("", index=edges.index)).fillna(""),
        },
        geometry=edges.geometry.values,
        crs=edges.crs,
    ).to_crs("EPSG:4326")


def _edges_from_graphml(path: Path, network: Network) -> gpd.GeoDataFrame:
    import osmnx as ox

    try:
        graph = ox.load_graphml(path)
    except Exception as exc:  # networkx/lxml parse errors
        raise InputFileError(f"cannot read {path.name} as GraphML ({first_line(exc)})") from exc
    edges = edges_from_graph(graph)
    keep = highway_filter(network)
    if len(edges) and (edges["highway"] != "").any():
        edges = edges[edges["highway"].map(keep) | (edges["highway"] == "")]
    return edges


def _edges_from_xml(path: Path, network: Network) -> gpd.GeoDataFrame:
    import osmnx as ox

    keep = highway_filter(network)
    filtered, n_ways, n_missing = _filter_osm_xml(path, keep)
    try:
        if n_ways == 0:
            return _empty_edges()
        if n_missing:
            log.info(
                "dropped %d ways of %s that reference nodes missing from the file",
                n_missing,
                path.name,
            )
        graph = ox.graph_from_xml(filtered, simplify=True, retain_all=True)
    finally:
        Path(filtered).unlink(missing_ok=True)
    return edges_from_graph(graph)


def _filter_osm_xml(path: Path, keep) -> tuple[str, int, int]:
    """Write a copy of an OSM XML file holding only the wanted, complete highway ways.

    Returns the temporary file's path, the number of ways kept and the number dropped
    because they reference nodes missing from the file.
    """
    nodes: dict[str, tuple[str, str]] = {}
    ways: list[tuple[str, list[str], dict[str, str]]] = []
    try:
        for _, elem in ET.iterparse(path, events=("end",)):
            if elem.tag == "node":
                nodes[elem.get("id")] = (elem.get("lat"), elem.get("lon"))
                elem.clear()
            elif elem.tag == "way":
                tags = {t.get("k"): t.get("v") for t in elem.iter("tag")}
                if keep(tags.get("highway")):
                    ways.append((elem.get("id"), [n.get("ref") for n in elem.iter("nd")], tags))
                elem.clear()
            elif elem.tag == "relation":
                elem.clear()
    except ET.ParseError as exc:
        raise InputFileError(
            f"{path.name} is not valid OSM XML ({exc}); download it again"
        ) from exc
    complete = [w for w in ways if len(w[1]) >= 2 and all(r in nodes for r in w[1])]
    n_missing = len(ways) - len(complete)
    used = {r for w in complete for r in w[1]}
    root = ET.Element("osm", version="0.6", generator="urbanvis")
    for node_id in (n for n in nodes if n in used):  # file order: the same graph every run
        lat, lon = nodes[node_id]
        ET.SubElement(root, "node", id=node_id, lat=lat, lon=lon, version="1")
    for way_id, refs, tags in complete:
        way = ET.SubElement(root, "way", id=way_id, version="1")
        for ref in refs:
            ET.SubElement(way, "nd", ref=ref)
        for k, v in tags.items():
            ET.SubElement(way, "tag", k=k, v=v)
    fd, tmp = tempfile.mkstemp(suffix=".osm", prefix="urbanvis-")
    with os.fdopen(fd, "wb") as fh:
        ET.ElementTree(root).write(fh, encoding="utf-8", xml_declaration=True)
    return tmp, len(complete), n_missing


# ------------------------------------------------------------------------ helpers
def _check_network(network: str) -> None:
    if network not in NETWORKS:
        raise InputError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")


def _empty_edges() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            c: pd.Series(dtype=t)
            for c, t in (
                ("edge_id", "int64"),
                ("osmid", "int64"),
                ("highway", "object"),
                ("oneway", "bool"),
                ("name", "object"),
            )
        },
        geometry=gpd.GeoSeries([], crs="EPSG:4326"),
        crs="EPSG:4326",
    )


def _first(value):
    if isinstance(value, list | tuple | np.ndarray):
        return value[0] if len(value) else None
    return value


def _first_int(value) -> int:
    value = _first(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _first_str(value) -> str:
    value = _first(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _truthy(value) -> bool:
    value = _first(value)
    if isinstance(value, str):
        return value.lower() in {"yes", "true", "1", "-1"}
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return bool(value)
