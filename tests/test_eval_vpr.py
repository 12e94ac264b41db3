"""urbanvis eval vpr: readers of both layouts, exact kNN with ties, Recall@K, the CLI."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from urbanvis import stages as uv
from urbanvis._errors import InputError
from urbanvis.evaluate import vpr
from urbanvis.evaluate.encoders import encoder_specs
from urbanvis.evaluate.vpr import (
    COLUMNS,
    evaluate_vpr,
    faiss_available,
    nearest,
    parse_utm_name,
    read_dataset,
    recall_at_k,
)

from .conftest import invoke

BACKENDS = ["numpy", pytest.param("faiss", marks=pytest.mark.skipif(
    not faiss_available(), reason="faiss-cpu not installed"))]  # fmt: skip


# --------------------------------------------------------------------------- references
def brute_force(database, queries, k):
    """Cosine similarity in float64, stable order: equal scores by database index."""
    db = database / np.linalg.norm(database, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = q.astype(np.float64) @ db.astype(np.float64).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def brute_recall(neighbours, positives, ks=(1, 5, 10, 15, 20, 25)):
    out = {}
    for k in ks:
        hits = [any(int(j) in set(p.tolist()) for j in row[:k]) for row, p in
                zip(neighbours, positives, strict=True)]  # fmt: skip
        out[k] = 100.0 * sum(hits) / len(hits)
    return out


def sign_vectors(rng, n, d=16):
    """±1 vectors: normalised entries are ±1/4, so every inner product is exact in float32
    and many distinct vectors tie exactly."""
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, d))


@pytest.mark.parametrize("backend", BACKENDS)
def test_neighbours_equal_brute_force_with_exact_ties(backend):
    rng = np.random.default_rng(0)
    db = sign_vectors(rng, 300)
    db[100:160] = db[7]  # a big group of exact duplicates
    queries = np.vstack([sign_vectors(rng, 40), db[[7, 7, 3, 150]]])
    want = brute_force(db, queries, 25)
    for block_rows in (1000, 64, 7):  # one block, several, blocks smaller than k
        scores, got = nearest(db, queries, 25, backend=backend, block_rows=block_rows)
        np.testing.assert_array_equal(got, want)
        assert np.all(np.diff(scores, axis=1) <= 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_blocks_equal_brute_force_with_ties_and_float64(backend, monkeypatch):
    """The default block size, shrunk to 7 rows so the search runs over many blocks (one
    reused buffer, a short last block): neighbours and scores as the brute-force reference,
    ties in database order, from float64 descriptors of any length."""
    monkeypatch.setattr(vpr, "BLOCK_BYTES", 7 * 16 * 4)
    rng = np.random.default_rng(4)
    db = 3.0 * sign_vectors(rng, 250).astype(np.float64)
    db[40:90] = db[5]
    queries = np.vstack([sign_vectors(rng, 30), db[[5, 60, 249]]])
    scores, got = nearest(db, queries, 25, backend=backend)
    np.testing.assert_array_equal(got, brute_force(db, queries, 25))
    unit = db / 12  # every row has norm 3 * 4: normalised scores are exact multiples of 1/16
    reference = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    np.testing.assert_array_equal(scores, np.take_along_axis(reference, got, 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_makes_no_copy_of_the_database(backend, monkeypatch):
    """numpy's allocations (traced by tracemalloc) stay far below the database's size:
    blocks are normalised one at a time into one buffer."""
    monkeypatch.setattr(vpr, "BLOCK_BYTES", 1 << 16)
    rng = np.random.default_rng(5)
    db = rng.normal(size=(20000, 64)).astype(np.float32)
    queries = rng.normal(size=(20, 64)).astype(np.float32)
    tracemalloc.start()
    try:
        nearest(db, queries, 25, backend=backend)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < db.nbytes / 10


def test_block_rows_must_be_positive():
    db = np.eye(4, dtype=np.float32)
    with pytest.raises(InputError, match="block_rows"):
        nearest(db, db, 1, block_rows=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_recall_equals_brute_force_on_random_descriptors(backend):
    rng = np.random.default_rng(1)
    db = rng.normal(size=(500, 48)).astype(np.float32)
    db[250:260] = db[3]  # duplicates: ties
    queries = db[rng.integers(0, 500, 80)] + 0.8 * rng.normal(size=(80, 48)).astype(np.float32)
    positives = [np.sort(rng.choice(500, size=rng.integers(1, 6), replace=False))
                 for _ in range(80)]  # fmt: skip
    _, got = nearest(db, queries, 25, backend=backend, block_rows=128)
    assert recall_at_k(got, positives) == pytest.approx(
        brute_recall(brute_force(db, queries, 25), positives)
    )
    assert set(recall_at_k(got, positives)) == {1, 5, 10, 15, 20, 25}


def test_faiss_and_numpy_agree():
    if not faiss_available():
        pytest.skip("faiss-cpu not installed")
    rng = np.random.default_rng(2)
    db = sign_vectors(rng, 400, d=64)
    db[10:50] = db[0]
    queries = np.vstack([sign_vectors(rng, 30, d=64), db[:3]])
    a = nearest(db, queries, 25, backend="numpy", block_rows=100)
    b = nearest(db, queries, 25, backend="faiss", block_rows=100)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


def test_nearest_leaves_its_input_alone_and_checks_k():
    rng = np.random.default_rng(3)
    db = rng.normal(size=(20, 8)).astype(np.float32)
    before = db.copy()
    nearest(db, db[:3], 5)
    np.testing.assert_array_equal(db, before)
    with pytest.raises(InputError, match="k must be"):
        nearest(db, db[:3], 21)


# --------------------------------------------------------------------------- layouts
def save(path, colour, size=24):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[...] = colour
    pixels[: size // 2, : size // 2] = 255 - np.asarray(colour)  # more than a flat colour
    Image.fromarray(pixels).save(path)


COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


def utm_set(root, *, far_query=True):
    """Database: five places 100 m apart; queries: exact copies of places 0, 2 and 4, and
    (``far_query``) one 1 km from everything, which has no positive."""
    for i, colour in enumerate(COLOURS):
        save(root / "database" / f"@{500000 + 100 * i:.2f}@4000000.00@17@T@{i}@@.jpg", colour)
    for i in (0, 2, 4):
        save(root / "queries" / f"@{500003 + 100 * i:.2f}@4000004.00@17@T@q{i}@.jpg",
             COLOURS[i])  # fmt: skip
    if far_query:
        save(root / "queries" / "@510000.00@4000000.00@17@T@far@.jpg", COLOURS[1])
    return root


def test_utm_names_parse_leniently():
    assert parse_utm_name("@0584315.80@4477069.11@17@T@040.44@-079.99@x@@.jpg") == (
        584315.8,
        4477069.11,
        17,
    )
    assert parse_utm_name("@12.5@-3@.jpg") == (12.5, -3.0, None)
    for bad in ("photo.jpg", "584315@4477069@.jpg", "@abc@4477069@.jpg", "@1@.jpg"):
        with pytest.raises(ValueError):
            parse_utm_name(bad)


def test_utm_layout_positives_within_threshold(tmp_path):
    data = read_dataset(utm_set(tmp_path / "set"))
    assert data.layout == "utm" and len(data.database) == 5 and len(data.queries) == 4
    by_name = {q.name: p.tolist() for q, p in zip(data.queries, data.positives, strict=True)}
    assert by_name["@510000.00@4000000.00@17@T@far@.jpg"] == []
    assert sorted(v for v in by_name.values() if v) == [[0], [2], [4]]
    assert data.n_excluded == 1
    wide = read_dataset(tmp_path / "set", threshold=150)
    assert sorted(len(p) for p in wide.positives) == [0, 2, 2, 3]


def gsv_set(root):
    """The same images as :func:`utm_set`, described by gsv-cities files (paths relative
    to the folder of the .npy files)."""
    for i, colour in enumerate(COLOURS):
        save(root / "images" / "ref" / f"db{i}.jpg", colour)
    for i in (0, 2, 4):
        save(root / "images" / "query" / f"q{i}.jpg", COLOURS[i])
    save(root / "images" / "query" / "far.jpg", COLOURS[1])
    np.save(root / "tiny_dbImages.npy", np.array([f"images/ref/db{i}.jpg" for i in range(5)]))
    q = ["images/query/q0.jpg", "images/query/q2.jpg", "images/query/q4.jpg",
         "images/query/far.jpg"]  # fmt: skip
    np.save(root / "tiny_qImages.npy", np.array(q))
    gt = np.empty(4, dtype=object)
    gt[:] = [np.array([0]), np.array([2, 3]), np.array([4]), np.array([], dtype=np.int64)]
    np.save(root / "tiny_gt.npy", gt, allow_pickle=True)
    return root


def test_gsv_cities_layout_parses(tmp_path):
    root = gsv_set(tmp_path / "gsv")
    for where in (root, root / "tiny_dbImages.npy"):
        data = read_dataset(where)
        assert data.layout == "gsv-cities" and data.name == "tiny"
        assert data.database[1] == root / "images" / "ref" / "db1.jpg"
        assert [p.tolist() for p in data.positives] == [[0], [2, 3], [4], []]
        assert data.n_excluded == 1 and data.threshold is None
    np.save(root / "other_dbImages.npy", np.array(["images/ref/db0.jpg"]))
    with pytest.raises(InputError, match="2 gsv-cities sets"):
        read_dataset(root)


@pytest.mark.parametrize("make", [utm_set, gsv_set])
def test_copies_of_database_images_are_found_first(tmp_path, make):
    root = make(tmp_path / "set")
    table = evaluate_vpr(root, encoder_specs(thumbnail=True))
    assert list(table.columns) == list(COLUMNS)
    row = table.iloc[0]
    assert row["n_queries"] == 3 and row["n_excluded"] == 1
    assert row["R@1"] == 100.0 and row["R@25"] == 100.0


# --------------------------------------------------------------------------- stage and CLI
def test_stage_writes_the_table_into_the_study(points_study, tmp_path):
    root = utm_set(tmp_path / "set")
    result = uv.eval_vpr(points_study, dataset=root, thumbnail=True)
    table = pd.read_csv(points_study / "reports" / "eval_vpr.csv")
    assert list(table.columns) == list(COLUMNS)
    assert table["R@1"].tolist() == [100.0]
    assert (points_study / "reports" / "eval_vpr.md").is_file()
    assert result.outputs["n_excluded"] == 1
    assert "eval vpr" in (points_study / "study.toml").read_text()


def test_cli_prints_the_table_and_writes_out(tmp_path):
    root = utm_set(tmp_path / "set")
    out = tmp_path / "t1.csv"
    result = invoke("eval", "vpr", "--dataset", str(root), "--thumbnail", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "| thumbnail 16x16 | set | 3 | 1 | 100.0 |" in result.stdout
    assert pd.read_csv(out)["n_queries"].tolist() == [3]


def bad_names(root):
    utm_set(root)
    save(root / "database" / "IMG_0001.jpg", COLOURS[0])
    return "IMG_0001.jpg"


def no_queries_folder(root):
    utm_set(root)
    for f in (root / "queries").iterdir():
        f.unlink()
    (root / "queries").rmdir()
    return "queries/"


def no_positive(root):
    utm_set(root)
    for f in (root / "queries").iterdir():
        f.unlink()
    save(root / "queries" / "@900000.00@4000000.00@17@T@.jpg", COLOURS[0])
    return "--threshold"


def unreadable_image(root):
    utm_set(root)
    (root / "database" / "@500000.00@4000000.00@17@T@0@@.jpg").write_bytes(b"not a jpeg")
    return "@500000.00@4000000.00@17@T@0@@.jpg"


@pytest.mark.parametrize("make", [bad_names, no_queries_folder, no_positive, unreadable_image])
def test_bad_sets_exit_2_with_one_line_and_write_nothing(tmp_path, make):
    root = tmp_path / "set"
    named = make(root)
    out = tmp_path / "res" / "t.csv"
    result = invoke("eval", "vpr", "--dataset", str(root), "--thumbnail", "--out", str(out))
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error = [line for line in lines if named in line]
    assert len(error) == 1, result.stderr
    assert not out.exists() and not out.parent.exists()


def test_a_checkpoint_of_an_unknown_architecture_names_the_fix(tmp_path):
    torch = pytest.importorskip("torch")
    root = utm_set(tmp_path / "set")
    ckpt = tmp_path / "odd.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(2, 2)}}, ckpt)
    out = tmp_path / "t.csv"
    result = invoke("eval", "vpr", "--dataset", str(root), "--checkpoint", str(ckpt),
                    "--out", str(out), "--device", "cpu", "--workers", "0")  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert len([ln for ln in result.stderr.splitlines() if "ViT checkpoint" in ln]) == 1
    assert not out.exists()


def test_simulated_vpr_set_is_parsable_and_thumbnails_beat_chance(tmp_path):
    folder = tmp_path / "vpr"
    result = invoke("simulate", "--vpr-set", str(folder), "--places", "40", "--size", "64")
    assert result.returncode == 0, result.stderr
    data = read_dataset(folder)
    assert len(data.database) == len(data.queries) == 40 and data.n_excluded == 0
    assert all(1 <= len(p) <= 3 for p in data.positives)
    [row] = evaluate_vpr(data, encoder_specs(thumbnail=True)).to_dict("records")
    chance = 100 * 3 / 40
    assert row["R@1"] > 3 * chance
    again = invoke("simulate", "--vpr-set", str(folder), "--places", "40")
    assert again.returncode == 2 and "not empty" in again.stderr


def test_day_queries_are_another_afternoon_of_the_same_places(tmp_path):
    evening, day = tmp_path / "evening", tmp_path / "day"
    assert invoke("simulate", "--vpr-set", str(evening), "--places", "12",
                  "--size", "32").returncode == 0  # fmt: skip
    made = invoke("simulate", "--vpr-set", str(day), "--places", "12", "--size", "32",
                  "--queries", "day")  # fmt: skip
    assert made.returncode == 0, made.stderr

    def names(folder, part):
        return sorted(p.name for p in (folder / part).iterdir())

    assert names(day, "database") == names(evening, "database")  # the same summer noon
    assert all("@2022-04-12@" in n for n in names(day, "queries"))
    assert all("@2022-10-20@" in n for n in names(evening, "queries"))

    # by day the queries are brighter than after sunset
    def mean(folder):
        return np.mean([np.asarray(Image.open(p)) for p in (folder / "queries").iterdir()])

    assert mean(day) > 1.5 * mean(evening)


def test_token_descriptor_is_the_centred_patch_tokens(tmp_path):
    import torch

    from urbanvis.engine.encoders import create_encoder
    from urbanvis.engine.features import image_features
    from urbanvis.engine.transforms import eval_transform
    from urbanvis.evaluate.encoders import features_from_files, thumbnail_features

    rng = np.random.default_rng(0)
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(files[-1])
    got, meta = image_features(files, model="vit_test_patch8", random_init=True, seed=0,
                               device="cpu", descriptor="tokens")  # fmt: skip
    cls, _ = image_features(files, model="vit_test_patch8", random_init=True, seed=0,
                            device="cpu")  # fmt: skip
    torch.manual_seed(0)
    net = create_encoder("vit_test_patch8").eval()
    size = meta["image_size"]
    x = torch.stack([eval_transform(size)(Image.open(f).convert("RGB")) for f in files])
    with torch.no_grad():
        tokens = net.forward_features(x)
    grid = size // 8
    assert meta["descriptor"] == "tokens" and meta["dim"] == grid * grid * tokens.shape[-1]
    patches = tokens[:, 1:]
    want = (patches - patches.mean(dim=1, keepdim=True)).flatten(1).numpy()
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-5)
    assert np.allclose(cls, tokens[:, 0].numpy(), atol=1e-5)  # the paper's [CLS] as before
    # the thumbnail's tokens: its pixels minus the image's mean colour, channel by channel
    [thumb] = encoder_specs(thumbnail=True)
    centred, info = features_from_files(files, thumb, descriptor="tokens")
    raw = thumbnail_features(files)
    rgb = raw.reshape(3, -1, 3)
    assert info["descriptor"] == "tokens"
    assert np.allclose(centred, (rgb - rgb.mean(axis=1, keepdims=True)).reshape(3, -1))
    assert np.allclose(centred.reshape(3, -1, 3).mean(axis=1), 0, atol=1e-6)
    with pytest.raises(InputError, match="descriptor must be cls or tokens"):
        features_from_files(files, thumb, descriptor="patches")


def test_cli_names_the_token_rows(tmp_path):
    folder = tmp_path / "vpr"
    assert invoke("simulate", "--vpr-set", str(folder), "--places", "16",
                  "--size", "32").returncode == 0  # fmt: skip
    out = tmp_path / "t.csv"
    result = invoke("eval", "vpr", "--dataset", str(folder), "--thumbnail", "--model",
                    "vit_test_patch8", "--random-init", "--descriptor", "tokens", "--device",
                    "cpu", "--workers", "0", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert list(table["model"]) == ["vit_test_patch8 (random init) (tokens)",
                                    "thumbnail 16x16 (tokens)"]  # fmt: skip
    assert list(table.columns) == list(vpr.COLUMNS)  # the columns, unchanged


def test_descriptors_larger_than_memory_are_refused_before_any_image(tmp_path, monkeypatch):
    from urbanvis.engine import features

    folder = tmp_path / "vpr"
    assert invoke("simulate", "--vpr-set", str(folder), "--places", "8",
                  "--size", "32").returncode == 0  # fmt: skip
    monkeypatch.setattr(features, "_available_memory", lambda: 2**10)  # 1 KiB free
    [spec] = encoder_specs(models=["vit_test_patch8"], random_init=True)
    with pytest.raises(InputError, match="more than half the 0.0 GiB of memory free; use"):
        evaluate_vpr(folder, [spec], descriptor="tokens", device="cpu")
    monkeypatch.undo()
    assert features._available_memory() > 2**20  # this machine has more than 1 MiB free
