"""Regression tests for bad input and real-world studies (the hardening issue).

Each case: one line on stderr, exit code 2, no traceback, and the study unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from urbanvis import stages as uv

from .conftest import invoke


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), (fragment, lines[0])


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
