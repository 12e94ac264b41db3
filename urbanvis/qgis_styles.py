"""QGIS styles for a study's layers, stored in the GeoPackage so QGIS opens them styled.

QGIS reads a layer's default style from the GeoPackage's ``layer_styles`` table (the row
whose ``useAsDefault`` is true). :func:`style_study` writes one there for each layer it
knows: ``predictions_*`` as a graduated choropleth of the first predicted indicator
(quantile classes, a viridis ramp and a legend), with each indicator's trio as named styles
one can switch to (``X predicted``, ``X observed`` on the same classes, ``X residual`` =
observed - predicted on a diverging ramp centred on 0); ``zones_*`` graduated on their
first indicator; ``embeddings`` coloured by pc1, pc2, pc3 as red, green, blue (each
stretched from its 2nd to 98th percentile per model, as the web map does); ``captures``
graduated by capture year; and ``points`` as small markers. Pure SQLite and QML text: no
QGIS import, so the library can style the layers it writes wherever it runs.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from itertools import pairwise
from pathlib import Path
from xml.sax.saxutils import quoteattr

__all__ = [
    "graduated_qml",
    "marker_qml",
    "quantile_breaks",
    "rgb_marker_qml",
    "style_study",
    "symmetric_breaks",
    "write_style",
]

VIRIDIS = ("68,1,84", "59,82,139", "33,145,140", "94,201,98", "253,231,37")
"""Five stops of the viridis ramp (low -> high), as QGIS writes colours (R,G,B)."""

DIVERGING = ("33,102,172", "103,169,207", "209,229,240", "253,219,199", "239,138,98",
             "178,24,43")  # fmt: skip
"""Six classes of ColorBrewer's RdBu, blue (negative) -> red (positive): residuals."""

OWNER = "urbanvis"
"""The ``owner`` of the styles urbanvis writes: a restyle replaces only these."""

_CREATE = """CREATE TABLE IF NOT EXISTS layer_styles (
    id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256),
    f_table_schema TEXT(256), f_table_name TEXT(256), f_geometry_column TEXT(256),
    styleName TEXT(30), styleQML TEXT, styleSLD TEXT, useAsDefault BOOLEAN,
    description TEXT, owner TEXT(30), ui TEXT(30),
    update_time DATETIME DEFAULT CURRENT_TIMESTAMP)"""

_HEADER = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


def quantile_breaks(values: Sequence[float], classes: int = 5) -> list[float]:
    """``classes + 1`` class bounds at the quantiles of ``values`` (duplicates dropped)."""
    data = sorted(v for v in values if v is not None and math.isfinite(v))
    if not data:
        return []
    bounds = [
        data[min(len(data) - 1, round(q * (len(data) - 1) / classes))] for q in range(classes + 1)
    ]
    out: list[float] = []
    for b in bounds:
        if not out or b > out[-1]:
            out.append(float(b))
    if len(out) == 1:
        out.append(out[0])
    return out


def symmetric_breaks(values: Sequence[float], classes: int = 6) -> list[float]:
    """``classes + 1`` equal-interval bounds from ``-m`` to ``m`` (``m`` the largest absolute
    value; 1 when all are 0), with 0 a bound when ``classes`` is even."""
    data = [abs(v) for v in values if v is not None and math.isfinite(v)]
    if not data:
        return []
    m = max(data) or 1.0
    return [-m + 2 * m * i / classes for i in range(classes)] + [m]


def _percentile(con: sqlite3.Connection, table: str, column: str, where: str, args, q: float):
    """The ``q``-th percentile (0-100) of ``column``, interpolated as numpy's default does;
    SQLite sorts, so no column is read into Python."""
    filt = f'{where} AND "{column}" IS NOT NULL'
    (n,) = con.execute(f'SELECT count(*) FROM "{table}" WHERE {filt}', args).fetchone()
    if not n:
        return None
    pos = q / 100 * (n - 1)
    low = math.floor(pos)
    rows = con.execute(
        f'SELECT "{column}" FROM "{table}" WHERE {filt} ORDER BY "{column}" LIMIT 2 OFFSET ?',
        (*args, low),
    ).fetchall()
    a = float(rows[0][0])
    b = float(rows[1][0]) if len(rows) > 1 else a
    return a + (b - a) * (pos - low)


