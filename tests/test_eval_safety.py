"""eval safety: Q-scores, labels, the linear probe and its metrics, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from urbanvis import stages as uv
from urbanvis.evaluate.safety import labels_from_scores, probe_metrics, qscores

from .conftest import invoke


def test_qscore_equals_a_hand_computed_example():
    # a beats b twice, b beats c, c ties a
    votes = pd.DataFrame(
        {
            "left_id": ["a", "b", "b", "c"],
            "right_id": ["b", "a", "c", "a"],
            "winner": ["left", "right", "left", "equal"],
        }  # fmt: skip
    )
    # a: 2 wins, 0 losses, 1 tie -> W = 2/3, L = 0;  b: 1 win, 2 losses -> W = L... 1/3, 2/3
    # c: 0 wins, 1 loss, 1 tie -> W = 0, L = 1/2
    w = {"a": 2 / 3, "b": 1 / 3, "c": 0.0}
    l_ = {"a": 0.0, "b": 2 / 3, "c": 1 / 2}
    want = {
        # a beat b twice: mean W of beaten = W_b; a lost to nobody
        "a": 10 / 3 * (w["a"] + w["b"] - 0 + 1),
        # b beat c (W_c = 0), lost twice to a (L_a = 0)
        "b": 10 / 3 * (w["b"] + w["c"] - l_["a"] + 1),
        # c beat nobody, lost to b (L_b = 2/3)
        "c": 10 / 3 * (w["c"] + 0 - l_["b"] + 1),
    }
    got = qscores(votes)
    assert list(got.index) == ["a", "b", "c"]
    for image, value in want.items():
        assert got[image] == pytest.approx(value, abs=1e-12)
    assert ((got >= 0) & (got <= 10)).all()


def test_qscore_of_one_pair():
    # x always beats y: x = 10/3 (W_x + W_y - 0 + 1) = 10/3 (1 + 0 + 1);
    # y = 10/3 (W_y + 0 - L_x + 1) = 10/3 (0 - 0 + 1)
    votes = pd.DataFrame({"left_id": ["x", "x"], "right_id": ["y", "y"],
                          "winner": ["left", "left"]})  # fmt: skip
    got = qscores(votes)
    assert got["x"] == pytest.approx(20 / 3)
    assert got["y"] == pytest.approx(10 / 3)


def test_labels_drop_the_middle():
    scores = pd.Series([1.0, 3.5, 5.0, 6.5, 9.0], index=list("abcde"))
    labels = labels_from_scores(scores)
    assert labels.to_dict() == {"a": 0, "e": 1}


def test_metrics_equal_scikit_learn_computed_independently():
    from sklearn import metrics as m

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    proba = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    pred = (proba > 0.5).astype(int)
    got = probe_metrics(y, pred, proba)
    assert got["accuracy"] == pytest.approx(100 * m.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(100 * m.precision_score(y, pred))
    assert got["recall"] == pytest.approx(100 * m.recall_score(y, pred))
    assert got["f1"] == pytest.approx(100 * m.f1_score(y, pred))
    assert got["auc"] == pytest.approx(100 * m.roc_auc_score(y, proba))
    hard = probe_metrics(y, pred, proba, hard_auc=True)
    assert hard["auc"] == pytest.approx(100 * m.roc_auc_score(y, pred))
    assert hard["auc"] == pytest.approx(100 * m.balanced_accuracy_score(y, pred))


def brightness_set(folder, n=120, seed=0):
    """Flat grey images whose brightness decides safety: scores 0-3 dark, 7-10 bright."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        safe = i % 2 == 0
        level = rng.integers(150, 250) if safe else rng.integers(10, 100)
        noise = rng.integers(-8, 9, (24, 24, 3))
        pixels = np.clip(level + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"img{i:04d}.png")
        rows.append((f"img{i:04d}", rng.uniform(7, 10) if safe else rng.uniform(0, 3)))
    rows.append(("middle", 5.0))  # dropped by the cut, but named, so its image must exist
    Image.fromarray(np.full((24, 24, 3), 128, np.uint8)).save(folder / "images" / "middle.png")
    scores = folder / "scores.csv"
    pd.DataFrame(rows, columns=["image_id", "score"]).to_csv(scores, index=False)
    return scores


