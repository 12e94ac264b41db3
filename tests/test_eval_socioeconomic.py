"""eval socioeconomic: several embedding models scored side by side like ``predict``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest

from urbanvis import stages as uv

from .conftest import invoke, make_simulated_study


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> dict:
    """A simulated study embedded by two random-init encoders, hex zones with the city's
    true indicators (groundtruth.indicators_from_zones) and their topics beside them."""
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    from urbanvis.indicators import TOPICS_FILE, topics_table
    from urbanvis.simulate.city import City
    from urbanvis.simulate.groundtruth import TOPICS, indicators_from_zones
    from urbanvis.vectors import embedding_models, read_embeddings
    from urbanvis.zones import zones_from_grid

    root = tmp_path_factory.mktemp("socio")
    study = make_simulated_study(root / "study")
    for seed in (1, 2):
        uv.embed(study, model="vit_test_patch8", random_init=True, seed=seed, image_size=32,
                 workers=0, device="cpu")  # fmt: skip
    st = uv.open_study(study)
    models = embedding_models(st)
    rows, _ = read_embeddings(st, model=models[0])
    grid = zones_from_grid(rows, kind="hex", cell_size=40.0)
    zones_path = root / "zones.gpkg"
    pyogrio.write_dataframe(grid, zones_path)
    table = indicators_from_zones(City(seed=0), grid, st.read_layer("points"))
    table = table.dropna()
    indicators = root / "truth" / "indicators.csv"
    indicators.parent.mkdir()
    table.to_csv(indicators, index=False)
    topics_table(TOPICS).to_csv(indicators.with_name(TOPICS_FILE), index=False)
    return {"study": study, "models": models, "zones": zones_path, "indicators": indicators}


def _args(base) -> dict:
    return dict(zones=base["zones"], id_field="zone_id", indicators=base["indicators"],
                level="hex", protocol="kfold5", seed=3)  # fmt: skip


@pytest.mark.slow
def test_each_column_equals_predict_alone(two_models, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(two_models["study"], study)
    layers_before = set(pyogrio.list_layers(study / "study.gpkg")[:, 0])
    result = uv.eval_socioeconomic(study, **_args(two_models))
    table = pd.read_csv(result.files["table"])
    assert list(table.columns) == ["topic", "indicator", *two_models["models"]]
    assert table["topic"].iloc[-1] == "Overall"
    # an evaluation writes no layer and no model file
    assert set(pyogrio.list_layers(study / "study.gpkg")[:, 0]) == layers_before
    assert not (study / "models").exists() or not any((study / "models").iterdir())
    assert result.files["table"] == study / "reports" / "eval_socioeconomic.csv"
    assert result.files["markdown"].is_file()
    for model in two_models["models"]:
        alone = uv.predict(study, model=model, **_args(two_models)).details["scores"]
        got = table[model].to_numpy()[:-1]
        np.testing.assert_allclose(got, alone["r2"].to_numpy(float), rtol=0, atol=1e-9)
        indicator_rows = (alone["indicator"] != "").to_numpy()
        assert table[model].iloc[-1] == pytest.approx(
            float(np.nanmean(alone["r2"].to_numpy()[indicator_rows])), abs=1e-12
        )
    # the two encoders differ, so their columns do
    a, b = two_models["models"]
    assert not np.allclose(table[a], table[b])


@pytest.mark.slow
def test_cli_one_model_and_out(two_models, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(two_models["study"], study)
    out = tmp_path / "t2.csv"
    model = two_models["models"][1]
    result = invoke(
        "eval", "socioeconomic", "--study", str(study), "--zones", str(two_models["zones"]),
        "--id-field", "zone_id", "--indicators", str(two_models["indicators"]),
        "--level", "hex", "--model", model, "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["topic", "indicator", model]
    assert set(table["topic"]) >= {"Crime", "Health", "Poverty", "Transport", "Overall"}
    assert out.with_suffix(".md").is_file()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--out", "table.txt"), "--out"),
        (("--protocol", "holdout", "--min-images", "0"), "--min-images"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(points_study, tmp_path, extra, needle):
    result = invoke("eval", "socioeconomic", "--study", str(points_study),
                    "--indicators", str(tmp_path / "x.csv"), *extra)  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not (points_study / "reports" / "eval_socioeconomic.csv").exists()


@pytest.mark.slow
def test_an_unknown_model_lists_the_studys(two_models, tmp_path):
    result = invoke(
        "eval", "socioeconomic", "--study", str(two_models["study"]),
        "--zones", str(two_models["zones"]), "--id-field", "zone_id",
        "--indicators", str(two_models["indicators"]), "--level", "hex", "--model", "nope",
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--model nope has no embeddings" in lines[0], result.stderr
    assert two_models["models"][0] in lines[0]
    assert not (two_models["study"] / "reports" / "eval_socioeconomic.csv").exists()


def test_an_unknown_protocol_is_named(points_study, tmp_path):
    from urbanvis._errors import InputError

    with pytest.raises(InputError, match="unknown protocol .loo.") as info:
        uv.eval_socioeconomic(points_study, indicators=tmp_path / "x.csv", protocol="loo")
    assert info.value.param == "protocol"


def test_a_study_without_embeddings_says_to_embed(points_study, tmp_path):
    result = invoke("eval", "socioeconomic", "--study", str(points_study),
                    "--indicators", str(tmp_path / "x.csv"))  # fmt: skip
    assert result.returncode == 2
    assert "urbanvis embed" in result.stderr
    assert not Path(points_study / "reports" / "eval_socioeconomic.csv").exists()
