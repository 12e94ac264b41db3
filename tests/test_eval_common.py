"""The evaluations' shared parts: encoder specs, descriptors of image files, tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from urbanvis import stages as uv
from urbanvis._errors import InputError, InputFileError
from urbanvis.evaluate.encoders import encoder_specs, features_from_files, thumbnail_features
from urbanvis.evaluate.tables import write_table


def test_thumbnail_is_the_box_filtered_image(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(pixels).save(path)
    got = thumbnail_features([path], side=16)
    # box filter from 96x64 to 16x16: means of 6x4 blocks (exact for whole blocks)
    blocks = pixels.reshape(16, 4, 16, 6, 3).mean(axis=(1, 3)) / 255.0
    np.testing.assert_allclose(got[0].reshape(16, 16, 3), blocks, atol=1 / 255)


def test_image_features_equal_the_embed_stage(simulated_study):
    captures = uv.open_study(simulated_study).read_layer("captures").head(10)
    result = uv.embed(simulated_study, model="vit_test_patch8", random_init=True, seed=3,
                      image_size=32, workers=0, device="cpu")  # fmt: skip
    from urbanvis.vectors import read_vectors

    ids, vectors = read_vectors(uv.open_study(simulated_study), result.outputs["model_id"])
    by_id = dict(zip(ids.tolist(), vectors, strict=True))
    [spec] = encoder_specs(models=["vit_test_patch8"], random_init=True, seed=3)
    files = [simulated_study / p for p in captures["image_path"]]
    got, meta = features_from_files(files, spec, image_size=32, device="cpu")
    want = np.stack([by_id[c] for c in captures["capture_id"]])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert meta["dim"] == got.shape[1]


def test_a_missing_image_is_named(tmp_path):
    [spec] = encoder_specs(thumbnail=True)
    with pytest.raises(InputFileError, match="nope.jpg"):
        features_from_files([tmp_path / "nope.jpg"], spec)


def test_encoder_specs_say_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="at least one encoder"):
        encoder_specs()
    with pytest.raises(InputError, match="random_init"):
        encoder_specs(models=["vit_test_patch8"])
    with pytest.raises(InputFileError, match="does not exist"):
        encoder_specs([tmp_path / "missing.pth.tar"])
    specs = encoder_specs(models=["vit_test_patch8"], random_init=True, thumbnail=True)
    assert [s.kind for s in specs] == ["random-init", "thumbnail"]


def test_tables_are_csv_and_markdown(tmp_path):
    table = pd.DataFrame({"model": ["a", "b"], "R@1": [12.5, 50.0], "n_queries": [10, 10]})
    csv, md = write_table(table, tmp_path / "out" / "vpr.csv", title="VPR")
    assert pd.read_csv(csv).equals(table)
    assert "| a | 12.500 | 10 |" in md.read_text()
    with pytest.raises(InputError, match="csv"):
        write_table(table, tmp_path / "vpr.txt")