def _data_defined(properties: dict[str, str]) -> str:
    """QML of a symbol layer's data-defined properties (name -> QGIS expression)."""
    body = "".join(
        f'<Option type="Map" name="{name}"><Option type="bool" name="active" value="true"/>'
        f'<Option type="QString" name="expression" value={quoteattr(expr)}/>'
        f'<Option type="int" name="type" value="3"/></Option>'
        for name, expr in properties.items()
    )
    return (
        '<data_defined_properties><Option type="Map"><Option type="QString" name="name" '
        f'value=""/><Option type="Map" name="properties">{body}</Option>'
        '<Option type="QString" name="type" value="collection"/></Option>'
        "</data_defined_properties>"
    )


def _symbol(kind: str, name: str, colour: str, data_defined: str = "") -> str:
    if kind == "fill":
        props = {"color": f"{colour},255", "outline_color": "35,35,35,255",
                 "outline_width": "0.2", "style": "solid", "outline_style": "solid"}  # fmt: skip
        cls = "SimpleFill"
    else:
        props = {"color": f"{colour},255", "outline_color": "35,35,35,255",
                 "outline_width": "0.1", "size": "1.6", "name": "circle"}  # fmt: skip
        cls = "SimpleMarker"
    body = "".join(f'<prop k="{k}" v="{v}"/>' for k, v in props.items())
    return (
        f'<symbol type="{kind}" name="{name}" alpha="1" clip_to_extent="1" force_rhr="0">'
        f'<layer class="{cls}" pass="0" locked="0" enabled="1">{body}{data_defined}</layer>'
        f"</symbol>"
    )


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def graduated_qml(
    attr: str,
    breaks: Sequence[float],
    *,
    kind: str = "fill",
    labels: Sequence[str] | None = None,
    ramp: Sequence[str] = VIRIDIS,
    mode: str = "quantile",
) -> str:
    """QML of a graduated renderer on ``attr`` (a field or an expression) over ``breaks``.

    ``kind`` is ``fill`` (polygons) or ``marker`` (points); ``labels`` name the classes in
    the legend (default: ``low - high``); ``ramp`` colours the classes low -> high
    (spread over its stops); ``mode`` is the classification QGIS shows (``quantile``,
    ``equal``).
    """
    ranges, symbols = [], []
    n = len(breaks) - 1
    for i in range(n):
        lo, hi = breaks[i], breaks[i + 1]
        colour = ramp[round(i * (len(ramp) - 1) / max(n - 1, 1))]
        label = labels[i] if labels else f"{_fmt(lo)} - {_fmt(hi)}"
        ranges.append(
            f'<range lower="{lo!r}" upper="{hi!r}" symbol="{i}" label={quoteattr(label)} '
            f'render="true"/>'
        )
        symbols.append(_symbol(kind, str(i), colour))
    return (
        f'{_HEADER}<qgis version="3.22.0" styleCategories="Symbology">'
        f'<renderer-v2 type="graduatedSymbol" attr={quoteattr(attr)} '
        f'graduatedMethod="GraduatedColor" symbollevels="0" enableorderby="0" forceraster="0">'
        f"<ranges>{''.join(ranges)}</ranges><symbols>{''.join(symbols)}</symbols>"
        f'<mode name="{mode}"/></renderer-v2></qgis>\n'
    )


def marker_qml(colour: str = "230,85,13") -> str:
    """QML of a single-symbol renderer drawing small circles."""
    return (
        f'{_HEADER}<qgis version="3.22.0" styleCategories="Symbology">'
        f'<renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0">'
        f"<symbols>{_symbol('marker', '0', colour)}</symbols></renderer-v2></qgis>\n"
    )


def rgb_marker_qml(red: str, green: str, blue: str, *, fallback: str = "150,150,150") -> str:
    """QML of small circles filled with ``color_rgb(red, green, blue)`` (expressions giving
    0-255); ``fallback`` colours features where the expression is NULL."""
    colour = f"color_rgb({red}, {green}, {blue})"
    symbol = _symbol("marker", "0", fallback, _data_defined({"fillColor": colour}))
    return (
        f'{_HEADER}<qgis version="3.22.0" styleCategories="Symbology">'
        f'<renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0">'
        f"<symbols>{symbol}</symbols></renderer-v2></qgis>\n"
    )


