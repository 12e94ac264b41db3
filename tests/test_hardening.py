"""Regression tests for bad input and real-world studies (the hardening issue).

Each case: one line on stderr, exit code 2, no traceback, and the study unchanged.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from urbanvis import stages as uv

from .conftest import invoke, visible_lines


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_line_error(result, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = visible_lines(result.stdout) + visible_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), (fragment, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("sample", "--spacing", "abc"), ("--spacing", "urbanvis sample --help")),
        (("smaple",), ("no such command", "urbanvis --help")),
        (("pairs",), ("--strategy", "urbanvis pairs --help")),
        (("map", "--thumbnails", "x"), ("--thumbnails", "urbanvis map --help")),
        (("harvest", "--headings", "north"), ("degrees", "urbanvis harvest --help")),
    ],
)
def test_usage_errors_are_one_line_naming_the_help(args, fragments):
    _one_line_error(invoke(*args), *fragments)


def test_sampling_never_replaces_points_that_captures_refer_to(simulated_study):
    before = _hashes(simulated_study)
    _one_line_error(
        invoke("sample", "--study", str(simulated_study), "--osm", "x.osm.pbf"),
        "captures",
        "new --study",
    )
    with pytest.raises(uv.InputError, match="refer to"):
        uv.sample(simulated_study, osm=uv.helsinki_pbf(), overwrite=True)
    assert _hashes(simulated_study) == before


def test_sampling_replaces_points_only_when_asked(points_study):
    before = _hashes(points_study)
    bbox = "24.936,60.165,24.944,60.169"
    _one_line_error(
        invoke(
            "sample", "--study", str(points_study), "--osm", str(uv.helsinki_pbf()), "--bbox", bbox
        ),  # fmt: skip
        "--overwrite",
    )
    assert _hashes(points_study) == before
    again = uv.sample(points_study, osm=uv.helsinki_pbf(), bbox=bbox, overwrite=True)
    assert again.outputs["points"] > 0


def test_map_works_with_missing_and_failed_captures(simulated_study):
    st = uv.open_study(simulated_study)
    captures = st.read_layer("captures")
    missing = captures.index % 5 == 0
    failed = captures.index % 7 == 0
    captures.loc[missing, ["status", "image_path"]] = ["missing", None]
    captures.loc[failed, ["status", "image_path", "error"]] = ["failed", "", "HTTP 500"]
    st.write_layer("captures", captures)
    ok = int((~missing & ~failed).sum())
    for thumbnails in ("embed", "link", "auto", "none"):
        out = simulated_study / "reports" / f"map_{thumbnails}.html"
        result = invoke("map", "--study", str(simulated_study), "--tiles", "none",
                        "--thumbnails", thumbnails, "--out", str(out))  # fmt: skip
        assert result.returncode == 0, (thumbnails, result.stderr)
        embedded = out.read_text().count("data:image/jpeg;base64,")
        if thumbnails == "embed":
            assert 0 < embedded <= ok
        elif thumbnails == "none":
            assert embedded == 0


def test_embed_refuses_a_negative_limit_and_writes_nothing(simulated_study):
    before = _hashes(simulated_study)
    for bad in (("--limit", "-3"), ("--limit", "0"), ("--workers", "-1")):
        _one_line_error(
            invoke(
                "embed",
                "--study",
                str(simulated_study),
                "--model",
                "vit_test_patch8",
                "--random-init",
                "--device",
                "cpu",
                *bad,
            ),  # fmt: skip
            bad[0],
        )
    assert _hashes(simulated_study) == before


# ------------------------------------------------------------------ read-only studies
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
READ_ONLY = pytest.mark.skipif(
    ROOT, reason="runs as root, which ignores file permissions: a chmod'ed study stays writable"
)


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)


def _writable_again(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


@READ_ONLY
@pytest.mark.parametrize(
    "args",
    [
        ("harvest", "--captures-per-point", "2", "--headings", "0,180", "--size", "64"),
        (
            "embed",
            "--model",
            "vit_test_patch8",
            "--random-init",
            "--device",
            "cpu",
            "--workers",
            "0",
        ),
        ("simulate", "--truth"),
        ("pretrain", "--arch", "vit_test_patch8", "--epochs", "1", "--batch-size", "8"),
        ("pairs", "--strategy", "temporal"),
        ("map", "--tiles", "none"),
    ],  # fmt: skip
    ids=lambda args: args[0],
)
def test_a_read_only_study_is_refused_before_any_work(simulated_study, args):
    uv.pairs(simulated_study, strategy="temporal", max_pairs=50)  # for pretrain
    _read_only(simulated_study)
    try:
        before = _hashes(simulated_study)
        result = invoke(args[0], "--study", str(simulated_study), *args[1:])
        _one_line_error(result, "is not writable")
        assert _hashes(simulated_study) == before
    finally:
        _writable_again(simulated_study)


def test_the_writability_check_runs_before_the_work(simulated_study, monkeypatch):
    """What the read-only tests prove, also where they cannot run (as root): each stage
    asks whether the study can be written before it reads or writes anything else."""
    from urbanvis import study as study_mod
    from urbanvis._errors import StudyError

    def refuse(root):
        raise StudyError(f"study folder {root} is not writable (test); fix its permissions")

    uv.pairs(simulated_study, strategy="temporal", max_pairs=50)
    monkeypatch.setattr(uv, "check_writable", refuse)
    monkeypatch.setattr(study_mod, "check_writable", refuse)
    before = _hashes(simulated_study)
    calls = {
        "harvest": lambda: uv.harvest(simulated_study, captures_per_point=2, size=64,
                                      headings=(0.0, 180.0)),
        "embed": lambda: uv.embed(simulated_study, model="vit_test_patch8", random_init=True,
                                  device="cpu", workers=0),
        "simulate": lambda: uv.simulate(simulated_study, truth=True),
        "pretrain": lambda: uv.pretrain(simulated_study, arch="vit_test_patch8", epochs=1,
                                        batch_size=8),
        "pairs": lambda: uv.pairs(simulated_study, strategy="temporal"),
        "map": lambda: uv.map(simulated_study, tiles="none"),
    }  # fmt: skip
    for name, call in calls.items():
        with pytest.raises(StudyError, match="is not writable"):
            call()
        assert _hashes(simulated_study) == before, name


# ------------------------------------------------------------------ checkpoints
def test_resume_falls_back_to_the_newest_intact_checkpoint(simulated_study, caplog):
    uv.pairs(simulated_study, strategy="temporal", max_pairs=64)
    tiny = dict(arch="vit_test_patch8", dim=16, mlp_dim=32, workers=0, device="cpu",
                batch_size=32, save_every=1, name="run")  # fmt: skip
    uv.pretrain(simulated_study, epochs=2, **tiny)
    run = simulated_study / "checkpoints" / "run"
    newest = run / "checkpoint_0002.pth.tar"
    newest.write_bytes(newest.read_bytes()[:2000])  # a copy cut short
    assert uv.latest_checkpoint(simulated_study, "run").name == "checkpoint_0001.pth.tar"
    with caplog.at_level("WARNING", logger="urbanvis"):
        again = uv.pretrain(simulated_study, epochs=2, resume=True, **tiny)
    assert "resuming from checkpoint_0001.pth.tar" in caplog.text
    assert again.files["checkpoint"] == newest and len(again.details.epoch_losses) == 2
    for path in run.glob("checkpoint_*.pth.tar"):
        path.write_bytes(b"")
    result = invoke("pretrain", "--study", str(simulated_study), "--resume", "--name", "run",
                    "--arch", "vit_test_patch8", "--dim", "16", "--mlp-dim", "32",
                    "--workers", "0", "--device", "cpu", "--batch-size", "32",
                    "--save-every", "1", "--epochs", "2")  # fmt: skip
    line = _one_line_error(result, "no checkpoint in", "drop --resume")
    assert "miniz" not in line and len(line) < 300
    with pytest.raises(uv.InputError, match="every checkpoint in .* is truncated"):
        uv.latest_checkpoint(simulated_study, "run")


# ------------------------------------------------------------------ harvests that fail
def test_a_harvest_whose_every_request_fails_does_not_exit_0(points_study, tmp_path):
    key = tmp_path / "key.txt"
    key.write_text("not-a-key\n")
    dead = ("--provider", "gsv", "--key-file", str(key), "--endpoint", "http://127.0.0.1:9",
            "--retries", "0", "--timeout", "2", "--limit", "2")  # fmt: skip
    before = _hashes(points_study)
    survey = invoke("harvest", "--study", str(points_study), *dead, "--metadata-only")
    _one_line_error(survey, "every gsv metadata request failed", "nothing written")
    assert _hashes(points_study) == before  # no coverage layer of failures, no run record
    full = invoke("harvest", "--study", str(points_study), *dead)
    # a paid provider says what it will spend before its first request: that line stands
    # before the failure's one line
    said = visible_lines(full.stdout)
    assert len(said) == 1 and said[0].startswith("gsv: at most 8 image requests"), said
    full.stdout = ""
    _one_line_error(full, "every capture of this gsv harvest failed", "--retry-failed")
    captures = uv.open_study(points_study).read_layer("captures")
    assert set(captures["status"]) == {"failed"}  # kept, so --retry-failed finds them
