"""urbanvis embed on captures that share image files: one forward pass per distinct file.

A panorama seen from neighbouring points is stored once (``urbanvis._imagestore``), so the
captures layer of a GSV, historical or Mapillary harvest has rows that name the same file.
The simulator writes one file per capture; here its captures layer is rewritten so that the
captures of up to three neighbouring points at one heading name one file, the way those
providers' rows do.
"""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from urbanvis import stages, vectors
from urbanvis.study import open_study
from urbanvis.vectors import model_folder, read_embeddings, read_vectors, vector_ids

from .data import osm

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from urbanvis.engine import inference  # noqa: E402
from urbanvis.engine.inference import _ImageFiles, embed_captures  # noqa: E402

from .test_embed import direct_forward, save_checkpoint  # noqa: E402

NEIGHBOURS = 3  # points whose captures at one heading share a file


@pytest.fixture(scope="module")
def shared_base(tmp_path_factory) -> dict:
    """The town's 50 points, one simulator capture per heading (0, 180), 32 px; the captures
    of points ``3k, 3k+1, 3k+2`` at one heading all name the file of the first of them.
    One of those names is written ``images/./...`` (the same file, another spelling)."""
    root = tmp_path_factory.mktemp("embed_dedupe")
    study = root / "study"
    stages.sample(study, osm=osm.town(root / "town.osm"))
    stages.harvest(study, provider="simulator", captures_per_point=1, headings=(0.0, 180.0),
                   size=32)  # fmt: skip
    st = open_study(study)
    caps = st.read_layer("captures")
    assert (caps["status"] == "ok").all() and caps["image_path"].is_unique
    view = caps.groupby("point_id").cumcount()  # the first or second heading of the point
    group = caps["point_id"].astype(int) // NEIGHBOURS * 10 + view
    first = caps.groupby(group, sort=False)[["image_path", "sha256"]].transform("first")
    caps["image_path"], caps["sha256"] = first["image_path"], first["sha256"]
    respelled = caps.index[group.duplicated()][0]  # a capture that shares another's file
    caps.loc[respelled, "image_path"] = caps.loc[respelled, "image_path"].replace(
        "images/", "images/./", 1
    )
    st.write_layer("captures", caps)
    files = dict(zip(caps["capture_id"], group, strict=True))  # capture id -> its file group
    assert 1 < len(set(files.values())) < len(files)  # shared files, and more than one
    return {
        "study": study,
        "files": files,
        "paths": dict(zip(group, first["image_path"], strict=True)),
        "ckpt": save_checkpoint(root / "a.pth.tar", 1),
    }


@pytest.fixture
def shared(shared_base, tmp_path) -> dict:
    study = tmp_path / "study"
    shutil.copytree(shared_base["study"], study)
    return {**shared_base, "study": study}


@pytest.fixture
def through_model(monkeypatch) -> dict:
    """What the model sees: images per forward pass, and each file read (``workers=0``)."""
    seen: dict = {"batches": [], "reads": Counter()}
    forward = inference._forward

    def counting_forward(net, images):
        seen["batches"].append(int(images.shape[0]))
        return forward(net, images)

    def reading(self, i):
        seen["reads"][str(self.paths[i])] += 1
        return read(self, i)

    read = inference._FileImages.__getitem__
    monkeypatch.setattr(inference, "_forward", counting_forward)
    monkeypatch.setattr(inference._FileImages, "__getitem__", reading)
    return seen


def clear(seen: dict) -> None:
    seen["batches"].clear()
    seen["reads"].clear()


