"""Web maps of study layers: folium maps that open offline, in a notebook or a browser.

:func:`map_from_layer` turns any layer into a :class:`folium.Map` with a layer control:

- point layers (``points``, ``captures``, ``embeddings``): the features coloured by
  ``column``, or by capture date (how old the imagery is) when there is ``captured_at``; an
  embedding layer (pc1, pc2, pc3 as red, green, blue) when the layer has those columns;
  popups with the capture's thumbnail, date, heading and the values of its zone;
- polygon layers (``zones_*``, ``predictions_*`` or any polygons with ``column``): choropleths
  of the observed indicator ``X``, the predicted ``X_pred`` and the residual, with legends.

Leaflet is inlined from the package, so a map with ``tiles="none"`` requests nothing at all.
:func:`write_map` writes the HTML atomically and refuses to write a page holding a secret
from the environment (API keys, tokens). GeoTIFF surfaces: :func:`raster_from_points`.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._errors import InputError, StudyError
from ._files import atomic_write_text, writable_ancestor
from ._leaflet import DataLayer, make_offline
from ._raster import raster_from_points

log = logging.getLogger(__name__)

__all__ = [
    "check_out_path",
    "check_tiles",
    "map_from_layer",
    "raster_from_points",
    "render_html",
    "write_map",
]

# matplotlib's viridis and RdBu (reversed: blue = under-predicted... red = over), sampled
VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962",
           "#addc30", "#fde725"]  # fmt: skip
DIVERGING = ["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582",
             "#d6604d", "#b2182b"]  # fmt: skip
CATEGORIES = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
              "#7f7f7f", "#bcbd22", "#17becf"]  # fmt: skip
MISSING = "#bdbdbd"
SVG_LIMIT = 5_000
"""Up to this many features a layer is drawn as SVG (one element each), beyond on a canvas."""
_EMBED_LIMIT = 1_000
_POPUP_FIELDS = ("capture_id", "point_id", "captured_at", "heading", "provider", "status")


# ------------------------------------------------------------------------------ colours
def _hex(rgb: np.ndarray) -> list[str]:
    rgb = np.clip(np.rint(rgb), 0, 255).astype(int)
    return [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb]


def _ramp(values: np.ndarray, stops: Sequence[str], low: float, high: float) -> list[str]:
    """Colours of ``values`` on a linear ramp through ``stops`` from low to high."""
    table = np.array([[int(s[i : i + 2], 16) for i in (1, 3, 5)] for s in stops], float)
    span = high - low if high > low else 1.0
    t = np.clip((np.asarray(values, float) - low) / span, 0.0, 1.0) * (len(stops) - 1)
    finite = np.isfinite(t)
    t = np.where(finite, t, 0.0)
    i = np.minimum(np.floor(t).astype(int), len(stops) - 2)
    f = (t - i)[:, None]
    colours = _hex(table[i] * (1 - f) + table[i + 1] * f)
    return [c if ok else MISSING for c, ok in zip(colours, finite, strict=True)]


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _numeric_colours(
    values: pd.Series, title: str, *, diverging: bool = False, limits=None
) -> tuple[list[str], dict]:
    v = pd.to_numeric(values, errors="coerce").to_numpy(float)
    finite = v[np.isfinite(v)]
    if limits is not None:
        low, high = limits
    elif finite.size == 0:
        low, high = 0.0, 1.0
    elif diverging:
        high = float(np.max(np.abs(finite))) or 1.0
        low = -high
    else:
        low, high = float(finite.min()), float(finite.max())
    stops = DIVERGING if diverging else VIRIDIS
    legend = {"title": title, "gradient": list(stops), "low": _fmt(low), "high": _fmt(high)}
    if np.isnan(v).any():
        legend["note"] = "grey: no value"
    return _ramp(v, stops, low, high), legend


def _category_colours(values: pd.Series, title: str) -> tuple[list[str], dict]:
    labels = values.astype("string").fillna("(none)")
    counts = labels.value_counts()
    top = list(counts.index[: len(CATEGORIES) - 1])
    palette = {label: CATEGORIES[i] for i, label in enumerate(top)}
    colours = [palette.get(label, CATEGORIES[-1]) for label in labels]
    items = [[label, palette[label]] for label in top]
    if len(counts) > len(top):
        items.append(["other", CATEGORIES[-1]])
    return colours, {"title": title, "items": items}


def _decimal_year(values: pd.Series) -> pd.Series:
    """ISO dates ('2018-01', '2018-01-02T09:33', epoch ms...) as decimal years."""
    text = values.astype("string")
    dates = pd.to_datetime(text.str.slice(0, 10), errors="coerce", format="mixed")
    return dates.dt.year + (dates.dt.day_of_year - 1) / 365.25


def _date_colours(values: pd.Series, title: str) -> tuple[list[str], dict]:
    years = _decimal_year(values)
    colours, legend = _numeric_colours(years, title)
    finite = years.dropna()
    if len(finite):
        legend["low"] = f"{int(finite.min())} (oldest)"
        legend["high"] = f"{int(finite.max())} (newest)"
    return colours, legend


def _embedding_colours(frame: pd.DataFrame) -> list[str]:
    """pc1, pc2, pc3 stretched (2nd to 98th percentile) to red, green, blue."""
    pcs = frame[["pc1", "pc2", "pc3"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    out = np.zeros_like(pcs)
    for j in range(3):
        col = pcs[:, j]
        finite = col[np.isfinite(col)]
        if finite.size == 0:
            continue
        low, high = np.percentile(finite, [2, 98])
        out[:, j] = np.clip((col - low) / ((high - low) or 1.0), 0, 1) * 255
    colours = _hex(np.nan_to_num(out, nan=0.0))
    missing = ~np.isfinite(pcs).all(axis=1)
    return [MISSING if m else c for c, m in zip(colours, missing, strict=True)]


# ------------------------------------------------------------------------------ helpers
def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _check_column(frame, column: str | None) -> None:
    if column is not None and column not in frame.columns:
        have = ", ".join(str(c) for c in frame.columns if c != frame.geometry.name)
        raise InputError(f"the layer has no column '{column}' (it has: {have}); pick one of those")


def _json_values(series: pd.Series) -> list[Any]:
    if _is_numeric(series):
        v = series.to_numpy(float).round(4)
        return [None if not np.isfinite(x) else (int(x) if x == int(x) else float(x)) for x in v]
    return [None if pd.isna(x) else str(x) for x in series]


def _zone_id_column(zones) -> str | None:
    for name in ("zone_id", "GEOID", "geoid", "id"):
        if name in zones.columns:
            return name
    return None


def _indicator_columns(frame) -> list[str]:
    skip = {"n_points", "n_images", "fold", "split"}
    return [
        str(c)
        for c in frame.columns
        if c != frame.geometry.name and c not in skip and _is_numeric(frame[c])
    ]


def _thumbnails(frame, study_root: Path | None, html_dir: Path | None, mode: str):
    if mode == "none" or "image_path" not in frame.columns or study_root is None:
        return None
    paths = [None if pd.isna(p) or not str(p) else study_root / str(p) for p in frame["image_path"]]
    if mode == "auto":
        mode = "embed" if len(paths) <= _EMBED_LIMIT else "link"
    if mode == "link":
        base = (html_dir or Path.cwd()).absolute()
        return [
            None if p is None else Path(os.path.relpath(p.absolute(), base)).as_posix()
            for p in paths
        ]
    from PIL import Image

    thumbs: list[str | None] = []
    for p in paths:
        if p is None:  # a missing or failed capture has no image
            thumbs.append(None)
            continue
        try:
            with Image.open(p) as im:
                small = im.convert("RGB")
                small.thumbnail((128, 128))
                buf = io.BytesIO()
                small.save(buf, "JPEG", quality=70)
            thumbs.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode())
        except Exception:  # an unreadable image gets no thumbnail (PIL raises many kinds)
            thumbs.append(None)
    return thumbs


# ------------------------------------------------------------------------------ layers
def _point_layers(frame, column, *, zones, thumbs, key_prefix) -> list[DataLayer]:
    n = len(frame)
    canvas = n > SVG_LIMIT
    xy = frame.geometry.get_coordinates()
    base = {
        "lat": xy["y"].round(6).tolist(),
        "lon": xy["x"].round(6).tolist(),
        "canvas": canvas,
        "radius": 3 if n > 20_000 else 5,
        "weight": 0 if canvas else 1,
        "thumbs": thumbs,
    }
    fields = [c for c in _POPUP_FIELDS if c in frame.columns]
    if column and column not in fields:
        fields.append(column)
    values = [_json_values(frame[c]) for c in fields]
    if zones is not None and len(zones):
        joined = _zone_values(frame, zones)
        for c in joined.columns:
            fields.append(f"zone {c}")
            values.append(_json_values(joined[c]))
    base["fields"], base["values"] = fields, values

    layers: list[tuple[str, Any, dict | None]] = []
    if column is not None:
        if column == "captured_at" or "date" in column.lower() or "time" in column.lower():
            colours, legend = _date_colours(frame[column], f"{column} (year)")
        elif _is_numeric(frame[column]):
            colours, legend = _numeric_colours(frame[column], column)
        else:
            colours, legend = _category_colours(frame[column], column)
        layers.append((column, colours, legend))
    elif "captured_at" in frame.columns:
        colours, legend = _date_colours(frame["captured_at"], "imagery date")
        layers.append(("imagery date", colours, legend))
    else:
        layers.append(("sample points", "#3186cc", None))
    if {"pc1", "pc2", "pc3"} <= set(frame.columns):
        legend = {"title": "embedding", "note": "pc1, pc2, pc3 as red, green, blue"}
        layers.append(("embedding (pc1-pc3 as RGB)", _embedding_colours(frame), legend))

    out = []
    for i, (name, colours, key_legend) in enumerate(layers):
        spec = dict(base, key=f"{key_prefix}{i}", color=colours, legend=key_legend)
        out.append(DataLayer(spec, kind="points", name=name, show=(i == 0) or n <= SVG_LIMIT))
    return out


def _zone_values(frame, zones):
    """For each feature of ``frame``, the id and indicators of the zone it lies in."""
    import geopandas as gpd

    keep = [c for c in [_zone_id_column(zones), *_indicator_columns(zones)] if c]
    zones = zones[[*keep, zones.geometry.name]].to_crs(frame.crs)
    pts = gpd.GeoDataFrame(geometry=frame.geometry.values, crs=frame.crs)
    joined = gpd.sjoin(pts, zones, how="left", predicate="within")
    joined = joined[~joined.index.duplicated(keep="first")]
    return joined[keep].reindex(range(len(frame)))


def _polygon_layers(frame, column, *, key_prefix) -> list[DataLayer]:
    indicators = _indicator_columns(frame)
    if column is None:
        paired = [c for c in indicators if f"{c}_pred" in frame.columns]
        if not (paired or indicators):
            raise InputError(
                "the polygon layer has no numeric column to colour; pass `column` "
                f"(it has: {', '.join(map(str, frame.columns))})"
            )
        column = (paired or indicators)[0]
        log.info("colouring zones by '%s' (choose another with `column`)", column)
    if column.endswith("_pred") and column[: -len("_pred")] in frame.columns:
        column = column[: -len("_pred")]
    observed = pd.to_numeric(frame[column], errors="coerce")
    zone_id = _zone_id_column(frame)
    pred_name = f"{column}_pred"
    predicted = (
        pd.to_numeric(frame[pred_name], errors="coerce") if pred_name in frame.columns else None
    )
    popup_cols = [c for c in (zone_id, "n_images", "n_points") if c and c in frame.columns]
    rows = []
    for i in range(len(frame)):
        row = [[c, _json_values(frame[c].iloc[i : i + 1])[0]] for c in popup_cols]
        row.append([f"{column} (observed)", _json_values(observed.iloc[i : i + 1])[0]])
        if predicted is not None:
            row.append([f"{column} (predicted)", _json_values(predicted.iloc[i : i + 1])[0]])
            residual = predicted.iloc[i] - observed.iloc[i]
            row.append(["residual", None if pd.isna(residual) else round(float(residual), 4)])
        rows.append(row)

    both = pd.concat([observed, predicted]) if predicted is not None else observed
    finite = both[np.isfinite(both.to_numpy(float))]
    limits = (float(finite.min()), float(finite.max())) if len(finite) else None
    maps = [(f"{column} observed", *_numeric_colours(observed, column, limits=limits))]
    if predicted is not None:
        maps.append((f"{column} predicted", *_numeric_colours(predicted, pred_name, limits=limits)))
        maps.append(
            (
                f"{column} residual (predicted - observed)",
                *_numeric_colours(predicted - observed, f"{column} residual", diverging=True),
            )
        )
    geometry = frame.geometry.simplify(1e-6, preserve_topology=True)
    geojson = geometry.__geo_interface__
    out = []
    for i, (name, colours, legend) in enumerate(maps):
        features = []
        for feature, colour, row in zip(geojson["features"], colours, rows, strict=True):
            features.append(
                {
                    "type": "Feature",
                    "geometry": _round_geometry(feature["geometry"]),
                    "properties": {"_c": colour, "_p": row},
                }  # fmt: skip
            )
        spec = {
            "key": f"{key_prefix}{i}",
            "geojson": {"type": "FeatureCollection", "features": features},
            "legend": legend,
        }
        out.append(DataLayer(spec, kind="polygons", name=name, show=(i == 0)))
    return out


def _round_geometry(geometry: dict) -> dict:
    def rnd(c):
        if isinstance(c[0], list | tuple):
            return [rnd(x) for x in c]
        return [round(c[0], 6), round(c[1], 6)]

    return {"type": geometry["type"], "coordinates": rnd(geometry["coordinates"])}


# ------------------------------------------------------------------------------ public
def map_from_layer(
    frame,
    column: str | None = None,
    *,
    tiles: str | None = "OpenStreetMap",
    attribution: str | None = None,
    zones=None,
    study_root: str | os.PathLike[str] | None = None,
    html_dir: str | os.PathLike[str] | None = None,
    thumbnails: str = "auto",
    title: str | None = None,
):
    """A folium map of a layer, with a layer control, legends and popups.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        Points (``points``, ``captures``, ``embeddings``) or polygons (``zones_*``,
        ``predictions_*``, any polygons), in any CRS.
    column : str, optional
        The value to colour by. Points default to the capture date, polygons to the first
        indicator ``X`` with an ``X_pred`` column, else the first numeric column.
    tiles : str or None
        Base tiles: ``"none"`` (or None) for none, which opens with no network; a folium
        name (``"OpenStreetMap"``, ``"CartoDB positron"``...) or an XYZ URL template (then
        give ``attribution``). Keys and tokens in a URL are refused: they would ship in the HTML.
    zones : geopandas.GeoDataFrame, optional
        Zones whose id and indicators are shown in each point's popup.
    study_root, html_dir : path, optional
        Where image paths are relative to, and where the HTML will be written (thumbnail
        links are made relative to it).
    thumbnails : {"auto", "embed", "link", "none"}
        Small JPEGs inlined in the page (auto: up to 1,000 images), or links to the images.

    Returns
    -------
    folium.Map
    """
    import folium

    if thumbnails not in ("auto", "embed", "link", "none"):
        raise InputError(f"thumbnails must be auto, embed, link or none, not {thumbnails!r}")
    _check_column(frame, column)
    if frame.crs is None:
        raise InputError("the layer has no CRS; set one (e.g. frame.set_crs(4326))")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty].to_crs(4326)
    frame = frame.reset_index(drop=True)
    if len(frame) == 0:
        raise InputError("the layer has no features with a geometry; nothing to map")
    kinds = set(frame.geometry.geom_type)
    tile_layer = _tiles(tiles, attribution)
    west, south, east, north = frame.total_bounds
    m = folium.Map(
        location=[(south + north) / 2, (west + east) / 2], tiles=tile_layer, control_scale=True
    )
    make_offline(m)
    if kinds <= {"Point"}:
        root = Path(study_root) if study_root is not None else None
        thumbs = _thumbnails(frame, root, Path(html_dir) if html_dir else None, thumbnails)
        layers = _point_layers(frame, column, zones=zones, thumbs=thumbs, key_prefix="points")
    elif kinds <= {"Polygon", "MultiPolygon"}:
        layers = _polygon_layers(frame, column, key_prefix="zones")
    else:
        raise InputError(
            f"the layer holds {', '.join(sorted(kinds))} geometries; maps draw point or polygon "
            "layers (one kind per layer)"
        )
    for layer in layers:
        layer.add_to(m)
    credit = imagery_credit(frame)
    if credit:  # the providers' terms ask for it wherever their images are shown
        m.get_root().html.add_child(  # type: ignore[attr-defined]
            folium.Element(
                "<div class='urbanvis-credit' style='position:fixed;bottom:18px;left:8px;"
                "z-index:1000;background:rgba(255,255,255,.85);padding:2px 6px;"
                f"font:11px sans-serif'>Imagery: {_html_escape(credit)}</div>"
            ),
            name="imagery_credit",
        )
    folium.LayerControl(collapsed=False).add_to(m)
    m.fit_bounds([[south, west], [north, east]])
    if title:
        m.get_root().header.add_child(  # type: ignore[attr-defined]
            folium.Element(f"<title>{_html_escape(title)}</title>"), name="title"
        )
    log.info("mapped %s features in %d layers", f"{len(frame):,}", len(layers))
    return m


CREDITS_SHOWN = 12
"""Distinct imagery credits written out on a map; the rest are counted."""


def imagery_credit(frame) -> str:
    """The distinct ``attribution`` texts of a layer's rows, joined (empty without any)."""
    if "attribution" not in frame.columns:
        return ""
    values = frame["attribution"].dropna().astype(str).str.strip()
    names = sorted({v for v in values if v})
    if len(names) > CREDITS_SHOWN:
        return "; ".join(names[:CREDITS_SHOWN]) + f"; and {len(names) - CREDITS_SHOWN} more"
    return "; ".join(names)


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def _tiles(tiles: str | None, attribution: str | None):
    if tiles is None or str(tiles).strip().lower() in ("", "none"):
        return None
    tiles = str(tiles)
    if _url_holds_secret(tiles):
        raise InputError(
            "the tile URL holds a key or token, which would be written into the HTML for "
            "anyone to read; use a keyless tile server or `tiles` none"
        )
    if "{" in tiles:
        import folium

        if not attribution:
            raise InputError("a tile URL template needs `attribution` (who made the tiles)")
        return folium.TileLayer(tiles=tiles, attr=attribution, name="base map")
    _check_tile_name(tiles)
    return tiles


