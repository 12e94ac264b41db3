"""The Evaluate algorithms in the real QGIS, on tiny simulated sets (the torch ones through
the urbanvis command: this Python has no torch)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
from conftest import Recorder, run

TINY = {"MODELS": "vit_test_patch8", "RANDOM_INIT": True, "DEVICE": "cpu", "WORKERS": 0}


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(autouse=True)
def _registered(provider) -> None:
    """Every test here runs the provider's algorithms."""


@pytest.fixture(scope="session")
def command(urbanvis_exe) -> str:
    from qgis.core import QgsSettings

    QgsSettings().setValue("urbanvis/executable", urbanvis_exe)
    return urbanvis_exe


@pytest.fixture(scope="session")
def vpr_set(tmp_path_factory) -> Path:
    from urbanvis import stages

    folder = tmp_path_factory.mktemp("eval") / "vpr"
    stages.simulate(vpr_set=folder, places=6, size=32)
    return folder


@pytest.fixture(scope="session")
def safety_set(tmp_path_factory) -> Path:
    from urbanvis import stages

    folder = tmp_path_factory.mktemp("eval") / "pp"
    stages.simulate(safety_set=folder, images=40, size=32)
    return folder


@pytest.fixture(scope="session")
def checkpoints(urbanvis_exe, tmp_path_factory) -> list[str]:
    """Two timm-style checkpoints of the test ViT (written by the venv that has torch)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    python = Path(urbanvis_exe).parent / "python"
    script = (
        "import sys, torch\n"
        "from urbanvis.engine.encoders import create_encoder\n"
        "for i, path in enumerate(sys.argv[1:]):\n"
        "    torch.manual_seed(i)\n"
        "    model = create_encoder('vit_test_patch8')\n"
        "    torch.save({'arch': 'vit_test_patch8', 'model': model.state_dict()}, path)\n"
    )
    paths = [str(folder / "first.pth"), str(folder / "second.pth")]
    subprocess.run([str(python), "-c", script, *paths], check=True, timeout=120)
    return paths


def test_place_recognition_compares_several_encoders(command, vpr_set, checkpoints, tmp_path):
    table = tmp_path / "vpr.csv"
    feedback = Recorder()
    out = run(
        "evaluate_place_recognition",
        {
            "DATASET": str(vpr_set),
            "CHECKPOINTS": checkpoints,
            **TINY,
            "THUMBNAIL": True,
            "OUT": str(table),
        },
        feedback,
    )
    assert out["OUT"] == str(table)
    models = [r["model"] for r in _rows(table)]
    assert [m.rsplit("/", 1)[-1] for m in models[:2]] == ["first", "second"]  # folder/file
    assert models[2:] == ["vit_test_patch8 (random init)", "thumbnail 16x16"]
    (line,) = feedback.commands
    assert " eval vpr " in line and line.count("--checkpoint ") == 2
    assert "--model vit_test_patch8 --random-init" in line and "--study" not in line
    assert max(feedback.progress) == 100
    assert "R@1" in out["MESSAGE"]


def test_place_recognition_by_patch_tokens(command, vpr_set, tmp_path):
    table = tmp_path / "vpr.csv"
    feedback = Recorder()
    run(
        "evaluate_place_recognition",
        {"DATASET": str(vpr_set), **TINY, "THUMBNAIL": True, "DESCRIPTOR": 1, "OUT": str(table)},
        feedback,
    )
    models = [r["model"] for r in _rows(table)]
    assert models == ["vit_test_patch8 (random init) (tokens)", "thumbnail 16x16 (tokens)"]
    (line,) = feedback.commands
    assert "--descriptor tokens" in line


def test_safety_perception_writes_its_table(command, safety_set, tmp_path):
    table = tmp_path / "safety.csv"
    out = run(
        "evaluate_safety_perception",
        {"PP2": str(safety_set / "votes.csv"), **TINY, "EPOCHS": 3, "OUT": str(table)},
    )
    assert out["OUT"] == str(table)
    (row,) = _rows(table)
    assert row["model"] == "vit_test_patch8 (random init)"
    assert {"accuracy", "auc", "n_test"} <= set(row)
    assert table.with_suffix(".md").is_file()


def test_attention_returns_its_table_and_plots(command, vpr_set, tmp_path):
    folder = tmp_path / "attention"
    out = run(
        "evaluate_attention",
        {
            "IMAGES": str(vpr_set / "queries"),
            **TINY,
            "QUERY_PATCHES": [0, 0, 3, 3],
            "MAX_IMAGES": 4,
            "OUT": str(folder),
        },
    )
    assert out["OUT"] == str(folder) and out["TABLE"] == str(folder / "attention.csv")
    assert {r["model"] for r in _rows(out["TABLE"])} == {"vit_test_patch8 (random init)"}
    (maps,) = out["MAPS"].split(";")
    for png in (out["DISTANCE_PLOT"], out["FOURIER_PLOT"], maps):
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert Path(maps).name == "attention_maps_vit_test_patch8_random_init.png"


def test_socioeconomic_prediction_scores_the_studys_models(predicted, tmp_path):
    table = tmp_path / "r2.csv"
    out = run(
        "evaluate_socioeconomic_prediction",
        {
            "STUDY": str(predicted),
            "ZONES": f"{predicted / 'study.gpkg'}|layername=zones_sim",
            "ID_FIELD": "zone_id",
            "INDICATORS": str(predicted / "truth" / "indicators.csv"),
            "OUT": str(table),
        },
    )
    assert out["OUT"] == str(table)
    rows = _rows(table)
    assert rows and any("random-init:vit_test_patch8" in c for c in rows[0])


def _one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message.strip() and "Traceback" not in message, message
    return message


def test_no_encoder_is_one_line_worded_with_labels(command, vpr_set, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as info:
        run(
            "evaluate_place_recognition",
            {"DATASET": str(vpr_set), "OUT": str(tmp_path / "v.csv")},
        )
    message = _one_line(info)
    assert "'Checkpoints'" in message and "'Model names (random weights)'" in message, message
    assert "'Random weights'" in message and "--" not in message


def test_an_unknown_model_id_is_one_line(predicted, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as info:
        run(
            "evaluate_socioeconomic_prediction",
            {
                "STUDY": str(predicted),
                "MODELS": "nope",
                "ZONES": f"{predicted / 'study.gpkg'}|layername=zones_sim",
                "ID_FIELD": "zone_id",
                "INDICATORS": str(predicted / "truth" / "indicators.csv"),
                "OUT": str(tmp_path / "r2.csv"),
            },
        )
    message = _one_line(info)
    assert message.startswith("'Embedding model ids' nope has no embeddings"), message


def test_a_bad_query_patch_is_one_line(vpr_set, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as info:
        run(
            "evaluate_attention",
            {
                "IMAGES": str(vpr_set / "queries"),
                **TINY,
                "QUERY_PATCHES": [0, "x"],
                "OUT": str(tmp_path / "a"),
            },
        )
    assert "'Query patches' takes whole numbers" in _one_line(info)
