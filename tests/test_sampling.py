"""Road sampling: spacing, bearings, one-way vs two-way, merging, CRS, grid."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Geod, Transformer
from scipy.spatial import cKDTree

from urbanvis._errors import InputError
from urbanvis.network import edges_from_osm_file, normalize_edges
from urbanvis.sampling import (
    _LERP_TOLERANCE_M,
    _lerp_limit,
    merge_close_points,
    points_from_grid,
    points_from_network,
    sample_lines,
)

from .data.osm import ORIGIN_UTM, UTM, lonlat

GEOD = Geod(ellps="WGS84")


def _utm(frame):
    return frame.to_crs(frame.estimate_utm_crs())


def _utm_scale(lon: float, lat: float) -> float:
    """UTM zone 35's scale factor at a point: UTM metres per ground metre."""
    from pyproj import Proj

    return float(Proj(UTM).get_factors(lon, lat).meridional_scale)


def test_helsinki_spacing_is_15m_along_every_edge(helsinki_edges, helsinki_points):
    edges = _utm(helsinki_edges)
    points = helsinki_points.to_crs(edges.crs)
    assert len(points) > 1000
    checked = merged = 0
    for edge_id, group in points.groupby("edge_id"):
        line = edges.geometry.iloc[edge_id]
        along = np.sort(shapely.line_locate_point(line, group.geometry.values))
        inner = along[(along > 0.5) & (along < line.length - 0.5)]
        # every interior point sits on the 15 m lattice measured from the edge's start ...
        lattice = inner - 15.0 * np.round(inner / 15.0)
        assert np.all(np.abs(lattice) <= 0.5), (edge_id, inner)
        # ... consecutive points from the start are 15 +- 0.5 m apart, and the remainder to the
        # edge's end is under 15 m plus the 1 m merge distance (a point closer than that to
        # the end node would be merged into it)
        gaps = np.diff(np.concatenate(([0.0], inner, [line.length])))
        regular = np.all(np.abs(gaps[:-1] - 15.0) <= 0.5) and 0 < gaps[-1] < 15.0 + 1.0
        if not regular:
            assert _merged_away(line, points), edge_id
            merged += 1
        checked += len(inner)
    assert checked > 0.5 * len(points)
    assert merged <= 0.02 * len(edges)


def _merged_away(line, points) -> bool:
    """True if the lattice gap on ``line`` is filled by another edge's point within 1 m."""
    near = points.geometry.values[shapely.dwithin(points.geometry.values, line, 1.0)]
    along = np.sort(shapely.line_locate_point(line, near))
    stops = np.concatenate(([0.0], along, [line.length]))
    return bool(np.diff(stops).max() <= 15.0 + 1.0)


def test_helsinki_no_two_points_closer_than_merge_distance(helsinki_points):
    xy = shapely.get_coordinates(_utm(helsinki_points).geometry.values)
    assert len(cKDTree(xy).query_pairs(1.0)) == 0
    assert helsinki_points["point_id"].is_unique


def test_helsinki_bearing_matches_geodesic_azimuth_of_its_segment(helsinki_edges, helsinki_points):
    errors = []
    for row in helsinki_points.iloc[::5].itertuples():
        coords = np.asarray(helsinki_edges.geometry.iloc[row.edge_id].coords)
        segments = shapely.linestrings(np.stack([coords[:-1], coords[1:]], axis=1))
        j = int(np.argmin(shapely.distance(segments, row.geometry)))
        azimuth = GEOD.inv(*coords[j], *coords[j + 1])[0] % 360
        errors.append(abs((row.bearing - azimuth + 180) % 360 - 180))
    assert max(errors) < 0.01


@pytest.mark.parametrize(
    ("start", "end"),
    [((0, 0), (0, 500)), ((0, 0), (500, 0)), ((0, 0), (300, 400)), ((0, 0), (-250, -250))],
)
def test_bearing_of_a_hand_computed_straight_edge(start, end):
    import geopandas as gpd

    a, b = lonlat(*start), lonlat(*end)
    edges = normalize_edges(gpd.GeoDataFrame(geometry=[shapely.LineString([a, b])], crs=4326))
    points = points_from_network(edges, spacing=15.0)
    # the geodesic azimuth from each point towards the edge's end, by hand with pyproj.Geod
    lon, lat = points.geometry.x.to_numpy(), points.geometry.y.to_numpy()
    inner = np.hypot(lon - b[0], lat - b[1]) > 1e-6
    expected = (
        np.asarray(
            GEOD.inv(
                lon[inner], lat[inner], np.full(inner.sum(), b[0]), np.full(inner.sum(), b[1])
            )[0]
        )
        % 360
    )
    got = points["bearing"].to_numpy()[inner]
    assert np.all(np.abs((got - expected + 180) % 360 - 180) < 0.02)
    # and it is the straight line's direction measured in the plane, up to grid convergence
    plane = np.degrees(np.arctan2(end[0] - start[0], end[1] - start[1])) % 360
    assert abs(((got[0] - plane) + 180) % 360 - 180) < 2.5