def test_brightness_decides_safety_and_the_probe_finds_it(tmp_path):
    scores = brightness_set(tmp_path)
    out = tmp_path / "t3.csv"
    result = uv.eval_safety(pp2=scores, thumbnail=True, out=out, seed=1)
    table = pd.read_csv(out)
    assert list(table.columns) == ["model", "n_train", "n_test", "accuracy", "precision",
                                   "recall", "f1", "auc"]  # fmt: skip
    row = table.iloc[0]
    assert (row["n_train"], row["n_test"]) == (96, 24)
    assert row["accuracy"] >= 95 and row["auc"] >= 95
    assert result.details["labels"].size == 120  # "middle" was dropped
    assert out.with_suffix(".md").is_file()
    # the split is stratified: as many safe as unsafe test images
    labels = result.details["labels"].to_numpy()
    assert labels[result.details["test"]].sum() == 12


def test_simulated_safety_set_through_the_cli(tmp_path):
    pp = tmp_path / "pp"
    made = invoke("simulate", "--safety-set", str(pp), "--images", "300", "--size", "48",
                  "--votes-per-image", "8", "--seed", "2")  # fmt: skip
    assert made.returncode == 0, made.stderr
    votes = pd.read_csv(pp / "votes.csv")
    assert list(votes.columns) == ["left_id", "right_id", "winner", "left_lat", "left_long",
                                   "right_lat", "right_long", "category"]  # fmt: skip
    assert len(votes) == 2400 and set(votes["winner"]) <= {"left", "right", "equal"}
    assert len(list((pp / "images").glob("*.jpg"))) == 300
    truth = pd.read_csv(pp / "truth.csv")
    # Q-scores from the votes follow the true scores
    q = qscores(votes.astype({"left_id": str, "right_id": str}))
    merged = truth.set_index("image_id")["safety"].reindex(q.index)
    assert np.corrcoef(q.to_numpy(), merged.to_numpy())[0, 1] > 0.6

    out = tmp_path / "safety.csv"
    result = invoke("eval", "safety", "--pp2", str(pp / "votes.csv"), "--thumbnail",
                    "--out", str(out), "--hard-auc")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| thumbnail 16x16 |" in result.stdout
    table = pd.read_csv(out)
    assert table["accuracy"].iloc[0] > 50


@pytest.mark.slow
def test_a_random_init_encoder_and_a_study_record(simulated_study, tmp_path):
    pytest.importorskip("torch")
    scores = brightness_set(tmp_path)
    result = uv.eval_safety(simulated_study, pp2=scores, models=["vit_test_patch8"],
                            random_init=True, thumbnail=True, image_size=32, workers=0,
                            device="cpu")  # fmt: skip
    table = pd.read_csv(simulated_study / "reports" / "eval_safety.csv")
    assert table["model"].tolist() == ["vit_test_patch8 (random init)", "thumbnail 16x16"]
    assert "eval safety" in (simulated_study / "study.toml").read_text()
    assert result.outputs["labelled"] == 120


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "2 of 3 images named in --pp2 are not in"),
        ("middle", "no image scores below 3.5 or above 6.5"),
        ("one_class", "one class"),
        ("no_out", "--out"),
        ("bad_winner", "winner"),
        ("columns", "neither PP2 votes"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, case, needle):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / f"{name}.jpg")
    out = tmp_path / "out" / "t.csv"
    scores = {"missing": "image_id,score\na,1\nzz,9\nyy,9\n",
              "middle": "image_id,score\na,4\nb,5\nc,6\n",
              "one_class": "image_id,score\na,1\nb,2\nc,3\n",
              "no_out": "image_id,score\na,1\nb,9\nc,9\n",
              "bad_winner": "left_id,right_id,winner\na,b,maybe\n",
              "columns": "foo,bar\n1,2\n"}[case]  # fmt: skip
    pp2 = _write(tmp_path / "pp2.csv", scores)
    args = ["eval", "safety", "--pp2", str(pp2), "--images", str(images), "--thumbnail"]
    if case != "no_out":
        args += ["--out", str(out)]
    result = invoke(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert not out.parent.exists()


def test_safety_set_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "pp").mkdir()
    (tmp_path / "pp" / "x").write_text("x")
    result = invoke("simulate", "--safety-set", str(tmp_path / "pp"), "--images", "20")
    assert result.returncode == 2
    assert "--safety-set" in result.stderr and "not empty" in result.stderr
