"""MoCo v3 pretraining end to end on a simulated city: it learns, it resumes bit for bit,
it survives kill -9, DDP on CPU gives the single-process loss, and bad input is one line.

The study is made with the real CLI (``urbanvis sample`` + ``urbanvis harvest``, 48 px
images); temporal pairs are built here from the captures layer (all pairs of captures of
one point and heading at different times), independently of ``urbanvis pairs``.
Every run uses one thread per process: on a 2-core machine torch's intra-op threads make
the tiny ViT's small ops many times slower.
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

import pandas as pd  # noqa: E402
import pyogrio  # noqa: E402
from PIL import Image  # noqa: E402

from urbanvis.engine import create_encoder, load_encoder  # noqa: E402
from urbanvis.engine.encoders import read_checkpoint  # noqa: E402
from urbanvis.engine.pretrain import PretrainConfig, pretrain  # noqa: E402
from urbanvis.engine.schedules import absolute_lr  # noqa: E402
from urbanvis.engine.transforms import eval_transform  # noqa: E402

from .conftest import make_town_study, run_cli  # noqa: E402
from .test_cli import assert_one_line_error  # noqa: E402

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
HOLD = 3  # every third point is held out of training (17 points, 102 images)
TINY = dict(arch="vit_test_patch8", dim=16, mlp_dim=64, workers=0, device="cpu")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the CLI subprocesses
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    """A study of 50 points x 2 headings x 3 capture times, through the real CLI."""
    root = tmp_path_factory.mktemp("engine")
    study = make_town_study(
        root / "S", "--captures-per-point", "3", "--headings", "0,180", "--size", "48"
    )
    captures = pyogrio.read_dataframe(study / "study.gpkg", layer="captures")
    captures = pd.DataFrame(captures[captures["status"] == "ok"].drop(columns="geometry"))
    captures.to_parquet(study / "captures.parquet")
    held_out = captures["point_id"] % HOLD == 0  # never seen in training
    temporal_pairs(captures).to_parquet(study / "pairs" / "temporal.parquet")
    temporal_pairs(captures[~held_out]).to_parquet(study / "pairs" / "train.parquet")
    return study


def temporal_pairs(captures: pd.DataFrame) -> pd.DataFrame:
    """Both orders of every two captures of one point and heading at different times."""
    rows = []
    for (point, _), group in captures.groupby(["point_id", "heading"]):
        for a, b in itertools.permutations(group.itertuples(), 2):
            if a.captured_at != b.captured_at:
                rows.append((a.image_path, b.image_path, point))
    return pd.DataFrame(rows, columns=["image_a", "image_b", "point_id"])


def small_table(city: Path, name: str, n: int) -> Path:
    """The first n temporal pairs (a short epoch), as its own pair table."""
    path = city / "pairs" / f"{name}.parquet"
    pd.read_parquet(city / "pairs" / "temporal.parquet").head(n).to_parquet(path)
    return path


def state_of(path: Path) -> dict:
    return read_checkpoint(path)["state_dict"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, differ[:5]


# --------------------------------------------------------------------------- it learns
def cls_features(model, x):
    model.eval()
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


def same_place_hits(model, x, point_ids) -> int:
    """Queries whose nearest other image (cosine, [CLS] features) shows the same point."""
    f = torch.nn.functional.normalize(cls_features(model, x), dim=1)
    sim = f @ f.T
    sim.fill_diagonal_(-2.0)
    return int((point_ids[sim.argmax(dim=1)] == point_ids).sum())


# 15 epochs x 11 iterations of 32 temporal pairs (~15 s). The first epochs' loss sits well
# above chance (2T x 2 ln 32 = 2.77) and falls to about chance: at this size the tiny ViT
# learns little temporal invariance; retrieval beats random weights only narrowly (21 vs 15, 19, 9
# of 102 when written).
LEARN_EPOCHS, LEARN_DROP = 15, 0.15
LEARN = PretrainConfig(
    **TINY,
    epochs=0,
    batch_size=32,
    base_lr=5e-2,
    weight_decay=0.05,
    warmup_epochs=2,
    save_every=1000,
    seed=0,
)


def test_temporal_pretraining_learns(city, tmp_path):
    steps = []
    config = replace(LEARN, epochs=LEARN_EPOCHS)
    result = pretrain(
        city, city / "pairs" / "train.parquet", tmp_path / "run", config, progress=steps.append
    )
    losses = result.epoch_losses
    assert len(losses) == config.epochs and all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:2]) / 2, sum(losses[-3:]) / 3
    assert last < first - LEARN_DROP, losses

    # the per-iteration schedules the loop used are the closed forms
    lr = absolute_lr(config.base_lr, config.batch_size)
    for step in steps:
        t = step["epoch"] + step["iteration"] / step["iterations"]
        want = (
            lr * t / config.warmup
            if t < config.warmup
            else lr
            / 2
            * (1 + math.cos(math.pi * (t - config.warmup) / (config.epochs - config.warmup)))
        )
        assert step["lr"] == pytest.approx(want, rel=1e-9, abs=1e-15)
        assert step["momentum"] == pytest.approx(
            1 - (1 + math.cos(math.pi * t / config.epochs)) / 2 * (1 - config.momentum)
        )

    # same-place retrieval among the held-out points' captures: trained beats random init
    captures = pd.read_parquet(city / "captures.parquet")
    held = captures[captures["point_id"] % HOLD == 0]
    tf = eval_transform(32)
    x = torch.stack([tf(Image.open(city / p).convert("RGB")) for p in held["image_path"]])
    ids = torch.tensor(held["point_id"].to_numpy())
    trained = same_place_hits(load_encoder(result.checkpoint), x, ids)
    random = []
    for seed in range(3):  # the best of three random initialisations
        torch.manual_seed(seed)
        random.append(same_place_hits(create_encoder(config.arch), x, ids))
    assert trained > max(random), (trained, random, len(held))


# ------------------------------------------------------------------------------ resume
def test_resume_gives_the_uninterrupted_run_bitwise(city, tmp_path):
    pairs = small_table(city, "resume", 96)
    config = PretrainConfig(**TINY, epochs=3, batch_size=32, base_lr=1e-2, save_every=1, seed=7)
    whole = pretrain(city, pairs, tmp_path / "whole", config)
    part = pretrain(city, pairs, tmp_path / "part", config, stop_after_epoch=1)
    assert part.checkpoint.name == "checkpoint_0001.pth.tar" and len(part.epoch_losses) == 1
    rest = pretrain(city, pairs, tmp_path / "part", config, resume=True)
    assert rest.checkpoint.name == whole.checkpoint.name == "checkpoint_0003.pth.tar"
    assert rest.epoch_losses == whole.epoch_losses  # the first comes from the checkpoint
    a, b = read_checkpoint(whole.checkpoint), read_checkpoint(rest.checkpoint)
    assert_same_weights(a["state_dict"], b["state_dict"])
    for sa, sb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # and the resumed run did train: its weights moved away from the epoch-1 checkpoint
    one = state_of(part.checkpoint)
    key = "module.predictor.0.weight"
    assert not torch.equal(one[key], b["state_dict"][key])


def test_resume_refuses_other_settings(city, tmp_path):
    pairs = small_table(city, "resume_other", 64)
    config = PretrainConfig(**TINY, epochs=2, batch_size=32, save_every=1)
    pretrain(city, pairs, tmp_path / "run", config, stop_after_epoch=1)
    with pytest.raises(ValueError, match="batch_size=32, not 16"):
        pretrain(city, pairs, tmp_path / "run", replace(config, batch_size=16), resume=True)
    with pytest.raises(ValueError, match="photometric=1.0, not 0.0"):
        pretrain(city, pairs, tmp_path / "run", replace(config, photometric=0.0), resume=True)
    with pytest.raises(ValueError, match="nothing to resume"):
        pretrain(city, pairs, tmp_path / "empty", config, resume=True)


def test_the_patch_projection_trains_only_with_learn_patch(city, tmp_path):
    pairs = small_table(city, "learn_patch", 64)
    eased = PretrainConfig(**TINY, epochs=1, batch_size=32, base_lr=1e-2, seed=3,
                           photometric=0.0, crop_min=0.5, momentum=0.9)  # fmt: skip
    frozen = pretrain(city, pairs, tmp_path / "frozen", eased)
    learnt = pretrain(city, pairs, tmp_path / "learnt", replace(eased, learn_patch=True))
    key = "module.base_encoder.patch_embed.proj.weight"
    torch.manual_seed(3)
    from urbanvis.engine.encoders import create_encoder

    start = create_encoder("vit_test_patch8", img_size=32).patch_embed.proj.weight
    assert torch.equal(state_of(frozen.checkpoint)[key], start)  # MoCo v3: frozen at init
    assert not torch.equal(state_of(learnt.checkpoint)[key], start)
    saved = read_checkpoint(learnt.checkpoint)["urbanvis"]["config"]
    assert (saved["photometric"], saved["crop_min"], saved["learn_patch"]) == (0.0, 0.5, True)
    with pytest.raises(ValueError, match="crop_min must be in"):
        PretrainConfig(**TINY, crop_min=0.0).validate()


def pretrain_args(city: Path, pairs: Path, name: str, *extra: str) -> list[str]:
    return [
        "pretrain",
        "--study",
        str(city),
        "--pairs",
        str(pairs),
        "--name",
        name,
        "--arch",
        "vit_test_patch8",
        "--dim",
        "16",
        "--mlp-dim",
        "64",
        "--workers",
        "0",
        "--batch-size",
        "32",
        "--base-lr",
        "1e-2",
        "--device",
        "cpu",
        *extra,
    ]


def test_kill_9_loses_at_most_the_work_since_the_last_checkpoint(city):
    pairs = small_table(city, "kill", 128)
    args = ("--epochs", "6", "--save-every", "1")
    whole = run_cli(*pretrain_args(city, pairs, "whole", *args))
    assert whole.returncode == 0, whole.stderr

    run_dir = city / "checkpoints" / "killed"
    exe = BIN / "urbanvis"
    proc = subprocess.Popen(
        [str(exe), *pretrain_args(city, pairs, "killed", *args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoint_0001.pth.tar").exists():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    kept = sorted(p.name for p in run_dir.glob("checkpoint_*.pth.tar"))
    assert kept and "checkpoint_0006.pth.tar" not in kept  # killed mid-run
    for path in run_dir.glob("checkpoint_*.pth.tar"):
        read_checkpoint(path)  # every checkpoint left behind is complete

    resumed = run_cli(*pretrain_args(city, pairs, "killed", *args, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(
        state_of(city / "checkpoints" / "whole" / "checkpoint_0006.pth.tar"),
        state_of(run_dir / "checkpoint_0006.pth.tar"),
    )


# --------------------------------------------------------------------------------- DDP
LOSS_SCRIPT = """
import json, sys, torch, torch.distributed as dist
from urbanvis.engine.loss import ContrastiveLoss
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
q1, q2, k1, k2 = (torch.randn(8 * world, 16) for _ in range(4))
mine = slice(rank * 8, (rank + 1) * 8)
loss = ContrastiveLoss(0.2)(q1[mine], q2[mine], k1[mine], k2[mine]).detach()
dist.all_reduce(loss)
if rank == 0:
    json.dump({"loss": float(loss) / world}, open(sys.argv[1], "w"))