def write_style(
    gpkg: str | Path,
    table: str,
    qml: str,
    *,
    name: str = "urbanvis",
    default: bool = True,
    description: str = "",
) -> None:
    """Store ``qml`` as style ``name`` of layer ``table`` in ``gpkg``'s layer_styles.

    The table is created (and registered in gpkg_contents, as QGIS does) when missing; a
    style of the same layer and name is replaced, and a new default unsets the old one.
    """
    with closing(sqlite3.connect(gpkg)) as con, con:
        con.execute(_CREATE)
        con.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, "
            "description, last_change) SELECT 'layer_styles', 'attributes', 'layer_styles', "
            "'', strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE NOT EXISTS "
            "(SELECT 1 FROM gpkg_contents WHERE table_name = 'layer_styles')"
        )
        row = con.execute(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,)
        ).fetchone()
        geom = row[0] if row else ""
        if default:
            con.execute("UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_name = ?", (table,))
        con.execute(
            "DELETE FROM layer_styles WHERE f_table_name = ? AND styleName = ?", (table, name)
        )
        con.execute(
            "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
            "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, "
            "owner, ui, update_time) VALUES ('', '', ?, ?, ?, ?, '', ?, ?, ?, '', "
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            (table, geom, name, qml, 1 if default else 0, description, OWNER),
        )


