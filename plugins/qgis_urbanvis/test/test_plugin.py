"""The urbanvis Processing plugin in the real QGIS (headless): one test per promise."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BBOX_4326, PLUGINS, SIM, Recorder, open_layer, run

ALGORITHMS = {
    "sample_road_points": "Sample road points",
    "harvest_street_views": "Harvest street views",
    "build_contrastive_pairs": "Build contrastive pairs",
    "pretrain": "Pretrain",
    "embed": "Embed",
    "export_embeddings": "Export embeddings (GeoParquet)",
    "predict_indicators": "Predict indicators",
    "web_map": "Web map / GeoTIFF",
    "evaluate_place_recognition": "Evaluate place recognition",
    "evaluate_safety_perception": "Evaluate safety perception",
    "evaluate_socioeconomic_prediction": "Evaluate socioeconomic prediction",
    "evaluate_attention": "Evaluate attention",
}


def test_provider_lists_one_algorithm_per_stage(provider):
    found = {a.name(): a.displayName() for a in provider.algorithms()}
    assert found == ALGORITHMS
    groups = {a.group() for a in provider.algorithms()}
    assert groups >= {"1 Sample", "2 Harvest", "5 Predict", "7 Evaluate"}
    spacing = provider.algorithm("sample_road_points").parameterDefinition("SPACING")
    assert spacing.defaultValue() == 15.0 and "15" in spacing.help()
    for alg in provider.algorithms():  # the CLI's help, its --flags named by QGIS labels
        for definition in alg.parameterDefinitions():
            assert "--" not in definition.help(), (alg.name(), definition.help())
    seed = provider.algorithm("evaluate_safety_perception").parameterDefinition("SEED")
    assert seed.defaultValue() == 0 and "'Random weights'" in seed.help()


def test_sample_gives_the_libraries_points(sampled):
    from urbanvis import stages
    from urbanvis.demo import helsinki_pbf

    layer = open_layer(sampled, "points")
    expected = stages.sample(
        sampled.parent / "ref", osm=helsinki_pbf(), bbox="24.935,60.165,24.945,60.170"
    ).outputs["points"]
    assert layer.featureCount() == expected > 20
    assert {"point_id", "bearing"} <= set(layer.fields().names())
    assert layer.crs().authid() == "EPSG:4326"


def test_sample_from_a_polygonopen_layer(provider, tmp_path):
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    from urbanvis.demo import helsinki_pbf

    area = QgsVectorLayer("Polygon?crs=EPSG:4326", "area", "memory")
    f = QgsFeature()
    f.setGeometry(
        QgsGeometry.fromWkt(
            "POLYGON((24.935 60.165, 24.945 60.165, 24.945 60.170, 24.935 60.170, 24.935 60.165))"
        )
    )
    area.dataProvider().addFeatures([f])
    out = run(
        "sample_road_points",
        {"STUDY": str(tmp_path / "s"), "OSM": str(helsinki_pbf()), "AREA": area},
    )
    assert "points" in out["POINTS"] and open_layer(tmp_path / "s", "points").featureCount() > 20


def test_harvest_simulator(harvested):
    captures = open_layer(harvested, "captures")
    points = open_layer(harvested, "points").featureCount()
    assert captures.featureCount() == points * 2 * 2


def test_embed_runs_through_the_urbanvis_command(embedded):
    layer = open_layer(embedded, "embeddings")
    assert layer.featureCount() == open_layer(embedded, "captures").featureCount()
    assert {"pc1", "pc2", "pc3"} <= set(layer.fields().names())


def test_export_embeddings_writes_geoparquet_that_reads_back(embedded, tmp_path):
    from qgis.core import QgsProcessingException, QgsVectorLayer

    from urbanvis.vectors import read_embeddings

    out = run("export_embeddings", {"STUDY": str(embedded), "OUT": str(tmp_path / "e.parquet")})
    assert out["OUT"] == str(tmp_path / "e.parquet")
    rows, vectors = read_embeddings(out["OUT"])
    assert len(rows) == len(vectors) == open_layer(embedded, "embeddings").featureCount()
    assert rows.crs.to_epsg() == 4326
    default = run("export_embeddings", {"STUDY": str(embedded)})["OUT"]
    assert Path(default).parent == embedded / "exports" and Path(default).is_file()
    from osgeo import ogr

    if ogr.GetDriverByName("Parquet") is not None:  # GDAL >= 3.5 built with Arrow
        layer = QgsVectorLayer(default, "export", "ogr")
        assert layer.isValid() and layer.featureCount() == len(rows)
        assert layer.crs().authid() == "EPSG:4326"
    with pytest.raises(QgsProcessingException) as info:
        run("export_embeddings", {"STUDY": str(embedded), "MODEL": "nope"})
    assert "'Model id'" in str(info.value) and "nope" in str(info.value)


def test_predict_writes_a_styled_choropleth(predicted):
    from qgis.core import QgsGraduatedSymbolRenderer, QgsVectorLayer

    layer = QgsVectorLayer(
        f"{predicted / 'study.gpkg'}|layername=predictions_blockgroup", "p", "ogr"
    )
    assert layer.isValid() and layer.featureCount() > 0
    renderer = layer.renderer()
    assert isinstance(renderer, QgsGraduatedSymbolRenderer), renderer.type()
    assert renderer.classAttribute() in layer.fields().names()
    assert renderer.classAttribute().endswith("_pred")
    assert len(renderer.ranges()) >= 3
    assert len(renderer.legendSymbolItems()) == len(renderer.ranges())
    captures = QgsVectorLayer(f"{predicted / 'study.gpkg'}|layername=captures", "c", "ogr")
    assert isinstance(captures.renderer(), QgsGraduatedSymbolRenderer)
    assert "captured_at" in captures.renderer().classAttribute()


def _load_style(layer, name: str) -> None:
    """Switch ``layer`` to its style ``name`` stored in the GeoPackage."""
    from qgis.PyQt.QtXml import QDomDocument

    _, ids, names, _, _ = layer.listStylesInDatabase()
    qml, _ = layer.getStyleFromDatabase(ids[names.index(name)])
    doc = QDomDocument()
    assert doc.setContent(qml)
    ok, error = layer.importNamedStyle(doc)
    assert ok, error


def test_predictions_offer_observed_predicted_and_residual(predicted):
    from qgis.core import QgsGraduatedSymbolRenderer, QgsVectorLayer

    layer = QgsVectorLayer(
        f"{predicted / 'study.gpkg'}|layername=predictions_blockgroup", "p", "ogr"
    )
    indicator = layer.renderer().classAttribute().removesuffix("_pred")
    related, _, names, _, _ = layer.listStylesInDatabase()
    trio = [f"{indicator} predicted", f"{indicator} observed", f"{indicator} residual"]
    assert set(trio) <= set(names[:related]), names
    predicted_ranges = [(r.lowerValue(), r.upperValue()) for r in layer.renderer().ranges()]
    _load_style(layer, f"{indicator} observed")
    assert layer.renderer().classAttribute() == indicator
    assert [(r.lowerValue(), r.upperValue()) for r in layer.renderer().ranges()] == (
        predicted_ranges
    )
    _load_style(layer, f"{indicator} residual")
    renderer = layer.renderer()
    assert isinstance(renderer, QgsGraduatedSymbolRenderer)
    assert renderer.classAttribute() == f'"{indicator}" - "{indicator}_pred"'
    ranges = renderer.ranges()  # held: each range owns its symbol
    lows = [r.lowerValue() for r in ranges]
    assert lows[0] == -ranges[-1].upperValue() and 0.0 in lows
    blue, red = ranges[0].symbol().color(), ranges[-1].symbol().color()
    assert blue.blue() > blue.red() and red.red() > red.blue()
    residuals = [f[indicator] - f[f"{indicator}_pred"] for f in layer.getFeatures()]
    residuals = [r for r in residuals if r == r]  # NULL/NaN: unlabelled zones
    assert residuals and all(renderer.rangeForValue(r) is not None for r in residuals)


def test_embeddings_are_coloured_by_their_principal_components(embedded, tmp_path):
    from qgis.core import (
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsSingleSymbolRenderer,
        QgsSymbolLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    layer = open_layer(embedded, "embeddings")
    renderer = layer.renderer()
    assert isinstance(renderer, QgsSingleSymbolRenderer), renderer.type()
    prop = (
        renderer.symbol()
        .symbolLayer(0)
        .dataDefinedProperties()
        .property(QgsSymbolLayer.PropertyFillColor)
    )
    assert prop.isActive() and all(pc in prop.expressionString() for pc in ("pc1", "pc2", "pc3"))
    assert layer.listStylesInDatabase()[2][0] == "pc1-pc3 as RGB"
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent().buffered(0.0005))
    settings.setOutputSize(QSize(300, 300))
    settings.setBackgroundColor(QColor(255, 255, 255))
    settings.setFlag(QgsMapSettings.Antialiasing, False)  # no blended edge colours
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    colours = {image.pixel(x, y) & 0xFFFFFF for x in range(300) for y in range(300)}
    colours -= {0xFFFFFF, 0x232323, 0x969696}  # background, outlines, the NULL colour
    assert len(colours) > 20, f"{len(colours)} colours: not coloured by pc1..pc3"


def test_screenshot_of_the_predictions_is_a_choropleth(predicted, tmp_path):
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsVectorLayer
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    layer = QgsVectorLayer(
        f"{predicted / 'study.gpkg'}|layername=predictions_blockgroup", "p", "ogr"
    )
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(400, 400))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    png = tmp_path / "predictions.png"
    assert image.save(str(png), "PNG") and png.stat().st_size > 0
    colours = {image.pixel(x, y) for x in range(0, 400, 4) for y in range(0, 400, 4)}
    colours.discard(QColor(255, 255, 255).rgb())
    fills = {c for c in colours if (c & 0xFFFFFF) not in (0x232323,)}
    assert len(fills) > 1, f"{len(fills)} colours: blank or one-colour image"
    out = os.environ.get("URBANVIS_SCREENSHOT_DIR")
    if out:
        image.save(str(Path(out) / "predictions.png"), "PNG")


def test_cancel_stops_a_harvest_and_keeps_finished_work(sampled, tmp_path):
    from urbanvis import stages
    from urbanvis.demo import helsinki_pbf

    study = tmp_path / "cancel"
    stages.sample(study, osm=helsinki_pbf(), bbox="24.935,60.165,24.945,60.170")
    total = open_layer(study, "points").featureCount()
    feedback = Recorder(cancel_at=30)
    run(
        "harvest_street_views",
        {
            "STUDY": str(study),
            "PROVIDER": SIM,
            "CAPTURES_PER_POINT": 1,
            "HEADINGS": "0",
            "SIZE": 32,
            "BATCH_SIZE": 8,
        },
        feedback,
    )
    assert feedback.isCanceled()
    kept = open_layer(study, "captures").featureCount()
    assert 0 < kept < total
    run(
        "harvest_street_views",
        {
            "STUDY": str(study),
            "PROVIDER": SIM,
            "CAPTURES_PER_POINT": 1,
            "HEADINGS": "0",
            "SIZE": 32,
        },
    )
    assert open_layer(study, "captures").featureCount() == total


def test_a_paid_harvest_shows_its_cost_before_it_starts(sampled, tmp_path):
    """In QGIS's own process the cost line reaches the log panel, worded with the labels."""
    import sys

    from urbanvis.providers import PROVIDERS

    fake = Path(__file__).resolve().parents[3] / "tests" / "fakes" / "streetview.py"
    server = subprocess.Popen(
        [sys.executable, str(fake), "--port", "0", "--keys", "plugin-key"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http"), url
        key = tmp_path / "gsv.key"
        key.write_text("plugin-key\n")
        study = tmp_path / "paid"
        study.mkdir()
        for name in ("study.gpkg", "study.toml"):
            (study / name).write_bytes((sampled / name).read_bytes())
        feedback = Recorder()
        run(
            "harvest_street_views",
            {
                "STUDY": str(study),
                "PROVIDER": list(PROVIDERS).index("gsv"),
                "HEADINGS": "0",
                "SIZE": 32,
                "LIMIT": 3,
                "KEY_FILE": str(key),
                "ENDPOINT": url,
                "PRICE_PER_1000": 7.0,
            },
            feedback,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    [line] = [i for i in feedback.infos if "estimated cost" in i]
    assert "image requests" in line and "USD 7.00 per 1,000" in line
    assert "`price_per_1000`" not in line and "Price" in line  # the parameter's QGIS label
    assert key.read_text().strip() not in " ".join(feedback.infos)  # never the key
    assert open_layer(study, "captures").featureCount() > 0


def _running(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if any(marker.encode() in a for a in args):
            found.append(" ".join(a.decode(errors="replace") for a in args))
    return found


def test_cancel_ends_an_external_harvest_and_the_rerun_resumes(urbanvis_exe, tmp_path):
    from qgis.core import QgsSettings

    from urbanvis import stages
    from urbanvis.demo import helsinki_pbf

    QgsSettings().setValue("urbanvis/executable", urbanvis_exe)
    study = tmp_path / "external"
    stages.sample(study, osm=helsinki_pbf(), bbox="24.935,60.165,24.945,60.170")
    total = open_layer(study, "points").featureCount()
    assert total > 200  # some seconds of harvesting: the cancel lands mid-run
    params = {
        "STUDY": str(study),
        "PROVIDER": SIM,
        "CAPTURES_PER_POINT": 1,
        "HEADINGS": "0",
        "SIZE": 32,
        "BATCH_SIZE": 8,
        "EXTERNAL": True,
    }
    feedback = Recorder(cancel_at=30)
    out = run("harvest_street_views", params, feedback)
    assert feedback.isCanceled() and any(" harvest " in c for c in feedback.commands)
    assert max(feedback.progress) < 100
    assert not _running(str(study)), "the urbanvis command outlived the cancel"
    kept = open_layer(study, "captures").featureCount()
    assert 0 < kept < total, (kept, total)
    assert out["CAPTURES"].endswith("layername=captures")
    feedback = Recorder()
    run("harvest_street_views", params, feedback)
    assert open_layer(study, "captures").featureCount() == total
    first = min(p for p in feedback.progress if p > 0)
    assert first >= 100 * kept / total - 1, (first, kept)  # resumed, not restarted


def test_cancel_kills_the_urbanvis_command_and_keeps_its_batches(embedded, tmp_path):
    import shutil

    study = tmp_path / "killed"
    shutil.copytree(embedded, study, ignore=shutil.ignore_patterns("embeddings", "checkpoints"))
    params = {
        "STUDY": str(study),
        "MODEL": "vit_test_patch8",
        "RANDOM_INIT": True,
        "DEVICE": "cpu",
        "WORKERS": 0,
        "BATCH_SIZE": 4,
        "SEED": 7,
    }
    feedback = Recorder(cancel_at=30)
    started = time.monotonic()
    run("embed", params, feedback)
    assert feedback.isCanceled() and time.monotonic() - started < 120
    assert max(feedback.progress) < 100
    kept = list((study / "embeddings").rglob("*.parquet"))
    assert kept, "the finished batches were not kept"
    feedback = Recorder()
    run("embed", params, feedback)
    assert min(p for p in feedback.progress if p > 0) >= 25  # resumed, not restarted


def test_a_missing_field_gives_one_line_not_a_traceback(predicted):
    from qgis.core import QgsProcessingException

    zones = f"{predicted / 'study.gpkg'}|layername=zones_sim"
    with pytest.raises(QgsProcessingException) as info:
        run(
            "predict_indicators",
            {
                "STUDY": str(predicted),
                "ZONES": zones,
                "ID_FIELD": "nope",
                "INDICATORS": str(predicted / "truth" / "indicators.csv"),
            },
        )
    message = str(info.value)
    assert "\n" not in message.strip() and "Traceback" not in message
    assert "'Zone id field'" in message and "`" not in message, message


def test_an_invalid_layer_gives_one_line(sampled, tmp_path):
    from qgis.core import QgsProcessingException

    bad = tmp_path / "bad.gpkg"
    bad.write_text("not a geopackage")
    with pytest.raises(QgsProcessingException) as info:
        run("sample_road_points", {"STUDY": str(tmp_path / "s"), "AREA": str(bad)})
    # QGIS's own check: its heading line, then one line naming the parameter
    lines = str(info.value).strip().splitlines()
    assert lines[0] == "Unable to execute algorithm" and len(lines) == 2, lines
    assert "AREA" in lines[1] and "Traceback" not in str(info.value)


def test_a_library_error_is_worded_with_labels(sampled):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as info:
        run("embed", {"STUDY": str(sampled), "RANDOM_INIT": True})
    message = str(info.value)
    assert "'Checkpoint'" in message and "'Model name'" in message, message


def test_the_commands_error_line_is_shown(sampled, urbanvis_exe, tmp_path):
    from qgis.core import QgsProcessingException, QgsSettings

    QgsSettings().setValue("urbanvis/executable", urbanvis_exe)
    with pytest.raises(QgsProcessingException) as info:
        run("embed", {"STUDY": str(sampled), "CHECKPOINT": str(tmp_path / "missing.pth.tar")})
    message = str(info.value)
    assert "\n" not in message.strip() and "missing.pth.tar" in message, message


def test_qgis_process_runs_the_sample_algorithm(tmp_path, urbanvis_exe):
    """qgis_process with the plugin enabled; the stage runs as the urbanvis command (in
    qgis_process.bin, shapely's bundled GEOS clashes with QGIS's: see the README)."""
    import sys

    from urbanvis.demo import helsinki_pbf

    env = dict(
        os.environ,
        QGIS_PLUGINPATH=str(PLUGINS),
        QT_QPA_PLATFORM="offscreen",
        URBANVIS_VENV=sys.prefix,
        HOME=str(tmp_path),
        XDG_RUNTIME_DIR=str(tmp_path),
        URBANVIS_QGIS_RUN_MODE="external",
        URBANVIS_EXE=urbanvis_exe,
    )
    exe = (
        "qgis_process.bin"
        if subprocess.run(["which", "qgis_process.bin"], capture_output=True).returncode == 0
        else "qgis_process"
    )
    enabled = subprocess.run(
        [exe, "plugins", "enable", "qgis_urbanvis"], env=env, capture_output=True, text=True
    )
    assert enabled.returncode == 0 or "already enabled" in enabled.stderr, enabled.stderr
    done = subprocess.run(
        [
            exe,
            "run",
            "urbanvis:sample_road_points",
            "--",
            f"STUDY={tmp_path / 'cli'}",
            f"OSM={helsinki_pbf()}",
            f"BBOX={BBOX_4326}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "POINTS" in done.stdout
    assert open_layer(tmp_path / "cli", "points").featureCount() > 20


def test_build_zip_holds_the_plugin_with_the_package_version(tmp_path):
    import importlib.util
    import zipfile

    from urbanvis import __version__

    spec = importlib.util.spec_from_file_location("build_zip", PLUGINS / "build_zip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target = module.build(tmp_path)
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
        metadata = zf.read("qgis_urbanvis/metadata.txt").decode()
    assert "qgis_urbanvis/__init__.py" in names and not any("/test/" in n for n in names)
    assert f"version={__version__}" in metadata and "qgisMinimumVersion=3.22" in metadata


def test_pairs_pretrain_and_map(embedded, urbanvis_exe, tmp_path):
    """The other stages: pairs and a web map in-process, pretrain through the command."""
    from qgis.core import QgsRasterLayer, QgsSettings

    QgsSettings().setValue("urbanvis/executable", urbanvis_exe)
    out = run("build_contrastive_pairs", {"STUDY": str(embedded), "STRATEGY": 1, "MAX_PAIRS": 64})
    assert out["MESSAGE"] and (embedded / "pairs" / "temporal.parquet").is_file()
    feedback = Recorder()
    out = run(
        "pretrain",
        {
            "STUDY": str(embedded),
            "ARCH": "vit_test_patch8",
            "EPOCHS": 1,
            "BATCH_SIZE": 16,
            "IMAGE_SIZE": 32,
            "WORKERS": 0,
            "DEVICE": "cpu",
            "DIM": 16,
            "MLP_DIM": 64,
            "SAVE_EVERY": 1,
            "PHOTOMETRIC": 0.0,
            "CROP_MIN": 0.5,
            "LEARN_PATCH": True,
        },
        feedback,
    )
    assert list((embedded / "checkpoints").rglob("checkpoint_*.pth.tar"))
    assert feedback.progress and max(feedback.progress) == 100
    (line,) = feedback.commands  # the eased recipe reaches the command
    assert "--photometric 0.0" in line and "--crop-min 0.5" in line and "--learn-patch" in line
    html, tif = tmp_path / "map.html", tmp_path / "pc1.tif"
    out = run(
        "web_map",
        {
            "STUDY": str(embedded),
            "LAYER": "embeddings",
            "COLUMN": "pc1",
            "OUT": str(html),
            "RASTER": str(tif),
        },
    )
    assert html.stat().st_size > 0 and out["RASTER"] == str(tif)
    assert QgsRasterLayer(str(tif), "pc1").isValid()
