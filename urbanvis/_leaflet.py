"""Offline Leaflet for folium maps: inlined assets and urbanvis' own compact layers.

folium links Leaflet, jQuery, Bootstrap and Font Awesome from CDNs. urbanvis maps need only
Leaflet, which ships inside the package (``urbanvis/_assets``, from the npm package
``leaflet@1.9.4``), so a map written by urbanvis opens with no network at all.

Layers are drawn by a small script (``_URBANVIS_JS``) from column arrays rather than one
GeoJSON feature per point: a 200,000-point layer stays a few megabytes and draws on a canvas.
After the page has loaded, the script writes how many features each layer put on the map into
``<div id="urbanvis-drawn" data-counts="{...}" data-ms="...">`` (milliseconds from the start
of navigation until every layer was on the map), which tests and benchmarks read back.
"""

from __future__ import annotations

import base64
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from branca.element import Element
from folium.map import Layer
from jinja2 import Template

_ASSETS = "_assets"  # package data of urbanvis (a folder, not a package)

_URBANVIS_JS = r"""
var urbanvis = (function () {
  var registered = [];
  function esc(v) {
    return String(v).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }
  function table(rows) {
    var html = '<table class="uv-popup">';
    for (var i = 0; i < rows.length; i++) {
      if (rows[i][1] === null || rows[i][1] === undefined || rows[i][1] === '') continue;
      html += '<tr><th>' + esc(rows[i][0]) + '</th><td>' + esc(rows[i][1]) + '</td></tr>';
    }
    return html + '</table>';
  }
  function pointPopup(spec, i) {
    var html = '';
    if (spec.thumbs && spec.thumbs[i]) {
      html += '<img class="uv-thumb" alt="capture" src="' + esc(spec.thumbs[i]) + '"><br>';
    }
    var rows = [];
    for (var c = 0; c < spec.fields.length; c++) rows.push([spec.fields[c], spec.values[c][i]]);
    return html + table(rows);
  }
  function legend(spec, map, group) {
    if (!spec.legend) return;
    var control = L.control({position: 'bottomright'});
    control.onAdd = function () {
      var div = L.DomUtil.create('div', 'uv-legend');
      var lg = spec.legend, html = '<b>' + esc(lg.title) + '</b><br>';
      if (lg.gradient) {
        html += '<div class="uv-ramp" style="background:linear-gradient(to right,' +
          lg.gradient.join(',') + ')"></div><div style="display:flex;gap:1em;' +
          'justify-content:space-between"><span>' + esc(lg.low) + '</span><span>' +
          esc(lg.high) + '</span></div>';
      }
      if (lg.items) {
        for (var k = 0; k < lg.items.length; k++) {
          html += '<i style="background:' + lg.items[k][1] + '"></i>' +
            esc(lg.items[k][0]) + '<br>';
        }
      }
      if (lg.note) html += '<div class="uv-note">' + esc(lg.note) + '</div>';
      div.innerHTML = html;
      return div;
    };
    if (map.hasLayer(group)) control.addTo(map);
    group.on('add', function () { control.addTo(map); });
    group.on('remove', function () { control.remove(); });
  }
  function points(spec, map) {
    var group = L.featureGroup();
    var renderer = spec.canvas ? L.canvas({padding: 0.3}) : L.svg();
    var single = typeof spec.color === 'string';
    for (var i = 0; i < spec.lat.length; i++) {
      var fill = single ? spec.color : spec.color[i];
      var m = L.circleMarker([spec.lat[i], spec.lon[i]], {
        renderer: renderer, radius: spec.radius, color: '#222', weight: spec.weight,
        fillColor: fill, fillOpacity: 0.9, className: 'uv-' + spec.key
      });
      m._uv = i;
      group.addLayer(m);
    }
    group.on('click', function (e) {
      L.popup({maxWidth: 340}).setLatLng(e.layer.getLatLng())
        .setContent(pointPopup(spec, e.layer._uv)).openOn(map);
    });
    registered.push({key: spec.key, group: group, map: map});
    legend(spec, map, group);
    return group;
  }
  function polygons(spec, map) {
    var group = L.geoJSON(spec.geojson, {
      style: function (f) {
        return {className: 'uv-' + spec.key, color: '#333', weight: 1,
                fillColor: f.properties._c, fillOpacity: 0.75};
      },
      onEachFeature: function (f, layer) {
        layer.bindPopup(function () { return table(f.properties._p); });
      }
    });
    registered.push({key: spec.key, group: group, map: map});
    legend(spec, map, group);
    return group;
  }
  function report() {
    var counts = {};
    for (var r = 0; r < registered.length; r++) {
      var item = registered[r], n = 0;
      if (item.map.hasLayer(item.group)) {
        item.group.eachLayer(function (l) { if (item.map.hasLayer(l)) n += 1; });
      }
      counts[item.key] = n;
    }
    var div = document.getElementById('urbanvis-drawn');
    if (!div) {
      div = document.createElement('div');
      div.id = 'urbanvis-drawn';
      div.style.display = 'none';
      document.body.appendChild(div);
    }
    div.setAttribute('data-counts', JSON.stringify(counts));
    div.setAttribute('data-ms', String(Math.round(performance.now())));
  }
  window.addEventListener('load', function () { setTimeout(report, 0); });
  return {points: points, polygons: polygons, report: report};
})();
"""

