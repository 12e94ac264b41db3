"""Multi-node ``torchrun``: two agents (``--nnodes 2``) meeting at a c10d rendezvous.

Each agent is what one node of a cluster runs (see the README's Slurm script): here both
run on this machine, one gloo process each on the CPU, sharing the study folder as nodes
share a network filesystem. Unlike ``--nproc_per_node 2`` on one agent, both processes have
``LOCAL_RANK`` 0 and ``GROUP_RANK`` differs, so anything keyed on the local rank (who
writes, which part file) would collide here. Checked: pretraining writes one checkpoint
series and resumes bit for bit, embedding equals one process to 1e-5, and a study copied
per node (not shared) fails at the start on both nodes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from urbanvis.engine.encoders import read_checkpoint  # noqa: E402
from urbanvis.engine.inference import embed_captures  # noqa: E402
from urbanvis.study import open_study  # noqa: E402
from urbanvis.vectors import embedding_models, read_embeddings  # noqa: E402

from .conftest import make_town_study  # noqa: E402
from .test_embed import child_pids  # noqa: E402
from .test_engine_training import pretrain_args, temporal_pairs  # noqa: E402

BIN = Path(sys.executable).parent
N_CAPTURES = 50 * 2 * 2  # 50 points, 2 headings, 2 dates
TIMEOUT = 240


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> Path:
    """50 points x 2 headings x 2 dates of 48 px images, and their 200 temporal pairs."""
    root = tmp_path_factory.mktemp("multinode")
    study = make_town_study(
        root / "S", "--captures-per-point", "2", "--headings", "0,180", "--size", "48"
    )
    captures = pyogrio.read_dataframe(study / "study.gpkg", layer="captures")
    captures = pd.DataFrame(captures[captures["status"] == "ok"].drop(columns="geometry"))
    assert len(captures) == N_CAPTURES
    temporal_pairs(captures).to_parquet(study / "pairs" / "temporal.parquet")
    return study


def free_port() -> int:
    """A TCP port nobody listens on now (the rendezvous host binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(
    *args: str, second: tuple[str, ...] | None = None
) -> list[subprocess.CompletedProcess]:
    """``torchrun --nnodes 2 --nproc-per-node 1 -m urbanvis_cli.main ARGS`` started twice,
    as two nodes would; ``second`` gives the second node other arguments.

    Output goes to files, not pipes: a full pipe would stop one node inside a collective
    while the other waits for it. An agent still running at the timeout (or after a
    failure) gets SIGTERM, which it passes on to its worker (a session of its own), then
    SIGKILL for both. One thread per process: on a 2-core machine torch's intra-op threads
    only slow it.
    """
    launcher = [
        str(BIN / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
        "--rdzv-id", uuid.uuid4().hex, "--max-restarts", "0",
        "-m", "urbanvis_cli.main",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANVIS_")}
    env["OMP_NUM_THREADS"] = "1"
    with contextlib.ExitStack() as files:
        logs = [[files.enter_context(tempfile.TemporaryFile("w+")) for _ in "oe"] for _ in "ab"]
        procs = [
            subprocess.Popen(
                [*launcher, *(args if node == 0 or second is None else second)],
                stdout=logs[node][0],
                stderr=logs[node][1],
                text=True,
                env=env,
            )
            for node in range(2)
        ]
        try:
            deadline = time.monotonic() + TIMEOUT
            for proc in procs:
                proc.wait(timeout=max(deadline - time.monotonic(), 1))
        finally:
            for proc in procs:
                stop(proc)
        results = []
        for proc, (out, err) in zip(procs, logs, strict=True):
            out.seek(0)
            err.seek(0)
            results.append(
                subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
            )
    return results


def stop(agent: subprocess.Popen) -> None:
    """End a torchrun agent still running, and its worker."""
    if agent.poll() is not None:
        return
    workers = child_pids(agent.pid)
    agent.terminate()
    try:
        agent.wait(timeout=30)
    except subprocess.TimeoutExpired:
        agent.kill()
        agent.wait()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def assert_ok(results: list[subprocess.CompletedProcess]) -> None:
    for node, result in enumerate(results):
        assert result.returncode == 0, f"node {node}: {result.stderr[-3000:]}"


def train_args(town: Path, *extra: str) -> list[str]:
    return pretrain_args(
        town, town / "pairs" / "temporal.parquet", "multi",
        "--epochs", "2", "--save-every", "1", *extra,
    )  # fmt: skip


@pytest.mark.slow
def test_two_nodes_pretrain_resumes_and_embed_equals_one_process(town, tmp_path):
    run_dir = town / "checkpoints" / "multi"
    first = two_nodes(*train_args(town))
    assert_ok(first)
    assert sorted(p.name for p in run_dir.glob("checkpoint_*")) == [
        "checkpoint_0001.pth.tar",
        "checkpoint_0002.pth.tar",
    ]
    # global rank 0 alone reports and records the run, whichever node it landed on
    assert sum("checkpoint_0002.pth.tar" in r.stdout for r in first) == 1
    assert (town / "study.toml").read_text().count('name = "multi"') == 1
    assert len((run_dir / "log.csv").read_text().splitlines()) == 1 + 2

    # the job stopped after epoch 1 (a preempted allocation): both nodes resume from it
    whole = run_dir / "whole_0002.pth.tar"
    (run_dir / "checkpoint_0002.pth.tar").rename(whole)
    resumed = two_nodes(*train_args(town, "--resume"))
    assert_ok(resumed)
    for result in resumed:  # every rank loaded the checkpoint from the shared folder
        assert "resuming from checkpoint_0001.pth.tar (epoch 1)" in result.stderr
    again, before = (read_checkpoint(p) for p in (run_dir / "checkpoint_0002.pth.tar", whole))
    assert again["epoch"] == 2
    assert again["urbanvis"]["losses"] == before["urbanvis"]["losses"]
    assert again["state_dict"].keys() == before["state_dict"].keys()
    differ = [
        k for k, v in again["state_dict"].items() if not torch.equal(v, before["state_dict"][k])
    ]
    assert not differ, differ[:5]

    # embed on two nodes against one process, from the resumed checkpoint
    ckpt = str(run_dir / "checkpoint_0002.pth.tar")
    one = tmp_path / "one"
    shutil.copytree(town, one, ignore=shutil.ignore_patterns("checkpoints", "pairs"))
    torch.set_num_threads(1)
    single = embed_captures(open_study(one), checkpoint=ckpt, batch_size=32, workers=0)
    args = ("embed", "--study", str(town), "--checkpoint", ckpt, "--device", "cpu")
    embedded = two_nodes(*args, "--workers", "0", "--batch-size", "16")
    assert_ok(embedded)
    assert sum(f"{N_CAPTURES} of {N_CAPTURES} captures embedded" in r.stdout for r in embedded) == 1
    assert single.model in embedding_models(open_study(town))
    rows, vectors = read_embeddings(open_study(town), model=single.model)
    ref_rows, ref_vectors = read_embeddings(open_study(one), model=single.model)
    assert sorted(rows["capture_id"]) == sorted(ref_rows["capture_id"])
    assert len(rows) == N_CAPTURES
    at = pd.Index(ref_rows["capture_id"]).get_indexer(rows["capture_id"])
    np.testing.assert_allclose(vectors, ref_vectors[at], rtol=1e-5, atol=1e-5)
    runs = [r for r in open_study(town).runs() if r["outputs"].get("model_id") == single.model]
    assert len(runs) == 1 and runs[0]["parameters"]["processes"] == 2


@pytest.mark.slow
def test_a_study_copied_per_node_fails_on_both_nodes(town, tmp_path):
    """Each node given its own copy of the study (a node-local disk, not a shared one)."""
    copies = [tmp_path / "node0", tmp_path / "node1"]
    for copy in copies:
        shutil.copytree(town, copy, ignore=shutil.ignore_patterns("checkpoints", "embeddings"))
    args = [("embed", "--study", str(c), "--random-init", "--model", "vit_test_patch8",
             "--device", "cpu", "--workers", "0") for c in copies]  # fmt: skip
    results = two_nodes(*args[0], second=args[1])
    for result in results:
        assert result.returncode != 0
        assert "error: rank(s) 1 of 2 do not see the files rank 0 writes in" in result.stderr, (
            result.stderr[-3000:]
        )
        assert "put the --study folder on a filesystem every node mounts" in result.stderr
    for copy in copies:  # nothing written before the check
        assert not (copy / "embeddings").exists()
        assert not list(copy.glob(".urbanvis-shared-*"))


# ----------------------------------------------------------------- the Slurm example
SBATCH = Path(__file__).parents[1] / "examples" / "slurm_pretrain.sbatch"
SRUN = """#!/bin/bash
# stand-in for srun: prints the command of one task; "pretrain" leaves a checkpoint behind
printf '%s\\n' "$*" >> "$SRUN_LOG"
case " $* " in *" pretrain "*) touch "$STUDY/checkpoints/$NAME/checkpoint_0300.pth.tar";; esac
"""
SCONTROL = """#!/bin/bash
[ "$1 $2" = "show hostnames" ] && printf 'gpu-a17\\ngpu-a18\\n'
"""


def run_sbatch(tmp_path: Path, study: Path) -> list[list[str]]:
    """The example script under stand-ins for ``srun`` and ``scontrol``: its srun lines."""
    shims, venv = tmp_path / "shims", tmp_path / "venv"
    for folder in (shims, venv / "bin"):
        folder.mkdir(parents=True, exist_ok=True)
    (venv / "bin" / "activate").write_text("")
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    log = tmp_path / "srun.log"
    log.unlink(missing_ok=True)
    env = {
        "PATH": f"{shims}:{os.environ['PATH']}",
        "SRUN_LOG": str(log),
        "STUDY": str(study),
        "NAME": "run",
        "VENV": str(venv),
        "SLURM_JOB_NODELIST": "gpu-a[17-18]",
        "SLURM_NNODES": "2",
        "SLURM_GPUS_ON_NODE": "4",
        "SLURM_JOB_ID": "4242",
    }
    result = subprocess.run(
        ["bash", str(SBATCH)], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [line.split() for line in log.read_text().splitlines()]


def test_the_slurm_example_is_in_the_readme_and_builds_valid_commands(tmp_path):
    """The README shows the script as it is; under stand-ins for Slurm it starts torchrun
    with options torchrun accepts, at a rendezvous on the first node, and urbanvis
    commands whose options exist; a resubmitted job resumes."""
    from torch.distributed.run import get_args_parser
    from urbanvis_cli.main import cli

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"```bash\n{SBATCH.read_text()}```" in readme
    study = tmp_path / "study"
    (study / "checkpoints" / "run").mkdir(parents=True)
    first = run_sbatch(tmp_path, study)
    again = run_sbatch(tmp_path, study)  # resubmitted: the run has a checkpoint now
    assert [line[line.index("urbanvis_cli.main") + 1] for line in first] == ["pretrain", "embed"]
    assert "--resume" not in first[0] and "--resume" in again[0]
    newest = str(study / "checkpoints" / "run" / "checkpoint_0300.pth.tar")
    assert first[1][first[1].index("--checkpoint") + 1] == newest
    for line in first + again:
        assert line[:2] == ["--kill-on-bad-exit=1", "torchrun"]
        args = get_args_parser().parse_args(line[2:])
        assert (args.nnodes, args.nproc_per_node) == ("2", "4")
        assert (args.rdzv_backend, args.rdzv_endpoint) == ("c10d", "gpu-a17:29500")
        assert (args.rdzv_id, args.max_restarts, args.module) == ("4242", 0, True)
        assert args.training_script == "urbanvis_cli.main"
        command, *options = args.training_script_args
        cli.commands[command].make_context(command, list(options))  # options that exist