@pytest.mark.parametrize("decode", ["cpu", "gpu"])
def test_each_distinct_file_is_embedded_once_and_shared(shared, through_model, decode):
    st, files = open_study(shared["study"]), shared["files"]
    n_files = len(set(files.values()))
    summary = embed_captures(st, checkpoint=shared["ckpt"], batch_size=4, workers=0,
                             decode=decode)  # fmt: skip
    # one forward pass per distinct file: the respelled path is the same file
    assert sum(through_model["batches"]) == n_files
    assert len(through_model["batches"]) == -(-n_files // 4)
    assert set(through_model["reads"].values()) == {1} and len(through_model["reads"]) == n_files
    assert (summary.images, summary.embedded, summary.failed) == (n_files, len(files), 0)
    assert summary.layer_written and not summary.stopped
    assert f"embedded {n_files} images for {len(files)} captures" in summary.line()

    # every capture has a vector: its file's, the same for every capture that shares it
    rows, vectors = read_embeddings(st)
    assert sorted(rows["capture_id"]) == sorted(files)
    by_file: dict[int, list[int]] = {}
    for k, capture_id in enumerate(rows["capture_id"]):
        by_file.setdefault(files[capture_id], []).append(k)
    assert len(by_file) == n_files
    for members in by_file.values():
        for k in members[1:]:
            np.testing.assert_array_equal(vectors[k], vectors[members[0]])
    if decode == "cpu":  # the device transform differs from PIL by rounding: test_embed
        groups = sorted(by_file)
        expected = direct_forward(st.root, [shared["paths"][g] for g in groups], shared["ckpt"])
        got = np.stack([vectors[by_file[g][0]] for g in groups])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_an_unreadable_shared_file_skips_all_its_captures(shared, caplog):
    st, files = open_study(shared["study"]), shared["files"]
    sizes = Counter(files.values())
    group = next(g for g, n in sizes.items() if n == NEIGHBOURS)
    (st.root / shared["paths"][group]).write_bytes(b"not an image")
    with caplog.at_level("WARNING", logger="urbanvis"):
        summary = embed_captures(st, checkpoint=shared["ckpt"], batch_size=8, workers=0)
    assert (summary.failed_images, summary.failed) == (1, NEIGHBOURS)
    assert (summary.images, summary.embedded) == (len(sizes) - 1, len(files) - NEIGHBOURS)
    (warning,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    for capture_id in (c for c, g in files.items() if g == group):
        assert capture_id in warning
    assert f"{NEIGHBOURS} captures of one image" in warning
    ids, _ = read_vectors(st, summary.model)
    assert sorted(ids) == sorted(c for c, g in files.items() if g != group)


def test_resume_embeds_the_rest_of_a_partly_done_file_once(shared, through_model):
    """A trial of 5 captures stops inside a file's captures; a run stopped after two
    batches; then the rest. Each run reads each file once, only for captures without a
    vector, and every capture ends with exactly one vector: its file's."""
    st, files = open_study(shared["study"]), shared["files"]
    ckpt = shared["ckpt"]
    folder = None
    order = st.read_layer("captures", read_geometry=False)["capture_id"].tolist()
    runs = []

    def run(**kw):
        clear(through_model)
        before = set(vector_ids(folder)) if folder is not None else set()
        summary = embed_captures(st, checkpoint=ckpt, batch_size=4, workers=0, **kw)
        after = vector_ids(model_folder(st, summary.model))
        assert len(after) == len(set(after))  # no capture embedded twice
        new = set(after) - before
        touched = {files[c] for c in new}
        # each file read at most once (a stop leaves the batch read last unused), and run
        # through the model once if some of its captures lacked a vector
        reads = through_model["reads"]
        assert set(reads.values()) <= {1}
        assert {shared["paths"][g] for g in touched} <= set(reads)
        assert len(reads) == summary.images + (4 if kw.get("should_stop") else 0)
        assert sum(through_model["batches"]) == summary.images == len(touched)
        assert summary.embedded == len(new)
        runs.append((summary, new))
        return summary

    trial = run(limit=5)
    folder = model_folder(st, trial.model)
    assert trial.stopped and not trial.layer_written
    assert runs[0][1] == set(order[:5])
    split = {files[c] for c in order[:5]} & {files[c] for c in order[5:]}
    assert split, "the trial should end inside a file's captures"

    calls = []
    stopped = run(should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert stopped.stopped and stopped.images == 2 * 4 and not stopped.layer_written
    # the files the trial left partly done come first in the pending order: embedded now,
    # for their remaining captures only
    assert split <= {files[c] for c in runs[1][1]}

    rest = run()
    assert not rest.stopped and rest.layer_written
    assert rest.done_before == len(runs[0][1]) + len(runs[1][1])
    assert sum(s.embedded for s, _ in runs) == len(files)
    files_per_run = [{files[c] for c in new} for _, new in runs]
    assert sum(len(f) for f in files_per_run) == sum(s.images for s, _ in runs)
    # a file is embedded again only in a run that found some of its captures without one
    assert not files_per_run[1] & files_per_run[2]

    rows, vectors = read_embeddings(st)
    assert sorted(rows["capture_id"]) == sorted(files)
    frame = pd.DataFrame({"file": [files[c] for c in rows["capture_id"]]})
    for _, members in frame.groupby("file").groups.items():
        k = list(members)
        for other in k[1:]:  # split files were embedded in two runs, different batches
            np.testing.assert_allclose(vectors[other], vectors[k[0]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bucket_ids", [None, 3])
def test_shards_split_distinct_files_disjointly(bucket_ids, monkeypatch):
    """torchrun ranks take every world-th distinct file, each with all of its captures
    (also with the paths coded in hash buckets of 3, as beyond a million captures)."""
    if bucket_ids is not None:
        monkeypatch.setattr(vectors, "_BUCKET_IDS", bucket_ids)
    caps = pd.DataFrame(
        {
            "capture_id": [f"c{i}" for i in range(11)],
            "image_path": ["a.jpg", "b.jpg", "./a.jpg", "c.jpg", "b.jpg", "d.jpg", "e.jpg",
                           "x/../c.jpg", "f.jpg", "a.jpg", "g.jpg"],
        }
    )  # fmt: skip
    files = _ImageFiles.of(caps["capture_id"], caps["image_path"])
    paths = files.paths.to_pylist()
    assert paths == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "g.jpg"]
    assert files.ids_of(0) == ["c0", "c2", "c9"] and files.ids_of(2) == ["c3", "c7"]
    for world in (1, 2, 3, 8):
        shards = [files.shard(rank, world) for rank in range(world)]
        seen = [p for s in shards for p in s.paths.to_pylist()]
        assert sorted(seen) == sorted(paths)  # each file on exactly one rank
        for rank, s in enumerate(shards):
            assert s.paths.to_pylist() == paths[rank::world]
            for j, path in enumerate(s.paths.to_pylist()):
                assert s.path(j) == path and s.ids_of(j) == files.ids_of(paths.index(path))
        ids, rows = shards[0].expand(list(range(len(shards[0]))))
        assert sorted(ids) == sorted(c for j in range(len(shards[0])) for c in shards[0].ids_of(j))
        assert list(rows) == [j for j in range(len(shards[0])) for _ in shards[0].ids_of(j)]
