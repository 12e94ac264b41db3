"""urbanvis embed: the layer and vectors, equality with a direct forward, resume, errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest

from urbanvis.embed import (
    embed_captures,
    model_folder,
    principal_components,
    read_embeddings,
    read_vectors,
)
from urbanvis.study import open_study

from .conftest import run_cli
from .data import osm
from .test_cli import assert_one_line_error, tree

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

ARCH = "vit_test_patch8"
N_CAPTURES = 50 * 2 * 2  # town.osm: 50 points, 2 dates, 2 headings
_RUN_EMBED = (
    "from urbanvis_cli.main import cli, main; from urbanvis_cli.embed import embed; "
    "cli.add_command(embed); main()"
)


def run_embed(*args: str) -> subprocess.CompletedProcess:
    """``urbanvis embed ...`` through the real entry point's error handling."""
    return subprocess.run(
        [sys.executable, "-c", _RUN_EMBED, "embed", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def save_checkpoint(path: Path, seed: int) -> Path:
    """A MoCo v3-format checkpoint of a freshly built tiny backbone."""
    from urbanvis.engine.encoders import create_encoder

    torch.manual_seed(seed)
    net = create_encoder(ARCH)
    state = {f"module.base_encoder.{k}": v for k, v in net.state_dict().items()}
    torch.save(
        {"epoch": 1, "arch": ARCH, "state_dict": state, "urbanvis": {"image_size": 32}}, path
    )
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("embed")
    town = osm.town(root / "town.osm")
    sampled = root / "sampled"
    result = run_cli("sample", "--study", str(sampled), "--osm", str(town))
    assert result.returncode == 0, result.stderr
    study = root / "study"
    shutil.copytree(sampled, study)
    result = run_cli(
        "harvest", "--study", str(study), "--captures-per-point", "2",
        "--headings", "0,180", "--size", "48",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {
        "root": root,
        "sampled": sampled,
        "study": study,
        "ckpt_a": save_checkpoint(root / "a.pth.tar", 1),
        "ckpt_b": save_checkpoint(root / "b.pth.tar", 2),
    }


@pytest.fixture(scope="module")
def embedded(base) -> dict:
    """Embed with checkpoint A in two runs: --limit 90 first, then the rest."""
    study, ckpt = base["study"], base["ckpt_a"]
    first = run_embed("--study", str(study), "--checkpoint", str(ckpt), "--limit", "90",
                      "--batch-size", "32", "--workers", "2")  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "stopped early" in first.stderr and "90 of 200" in first.stdout
    assert not pyogrio.list_layers(study / "study.gpkg")[:, 0].tolist().count("embeddings")
    second = run_embed("--study", str(study), "--checkpoint", str(ckpt), "--batch-size", "32")
    assert second.returncode == 0, second.stderr
    return {"first": first, "second": second}


def direct_forward(study: Path, image_paths, ckpt: Path) -> np.ndarray:
    """The naive reference: load, eval transform, one image at a time, [CLS] after the norm."""
    from PIL import Image

    from urbanvis.engine.encoders import load_encoder
    from urbanvis.engine.transforms import eval_transform

    net = load_encoder(ckpt).eval()
    tf = eval_transform(32)
    out = []
    with torch.no_grad():
        for rel in image_paths:
            with Image.open(study / rel) as im:
                x = tf(im.convert("RGB"))[None]
            out.append(net.forward_head(net.forward_features(x), pre_logits=True)[0].numpy())
    return np.stack(out)


# ---------------------------------------------------------------------------- success
def test_embed_writes_the_layer_and_vectors(base, embedded):
    study = base["study"]
    assert "110 captures embedded (90 already done" in embedded["second"].stderr
    layer = pyogrio.read_dataframe(study / "study.gpkg", layer="embeddings")
    assert layer.crs.to_epsg() == 4326
    assert list(layer.columns) == [
        "capture_id",
        "point_id",
        "model",
        "pc1",
        "pc2",
        "pc3",
        "geometry",
    ]
    caps = pyogrio.read_dataframe(study / "study.gpkg", layer="captures")
    assert len(layer) == N_CAPTURES and set(layer["capture_id"]) == set(caps["capture_id"])
    model = layer["model"].iloc[0]
    assert set(layer["model"]) == {model} and model.startswith(f"{ARCH}@")
    merged = layer.merge(caps[["capture_id", "geometry"]], on="capture_id")
    assert merged["geometry_x"].geom_equals(merged["geometry_y"]).all()
    # the part files were merged into one vector file
    folder = model_folder(open_study(study), model)
    assert (folder / "vectors.parquet").exists() and not list((folder / "parts").iterdir())
    runs = [r for r in open_study(study).runs() if r["command"] == "embed"]
    assert [r["outputs"]["embedded"] for r in runs] == [90, 110]


def test_vectors_equal_a_direct_forward(base, embedded):
    study = base["study"]
    rows, vectors = read_embeddings(open_study(study))
    assert vectors.dtype == np.float32 and vectors.shape == (N_CAPTURES, 32)
    caps = pyogrio.read_dataframe(study / "study.gpkg", layer="captures", read_geometry=False)
    paths = caps.set_index("capture_id").loc[rows["capture_id"], "image_path"]
    expected = direct_forward(study, paths, base["ckpt_a"])
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-5)
    # the PCA columns are the scores of all this model's vectors
    pcs = principal_components(vectors)
    np.testing.assert_allclose(rows[["pc1", "pc2", "pc3"]].to_numpy(), pcs, rtol=1e-4, atol=1e-5)


def test_rerun_recomputes_nothing(base, embedded):
    study = base["study"]
    rows, _ = read_embeddings(open_study(study))
    folder = model_folder(open_study(study), rows["model"].iloc[0])
    before = tree(folder), (study / "study.gpkg").stat().st_mtime_ns
    again = run_embed("--study", str(study), "--checkpoint", str(base["ckpt_a"]))
    assert again.returncode == 0, again.stderr
    assert "0 captures embedded (200 already done" in again.stderr
    assert (tree(folder), (study / "study.gpkg").stat().st_mtime_ns) == before


def test_a_second_checkpoint_is_a_second_model(base, embedded, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(base["study"], study)
    st = open_study(study)
    summary = embed_captures(st, checkpoint=base["ckpt_b"], batch_size=64, workers=0)
    assert summary.embedded == N_CAPTURES and summary.layer_written
    layer = pyogrio.read_dataframe(study / "study.gpkg", layer="embeddings")
    models = sorted(set(layer["model"]))
    assert len(models) == 2 and len(layer) == 2 * N_CAPTURES
    rows_a, vec_a = read_embeddings(st, model=models[0])
    rows_b, vec_b = read_embeddings(st, model=models[1])
    assert len(rows_a) == len(rows_b) == N_CAPTURES
    assert not np.allclose(vec_a, vec_b)
    with pytest.raises(ValueError, match="2 models"):
        read_embeddings(st)


def test_random_init_needs_the_flag_and_is_seeded(base, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(base["study"], study)
    st = open_study(study)
    with pytest.raises(ValueError, match="--random-init"):
        embed_captures(st, model=ARCH)
    one = embed_captures(st, model=ARCH, random_init=True, seed=3, workers=0, limit=20)
    assert one.model == f"random-init:{ARCH}:3" and one.stopped and not one.layer_written
    ids, vectors = read_vectors(st, one.model)
    assert len(ids) == 20 and vectors.shape == (20, 32)


def test_principal_components_match_sklearn():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32) @ np.diag(
        np.arange(16, 0, -1.0)
    ).astype(np.float32)
    ours = principal_components(x)
    ref = PCA(n_components=3, svd_solver="full").fit_transform(x.astype(np.float64))
    # components are defined up to sign
    np.testing.assert_allclose(np.abs(ours), np.abs(ref), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("no-captures", ("no 'captures' layer", "harvest")),
        ("missing-checkpoint", ("does not exist",)),
        ("truncated-checkpoint", ("truncated",)),
        ("unknown-model", ("unknown encoder", "vit_test_patch8")),
        ("both", ("exactly one",)),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(base, tmp_path, case, needles):
    study = tmp_path / "study"
    shutil.copytree(base["sampled"] if case == "no-captures" else base["study"], study)
    ckpt = str(base["ckpt_a"])
    args = {
        "no-captures": ["--checkpoint", ckpt],
        "missing-checkpoint": ["--checkpoint", str(tmp_path / "nope.pth.tar")],
        "truncated-checkpoint": ["--checkpoint", str(tmp_path / "cut.pth.tar")],
        "unknown-model": ["--model", "vit_test_patch", "--random-init"],
        "both": ["--checkpoint", ckpt, "--model", ARCH],
    }[case]
    data = base["ckpt_a"].read_bytes()
    (tmp_path / "cut.pth.tar").write_bytes(data[: len(data) // 2])
    before = tree(study)
    result = run_embed("--study", str(study), *args)
    assert_one_line_error(result, *needles)
    assert tree(study) == before