_URBANVIS_CSS = """
.uv-legend { background: rgba(255,255,255,0.9); padding: 6px 8px; font: 12px sans-serif;
             border-radius: 4px; box-shadow: 0 0 4px rgba(0,0,0,0.3); min-width: 140px; }
.uv-legend i { width: 12px; height: 12px; float: left; margin-right: 6px; opacity: 0.9; }
.uv-ramp { height: 10px; margin: 4px 0 2px 0; }
.uv-note { color: #555; margin-top: 2px; }
table.uv-popup th { text-align: left; padding-right: 8px; font-weight: 600; }
img.uv-thumb { max-width: 160px; max-height: 160px; }
"""


@cache
def _asset_text(name: str) -> str:
    return resources.files("urbanvis").joinpath(_ASSETS, name).read_text(encoding="utf-8")


@cache
def _leaflet_css() -> str:
    """leaflet.css with its image references turned into data: URIs (no file lookups)."""

    def inline(match: re.Match[str]) -> str:
        data = resources.files("urbanvis").joinpath(_ASSETS, match.group(1)).read_bytes()
        return f"url(data:image/png;base64,{base64.b64encode(data).decode('ascii')})"

    return re.sub(r"url\((images/[\w.-]+\.png)\)", inline, _asset_text("leaflet.css"))


def _script(text: str) -> str:
    return "<script>" + text.replace("</script", "<\\/script") + "</script>"


def make_offline(m) -> None:
    """Drop folium's CDN links from map ``m`` and inline Leaflet and urbanvis' helpers."""
    m.default_js = []
    m.default_css = []
    header = m.get_root().header
    header.add_child(Element(f"<style>{_leaflet_css()}\n{_URBANVIS_CSS}</style>"), name="uv_css")
    header.add_child(Element(_script(_asset_text("leaflet.js"))), name="leaflet_js")
    header.add_child(Element(_script(_URBANVIS_JS)), name="urbanvis_js")


def to_json(value: Any) -> str:
    """JSON safe to place inside a <script> element."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


class DataLayer(Layer):
    """A folium layer drawn by urbanvis' script from a JSON spec (points or polygons)."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = urbanvis.{{ this.kind }}(
            {{ this.payload }}, {{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, spec: dict[str, Any], *, kind: str, name: str, show: bool = True):
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "UrbanvisLayer"
        self.kind = kind
        self.payload = to_json(spec)
