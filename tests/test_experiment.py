"""urbanvis experiment: the paper's experiment end to end on a tiny synthetic study."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from urbanvis import stages
from urbanvis._errors import InputError
from urbanvis.experiment import (
    BASELINES,
    PRESETS,
    STRATEGIES,
    _verdicts,
    chance_loss,
    curve_split,
    learning_text,
    preset,
    spread,
    verdict_text,
)

from .conftest import HELSINKI_BBOX, invoke

TINY = dict(
    arch="vit_test_patch8", image_size=32, render_size=32, epochs=1, max_pairs=256,
    batch_size=32, captures_per_point=2, headings=(0.0,), vpr_places=24, safety_images=60,
    attention_images=4, points_per_zone=20,
)  # fmt: skip


def test_spread_is_one_for_even_vectors_and_zero_for_collapse():
    rng = np.random.default_rng(0)
    assert spread(rng.normal(size=(20000, 64))) == pytest.approx(1.0, abs=0.02)
    collapsed = np.tile(rng.normal(size=(1, 64)), (500, 1)) + 1e-9 * rng.normal(size=(500, 64))
    assert spread(collapsed) < 1e-6
    # vectors huddled around one direction (a shared offset 10x the noise): in between
    huddled = 10 * rng.normal(size=(1, 64)) + rng.normal(size=(5000, 64))
    assert 0.03 < spread(huddled) < 0.3


def test_chance_loss_is_the_loss_of_uniform_logits():
    # MoCo v3: 2 * tau * cross-entropy per direction, two directions; uniform logits -> ln B
    assert chance_loss(64) == pytest.approx(4 * 0.2 * math.log(64))
    assert chance_loss(64) == pytest.approx(3.327, abs=1e-3)


def test_presets_and_their_checks():
    assert PRESETS["paper"].arch == "vit_base_patch16_224"
    assert PRESETS["paper"].batch_size == 1024 and PRESETS["paper"].epochs == 300
    assert preset("cpu", epochs=2).epochs == 2
    with pytest.raises(InputError, match="unknown preset .gpu."):
        preset("gpu")
    with pytest.raises(InputError, match="no setting 'epoch'"):
        preset("cpu", epoch=3)
    with pytest.raises(InputError, match="epochs must be"):
        preset("cpu", epochs=0)
    with pytest.raises(InputError, match="temporal pairs need 2 dates"):
        preset("cpu", captures_per_point=1)
    with pytest.raises(InputError, match="vpr_queries must name one or more of evening, day"):
        preset("cpu", vpr_queries=("noon",))
    with pytest.raises(InputError, match="vpr_descriptors must name"):
        preset("cpu", vpr_descriptors=("cls", "cls"))
    with pytest.raises(InputError, match="photometric must be in"):
        preset("cpu", photometric=2.0)
    # the cpu preset's eased recipe reaches the training config; the paper's is MoCo v3's
    eased = preset("cpu").pretrain_config()
    assert (eased["photometric"], eased["crop_min"], eased["learn_patch"]) == (0.0, 0.5, True)
    paper = preset("paper").pretrain_config()
    assert (paper["photometric"], paper["crop_min"], paper["learn_patch"]) == (1.0, 0.08, False)
    assert preset("cpu").vpr_splits[0] == ("day", "cls") and len(preset("cpu").vpr_splits) == 4


ONE_SPLIT = preset("cpu", vpr_queries=("day",), vpr_descriptors=("cls",))


def _tables(r1, r2, acc):
    vpr = pd.DataFrame({"model": list(STRATEGIES), "queries": "day", "descriptor": "cls",
                        "R@1": r1})  # fmt: skip
    socio = pd.DataFrame(
        [{"topic": "Overall", "indicator": "(mean)", **dict(zip(STRATEGIES, r2, strict=True))}]
    )
    safety = pd.DataFrame({"model": list(STRATEGIES), "accuracy": acc})
    return vpr, socio, safety


def test_verdicts_name_the_winner_and_say_held_only_for_a_strict_win():
    held = _verdicts(*_tables([10, 30, 20], [0.1, 0.2, 0.3], [70, 60, 65]), ONE_SPLIT)
    assert [v["held"] for v in held] == [True, True, True]
    assert held[0]["numbers"] == "self 10, temporal 30, spatial 20"
    not_held = _verdicts(*_tables([30, 30, 20], [0.4, 0.2, 0.3], [60, 70, 65]), ONE_SPLIT)
    assert [v["held"] for v in not_held] == [False, False, False]
    assert not_held[0]["best"] == "self and temporal"  # a tie is not a win
    assert not_held[1]["best"] == "self"


def test_a_win_below_the_baselines_is_not_evidence():
    vpr, socio, safety = _tables([10, 30, 20], [0.1, 0.2, 0.3], [70, 60, 65])
    vpr = pd.concat([vpr, pd.DataFrame({"model": BASELINES, "queries": "day",
                                        "descriptor": "cls", "R@1": [5.0, 40.0]})])  # fmt: skip
    socio = socio.assign(**{BASELINES[0]: 0.25, BASELINES[1]: 0.1})
    safety = pd.concat([safety, pd.DataFrame({"model": BASELINES, "accuracy": [50.0, 60.0]})])
    temporal, spatial, self_ = _verdicts(vpr, socio, safety, ONE_SPLIT)
    assert temporal["held"] and not temporal["beats_baselines"]  # the thumbnail has 40
    assert spatial["held"] and spatial["beats_baselines"]  # 0.3 > 0.25 and 0.1
    assert self_["held"] and self_["beats_baselines"]
    assert verdict_text(temporal) == (
        "held (temporal is NOT above the baselines: random init 5, thumbnail 16x16 40)"
    )
    assert verdict_text(spatial).startswith("held (spatial is above the baselines")


def test_place_recognition_is_judged_in_every_split():
    vpr, socio, safety = _tables([10, 30, 20], [0.1, 0.2, 0.3], [70, 60, 65])
    tokens = vpr.assign(descriptor="tokens", **{"R@1": [50.0, 40.0, 45.0]})
    two = preset("cpu", vpr_queries=("day",), vpr_descriptors=("cls", "tokens"))
    verdicts = _verdicts(pd.concat([vpr, tokens]), socio, safety, two)
    assert [v["measure"] for v in verdicts[:2]] == [
        "R@1 on unseen places, day queries, cls descriptor",
        "R@1 on unseen places, day queries, tokens descriptor",
    ]
    assert verdicts[0]["held"] and not verdicts[1]["held"] and verdicts[1]["best"] == "self"
    assert len(verdicts) == 4


@pytest.fixture(scope="module")
def experiment_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment") / "study"
    stages.sample(root, osm=stages.helsinki_pbf(), bbox=HELSINKI_BBOX)
    result = stages.experiment(root, **TINY)
    return root, result


def test_experiment_end_to_end(experiment_study):
    root, result = experiment_study
    res = result.details
    labels = ["self", "temporal", "spatial", "random init", "thumbnail 16x16"]
    splits = res.preset.vpr_splits
    assert len(splits) == 4  # day and evening queries, cls and tokens descriptors
    assert list(res.vpr["model"]) == labels * len(splits)
    assert list(zip(res.vpr["queries"], res.vpr["descriptor"], strict=True)) == [
        split for split in splits for _ in labels
    ]
    assert {"vpr-set", "vpr-set-day"} <= {p.name for p in (root / "experiment").iterdir()}
    assert list(res.safety["model"]) == labels
    assert list(res.socioeconomic.columns[2:]) == labels
    assert res.vpr["n_queries"].iloc[0] + res.vpr["n_excluded"].iloc[0] == TINY["vpr_places"]
    # same budget: every strategy's pair table has the same length
    sizes = {s: len(pd.read_parquet(root / "pairs" / f"{s}.parquet")) for s in STRATEGIES}
    assert len(set(sizes.values())) == 1 and res.pairs == sizes["self"] <= TINY["max_pairs"]
    # learning checked: per-step loss of every strategy, spread in (0, 1.5]
    steps = res.pairs // TINY["batch_size"]
    for run in res.encoders[:3]:
        assert len(run.losses) == steps and all(np.isfinite(run.losses))
    for row in res.learning:
        assert 0 < row["spread"] <= 1.5 and row["chance_loss"] == pytest.approx(chance_loss(32))
        beats = [
            f"{q}/{d}" for q, d in splits
            if row[f"R@1 {q}/{d}"] > max(row[f"R@1 {q}/{d} random init"],
                                         row[f"R@1 {q}/{d} thumbnail"])
        ]  # fmt: skip
        assert row["beats_both"] == (" ".join(beats) or "none")
        assert learning_text(row, res.preset).count("thumbnail") == len(splits)
    assert len(res.verdicts) == len(splits) + 2  # place recognition judged in every split
    assert res.verdicts[len(splits)]["spread"].startswith("self ±")  # R² over fold splits
    assert "mean of 5 splits" in (root / "reports" / "experiment" / "report.md").read_text()
    # R@1 after each saved epoch (one epoch here), the last equal to the table's
    queries, descriptor = curve_split(res.preset)
    assert (queries, descriptor) == ("day", "tokens")
    part = res.vpr[(res.vpr["queries"] == queries) & (res.vpr["descriptor"] == descriptor)]
    r1 = dict(zip(part["model"], part["R@1"], strict=True))
    for run in res.encoders[:3]:
        assert list(run.curve) == [1] and run.curve[1] == pytest.approx(r1[run.label])
    # the report: Markdown, HTML, CSV tables, the loss plot, attention PNGs
    out = root / "reports" / "experiment"
    md = (out / "report.md").read_text()
    for v in res.verdicts:
        assert v["hypothesis"] in md and v["numbers"] in md
    assert "![loss per step](loss.png)" in md and "![R@1 by epoch](recall_by_epoch.png)" in md
    html = (out / "report.html").read_text()
    assert html.count("<table>") == 4 and "loss.png" in html
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(pd.read_csv(out / "vpr.csv")["model"]) == labels * len(splits)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == res.pairs and len(summary["verdicts"]) == len(splits) + 2
    assert any(p.name.startswith("attention_maps_") for p in (out / "attention").iterdir())
    # the thumbnail baseline's vectors live in the study like any embedding model
    models = set(stages.open_study(root).read_layer("embeddings")["model"])
    assert "thumbnail:16x16" in models and len(models) == 5


def test_experiment_rerun_resumes_without_training_again(experiment_study):
    root, first = experiment_study
    checkpoints = sorted((root / "checkpoints").rglob("*.pth.tar"))
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    again = stages.experiment(root, **TINY)
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    pd.testing.assert_frame_equal(again.details.vpr, first.details.vpr)
    assert again.details.encoders[1].losses == first.details.encoders[1].losses


def test_experiment_cli_help_and_bad_input(tmp_path):
    shown = invoke("experiment", "--help")
    assert shown.returncode == 0
    for word in ("--preset", "--baseline", "random-init", "thumbnail", "hypotheses"):
        assert word in shown.stdout
    bad = invoke("experiment", "--study", str(tmp_path / "s"), "--epochs", "0")
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.count("\n") == 1
    assert "--epochs must be" in bad.stderr
    assert not (tmp_path / "s").exists()  # validated before the study was created
    missing = invoke(
        "experiment", "--study", str(tmp_path / "s"), "--baseline", str(tmp_path / "no.pth")
    )
    assert missing.returncode == 2 and "--baseline" in missing.stderr
    assert not (tmp_path / "s").exists()
