"""urbanvis embed: the layer and vectors, equality with a direct forward, resume, errors."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest

from urbanvis.study import open_study
from urbanvis.vectors import (
    embedding_models,
    model_folder,
    principal_components,
    read_embeddings,
    read_vectors,
)

from .conftest import run_cli
from .data import osm
from .test_cli import assert_one_line_error, tree

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from urbanvis.engine.inference import embed_captures  # noqa: E402

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
    assert "embedded 110 images for 110 captures (90 already done" in embedded["second"].stderr
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
    assert "embedded 0 images for 0 captures (200 already done" in again.stderr
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
    with pytest.raises(ValueError, match="random_init"):
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


# ---------------------------------------------------------------- decoding on the device
def jpeg_bytes(shape: tuple[int, int], seed: int) -> bytes:
    """A synthetic street view resized to ``shape`` (h, w), as a JPEG (quality 90)."""
    from PIL import Image

    from urbanvis.simulate import City, render

    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 3000, 2)
    image = render(City(seed=0), x, y, float(rng.uniform(0, 360)), "2020-06-01T12:00", size=96)
    buf = io.BytesIO()
    Image.fromarray(image).resize(shape[::-1], Image.BICUBIC).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def as_tensor(data: bytes):
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


# Measured over these shapes, 8 images each (torch 2.14, torchvision 0.29, Pillow): mean
# absolute difference 0 to 2.9e-5; one grey level (1/255/std = 0.0175) off at 0 to 0.17% of
# the values (rounding ties between the two passes), two levels at one value in a million;
# the two decoders gave identical pixels. The bounds leave room for CUDA's float rounding,
# not for a wrong resize: a one-pass bicubic gives a mean of ~2e-3 and 20 levels at edges.
LEVEL = 1 / 255 / 0.224


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((48, 48), 32),
        ((48, 72), 32),
        ((72, 48), 32),
        ((320, 320), 224),
        ((480, 640), 224),  # downsampling, landscape
        ((150, 100), 224),  # upsampling, portrait
        ((224, 224), 224),  # no resize at all
        ((225, 300), 224),  # one side resized, a crop offset that rounds
    ],
)
def test_device_transform_matches_the_pil_eval_transform(shape, size):
    """``eval_transform_batch`` (the GPU path, run here on CPU tensors) against
    ``eval_transform`` (PIL, the reference) on the same JPEG files."""
    from PIL import Image

    from urbanvis.engine.decode import decode_images
    from urbanvis.engine.encoders import IMAGENET_MEAN, IMAGENET_STD
    from urbanvis.engine.inference import eval_transform_batch
    from urbanvis.engine.transforms import eval_transform

    files = [jpeg_bytes(shape, seed) for seed in range(4)]
    images, errors = decode_images([as_tensor(d) for d in files], torch.device("cpu"))
    assert errors == [None] * 4
    got = eval_transform_batch(images, size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    ref = []
    for data in files:
        with Image.open(io.BytesIO(data)) as im:
            ref.append(eval_transform(size)(im.convert("RGB")))
    diff = (got - torch.stack(ref)).abs()
    assert got.shape == (4, 3, size, size) and got.dtype == torch.float32
    assert float(diff.mean()) < 2e-4
    assert float(diff.max()) <= 2 * LEVEL + 1e-6
    assert float((diff > LEVEL / 2).float().mean()) < 0.01


def test_device_transform_keeps_the_order_of_mixed_sizes():
    from urbanvis.engine.decode import decode_images
    from urbanvis.engine.inference import eval_transform_batch

    shapes = [(48, 64), (64, 48), (48, 64), (40, 40)]
    data = [as_tensor(jpeg_bytes(s, i)) for i, s in enumerate(shapes)]
    images, _ = decode_images(data, torch.device("cpu"))
    kw = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    together = eval_transform_batch(images, 32, **kw)
    alone = torch.cat([eval_transform_batch([im], 32, **kw) for im in images])
    assert torch.equal(together, alone)


def test_decode_images_falls_back_for_other_formats_and_reports_bad_files():
    from PIL import Image

    from urbanvis.engine.decode import decode_images

    jpeg = jpeg_bytes((40, 60), 0)
    with Image.open(io.BytesIO(jpeg)) as im:
        pixels = np.asarray(im.convert("RGB"))
        png = io.BytesIO()
        im.convert("L").save(png, "PNG")  # greyscale: decoded to RGB
    files = [jpeg, jpeg[: len(jpeg) // 2], png.getvalue(), b"not an image", jpeg]
    images, errors = decode_images([as_tensor(d) for d in files], torch.device("cpu"))
    assert [e is None for e in errors] == [True, False, True, False, True]
    assert images[1] is None and images[3] is None
    assert np.array_equal(images[0].permute(1, 2, 0).numpy(), pixels)
    assert torch.equal(images[0], images[4])  # the good JPEGs of a failed call, one by one
    assert images[2].shape == (3, 40, 60) and torch.equal(images[2][0], images[2][2])
    for error in (errors[1], errors[3]):
        assert "\n" not in error and ".cpp" not in error and error


def test_gpu_decoding_path_on_cpu_tensors(base, embedded, tmp_path, caplog):
    """``decode="gpu"`` on a CPU device: the workers read bytes, a PNG and a JPEG decode in
    this process, a truncated file is skipped with a warning and embedded once repaired."""
    from PIL import Image

    study = tmp_path / "study"
    shutil.copytree(base["study"], study, ignore=shutil.ignore_patterns("embeddings"))
    st = open_study(study)
    caps = pyogrio.read_dataframe(study / "study.gpkg", layer="captures", read_geometry=False)
    png, cut = (study / p for p in caps["image_path"].iloc[[5, 7]])
    with Image.open(png) as im:
        im.save(png, "PNG")  # a PNG under a .jpg name: found by its bytes
    original = cut.read_bytes()
    cut.write_bytes(original[: len(original) // 2])
    with caplog.at_level("WARNING", logger="urbanvis"):
        first = embed_captures(st, checkpoint=base["ckpt_a"], decode="gpu", workers=2)
    assert (first.embedded, first.failed) == (N_CAPTURES - 1, 1) and first.layer_written
    (warning,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert caps["capture_id"].iloc[7] in warning and "truncated" in warning
    cut.write_bytes(original)
    second = embed_captures(st, checkpoint=base["ckpt_a"], decode="gpu", workers=0)
    assert (second.embedded, second.done_before) == (1, N_CAPTURES - 1)

    rows, vectors = read_embeddings(st)
    reference, ref_vectors = read_embeddings(open_study(base["study"]))
    assert len(rows) == N_CAPTURES
    ref_vectors = ref_vectors[pd.Index(reference["capture_id"]).get_indexer(rows["capture_id"])]
    # measured: max 0.0069 and mean 3.4e-4 for vectors up to 3.0 (the transform's rare
    # one-level rounding ties, through a 32 px model); the PNG holds the same pixels
    diff = np.abs(vectors - ref_vectors)
    scale = np.abs(ref_vectors).max()
    assert diff.max() < 0.01 * scale, (diff.max(), scale)
    assert diff.mean() < 1e-3 * scale, (diff.mean(), scale)


def test_bf16_precision_is_close_to_fp32(base, embedded, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(base["study"], study, ignore=shutil.ignore_patterns("embeddings"))
    st = open_study(study)
    summary = embed_captures(st, checkpoint=base["ckpt_a"], precision="bf16", workers=0, limit=64)
    ids, vectors = read_vectors(st, summary.model)
    assert vectors.dtype == np.float32
    reference, ref_vectors = read_embeddings(open_study(base["study"]))
    ref = ref_vectors[pd.Index(reference["capture_id"]).get_indexer(ids)]
    cos = (vectors * ref).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(ref, axis=1)
    rel = np.linalg.norm(vectors - ref, axis=1) / np.linalg.norm(ref, axis=1)
    # measured: cosine >= 0.99994, relative error <= 1.1% (bf16 keeps 8 bits of mantissa)
    assert cos.min() > 0.999 and rel.max() < 0.05, (cos.min(), rel.max())
    assert not np.array_equal(vectors, ref)  # bf16 really ran


# dynamo probes ``.grad`` inside torch._logging.hide_warnings, which hides the warning when
# shown but cannot stop the "error" filter of the tests from raising it
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_compiled_forward_gives_the_eager_vectors(base, embedded, tmp_path, monkeypatch):
    """``compile="on"`` (here with the ``aot_eager`` backend): batches of 48, 48 and a short
    one of 4, padded to 48, one graph for all; the vectors are the eager run's."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("URBANVIS_COMPILE_BACKEND", "aot_eager")
    study = tmp_path / "study"
    shutil.copytree(base["study"], study, ignore=shutil.ignore_patterns("embeddings"))
    st = open_study(study)
    torch._dynamo.reset()
    counters.clear()
    summary = embed_captures(
        st, checkpoint=base["ckpt_a"], compile="on", workers=0, batch_size=48, limit=100
    )
    assert summary.embedded == 100 and summary.compile_seconds is not None
    assert counters["stats"]["unique_graphs"] == 1  # the short batch did not recompile
    assert "compiled in" in summary.line()
    ids, vectors = read_vectors(st, summary.model)
    reference, ref_vectors = read_embeddings(open_study(base["study"]))
    ref = ref_vectors[pd.Index(reference["capture_id"]).get_indexer(ids)]
    assert np.allclose(vectors, ref, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"precision": "fp16"}, "precision must be auto, fp32 or bf16"),
        ({"decode": "nvjpeg"}, "decode must be auto, cpu or gpu"),
        ({"compile": "yes"}, "compile must be auto, on or off, not 'yes'"),
    ],
)
def test_bad_precision_or_decode(base, kw, needle):
    with pytest.raises(ValueError, match=needle):
        embed_captures(open_study(base["study"]), checkpoint=base["ckpt_a"], **kw)