dist.destroy_process_group()
"""


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "torchrun"), "--nproc_per_node", "2", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ddp_loss_gathers_keys_and_offsets_labels(tmp_path):
    """Two ranks, 8 queries each against all 16 keys: their mean loss is the loss of one
    process on all 16 (the labels of rank 1 are 8..15)."""
    from urbanvis.engine.loss import ContrastiveLoss

    script = tmp_path / "loss_ddp.py"
    script.write_text(LOSS_SCRIPT)
    result = torchrun(str(script), str(tmp_path / "out.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    torch.manual_seed(0)
    q1, q2, k1, k2 = (torch.randn(16, 16) for _ in range(4))
    whole = float(ContrastiveLoss(0.2)(q1, q2, k1, k2))
    assert json.loads((tmp_path / "out.json").read_text())["loss"] == pytest.approx(whole, rel=1e-6)


def test_ddp_two_cpu_processes_give_the_single_process_loss(city):
    """``torchrun --nproc_per_node 2`` on CPU (gloo) against one process, global batch 64.

    The two runs cannot agree exactly: SyncBatchNorm needs CUDA, so on CPU each rank
    normalises its own 32 samples, and the ranks draw their own augmentations. Their
    first-epoch losses differ by about as much as runs with another seed (~0.05 here);
    the tolerance of 0.15 still catches the DDP mistakes that matter: keys not gathered
    (chance level drops by 2T ln 2 x 2 = 0.55) or labels not offset (loss far higher).
    """
    pairs = small_table(city, "ddp", 256)
    args = pretrain_args(city, pairs, "ddp2", "--epochs", "1", "--batch-size", "64")
    two = torchrun("-m", "urbanvis_cli.main", *args)
    assert two.returncode == 0, two.stderr[-3000:]
    one = run_cli(*pretrain_args(city, pairs, "ddp1", "--epochs", "1", "--batch-size", "64"))
    assert one.returncode == 0, one.stderr
    loss = {}
    for name in ("ddp1", "ddp2"):
        ckpt = read_checkpoint(city / "checkpoints" / name / "checkpoint_0001.pth.tar")
        loss[name] = ckpt["urbanvis"]["losses"][0]
    assert loss["ddp2"] == pytest.approx(loss["ddp1"], abs=0.15), loss
    # rank 0 alone wrote the checkpoint and recorded the run
    runs = (city / "study.toml").read_text().count('name = "ddp2"')
    assert runs == 1


# ---------------------------------------------------------------------------- bad input
def test_empty_pair_table(city):
    path = city / "pairs" / "empty.parquet"
    pd.DataFrame(
        {"image_a": pd.Series([], dtype=str), "image_b": pd.Series([], dtype=str)}
    ).to_parquet(path)
    assert_one_line_error(
        run_cli(*pretrain_args(city, path, "bad", "--epochs", "1")), "empty.parquet is empty"
    )


def test_missing_images(city):
    table = pd.read_parquet(city / "pairs" / "temporal.parquet").head(40)
    gone = pd.DataFrame(
        {
            "image_a": [f"images/gone/{i}.jpg" for i in range(3)],
            "image_b": table["image_b"].head(3).to_list(),
        }
    )
    path = city / "pairs" / "holes.parquet"
    pd.concat([table, gone], ignore_index=True).to_parquet(path)
    stop = run_cli(*pretrain_args(city, path, "holes", "--epochs", "1"))
    assert_one_line_error(
        stop, "3 images of the pair table are missing", "(3 pairs)", "--on-missing skip"
    )
    assert not (city / "checkpoints" / "holes").exists()
    skip = run_cli(*pretrain_args(city, path, "holes", "--epochs", "1", "--on-missing", "skip"))
    assert skip.returncode == 0, skip.stderr
    assert (city / "checkpoints" / "holes" / "checkpoint_0001.pth.tar").exists()


def test_batch_larger_than_the_dataset(city):
    path = small_table(city, "twenty", 20)
    assert_one_line_error(
        run_cli(*pretrain_args(city, path, "big", "--epochs", "1")),
        "--batch-size 32 is larger than the 20 pairs",
        "--batch-size 20",
    )


@pytest.mark.parametrize("content", ["truncated", "text"])
def test_resume_from_a_broken_checkpoint(city, content):
    path = small_table(city, "broken", 64)
    run_dir = city / "checkpoints" / f"broken-{content}"
    run_dir.mkdir(parents=True)
    bad = run_dir / "checkpoint_0001.pth.tar"
    if content == "truncated":
        config = PretrainConfig(**TINY, epochs=1, batch_size=32)
        good = pretrain(city, path, run_dir, config).checkpoint
        bad.write_bytes(good.read_bytes()[:5000])
        needle = "truncated or not a PyTorch checkpoint"
    else:
        bad.write_text("epoch,loss\n1,2.5\n")
        needle = "checkpoint_0001.pth.tar"
    result = run_cli(*pretrain_args(city, path, f"broken-{content}", "--epochs", "2", "--resume"))
    assert_one_line_error(result, needle)
    with pytest.raises(FileNotFoundError, match="checkpoint_0001"):
        load_encoder(bad)  # the library says the same


def test_unknown_model_suggests_close_matches(city):
    path = small_table(city, "unknown", 64)
    args = pretrain_args(city, path, "unknown", "--epochs", "1")
    args[args.index("vit_test_patch8")] = "vit_smal_patch16_224"
    assert_one_line_error(
        run_cli(*args),
        "unknown encoder 'vit_smal_patch16_224'",
        "did you mean vit_small_patch16_224",
    )


# ------------------------------------------------------------------------ torch.compile
# dynamo probes ``.grad`` of its inputs inside torch._logging.hide_warnings, which hides the
# warning when shown but cannot stop the "error" filter of these tests from raising it
NON_LEAF_GRAD = "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"


@pytest.mark.filterwarnings(NON_LEAF_GRAD)
def test_compiled_run_has_the_eager_checkpoint_layout_and_resumes_either_way(
    city, tmp_path, monkeypatch
):
    """``compile="on"`` on the CPU (``aot_eager``: dynamo and AOTAutograd trace forward and
    backward as inductor would, without generating code): the same keys, shapes and
    (nearly) the same training as eager; a compiled run resumes an eager checkpoint and an
    eager run a compiled one."""
    import shutil

    from torch._dynamo.utils import counters

    monkeypatch.setenv("URBANVIS_COMPILE_BACKEND", "aot_eager")
    pairs = small_table(city, "compile", 64)  # 2 iterations an epoch
    eager = PretrainConfig(**TINY, epochs=2, batch_size=32, base_lr=1e-2, save_every=1, seed=5)
    on = replace(eager, compile="on")
    torch._dynamo.reset()
    counters.clear()
    plain = pretrain(city, pairs, tmp_path / "eager", eager, stop_after_epoch=1)
    assert plain.compile_seconds is None and not counters["stats"]["unique_graphs"]
    compiled = pretrain(city, pairs, tmp_path / "compiled", on, stop_after_epoch=1)
    assert counters["stats"]["unique_graphs"] >= 3  # both encoders and the predictor
    assert compiled.compile_seconds is not None and compiled.compile_seconds >= 0

    a, b = state_of(plain.checkpoint), state_of(compiled.checkpoint)
    assert list(a) == list(b) and not any("_orig_mod" in k for k in b)
    assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    assert compiled.epoch_losses == pytest.approx(plain.epoch_losses, rel=1e-4)
    key = "module.base_encoder.blocks.0.attn.qkv.weight"
    assert torch.allclose(a[key], b[key], atol=1e-5)
    assert read_checkpoint(compiled.checkpoint)["urbanvis"]["config"]["compile"] == "on"

    # epoch 2: eager from the eager checkpoint (the reference), compiled from the eager
    # checkpoint, eager from the compiled checkpoint
    shutil.copytree(tmp_path / "eager", tmp_path / "mixed")
    reference = pretrain(city, pairs, tmp_path / "eager", eager, resume=True)
    from_eager = pretrain(city, pairs, tmp_path / "mixed", on, resume=True)
    from_compiled = pretrain(city, pairs, tmp_path / "compiled", eager, resume=True)
    want = state_of(reference.checkpoint)
    for run in (from_eager, from_compiled):
        assert run.checkpoint.name == "checkpoint_0002.pth.tar"
        assert run.epoch_losses == pytest.approx(reference.epoch_losses, rel=1e-4)
        got = state_of(run.checkpoint)
        assert list(got) == list(want)
        assert torch.allclose(got[key], want[key], atol=1e-4)
    assert not torch.equal(want[key], a[key])  # epoch 2 did train


def test_compile_must_be_auto_on_or_off():
    with pytest.raises(ValueError, match="compile must be auto, on or off, not 'yes'"):
        PretrainConfig(**TINY, compile="yes").validate()


def test_views_made_on_the_device_train_the_same_with_the_prefetch_thread(
    city, tmp_path, monkeypatch
):
    """``augment="gpu"`` (here on CPU tensors): the views made by the prefetch thread, two
    batches ahead, with a worker process reading bytes, train the weights of the serial
    pipeline bit for bit."""
    from functools import partial

    import urbanvis.engine.gpu_views as gpu_views

    pairs = small_table(city, "device_views", 96)
    config = PretrainConfig(
        **{**TINY, "workers": 1}, epochs=1, batch_size=32, augment="gpu", seed=4
    )
    serial = pretrain(city, pairs, tmp_path / "serial", config)
    monkeypatch.setattr(gpu_views, "DeviceViews", partial(gpu_views.DeviceViews, prefetch=2))
    threaded = pretrain(city, pairs, tmp_path / "threaded", config)
    assert threaded.epoch_losses == serial.epoch_losses
    assert_same_weights(state_of(serial.checkpoint), state_of(threaded.checkpoint))