def test_two_way_street_sampled_once_one_way_carriageways_each(town_osm):
    edges = edges_from_osm_file(town_osm, network="drive")
    names = sorted(edges["name"])
    # Main Street is split at the T-junction; each part appears once, not once per direction
    assert names == ["Divided East", "Divided West", "Main Street", "Main Street", "North Road"]
    points = points_from_network(edges, spacing=15.0).to_crs(UTM)
    x = points.geometry.x.to_numpy() - ORIGIN_UTM[0]
    y = points.geometry.y.to_numpy() - ORIGIN_UTM[1]
    on_main = np.abs(y) < 0.01
    assert on_main.sum() == 300 // 15 + 1  # no doubled points
    # each part (0-150 m, 150-300 m) from its start every 15 ground metres: 15 m times the
    # zone's scale factor here in UTM metres, and the part's end
    scale = _utm_scale(*lonlat(150, 0))
    assert 0.9996 < scale < 0.9999
    part = np.arange(0, 136, 15) * scale
    expected = np.concatenate((part, 150 + part, [300.0]))
    assert np.allclose(np.sort(x[on_main]), expected, atol=0.001)
    east = np.abs(y - 200) < 0.01
    west = np.abs(y - 220) < 0.01
    assert east.sum() == west.sum() == 150 // 15 + 1
    # travel direction: eastbound ~90 deg, westbound ~270 deg (UTM convergence ~ -1.8 deg here)
    assert np.allclose(points["bearing"][east], 88.2, atol=0.2)
    assert np.allclose(points["bearing"][west], 268.2, atol=0.2)
    # the footway (y = -50) and the broken way (x = 300, y in 0..100) are not sampled
    assert not np.any(np.abs(y + 50) < 1)
    assert not np.any((np.abs(x - 300) < 0.01) & (y > 1))


def test_reversed_duplicate_edges_are_one_edge():
    import geopandas as gpd

    line = shapely.LineString([lonlat(0, 0), lonlat(100, 0), lonlat(100, 50)])
    twin = shapely.reverse(line)
    other = shapely.LineString([lonlat(0, 20), lonlat(100, 20)])
    edges = normalize_edges(gpd.GeoDataFrame(geometry=[line, twin, other], crs=4326))
    assert len(edges) == 2
    assert edges["edge_id"].tolist() == [0, 1]


def test_junction_points_merge_into_one():
    import geopandas as gpd

    centre = lonlat(0, 0)
    arms = [
        shapely.LineString([centre, lonlat(dx, dy)])
        for dx, dy in [(100, 0), (-100, 0), (0, 100), (0.4, -100)]
    ]
    edges = normalize_edges(gpd.GeoDataFrame(geometry=arms, crs=4326))
    points = points_from_network(edges, spacing=15.0).to_crs(UTM)
    xy = shapely.get_coordinates(points.geometry.values) - ORIGIN_UTM
    at_centre = np.hypot(xy[:, 0], xy[:, 1]) < 1.0
    assert at_centre.sum() == 1
    assert len(points) == 1 + 4 * (6 + 1)  # centre + per arm: 15..90 and the far end