def check_tiles(tiles: str | None, attribution: str | None = None) -> None:
    """Refuse, before any work, base tiles folium could not use (see :func:`map_from_layer`)."""
    _tiles(tiles, attribution)


_COMMON_TILES = ("OpenStreetMap", "CartoDB positron", "CartoDB dark_matter", "OpenTopoMap")


def _check_tile_name(name: str) -> None:
    """A tile name folium knows (xyzservices' providers), or an error listing some."""
    import difflib

    import xyzservices.providers as xyz

    if name.strip().lower() == "openstreetmap":
        return
    try:
        xyz.query_name(name)
        return
    except ValueError:
        pass

    def key(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())

    known = {key(n): n for n in (*xyz.flatten(), *_COMMON_TILES)}
    close = difflib.get_close_matches(key(name), list(known), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(known[c] for c in close)}? " if close else ""
    raise InputError(
        f"unknown `tiles` {name!r}; {hint}known names include {', '.join(_COMMON_TILES)} "
        f"(any of xyzservices' {len(known):,} providers), or give none (offline), or an XYZ "
        f"URL template with {{z}}/{{x}}/{{y}} and `attribution`"
    )


def check_out_path(path: str | os.PathLike[str], *, param: str = "out") -> Path:
    """Fail, writing nothing, if ``path`` could not be written; return it as a Path.

    ``param`` is the parameter that named the path, for the error message.
    """
    option = f"`{param}`"
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name, e.g. {path}/map.html")
    try:
        writable_ancestor(path.parent)
    except NotADirectoryError as exc:
        raise StudyError(f"cannot write {option} {path}: {exc} is a file, not a folder") from exc
    except OSError as exc:
        raise StudyError(
            f"cannot write {option} {path}: folder {exc.filename or path.parent} is not "
            f"writable ({exc.strerror or type(exc).__name__}); choose another {option}"
        ) from exc
    return path