def _columns(con: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    return [(r[1], (r[2] or "").upper()) for r in con.execute(f'PRAGMA table_info("{table}")')]


def _numeric(cols: list[tuple[str, str]]) -> list[str]:
    return [
        c for c, t in cols
        if t in ("REAL", "DOUBLE", "FLOAT", "INTEGER", "MEDIUMINT", "INT")
        and c not in ("fid", "n_images", "images", "zone_index")
    ]  # fmt: skip


def _numbers(con: sqlite3.Connection, table: str, expr: str) -> list[float]:
    rows = con.execute(f'SELECT {expr} FROM "{table}"').fetchall()
    out = []
    for (v,) in rows:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            continue
    return out


_Plan = tuple[str, str, str, bool, str]  # table, style name, QML, default?, description


def _prediction_styles(con: sqlite3.Connection, table: str, numeric: list[str]) -> list[_Plan]:
    """Per indicator X: ``X predicted``, ``X observed`` (the same classes, so a colour
    means the same value in both) and ``X residual`` (observed - predicted, diverging)."""
    trios = []
    for pred in [c for c in numeric if c.endswith("_pred")]:
        name = pred.removesuffix("_pred")
        observed = name if name in numeric else None
        predicted = _numbers(con, table, f'"{pred}"')
        both = predicted + (_numbers(con, table, f'"{observed}"') if observed else [])
        breaks = quantile_breaks(both)
        if len(breaks) >= 2:
            trios.append((name, pred, observed, breaks, len(quantile_breaks(predicted)) > 2))
    # the default: the first prediction that varies (a constant one makes one colour)
    best = next((i for i, trio in enumerate(trios) if trio[4]), 0)
    plans: list[_Plan] = []
    for i, (name, pred, observed, breaks, _) in enumerate(trios):
        plans.append((table, f"{name} predicted", graduated_qml(pred, breaks), i == best,
                      f"{name}: predicted"))  # fmt: skip
        if observed is None:  # predict --apply: no labels, so no observed or residual
            continue
        plans.append((table, f"{name} observed", graduated_qml(observed, breaks), False,
                      f"{name}: observed, on the classes of the prediction"))  # fmt: skip
        residual = f'"{observed}" - "{pred}"'
        bounds = symmetric_breaks(_numbers(con, table, residual))
        if bounds:
            labels = [f"{_fmt(lo)} to {_fmt(hi)}" for lo, hi in pairwise(bounds)]
            qml = graduated_qml(residual, bounds, labels=labels, ramp=DIVERGING, mode="equal")
            plans.append((table, f"{name} residual", qml, False,
                          f"{name}: observed - predicted (red: under-predicted, blue: "
                          f"over-predicted)"))  # fmt: skip
    return plans


def _zone_styles(con: sqlite3.Connection, table: str, numeric: list[str]) -> list[_Plan]:
    """Each indicator as a named style; the default the first that varies."""
    found = []
    for column in [c for c in numeric if not c.endswith(("_pred", "_id"))]:
        breaks = quantile_breaks(_numbers(con, table, f'"{column}"'))
        if len(breaks) >= 2:
            found.append((column, breaks))
    best = next((i for i, (_, b) in enumerate(found) if len(b) > 2), 0)
    return [
        (table, column, graduated_qml(column, breaks), i == best, column)
        for i, (column, breaks) in enumerate(found)
    ]


def _number(value: float) -> str:
    """A float as a QGIS expression literal (a digit before the point, no bare exponent)."""
    return f"{value:.10e}"


def _embedding_styles(con: sqlite3.Connection, table: str) -> list[_Plan]:
    """pc1, pc2, pc3 as red, green, blue, each stretched from its 2nd to 98th percentile
    among the rows of its model (every model has its own PCA)."""
    models = [r[0] for r in con.execute(f'SELECT DISTINCT model FROM "{table}" ORDER BY model')]
    colours = []
    for model in models:
        channels = []
        for column in ("pc1", "pc2", "pc3"):
            args = (model,)
            low = _percentile(con, table, column, "model = ?", args, 2)
            high = _percentile(con, table, column, "model = ?", args, 98)
            if low is None or high is None:
                channels.append("NULL")
                continue
            top = low + ((high - low) or 1.0)
            channels.append(f'scale_linear("{column}", {_number(low)}, {_number(top)}, 0, 255)')
        colours.append((model, channels))
    if not colours:
        return []
    if len(colours) == 1:
        red, green, blue = colours[0][1]
    else:  # one stretch per model
        red, green, blue = (
            "CASE "
            + " ".join(
                "WHEN \"model\" = '{}' THEN {}".format(m.replace("'", "''"), ch[i])
                for m, ch in colours
            )
            + " END"
            for i in range(3)
        )
    description = "pc1, pc2, pc3 as red, green, blue (2nd to 98th percentile of each model)"
    return [(table, "pc1-pc3 as RGB", rgb_marker_qml(red, green, blue), True, description)]


def _clear_styles(gpkg: Path, tables: Sequence[str]) -> None:
    """Drop the urbanvis styles of ``tables`` (others' styles stay)."""
    with closing(sqlite3.connect(gpkg)) as con, con:
        if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'layer_styles'").fetchone():
            con.executemany(
                "DELETE FROM layer_styles WHERE f_table_name = ? AND owner = ?",
                [(t, OWNER) for t in tables],
            )


def style_study(gpkg: str | Path, *, layers: Sequence[str] | None = None) -> list[str]:
    """Write default styles for the layers of a study GeoPackage; returns the layers styled.

    ``layers`` limits it to those (default: every layer it knows). A restyled layer's
    earlier urbanvis styles are replaced; styles saved by others are kept.
    """
    gpkg = Path(gpkg)
    with closing(sqlite3.connect(gpkg)) as con:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM gpkg_contents WHERE data_type = 'features'"
            )
            if layers is None or r[0] in layers
        ]
        plans: list[_Plan] = []
        for table in tables:
            cols = _columns(con, table)
            have = {c for c, _ in cols}
            if table.startswith("predictions_"):
                plans += _prediction_styles(con, table, _numeric(cols))
            elif table.startswith("zones_"):
                plans += _zone_styles(con, table, _numeric(cols))
            elif table == "embeddings" and {"model", "pc1", "pc2", "pc3"} <= have:
                plans += _embedding_styles(con, table)
            elif table == "captures" and "captured_at" in have:
                years = _numbers(con, table, "substr(captured_at, 1, 4)")
                if years:
                    lo, hi = int(min(years)), int(max(years))
                    expr = 'to_int(left("captured_at", 4))'
                    if hi - lo < 10:  # one class per year
                        breaks = [y - 0.5 for y in range(lo, hi + 2)]
                        names = [str(y) for y in range(lo, hi + 1)]
                        qml = graduated_qml(expr, breaks, kind="marker", labels=names)
                    else:
                        qml = graduated_qml(expr, quantile_breaks(years), kind="marker")
                    plans.append((table, "capture year", qml, True, "captures by capture year"))
            elif table == "points":
                plans.append((table, "points", marker_qml(), True, "sampled road points"))
    styled = sorted({p[0] for p in plans})
    _clear_styles(gpkg, styled)
    for table, name, qml, default, description in plans:
        write_style(gpkg, table, qml, name=name, default=default, description=description)
    return styled