# ------------------------------------------------------------------------- torchrun
BIN = Path(sys.executable).parent


def torchrun_embed(*args: str, background: bool = False):
    """``torchrun --standalone --nproc_per_node 2 -m urbanvis_cli.main embed ...`` on CPU
    (gloo), one thread per process (on 2 cores torch's intra-op threads only slow it)."""
    command = [
        str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
        "-m", "urbanvis_cli.main", "embed", *args, "--device", "cpu", "--workers", "0",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANVIS_")}
    env["OMP_NUM_THREADS"] = "1"
    if background:
        return subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (torchrun's workers), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def part_ids(folder: Path, pattern: str = "part-*.parquet") -> list[str]:
    import pyarrow.parquet as pq

    ids: list[str] = []
    for part in sorted((folder / "parts").glob(pattern)):
        ids.extend(pq.read_table(part, columns=["capture_id"]).column(0).to_pylist())
    return ids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds workers through /proc")
def test_torchrun_shards_resumes_after_kill_9_and_equals_one_process(base, tmp_path):
    """Two gloo processes: a --limit trial leaves each rank's share in its own part files;
    kill -9 of both workers mid-run leaves only whole files; the resumed run embeds only what
    is missing, rank 0 merges and writes the layer, and all equals one process to 1e-5.

    224 px (784 tokens of the tiny test ViT) and one image per batch make the run last long
    enough to be killed in the middle.
    """
    one, two = tmp_path / "one", tmp_path / "two"
    for study in (one, two):
        shutil.copytree(base["study"], study, ignore=shutil.ignore_patterns("embeddings"))
    ckpt = str(base["ckpt_a"])
    single = embed_captures(
        open_study(one), checkpoint=ckpt, image_size=224, batch_size=32, workers=0
    )
    common = ("--study", str(two), "--checkpoint", ckpt, "--image-size", "224")
    folder = model_folder(open_study(two), single.model)
    caps = pyogrio.read_dataframe(two / "study.gpkg", layer="captures", read_geometry=False)
    order = caps.loc[caps["status"] == "ok", "capture_id"].tolist()

    # a trial: rank r embeds pending captures r, r + 2, r + 4, ... into part-r00r-*
    trial = torchrun_embed(*common, "--limit", "60", "--batch-size", "8")
    assert trial.returncode == 0, trial.stderr[-3000:]
    assert part_ids(folder, "part-r000-*") == order[0:60:2]
    assert part_ids(folder, "part-r001-*") == order[1:60:2]
    assert trial.stdout.count("60 of 200 captures embedded") == 1  # rank 0 alone reports
    assert single.model not in embedding_models(open_study(two))  # a trial: no layer yet

    # kill -9 both workers once this run has written a part of its own
    proc = torchrun_embed(*common, "--batch-size", "1", background=True)
    try:
        deadline = time.monotonic() + 120
        while len(part_ids(folder)) == 60:
            assert proc.poll() is None, "the run ended before it wrote a part"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        workers = child_pids(proc.pid)
        assert len(workers) == 2 and proc.poll() is None, "the run finished before the kill"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = part_ids(folder)  # every part left behind reads back whole
    assert 60 < len(done) < N_CAPTURES and len(set(done)) == len(done)
    assert not (folder / "vectors.parquet").exists()
    assert single.model not in embedding_models(open_study(two))

    resumed = torchrun_embed(*common, "--batch-size", "16")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    embedded = N_CAPTURES - len(done)
    assert f"{embedded} images for {embedded} captures ({len(done)} already done" in resumed.stderr
    assert resumed.stdout.count("200 of 200 captures embedded") == 1
    assert (folder / "vectors.parquet").exists()
    assert not list((folder / "parts").iterdir())  # merged; temporaries of the kill removed
    rows, vectors = read_embeddings(open_study(two), model=single.model)
    ref_rows, ref_vectors = read_embeddings(open_study(one), model=single.model)
    at = pd.Index(ref_rows["capture_id"]).get_indexer(rows["capture_id"])
    assert len(rows) == N_CAPTURES and (at >= 0).all()
    np.testing.assert_allclose(vectors, ref_vectors[at], rtol=1e-5, atol=1e-5)
    pcs = ["pc1", "pc2", "pc3"]
    np.testing.assert_allclose(
        rows[pcs].to_numpy(), ref_rows[pcs].to_numpy()[at], rtol=1e-4, atol=1e-5
    )
    runs = [r for r in open_study(two).runs() if r["outputs"].get("model_id") == single.model]
    assert [r["outputs"]["embedded"] for r in runs] == [60, embedded]  # the killed run: none
    assert runs[-1]["parameters"]["processes"] == 2


@pytest.mark.parametrize("decode", ["cpu", "gpu"])
def test_a_broken_png_is_skipped_not_a_crash(base, embedded, tmp_path, decode):
    """A PNG whose data no longer matches its checksum: PIL reports it, and torchvision's PNG
    decoder (libpng) can crash the process on it, so both paths must go through PIL, skip
    the capture and go on."""
    from PIL import Image

    study = tmp_path / "study"
    shutil.copytree(base["study"], study, ignore=shutil.ignore_patterns("embeddings"))
    st = open_study(study)
    caps = pyogrio.read_dataframe(study / "study.gpkg", layer="captures", read_geometry=False)
    bad = study / caps["image_path"].iloc[3]
    with Image.open(bad) as im:
        buffer = io.BytesIO()
        im.save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[data.index(b"IDAT") + 12] ^= 0xFF  # the chunk's data no longer matches its CRC
    bad.write_bytes(bytes(data))
    summary = embed_captures(st, checkpoint=base["ckpt_a"], decode=decode, workers=0)
    assert (summary.embedded, summary.failed) == (N_CAPTURES - 1, 1) and summary.layer_written