def _url_holds_secret(url: str) -> bool:
    """Whether a URL template has a query parameter that names a secret (``apikey=``)."""
    from urllib.parse import parse_qsl, urlsplit

    from ._secrets import is_secret_name

    query = urlsplit(url.replace("{", "").replace("}", "")).query
    return any(is_secret_name(name) for name, _ in parse_qsl(query, keep_blank_values=True))


def _secrets_in(text: str) -> list[str]:
    from ._secrets import is_secret_name

    found = []
    for name, value in os.environ.items():
        if is_secret_name(name) and len(value) >= 6 and value in text:
            found.append(name)
    return found


def render_html(m) -> str:
    """The HTML of map ``m``; refuses a page holding a secret from the environment.

    Raises
    ------
    InputError
        The page would contain the value of a secret environment variable (a name with
        KEY, TOKEN, SECRET... in it).
    """
    html = m.get_root().render()
    leaked = _secrets_in(html)
    if leaked:
        raise InputError(
            f"the map would contain the value of {', '.join(sorted(leaked))}; nothing was "
            "written (remove keys from tile URLs and layer columns)"
        )
    return html


def write_map(m, path: str | os.PathLike[str]) -> Path:
    """Write map ``m`` (or HTML from :func:`render_html`) as one self-contained file, atomically."""
    html = m if isinstance(m, str) else render_html(m)
    path = check_out_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