def test_merge_close_points_against_brute_force():
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 30, 400)
    y = rng.uniform(0, 30, 400)
    keep = merge_close_points(x, y, 1.0)
    kept = np.column_stack((x[keep], y[keep]))
    d = np.hypot(*(kept[:, None, :] - kept[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 1.0
    # every dropped point has a chain of < 1 m neighbours to a kept one (it was merged, not lost)
    full = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) < 1.0
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(full, directed=False)
    assert set(labels[keep]) == set(labels)
    assert len(keep) == len(set(labels))


def test_sample_lines_on_a_curve_follows_the_arc():
    theta = np.linspace(0, np.pi / 2, 200)
    arc = shapely.LineString(np.column_stack((100 * np.cos(theta), 100 * np.sin(theta))))
    samples = sample_lines(np.array([arc]), 15.0, merge_distance=1.0)
    order = np.argsort(samples.along)
    along = samples.along[order]
    assert np.allclose(along[:-1], np.arange(0, 15 * len(along[:-1]), 15))
    assert along[-1] == pytest.approx(arc.length)
    radius = np.hypot(samples.x, samples.y)
    assert np.allclose(radius, 100, atol=0.02)  # on the polyline, close to the circle


def test_points_are_stored_in_epsg4326_and_round_trip_through_utm(helsinki_points):
    assert helsinki_points.crs.to_epsg() == 4326
    back = helsinki_points.to_crs(32635).to_crs(4326)
    assert np.allclose(
        shapely.get_coordinates(back.geometry.values),
        shapely.get_coordinates(helsinki_points.geometry.values),
        atol=1e-9,
    )
    expected_columns = {"point_id", "bearing", "edge_id", "osmid", "highway", "source", "geometry"}
    assert expected_columns <= set(helsinki_points.columns)
    assert (helsinki_points["osmid"] > 0).all()


def test_grid_method_covers_the_area_at_the_spacing():
    import geopandas as gpd

    square = shapely.Polygon([lonlat(0, 0), lonlat(200, 0), lonlat(200, 200), lonlat(0, 200)])
    points = points_from_grid(gpd.GeoDataFrame(geometry=[square], crs=4326), spacing=20)
    assert (points["source"] == "grid").all()
    assert points["bearing"].isna().all()
    xy = shapely.get_coordinates(points.to_crs(points.estimate_utm_crs()).geometry.values)
    nearest, _ = cKDTree(xy).query(xy, k=2)
    assert np.allclose(nearest[:, 1], 20.0, atol=0.01)
    assert 90 <= len(points) <= 110  # ~ (200/20)^2
    assert shapely.contains(square.buffer(1e-9), points.geometry.values).all()


@pytest.mark.parametrize("spacing", [0, -5, float("nan"), float("inf")])
def test_bad_spacing_is_refused(helsinki_edges, spacing):
    with pytest.raises(InputError, match="spacing"):
        points_from_network(helsinki_edges, spacing=spacing)


def test_spacing_must_exceed_merge_distance(helsinki_edges):
    with pytest.raises(InputError, match="merge distance"):
        points_from_network(helsinki_edges, spacing=1.0, merge_distance=1.0)


def test_meridian_convergence_lattice_matches_exact_factors():
    from pyproj import Proj

    from urbanvis.sampling import meridian_convergence

    rng = np.random.default_rng(3)
    lon = rng.uniform(24.0, 26.5, 50_000)  # ~140 km across, off the UTM 35 central meridian
    lat = rng.uniform(59.8, 61.0, 50_000)
    exact = np.asarray(Proj("EPSG:32635").get_factors(lon, lat).meridian_convergence)
    fast = meridian_convergence(lon, lat, "EPSG:32635")
    assert np.abs(fast - exact).max() < 1e-4
    assert np.abs(exact).max() > 1.0  # the correction itself matters


def test_shared_line_ends_become_one_point_even_without_merging():
    # three lines meeting at one node: with merge_distance=0 only exact duplicates go
    lines = np.array(
        [
            shapely.LineString([(0, 0), (100, 0)]),
            shapely.LineString([(0, 0), (0, 100)]),
            shapely.LineString([(0, 0), (-100, 0)]),
        ]
    )
    samples = sample_lines(lines, 15.0, merge_distance=0.0)
    at_node = (samples.x == 0) & (samples.y == 0)
    assert at_node.sum() == 1
    assert len(samples) == 1 + 3 * (6 + 1)  # node + per line: 15..90 and the far end


def test_edges_and_points_do_not_depend_on_input_order(helsinki_edges):
    shuffled = helsinki_edges.sample(frac=1.0, random_state=5)
    a = points_from_network(normalize_edges(helsinki_edges))
    b = points_from_network(normalize_edges(shuffled))
    assert a.geometry.geom_equals_exact(b.geometry, 1e-12).all()
    assert np.array_equal(a["edge_id"], b["edge_id"])


def _reference_merge(x, y, distance):
    """Keep the lowest index of each group of points chained by pairs closer than distance."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = cKDTree(np.column_stack((x, y))).query_pairs(
        distance * (1 - 1e-12), output_type="ndarray"
    )
    n = len(x)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    return np.sort(first)


@pytest.mark.parametrize("layout", ["uniform", "duplicates", "lattice just under 1 m"])
def test_merge_close_points_matches_a_plain_kdtree_merge(layout):
    rng = np.random.default_rng(11)
    if layout == "uniform":
        x, y = rng.uniform(0, 300, 20_000), rng.uniform(0, 300, 20_000)
    elif layout == "duplicates":  # exact copies, scattered through the index order
        x, y = rng.uniform(0, 2000, 5_000), rng.uniform(0, 2000, 5_000)
        pick = rng.integers(0, 5_000, 4_000)
        x, y = np.concatenate((x, x[pick])), np.concatenate((y, y[pick]))
        order = rng.permutation(len(x))
        x, y = x[order], y[order]
    else:  # chains of neighbours 0.999 m apart, across every cell border, shuffled
        gx, gy = np.meshgrid(np.arange(60) * 0.999, np.arange(60) * 1.7)
        order = rng.permutation(gx.size)
        x, y = 1e6 + gx.ravel()[order], 7e6 + gy.ravel()[order]
    keep = merge_close_points(x, y, 1.0)
    assert np.array_equal(keep, _reference_merge(x, y, 1.0))
    assert len(keep) < len(x)


def _reference_points(edges, spacing=15.0, merge=1.0):
    """points_from_network written plainly: per-line GEOS interpolation, a full KD-tree."""
    from pyproj import Proj, Transformer

    utm = edges.estimate_utm_crs()
    lines = edges.to_crs(utm).geometry.values
    starts, ends, inner = [], [], []
    for i, line in enumerate(lines):
        xy = shapely.get_coordinates(line)
        seg = np.diff(xy, axis=0)
        seg_bearing = np.degrees(np.arctan2(seg[:, 0], seg[:, 1])) % 360
        cum = np.concatenate(([0.0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))))
        starts.append((*xy[0], seg_bearing[0], i))
        ends.append((*xy[-1], seg_bearing[-1], i))
        along = np.arange(1, int((line.length - merge) // spacing) + 1) * spacing
        for d, point in zip(along, shapely.line_interpolate_point(line, along), strict=True):
            j = min(np.searchsorted(cum, d, side="right") - 1, len(seg) - 1)
            inner.append((point.x, point.y, seg_bearing[j], i))
    table = np.array(starts + ends + inner)
    table = table[_reference_merge(table[:, 0], table[:, 1], merge)]
    lon, lat = Transformer.from_crs(utm, 4326, always_xy=True).transform(table[:, 0], table[:, 1])
    convergence = np.asarray(Proj(utm).get_factors(lon, lat).meridian_convergence)
    bearing = np.round((table[:, 2] + convergence) % 360, 3)
    return utm, table[:, :2], bearing, edges["edge_id"].to_numpy()[table[:, 3].astype(int)]


def _with_twin(edges, offset):
    """``edges``, and with ``offset``, a copy that far east: every point has a neighbour."""
    if offset is None:
        return edges
    import geopandas as gpd
    import pandas as pd

    utm = edges.to_crs(edges.estimate_utm_crs())
    twin = utm.assign(geometry=shapely.transform(utm.geometry.values, lambda c: c + [offset, 0]))
    both = pd.concat([utm, twin], ignore_index=True).to_crs(4326)
    return gpd.GeoDataFrame(both.assign(edge_id=np.arange(len(both))), crs=4326)


@pytest.mark.parametrize("twin_offset", [None, 0.6])
def test_measured_in_utm_points_match_a_plain_reference(helsinki_edges, twin_offset):
    edges = _with_twin(helsinki_edges, twin_offset)
    utm, xy, bearing, edge_id = _reference_points(edges)
    points = points_from_network(edges, spacing=15.0, merge_distance=1.0, crs=utm)
    assert len(points) == len(xy)
    got = shapely.get_coordinates(points.to_crs(utm).geometry.values)
    # points between vertices sit on the input's lon/lat segments: within the tolerance of
    # projecting them back (0.6 mm here, segments up to 120 m at 60 degrees north)
    assert np.hypot(*(got - xy).T).max() < _LERP_TOLERANCE_M
    # a shift under a millimetre moves the convergence by ~1e-8 degrees: at most a 0.001
    # step where the rounding to 3 decimals falls the other way
    turn = np.abs((points["bearing"].to_numpy() - bearing + 180) % 360 - 180)
    assert turn.max() <= 1e-3 + 1e-9 and (turn > 1e-6).mean() < 0.001
    assert np.array_equal(points["edge_id"].to_numpy(), edge_id)
    assert np.array_equal(points["point_id"].to_numpy(), np.arange(len(points)))


def test_projected_input_gives_the_same_points_as_lonlat_input(helsinki_edges):
    # measured in one CRS, EPSG:4326 input keeps its line ends' input coordinates; projected
    # input has every point projected back: both ways must agree
    utm = helsinki_edges.estimate_utm_crs()
    a = points_from_network(helsinki_edges, crs=utm)
    b = points_from_network(helsinki_edges.to_crs(utm), crs=utm)
    assert len(a) == len(b)
    xa = shapely.get_coordinates(a.to_crs(utm).geometry.values)
    xb = shapely.get_coordinates(b.to_crs(utm).geometry.values)
    assert np.hypot(*(xa - xb).T).max() < _LERP_TOLERANCE_M
    assert np.abs((a["bearing"] - b["bearing"] + 180) % 360 - 180).max() <= 1e-3


@pytest.mark.parametrize("lat", [0.0, 20.0, 34.0, 52.0, 60.0, 70.0, 80.0])
def test_lonlat_interpolation_stays_within_tolerance_of_projecting_back(lat):
    # the bound _lerp_limit relies on, checked against PROJ's exact inverse: segments of the
    # longest length allowed, every direction, 0 to 3 degrees from the central meridian
    from pyproj import CRS, Transformer

    limit = _lerp_limit((3.0, 3.0 + 3.0, lat - 0.01, lat))
    assert 50 < limit < 400
    utm = CRS.from_epsg(32631)  # central meridian 3 E
    ahead = Transformer.from_crs(4326, utm, always_xy=True)
    back = Transformer.from_crs(utm, 4326, always_xy=True)
    theta = np.radians(np.arange(0.0, 180.0, 5.0))
    worst = 0.0
    for lon in (3.0, 4.5, 6.0):
        x0, y0 = ahead.transform(lon, lat)
        xa, ya = x0 - limit / 2 * np.sin(theta), y0 - limit / 2 * np.cos(theta)
        xb, yb = x0 + limit / 2 * np.sin(theta), y0 + limit / 2 * np.cos(theta)
        (lon_a, lat_a), (lon_b, lat_b) = back.transform(xa, ya), back.transform(xb, yb)
        for t in (0.1, 0.25, 0.5, 0.75, 0.9):
            x, y = xa + t * (xb - xa), ya + t * (yb - ya)
            gx, gy = ahead.transform(lon_a + t * (lon_b - lon_a), lat_a + t * (lat_b - lat_a))
            worst = max(worst, float(np.hypot(gx - x, gy - y).max()))
    assert worst < _LERP_TOLERANCE_M
    assert worst > _LERP_TOLERANCE_M / 20 or lat < 10  # the bound is not loose: ~2/3 of it


def test_lerp_is_refused_across_the_antimeridian_and_near_the_poles():
    assert _lerp_limit((-179.9, 179.9, 60.0, 61.0)) == 0.0
    assert _lerp_limit((10.0, 11.0, 84.5, 85.0)) == 0.0
    assert _lerp_limit((10.0, 11.0, float("nan"), 60.0)) == 0.0
    assert _lerp_limit(None) == 0.0
    assert _lerp_limit((10.0, 11.0, -61.0, -60.0)) == _lerp_limit((10.0, 11.0, 60.0, 61.0))


def test_measured_in_utm_long_segments_are_projected_back_and_short_ones_interpolated():
    # one edge 3 km straight (no vertex between) and one of 100 m, at 60 N, measured in UTM:
    # samples on the long one must be where PROJ's exact inverse puts them, the short one's
    # within tolerance
    import geopandas as gpd
    from pyproj import CRS, Transformer

    utm = CRS.from_epsg(32635)
    to_lonlat = Transformer.from_crs(utm, 4326, always_xy=True)
    lines = [shapely.LineString([(380000, 6650000), (382400, 6651800)])]  # 3,000 m
    lines.append(shapely.LineString([(390000, 6650000), (390060, 6650080)]))  # 100 m
    projected = gpd.GeoDataFrame({"edge_id": [0, 1]}, geometry=lines, crs=utm)
    points = points_from_network(projected.to_crs(4326), spacing=15.0, crs=utm)
    assert _lerp_limit((24.0, 25.0, 59.0, 60.0)) < 3000
    for edge, tolerance in ((0, 1e-6), (1, _LERP_TOLERANCE_M)):
        line = lines[edge]
        along = np.arange(1, int((line.length - 1.0) // 15.0) + 1) * 15.0
        xy = shapely.get_coordinates(shapely.line_interpolate_point(line, along))
        expected = np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))
        mine = points[points["edge_id"] == edge]
        got = shapely.get_coordinates(mine.geometry.values)[2:]  # after the two ends
        assert len(got) == len(expected)
        gx, gy = Transformer.from_crs(4326, utm, always_xy=True).transform(got[:, 0], got[:, 1])
        miss = np.hypot(gx - xy[:, 0], gy - xy[:, 1])
        assert miss.max() < tolerance, (edge, miss.max())


def test_measuring_crs_is_the_same_zone_and_other_crs_are_kept():
    from pyproj import CRS, Transformer

    from urbanvis.sampling import _measuring_crs

    for code in (32635, 32611, 32755):
        fast = _measuring_crs(CRS.from_epsg(code))
        assert "algo=auto" in fast.srs and fast.utm_zone == CRS.from_epsg(code).utm_zone
        exact = Transformer.from_crs(4326, code, always_xy=True)
        quick = Transformer.from_crs(4326, fast, always_xy=True)
        lon0 = -183 + 6 * (code % 100)
        lon = lon0 + np.linspace(-3, 3, 61)
        lat = np.full_like(lon, 34.0 if code < 32700 else -34.0)
        a, b = np.array(exact.transform(lon, lat)), np.array(quick.transform(lon, lat))
        assert np.abs(a - b).max() < 1e-5  # PROJ 9.5: 4.3 micrometres just inside 3 degrees
    other = CRS.from_epsg(3067)  # ETRS-TM35FIN: a Transverse Mercator, but not WGS 84 UTM
    assert _measuring_crs(other) is other


@pytest.mark.parametrize("crs", [None, "EPSG:32635"], ids=["ellipsoid", "utm"])
def test_repeated_vertices_change_nothing(helsinki_edges, crs):
    # a vertex written two or three times in a row is dropped before sampling; the points
    # between vertices must still be placed on the right input segment (indices map back)
    import geopandas as gpd

    coords, index = shapely.get_coordinates(helsinki_edges.geometry.values, return_index=True)
    times = np.choose(np.arange(len(coords)) % 5, [1, 2, 1, 3, 1])
    twice = np.repeat(np.arange(len(coords)), times)
    doubled = gpd.GeoDataFrame(
        helsinki_edges.drop(columns="geometry"),
        geometry=shapely.linestrings(coords[twice], indices=index[twice]),
        crs=helsinki_edges.crs,
    )
    assert len(shapely.get_coordinates(doubled.geometry.values)) > len(coords)
    a = points_from_network(helsinki_edges, crs=crs)
    b = points_from_network(doubled, crs=crs)
    assert len(a) == len(b)
    assert np.array_equal(a["edge_id"].to_numpy(), b["edge_id"].to_numpy())
    xa, xb = (shapely.get_coordinates(p.geometry.values) for p in (a, b))
    assert np.abs(xa - xb).max() < 1e-12  # degrees: the same arithmetic on the same vertices
    assert np.array_equal(a["bearing"].to_numpy(), b["bearing"].to_numpy())


def _random_network(epsg, origin, *, seed):
    """300 random 3-vertex lines in UTM zone ``epsg`` (up to 570 m) within 5 km of ``origin``."""
    import geopandas as gpd

    rng = np.random.default_rng(seed)
    starts = np.asarray(origin) + rng.uniform(0, 5000, (300, 2))
    ends = starts + rng.uniform(-400, 400, (300, 2))
    middles = (starts + ends) / 2 + rng.uniform(-30, 30, (300, 2))
    lines = shapely.linestrings(np.stack([starts, middles, ends], axis=1))
    return gpd.GeoDataFrame({"edge_id": np.arange(300)}, geometry=lines, crs=epsg)


@pytest.mark.parametrize(
    ("epsg", "origin"),
    [(32756, (334000.0, 6250000.0)), (32611, (240000.0, 3770000.0)), (32633, (500000.0, 0.0))],
)
def test_measured_in_utm_fast_path_matches_exact_proj_south_north_and_zone_edge(epsg, origin):
    # Sydney (south), Los Angeles 2.7 degrees from its zone's central meridian, and the
    # equator, measured in the UTM zone: the fast projection and the lon/lat placement
    # against PROJ's exact series
    from pyproj import Transformer

    projected = _random_network(epsg, origin, seed=epsg)
    lines = projected.geometry.values
    lonlat = projected.to_crs(4326)
    assert lonlat.estimate_utm_crs().to_epsg() == epsg  # the zone the reference measures in
    points = points_from_network(lonlat, spacing=15.0, merge_distance=1.0, crs=epsg)
    assert points.crs.to_epsg() == 4326
    expected = sample_lines(lines, 15.0, merge_distance=1.0)  # exact metres, same order
    assert len(points) == len(expected)
    ahead = Transformer.from_crs(4326, epsg, always_xy=True)
    xy = shapely.get_coordinates(points.geometry.values)
    gx, gy = ahead.transform(xy[:, 0], xy[:, 1])
    assert np.hypot(gx - expected.x, gy - expected.y).max() < 1e-3  # the documented 1 mm
    assert np.array_equal(points["edge_id"].to_numpy(), expected.line)


def test_bearings_are_rounded_into_0_to_360():
    from urbanvis.sampling import _compass

    got = _compass(np.array([359.9996, 359.9994, -0.0004, -0.0006, 0.0004, 360.0, 720.25, 180.0]))
    assert got.tolist() == [0.0, 359.999, 0.0, 359.999, 0.0, 0.0, 0.25, 180.0]
    assert not np.signbit(got).any()  # no -0.0 either


# ------------------------------------------------------------------ on the ellipsoid
def _lonlat_line_reference(edges, spacing=15.0, merge=1.0, pieces=64):
    """points_from_network on the ellipsoid written plainly, from its definition.

    Each segment is the straight line in lon/lat, cut into ``pieces`` pieces short enough
    that each is its geodesic (pyproj.Geod measures them); points every ``spacing`` ground
    metres from each line's start, placed within their piece; a full KD-tree merge (in the
    UTM zone, whose metres are the ground's to 0.05%). Returns lon/lat, bearings, edge ids.
    """
    from pyproj import Transformer

    u = np.linspace(0.0, 1.0, pieces + 1)
    starts, ends, inner = [], [], []
    for i, line in enumerate(edges.geometry.values):
        xy = shapely.get_coordinates(line)
        a, b = xy[:-1], xy[1:]
        dense = (a[:, None, :] + u[None, :-1, None] * (b - a)[:, None, :]).reshape(-1, 2)
        dense = np.vstack((dense, xy[-1:]))
        azimuth, back, length = (
            np.asarray(v)
            for v in GEOD.inv(dense[:-1, 0], dense[:-1, 1], dense[1:, 0], dense[1:, 1])
        )
        cum = np.concatenate(([0.0], np.cumsum(length)))
        starts.append((*xy[0], azimuth[0], i))
        ends.append((*xy[-1], back[-1] + 180.0, i))
        along = np.arange(1, int((cum[-1] - merge) // spacing) + 1) * spacing
        q = np.minimum(np.searchsorted(cum, along, side="right") - 1, len(length) - 1)
        f = ((along - cum[q]) / length[q])[:, None]
        placed = dense[q] + f * (dense[q + 1] - dense[q])
        inner += [(*p, az, i) for p, az in zip(placed, azimuth[q], strict=True)]
    table = np.array(starts + ends + inner)
    utm = edges.estimate_utm_crs()
    x, y = Transformer.from_crs(4326, utm, always_xy=True).transform(table[:, 0], table[:, 1])
    table = table[_reference_merge(x, y, merge)]
    bearing = np.round(table[:, 2] % 360, 3) % 360
    return table[:, :2], bearing, edges["edge_id"].to_numpy()[table[:, 3].astype(int)]


def _assert_like_reference(points, lonlat, bearing, edge_id, *, within_m=1e-3):
    assert len(points) == len(lonlat)
    assert np.array_equal(points["edge_id"].to_numpy(), edge_id)
    got = shapely.get_coordinates(points.geometry.values)
    miss = np.asarray(GEOD.inv(got[:, 0], got[:, 1], lonlat[:, 0], lonlat[:, 1])[2])
    assert miss.max() < within_m, miss.max()
    # the azimuth at a segment's middle, not at the point: up to 0.0006 degrees here, and a
    # 0.001 rounding step either way
    turn = np.abs((points["bearing"].to_numpy() - bearing + 180) % 360 - 180)
    assert turn.max() <= 2e-3 + 1e-9 and (turn > 1e-3 + 1e-9).mean() < 0.01


@pytest.mark.parametrize("twin_offset", [None, 0.6])
def test_points_on_the_ellipsoid_match_a_plain_reference(helsinki_edges, twin_offset):
    edges = _with_twin(helsinki_edges, twin_offset)
    points = points_from_network(edges, spacing=15.0, merge_distance=1.0)
    _assert_like_reference(points, *_lonlat_line_reference(edges))
    assert np.array_equal(points["point_id"].to_numpy(), np.arange(len(points)))


@pytest.mark.parametrize(
    ("epsg", "origin"),
    [
        (32756, (334000.0, 6250000.0)),  # Sydney: south
        (32611, (240000.0, 3770000.0)),  # Los Angeles, 2.7 degrees from the central meridian
        (32633, (500000.0, 0.0)),  # across the equator
        (32633, (500000.0, 7800000.0)),  # 70 north
    ],
)
def test_points_on_the_ellipsoid_match_the_reference_anywhere(epsg, origin):
    # lines up to 570 m, segments up to about 325 m: many longer than the lon/lat
    # interpolation's limit
    edges = _random_network(epsg, origin, seed=epsg + int(origin[1])).to_crs(4326)
    points = points_from_network(edges, spacing=15.0, merge_distance=1.0)
    assert points.crs.to_epsg() == 4326
    _assert_like_reference(points, *_lonlat_line_reference(edges))


def _along_lonlat_line(a, b, pieces=200_000):
    """Parameter, ground metres travelled and local azimuth along the lon/lat line a -> b."""
    u = np.linspace(0.0, 1.0, pieces + 1)
    lon, lat = a[0] + u * (b[0] - a[0]), a[1] + u * (b[1] - a[1])
    azimuth, _, piece = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    return u, np.concatenate(([0.0], np.cumsum(piece))), np.asarray(azimuth) % 360


@pytest.mark.parametrize("lat", [0.0, 34.0, 60.0, -75.0, 83.0])
@pytest.mark.parametrize("heading", [10.0, 45.0, 80.0, 135.0, 200.0, 300.0])
def test_long_segments_on_the_ellipsoid_are_measured_along_the_lonlat_line(lat, heading):
    # a 3 km segment (no vertex between): every point lies on the straight lon/lat line at
    # k * 15 ground metres from its start (numerically integrated) within 1 mm, and every
    # bearing, the two ends' included, is the line's azimuth where the point is
    import geopandas as gpd

    a = (24.0, lat)
    lon_b, lat_b, _ = GEOD.fwd(*a, heading, 3000.0)
    b = (float(lon_b), float(lat_b))
    edges = gpd.GeoDataFrame({"edge_id": [0]}, geometry=[shapely.LineString([a, b])], crs=4326)
    points = points_from_network(edges, spacing=15.0)
    u, travelled, azimuth = _along_lonlat_line(a, b)
    got = shapely.get_coordinates(points.geometry.values)
    assert np.allclose(got[:2], [a, b], rtol=0, atol=1e-12)  # the two ends come first
    axis = 0 if abs(b[0] - a[0]) * np.cos(np.radians(lat)) > abs(b[1] - a[1]) else 1
    v = (got[:, axis] - a[axis]) / (b[axis] - a[axis])  # where along the line, in lon/lat
    off = got - (np.asarray(a) + v[:, None] * (np.asarray(b) - np.asarray(a)))
    assert np.abs(off).max() < 1e-11  # degrees: on the line
    inner = np.interp(v[2:], u, travelled)
    assert len(inner) == int((travelled[-1] - 1.0) // 15.0)
    assert np.abs(inner - np.arange(1, len(inner) + 1) * 15.0).max() < 1e-3
    piece = np.minimum(np.searchsorted(u, v, side="right") - 1, len(azimuth) - 1)
    turn = np.abs((points["bearing"].to_numpy() - azimuth[piece] + 180) % 360 - 180)
    assert turn.max() <= 5e-4 + 1e-3 * 5e-3  # the 0.001 rounding, and a 3 cm piece's turn


def test_long_segments_on_the_ellipsoid_merge_where_their_points_are():
    # a short edge starting 0.95 m from a point of a 3 km segment (at 60 N, where that point
    # lies 11 cm from its uncorrected place) merges with it; one starting 1.05 m away does not
    import geopandas as gpd

    a = (24.0, 60.0)
    b = tuple(float(v) for v in GEOD.fwd(*a, 45.0, 3000.0)[:2])
    alone = gpd.GeoDataFrame({"edge_id": [0]}, geometry=[shapely.LineString([a, b])], crs=4326)
    point = shapely.get_coordinates(points_from_network(alone).geometry.values)[2 + 99]
    for gap, merged in ((0.95, True), (1.05, False)):
        start = GEOD.fwd(*point, 135.0, gap)[:2]
        end = GEOD.fwd(*start, 135.0, 100.0)[:2]
        lines = [shapely.LineString([a, b]), shapely.LineString([start, end])]
        edges = gpd.GeoDataFrame({"edge_id": [0, 1]}, geometry=lines, crs=4326)
        xy = shapely.get_coordinates(points_from_network(edges).geometry.values)
        ones = np.ones(len(xy))
        to_point = np.asarray(GEOD.inv(xy[:, 0], xy[:, 1], point[0] * ones, point[1] * ones)[2])
        assert (to_point.min() < 1e-6) != merged  # merged: the line end is kept, not the point
        # and no two points closer than 1 m on the ground
        utm = Transformer.from_crs(4326, 32635, always_xy=True).transform(xy[:, 0], xy[:, 1])
        i, j = cKDTree(np.column_stack(utm)).query_pairs(1.1, output_type="ndarray").T
        assert (np.asarray(GEOD.inv(xy[i, 0], xy[i, 1], xy[j, 0], xy[j, 1])[2]) >= 1.0).all()


def test_merge_on_the_ellipsoid_uses_ground_distances():
    # pairs 0.97-1.03 m apart over 4 degrees of latitude, where the plate stretches 6%:
    # merged exactly where the ground distance (pyproj.Geod) is under 1 m
    from urbanvis.sampling import _Plate

    rng = np.random.default_rng(3)
    n = 3000
    lon = rng.uniform(24.0, 26.0, n)
    lat = rng.uniform(58.0, 62.0, n)
    gap = rng.uniform(0.97, 1.03, n)
    lon2, lat2, _ = GEOD.fwd(lon, lat, rng.uniform(0, 360, n), gap)
    all_lon, all_lat = np.concatenate((lon, lon2)), np.concatenate((lat, lat2))
    plate = _Plate.over((all_lon.min(), all_lon.max(), all_lat.min(), all_lat.max()))
    assert plate.stretch > 1.05
    keep = plate.merge(*plate.forward(all_lon, all_lat), 1.0)
    true = np.asarray(GEOD.inv(lon, lat, lon2, lat2)[2])
    expected = np.concatenate((np.arange(n), n + np.flatnonzero(true >= 1.0)))
    assert np.array_equal(keep, expected)
    assert 0.3 * n < (true < 1.0).sum() < 0.7 * n


def test_which_edges_are_measured_on_the_ellipsoid():
    import geopandas as gpd

    from urbanvis.sampling import _on_ellipsoid

    assert _on_ellipsoid((24.0, 25.0, 86.0, 89.0))  # beyond UTM, still on the ellipsoid
    assert not _on_ellipsoid((24.0, 25.0, 89.0, 89.6))  # too near the pole for a plate
    assert not _on_ellipsoid((-179.9, 179.9, 10.0, 11.0))  # across the antimeridian
    assert not _on_ellipsoid((24.0, 25.0, float("nan"), 60.0))
    assert not _on_ellipsoid(None)
    # 86 N: sampled on the ellipsoid, 15 ground metres apart
    line = shapely.LineString([(10.0, 86.0), (10.5, 86.01)])
    edges = gpd.GeoDataFrame({"edge_id": [0]}, geometry=[line], crs=4326)
    xy = shapely.get_coordinates(points_from_network(edges).geometry.values)[2:]
    gaps = np.asarray(GEOD.inv(xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1])[2])
    assert len(xy) > 200 and np.abs(gaps - 15.0).max() < 1e-3
    # nearer the pole no UTM zone either: one line asking for a CRS
    polar = edges.assign(geometry=[shapely.LineString([(10.0, 89.6), (10.5, 89.61)])])
    with pytest.raises(InputError, match="EPSG:3413"):
        points_from_network(polar)


def test_other_crs_are_measured_in_their_utm_zone(helsinki_edges):
    # NAD83 lon/lat is not EPSG:4326: its edges go through the UTM zone, as crs= would
    nad83 = helsinki_edges.to_crs("EPSG:4269")
    a = points_from_network(nad83)
    b = points_from_network(nad83, crs="EPSG:32635")
    assert len(a) == len(b)
    assert a.geometry.geom_equals_exact(b.geometry, 1e-12).all()
    c = points_from_network(helsinki_edges)  # ground metres: a few points may differ
    assert abs(len(c) - len(a)) < 0.01 * len(a)
