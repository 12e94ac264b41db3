"""QGIS styles for a study's layers, stored in the GeoPackage so QGIS opens them styled.

QGIS reads a layer's default style from the GeoPackage's ``layer_styles`` table (the row
whose ``useAsDefault`` is true). :func:`style_study` writes one there for each layer it
knows: ``predictions_*`` as a graduated choropleth of the first predicted indicator
(quantile classes, a viridis ramp and a legend; the other indicators as named styles one
can switch to), ``zones_*`` likewise on their first indicator, ``captures`` graduated by
capture year, and ``points`` as small markers. Pure SQLite and QML text: no QGIS import,
so the library can style the layers it writes wherever it runs.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from xml.sax.saxutils import quoteattr

__all__ = ["graduated_qml", "marker_qml", "quantile_breaks", "style_study", "write_style"]

VIRIDIS = ("68,1,84", "59,82,139", "33,145,140", "94,201,98", "253,231,37")
"""Five stops of the viridis ramp (low -> high), as QGIS writes colours (R,G,B)."""

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


def _symbol(kind: str, name: str, colour: str) -> str:
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
        f'<layer class="{cls}" pass="0" locked="0" enabled="1">{body}</layer></symbol>'
    )


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"


def graduated_qml(
    attr: str,
    breaks: Sequence[float],
    *,
    kind: str = "fill",
    labels: Sequence[str] | None = None,
) -> str:
    """QML of a graduated renderer on ``attr`` (a field or an expression) over ``breaks``.

    ``kind`` is ``fill`` (polygons) or ``marker`` (points); ``labels`` name the classes in
    the legend (default: ``low - high``).
    """
    ranges, symbols = [], []
    n = len(breaks) - 1
    for i in range(n):
        lo, hi = breaks[i], breaks[i + 1]
        colour = VIRIDIS[round(i * (len(VIRIDIS) - 1) / max(n - 1, 1))]
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
        f'<mode name="quantile"/></renderer-v2></qgis>\n'
    )


def marker_qml(colour: str = "230,85,13") -> str:
    """QML of a single-symbol renderer drawing small circles."""
    return (
        f'{_HEADER}<qgis version="3.22.0" styleCategories="Symbology">'
        f'<renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0">'
        f"<symbols>{_symbol('marker', '0', colour)}</symbols></renderer-v2></qgis>\n"
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
            "owner, ui, update_time) VALUES ('', '', ?, ?, ?, ?, '', ?, ?, 'urbanvis', '', "
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            (table, geom, name, qml, 1 if default else 0, description),
        )


def _columns(con: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    return [(r[1], (r[2] or "").upper()) for r in con.execute(f'PRAGMA table_info("{table}")')]


def _numbers(con: sqlite3.Connection, table: str, expr: str) -> list[float]:
    rows = con.execute(f'SELECT {expr} FROM "{table}"').fetchall()
    out = []
    for (v,) in rows:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            continue
    return out


def style_study(gpkg: str | Path) -> list[str]:
    """Write default styles for the layers of a study GeoPackage; returns the layers styled."""
    gpkg = Path(gpkg)
    with closing(sqlite3.connect(gpkg)) as con:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM gpkg_contents WHERE data_type = 'features'"
            )
        ]
        plans: list[tuple[str, str, str, bool, str]] = []
        for table in tables:
            cols = _columns(con, table)
            if table.startswith(("predictions_", "zones_")):
                numeric = [
                    c for c, t in cols
                    if t in ("REAL", "DOUBLE", "FLOAT", "INTEGER", "MEDIUMINT", "INT")
                    and c not in ("fid", "n_images", "images", "zone_index")
                ]  # fmt: skip
                preds = [c for c in numeric if c.endswith("_pred")]
                others = [c for c in numeric if not c.endswith(("_pred", "_id"))]
                found = []
                for column in preds + others:
                    breaks = quantile_breaks(_numbers(con, table, f'"{column}"'))
                    if len(breaks) >= 2:
                        found.append((column, breaks))
                # the default: the first predicted indicator that varies (a constant
                # prediction makes one class); the others are named styles to switch to
                classes = [len(b) for _, b in found]
                best = next((i for i, (c, b) in enumerate(found) if len(b) > 2), None)
                best = best if best is not None else (classes.index(max(classes)) if found else 0)
                for i, (column, breaks) in enumerate(found):
                    plans.append((table, column, graduated_qml(column, breaks), i == best, column))
            elif table == "captures" and any(c == "captured_at" for c, _ in cols):
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
    for table, name, qml, default, description in plans:
        write_style(gpkg, table, qml, name=name, default=default, description=description)
    return sorted({p[0] for p in plans})
