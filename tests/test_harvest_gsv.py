"""The gsv provider and the web harvest engine against a real local Street View stand-in.

Every test talks HTTP to ``tests/fakes/streetview.py`` (aiohttp on 127.0.0.1): requests and their
parameters, URL signatures, each fault and status, resume after SIGKILL, the request budget,
metadata-only surveys, and the key found nowhere it should not be.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from PIL import Image

from urbanvis._errors import InputError
from urbanvis.harvest import harvest, survey
from urbanvis.providers._webhttp import FatalError, WebSettings
from urbanvis.providers.base import CAPTURE_COLUMNS
from urbanvis.providers.gsv import GsvConfig, GsvProvider, sign_url
from urbanvis.study import open_study

from .fakes.streetview import FakeWeb
from .fakes.streetview import sign_url as fake_sign
from .test_cli import assert_one_line_error

KEY = "AIzaTestKey-0123456789abcdef"
SECRET = "c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="  # URL-safe base64
N_POINTS = 40
HEADINGS = (0.0, 90.0, 180.0, 270.0)


# ----------------------------------------------------------------------------- helpers
def make_study(root: Path, web: FakeWeb, n: int = N_POINTS, step: float = 7.0) -> Path:
    """Points every ``step`` m eastwards from a covered spot of the fake world, bearing 90.

    The fake's panoramas are 12 m apart, so neighbouring points often share one.
    """
    lat, lon = web.sample_location(covered=True)
    dlon = step / (111_320.0 * math.cos(math.radians(lat)))
    study = open_study(root)
    points = gpd.GeoDataFrame(
        {"point_id": np.arange(n, dtype=np.int64), "bearing": np.full(n, 90.0)},
        geometry=gpd.points_from_xy(lon + dlon * np.arange(n), np.full(n, lat)),
        crs="EPSG:4326",
    )
    study.write_layer("points", points)
    return root


def provider(web: FakeWeb, *, secret: str | None = None, **config) -> GsvProvider:
    settings = dict(endpoint=web.url, rate=0, concurrency=8, backoff=0.01, retries=3)
    for name in ("retries", "max_requests", "concurrency", "timeout", "price_per_1000", "max_cost"):
        if name in config:
            settings[name] = config.pop(name)
    cfg = GsvConfig(**{"size": 64, "headings": HEADINGS, **config})
    return GsvProvider(cfg, WebSettings(**settings), key=KEY, secret=secret)


def captures(study: Path):
    return pyogrio.read_dataframe(study / "study.gpkg", layer="captures")


def image_files(study: Path) -> set[str]:
    root = study / "images" / "gsv"
    return {p.relative_to(study).as_posix() for p in root.rglob("*") if p.is_file()}


def cli(*args: str, key: str | None = KEY, env_extra: dict | None = None):
    exe = Path(sys.executable).with_name("urbanvis")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("URBANVIS_", "GOOGLE_"))}
    if key is not None:
        env["GOOGLE_MAPS_API_KEY"] = key
    env.update(env_extra or {})
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


def assert_secret_nowhere(root: Path, *texts: str, secrets=(KEY, SECRET)) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, f"{secret[:6]}... found in {path}"
    for text in texts:
        for secret in secrets:
            assert secret not in text


def study_with_points(tmp_path, web, n=N_POINTS, step=7.0):
    return open_study(make_study(tmp_path / "s", web, n, step))


# ------------------------------------------------------------------------------- tests
def test_signature_matches_an_independent_implementation():
    url = "https://maps.googleapis.com/maps/api/streetview?location=41.4,2.17&size=64x64&key=K"
    signed = sign_url(url, SECRET)
    path_query = url.split("maps.googleapis.com", 1)[1]
    assert signed == "https://maps.googleapis.com" + fake_sign(path_query, SECRET)
    assert signed.startswith(url + "&signature=")


def test_harvest_requests_captures_and_shares_panoramas(tmp_path):
    with FakeWeb(keys={KEY}, secret=SECRET) as web:
        st = study_with_points(tmp_path, web)
        summary = harvest(st, provider(web, secret=SECRET))
        log = web.requests
        shared = web.image_requests
    caps = captures(st.root)
    assert list(caps.columns[: len(CAPTURE_COLUMNS)]) == CAPTURE_COLUMNS
    assert len(caps) == N_POINTS * len(HEADINGS) and caps["capture_id"].is_unique
    points = pyogrio.read_dataframe(st.gpkg, layer="points")
    # metadata: one request per point, with the documented parameters (signed: the
    # server checks every signature and answers 403 to a bad one)
    meta = [r for r in log if r["endpoint"] == "metadata"]
    assert len(meta) == N_POINTS
    for r in meta:
        q = r["query"]
        assert q["key"] == KEY and q["radius"] == "50" and q["source"] == "outdoor"
        assert "signature" in q and r["status"] == 200
    # each point: the pano the server gives for its location, four headings off the bearing
    for row in points.itertuples():
        expected = web.pano_for(row.geometry.y, row.geometry.x)
        mine = caps[caps["point_id"] == row.point_id]
        if expected["status"] == "OK":
            assert set(mine["pano_id"]) == {expected["pano_id"]}
            assert set(mine["status"]) == {"ok"}
            assert set(mine["captured_at"]) == {expected["date"]}
            assert set(mine["attribution"]) == {expected["copyright"]} == {"© Fake"}
            assert np.allclose(mine.geometry.y, expected["location"]["lat"])
        else:
            assert set(mine["status"]) == {"missing"} and set(mine["pano_id"]) == {""}
            assert set(mine["attribution"]) == {""}
    ok = caps[caps["status"] == "ok"]
    assert len(ok)
    assert set(np.round((ok["heading"] - 90.0) % 360, 3)) == set(HEADINGS)
    # images: by pano id, asked size, return_error_code, each (pano, heading) once
    images = [r for r in log if r["endpoint"] == "image"]
    for r in images:
        q = r["query"]
        assert q["size"] == "64x64" and q["return_error_code"] == "true" and "pano" in q
        assert q["fov"] == "90" and q["pitch"] == "0" and "signature" in q
    assert max(shared.values()) == 1
    panos = ok.drop_duplicates(["pano_id", "heading"])
    assert len(images) == len(panos) < len(ok)  # neighbours shared panoramas
    assert summary.stats["images_shared"] == len(ok) - len(panos)
    # files: every ok row's image exists, decodes at the asked size, sha256 matches
    assert image_files(st.root) == set(ok["image_path"])
    for row in ok.itertuples():
        data = (st.root / row.image_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        with Image.open(st.root / row.image_path) as im:
            assert im.size == (64, 64) and (row.width, row.height) == (64, 64)
    assert_secret_nowhere(st.root)


def test_transient_faults_are_retried_and_end_in_the_same_captures(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        clean = study_with_points(tmp_path / "a", web, 12)
        harvest(clean, provider(web))
        web.reset_log()
        st = study_with_points(tmp_path / "b", web, 12)
        for kind in ("http429", "http500", "http503", "over_query_limit", "truncated", "reset"):
            web.inject(kind, n=1, path_prefix="metadata")
        for kind in ("http429", "http503", "truncated", "wrong_content_type", "reset"):
            web.inject(kind, n=1, path_prefix="image")
        summary = harvest(st, provider(web, retries=4))
        faults = [r["fault"] for r in web.requests if r["fault"]]
        assert not web.pending_faults
    # a dropped keep-alive connection ("reset") aiohttp reopens by itself; the others retry
    assert len(faults) == 11 and summary.stats["retries"] >= 9
    a, b = captures(clean.root), captures(st.root)
    cols = ["capture_id", "pano_id", "status", "sha256"]
    assert a.sort_values("capture_id")[cols].values.tolist() == (
        b.sort_values("capture_id")[cols].values.tolist()
    )


def test_missing_and_failed_captures(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 6)
        web.inject("zero_results", n=1, path_prefix="metadata")  # point 0: no panorama
        web.inject("grey", n=1, path_prefix="image")  # first image: the grey placeholder
        web.inject("http500", n=50, path_prefix="metadata")  # then a dead server
        summary = harvest(st, provider(web, retries=1, concurrency=1))
    caps = captures(st.root)
    by_point = caps.groupby("point_id")["status"].agg(set)
    assert by_point[0] == {"missing"}
    assert set(caps.loc[caps["point_id"] == 0, "error"]) == {"ZERO_RESULTS"}
    failed = caps[caps["status"] == "failed"]
    assert len(failed) and failed["error"].str.contains("HTTP 500").all()
    assert not failed["error"].str.contains(KEY).any()
    assert failed["error"].str.contains("key=\\*\\*\\*").all()  # URLs shown, redacted
    assert sum(summary.counts.values()) == len(caps)


def test_grey_placeholder_is_missing_not_ok(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 1)
        web.inject("grey", n=1, path_prefix="image")
        harvest(st, provider(web, headings=(0.0,)))
    caps = captures(st.root)
    expected_ok = web.pano_for(caps.geometry.y[0], caps.geometry.x[0])["status"] == "OK"
    assert expected_ok
    assert caps["status"].tolist() == ["missing"]
    assert "grey placeholder" in caps["error"][0] and not image_files(st.root)


@pytest.mark.parametrize(
    "kind, needle",
    [("request_denied", "GOOGLE_MAPS_API_KEY"), ("invalid_request", "INVALID_REQUEST")],
)
def test_denied_or_invalid_stops_at_once_without_retrying(tmp_path, kind, needle):
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 5)
        web.inject(kind, n=1, path_prefix="metadata")
        with pytest.raises(FatalError, match=needle):
            harvest(st, provider(web, concurrency=1))
        denied = [r for r in web.requests if r["fault"] == kind]
    assert len(denied) == 1  # never retried


def test_cli_wrong_key_no_key_and_bad_options(tmp_path):
    with FakeWeb(keys={KEY}, secret=SECRET) as web:
        study = make_study(tmp_path / "s", web, 3)
        base = ["harvest", "--study", str(study), "--provider", "gsv", "--endpoint", web.url]
        wrong = cli(*base, key="AIzaWrongKey-000000000000",
                    env_extra={"GOOGLE_MAPS_URL_SECRET": SECRET})  # fmt: skip
        assert_one_line_error(wrong, "GOOGLE_MAPS_API_KEY", "denied")
        assert "AIzaWrongKey" not in wrong.stderr + wrong.stdout
        unsigned = cli(*base)  # the server wants signatures: 403 on the first image
        assert_one_line_error(unsigned, "GOOGLE_MAPS_URL_SECRET")
        assert_one_line_error(cli(*base, key=None), "no Google Maps API key", "--key-file")
        assert_one_line_error(cli(*base, "--size", "800"), "--size")
        assert_one_line_error(cli(*base, "--concurrency", "0"), "--concurrency")
        assert_one_line_error(cli(*base[:-2], "--endpoint", "ftp:/x"), "--endpoint")
        missing = cli(*base, "--key-file", str(tmp_path / "nope.txt"), key=None)
        assert_one_line_error(missing, "--key-file")
        assert_one_line_error(
            cli("harvest", "--study", str(study), "--provider", "gsvv"), "did you mean 'gsv'"
        )
        empty = tmp_path / "empty"
        open_study(empty)
        assert_one_line_error(
            cli("harvest", "--study", str(empty), "--provider", "gsv", "--endpoint", web.url),
            "no points",
        )
    assert (
        not (study / "study.gpkg").exists()
        or "captures" not in pyogrio.list_layers(study / "study.gpkg")[:, 0]
    )


def test_cli_key_file_and_signed_harvest_keep_secrets_out(tmp_path):
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")
    with FakeWeb(keys={KEY}, secret=SECRET) as web:
        study = make_study(tmp_path / "s", web, 8)
        web.inject("http500", n=3, path_prefix="image")
        result = cli(
            "-v", "harvest", "--study", str(study), "--provider", "gsv", "--endpoint",
            web.url, "--key-file", str(key_file), "--size", "64", "--rate", "0",
            key=None, env_extra={"GOOGLE_MAPS_URL_SECRET": SECRET},
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "8 points harvested" in result.stdout
    assert_secret_nowhere(study, result.stdout, result.stderr)
    toml = (study / "study.toml").read_text()
    assert '[settings."harvest.gsv"]' in toml and "signed = true" in toml


def test_max_requests_stops_then_a_rerun_finishes(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 20)
        first = harvest(st, provider(web, max_requests=30, concurrency=4))
        assert web.count() <= 30 and first.stopped and "--max-requests" in first.reason
        done = captures(st.root)
        assert 0 < done["point_id"].nunique() < 20
        assert web.count() > 30 - 5  # groups start only when they fit: little is left unused
        second = harvest(st, provider(web))
        assert not second.stopped
    caps = captures(st.root)
    assert caps["point_id"].nunique() == 20 and caps["capture_id"].is_unique
    assert len(caps) == 20 * len(HEADINGS)
    assert image_files(st.root) == set(caps.loc[caps["status"] == "ok", "image_path"])


def test_metadata_only_counts_coverage_without_images(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web)
        p = provider(web)
        p.metadata_only = True
        found = survey(st, p)
        assert web.count("image") == 0 and web.count("metadata") == N_POINTS
        expected = [web.pano_for(g.y, g.x) for g in st.read_layer("points").geometry]
    assert not st.has_layer("captures") and not image_files(st.root)
    coverage = pyogrio.read_dataframe(st.gpkg, layer="coverage_gsv")
    with_imagery = sum(e["status"] == "OK" for e in expected)
    assert found.points_with_imagery == with_imagery
    assert found.panoramas == len({e["pano_id"] for e in expected if e["status"] == "OK"})
    assert found.images == found.panoramas * len(HEADINGS)
    assert len(coverage) == N_POINTS * len(HEADINGS)


@pytest.mark.slow
def test_resume_after_sigkill_at_random_moments(tmp_path):
    """Kill the harvesting CLI at random moments, at least 5 times, then let it finish."""
    with FakeWeb(keys={KEY}, fault_rate=0.05, seed=3, slow_seconds=0.3) as web:
        study = make_study(tmp_path / "s", web, 150)
        args = [
            str(Path(sys.executable).with_name("urbanvis")), "-q", "harvest", "--study",
            str(study), "--provider", "gsv", "--endpoint", web.url, "--size", "64",
            "--rate", "200", "--concurrency", "8", "--batch-size", "8", "--timeout", "5",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")}
        env["GOOGLE_MAPS_API_KEY"] = KEY
        rng = np.random.default_rng(5)
        kills = 0
        for _ in range(12):
            start = web.count("image")
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)  # fmt: skip
            deadline = time.monotonic() + 60
            while (
                proc.poll() is None
                and web.count("image") <= start
                and (time.monotonic() < deadline)
            ):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=60)
            if kills >= 6:
                break
        assert kills >= 5
        final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr
    caps = captures(study)
    assert len(caps) == 150 * len(HEADINGS) and caps["capture_id"].is_unique
    ok = caps[caps["status"] == "ok"]
    assert image_files(study) == set(ok["image_path"])  # no orphans
    for row in ok.drop_duplicates("image_path").itertuples():
        data = (study / row.image_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
    assert not list(study.rglob("*.tmp*")) and not list(study.rglob(".*.part"))
    assert_secret_nowhere(study)


def test_ctrl_c_keeps_finished_work_and_a_rerun_completes(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        study = make_study(tmp_path / "s", web, 300)
        args = [
            str(Path(sys.executable).with_name("urbanvis")), "harvest", "--study", str(study),
            "--provider", "gsv", "--endpoint", web.url, "--size", "64", "--rate", "60",
            "--batch-size", "16",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")}
        env["GOOGLE_MAPS_API_KEY"] = KEY
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 60
        # a loaded machine can lag this loop behind the harvest by seconds: at 60 requests/s
        # the 1,500 requests leave over 20 s after the first committed batches for the signal
        while web.count("image") < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == (
            "interrupted; finished work is kept, rerun to resume"
        )
        kept = captures(study)
        assert 0 < kept["point_id"].nunique() < 300
        requests_before = web.count()
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        # the rerun asks nothing about the points that finished
        assert web.count("metadata") - len([r for r in web.requests[:requests_before]
                                            if r["endpoint"] == "metadata"]) == (
            300 - kept["point_id"].nunique()
        )  # fmt: skip
    caps = captures(study)
    assert len(caps) == 300 * len(HEADINGS) and caps["capture_id"].is_unique
    assert image_files(study) == set(caps.loc[caps["status"] == "ok", "image_path"])


def test_retry_failed_harvests_failed_points_again_and_reuses_stored_images(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 12)
        web.inject("http503", n=6, path_prefix="image")  # retries=1: three images fail
        harvest(st, provider(web, retries=1, concurrency=1))
        first = captures(st.root)
        failed_points = set(first.loc[first["status"] == "failed", "point_id"])
        assert failed_points
        plain = harvest(st, provider(web))  # a plain rerun leaves failures alone
        assert plain.points_harvested == 0
        web.reset_log()
        again = harvest(st, provider(web), retry_failed=True)
        assert again.points_harvested == len(failed_points)
        # only the failed points are asked again, and only their missing images fetched
        asked = {r["query"]["location"] for r in web.requests if r["endpoint"] == "metadata"}
        assert len(asked) == len(failed_points)
        bad = first[first["status"] == "failed"]  # neighbours share a failed fetch too
        assert web.count("image") == len(bad.drop_duplicates(["pano_id", "heading"]))
    final = captures(st.root)
    assert len(final) == len(first) and final["capture_id"].is_unique
    assert "failed" not in set(final["status"])
    assert image_files(st.root) == set(final.loc[final["status"] == "ok", "image_path"])
    assert pyogrio.read_info(st.gpkg, layer="captures")["features"] == len(final)


def test_harvest_samples_the_area_first_when_the_study_has_no_points(tmp_path, town_osm):
    study = tmp_path / "fresh"
    with FakeWeb(keys={KEY}) as web:
        base = ["harvest", "--study", str(study), "--provider", "gsv", "--endpoint", web.url,
                "--size", "64", "--rate", "0"]  # fmt: skip
        none = cli(*base)
        assert_one_line_error(none, "--city", "--osm")
        assert not study.exists()
        bad = cli(*base, "--osm", str(tmp_path / "nope.osm"))
        assert bad.returncode == 2 and not study.exists()
        first = cli(*base, "--osm", str(town_osm), "--limit", "10")
        assert first.returncode == 0, first.stderr
        points = pyogrio.read_dataframe(study / "study.gpkg", layer="points")
        assert len(points) == 50  # the town's streets, as `urbanvis sample` makes them
        again = cli(*base, "--osm", str(town_osm))  # resumes: the points are not redone
        assert again.returncode == 0, again.stderr
        assert "not used again" in again.stderr
    after = pyogrio.read_dataframe(study / "study.gpkg", layer="points")
    assert after["point_id"].tolist() == points["point_id"].tolist()
    caps = captures(study)
    assert caps["point_id"].nunique() == 50 and caps["capture_id"].is_unique


def test_a_second_harvest_of_the_same_provider_is_refused_while_one_runs(tmp_path):
    from urbanvis._errors import InputError
    from urbanvis._imagestore import ImageStore

    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 3)
        holder = ImageStore(st, "gsv")
        holder.lock()  # as a running harvest holds it
        toml_path = st.root / "study.toml"
        toml = toml_path.read_text() if toml_path.exists() else None
        try:
            with pytest.raises(InputError, match="another harvest of gsv is running"):
                harvest(st, provider(web, size=128))
        finally:
            holder.close()
        after = toml_path.read_text() if toml_path.exists() else None
        assert after == toml  # the refused run wrote nothing
        assert harvest(st, provider(web)).points_harvested == 3  # free again


def test_a_damaged_stored_image_is_fetched_again_not_shared(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 6, step=3.0)  # 3 m apart: shared panoramas
        harvest(st, provider(web, headings=(0.0,)), limit=1)
        first = captures(st.root)
        path = st.root / first["image_path"][0]
        good = path.read_bytes()
        path.write_bytes(good[: len(good) // 3])  # as a power cut might leave it
        web.reset_log()
        harvest(st, provider(web, headings=(0.0,)))
        refetched = web.image_requests[(first["pano_id"][0], 90.0)]
    assert refetched == 1
    assert path.read_bytes() == good  # the same view, whole again
    caps = captures(st.root)
    shared = caps[caps["pano_id"] == first["pano_id"][0]]
    assert len(shared) > 1 and set(shared["sha256"]) == {first["sha256"][0]}


def test_files_of_a_killed_batch_are_swept_from_the_journal_only(tmp_path):
    from urbanvis._imagestore import ImageStore

    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 4)
        harvest(st, provider(web), limit=2)
        before = image_files(st.root)
        # a killed run: a file written and journaled, its rows never committed
        store = ImageStore(st, "gsv")
        rel = store.rel_for_key("killed_h0.0_p0_f90_s64")
        store.write(rel, b"not committed", None, (0, 0))
        store._journal.close()  # the process dies here
        keep = st.root / "images" / "gsv" / "notes.txt"  # a file of the user's, not journaled
        keep.write_text("mine")
        assert (st.root / rel).exists()
        summary = harvest(st, provider(web))
    assert summary.orphans_removed == 1 and not (st.root / rel).exists()
    assert keep.read_text() == "mine"
    caps = captures(st.root)
    assert before <= image_files(st.root)
    assert image_files(st.root) - {keep.relative_to(st.root).as_posix()} == set(
        caps.loc[caps["status"] == "ok", "image_path"]
    )


def test_a_small_budget_still_makes_progress_on_every_run(tmp_path):
    """Groups start only when their requests fit the budget, so none is cut short."""
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 40)
        runs = 0
        while True:
            before = web.count()
            summary = harvest(st, provider(web, max_requests=40, concurrency=16))
            assert web.count() - before <= 40
            runs += 1
            if not summary.stopped:
                break
            assert summary.points_harvested > 0  # each paid-for run keeps something
            assert runs < 20
    caps = captures(st.root)
    assert caps["point_id"].nunique() == 40 and caps["capture_id"].is_unique
    assert image_files(st.root) == set(caps.loc[caps["status"] == "ok", "image_path"])


def test_a_failed_image_is_not_replayed_to_later_points(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 6, step=1.0)  # all on one panorama
        web.inject("http503", n=2, path_prefix="image")
        harvest(st, provider(web, retries=1, concurrency=1, headings=(0.0,)))
        served = web.count("image")
    caps = captures(st.root).sort_values("point_id")
    assert caps["pano_id"].nunique() == 1
    status = caps["status"].tolist()
    # the points waiting on the failed fetch share its failure (2 groups run at once with
    # concurrency 1); the later points fetch again and succeed
    assert status[:1] == ["failed"] and status[-3:] == ["ok"] * 3
    assert status.count("failed") <= 2
    assert served == 3  # two failed tries, then one fetch shared by the rest


def test_metadata_only_writes_coverage_in_chunks_and_a_new_survey_replaces_it(
    tmp_path, monkeypatch
):
    import urbanvis.harvest as engine

    monkeypatch.setattr(engine, "SURVEY_CHUNK", 12)  # several chunks for 40 x 4 rows
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web)
        for _ in range(2):
            p = provider(web)
            p.metadata_only = True
            found = survey(st, p)
    coverage = pyogrio.read_dataframe(st.gpkg, layer="coverage_gsv")
    assert len(coverage) == N_POINTS * len(HEADINGS) == found.surveyed * len(HEADINGS)
    assert coverage["capture_id"].is_unique


# ------------------------------------------------------------------ distance-checked panoramas
def local_metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """A naive reference: flat metres on the WGS84 ellipsoid's radii of curvature at the
    mean latitude (centimetre-right over tens of metres, a few metres off over kilometres)."""
    a, e2 = 6_378_137.0, 0.00669437999014
    phi = math.radians((lat1 + lat2) / 2)
    w = math.sqrt(1 - e2 * math.sin(phi) ** 2)
    meridian, prime = a * (1 - e2) / w**3, a / w
    dy = math.radians(lat2 - lat1) * meridian
    dx = math.radians(lon2 - lon1) * prime * math.cos(phi)
    return math.hypot(dx, dy)


def test_a_panorama_far_from_its_point_is_missing_with_the_distance_never_ok(tmp_path):
    with FakeWeb(keys={KEY}, far_share=0.3, far_metres=3000.0) as web:
        st = study_with_points(tmp_path, web)
        harvest(st, provider(web))
        points = st.read_layer("points")
        pairs = zip(points["point_id"], points.geometry, strict=True)
        expected = {int(p): web.pano_for(g.y, g.x) for p, g in pairs}
        loose = study_with_points(tmp_path / "loose", web)
        harvest(loose, provider(web, max_distance=5000.0))
    caps = captures(st.root)
    assert {"pano_lon", "pano_lat", "distance_m"} <= set(caps.columns)
    far = near = 0
    for p, g in zip(points["point_id"], points.geometry, strict=True):
        answer, mine = expected[int(p)], caps[caps["point_id"] == p]
        if answer["status"] != "OK":
            assert mine["distance_m"].isna().all()
            continue
        where = answer["location"]
        ref = local_metres(g.x, g.y, where["lng"], where["lat"])
        assert np.allclose(mine["pano_lat"], where["lat"]) and np.allclose(
            mine["pano_lon"], where["lng"]
        )
        if ref > 50.0 + 5.0:  # kilometres away: never ok, the reason names the distance
            far += 1
            assert set(mine["status"]) == {"missing"} and (mine["image_path"] == "").all()
            for error in mine["error"]:
                shown = float(re.search(r"is ([\d,]+) m from the point", error)[1].replace(",", ""))  # type: ignore[index]
                assert abs(shown - ref) < 15.0  # the flat reference drifts over kilometres
                assert "50 m" not in error and "55 m allowed" in error
        else:
            near += 1
            assert set(mine["status"]) == {"ok"}
            assert np.abs(mine["distance_m"] - ref).max() <= 0.5
            assert np.allclose(mine.geometry.y, where["lat"])
    assert far >= 3 and near >= 10
    # a looser max_distance accepts them, and every distance is still recorded
    wide = captures(loose.root)
    assert (wide.loc[wide["pano_id"] != "", "status"] == "ok").all()
    assert wide["distance_m"].max() > 2900


def test_max_distance_tighter_than_the_radius_and_bad_values(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web, 10)
        harvest(st, provider(web, max_distance=1.0))
    caps = captures(st.root)
    assert (caps.loc[caps["status"] == "ok", "distance_m"] <= 1.0).all()
    assert (caps.loc[caps["distance_m"] > 1.0, "status"] == "missing").all()
    assert (caps["distance_m"] > 1.0).any()
    for bad in (-1.0, 0.0, math.nan):
        with pytest.raises(InputError, match="max_distance.? must be positive metres"):
            GsvConfig(max_distance=bad)


# ------------------------------------------------------------------------ cost before spending
def test_the_cost_estimate_comes_first_and_matches_the_requests_made(tmp_path):
    heard: list[str] = []
    with FakeWeb(keys={KEY}, coverage=1.0) as web:
        st = study_with_points(tmp_path, web, 12, step=40.0)  # a panorama each, none shared
        p = provider(web, price_per_1000=7.0)
        summary = harvest(st, p, notice=heard.append)
        made = web.count("image")
    # 12 points x 4 headings: 48 image requests (USD 0.336) and 12 free metadata requests
    assert len(heard) == 1
    assert "at most 48 image requests and 12 free metadata requests for 12 points" in heard[0]
    assert "no rate limit" in heard[0] and "USD 0.34 at USD 7.00 per 1,000" in heard[0]
    assert summary.estimate.paid == 48 and summary.estimate.cost == pytest.approx(0.336)
    assert summary.stats["paid_requests"] == made
    assert abs(made - summary.estimate.paid) <= 0.05 * summary.estimate.paid


def test_a_survey_estimates_exactly_the_image_requests_of_the_harvest(tmp_path):
    with FakeWeb(keys={KEY}) as web:
        st = study_with_points(tmp_path, web)  # neighbours share panoramas
        p = provider(web, price_per_1000=7.0)
        p.metadata_only = True
        found = survey(st, p)
        web.reset_log()
        harvest(st, provider(web))
        made = web.count("image")
    est = found.estimate
    assert est.paid == found.images and est.free == 0 and not est.upper_bound
    assert abs(made - est.paid) <= 0.05 * est.paid  # fault-free: exactly, in fact
    assert f"{est.paid:,} image requests" in found.line() and "USD" in found.line()


def test_max_cost_stops_before_the_budget_is_passed_and_a_rerun_continues(tmp_path):
    with FakeWeb(keys={KEY}, coverage=1.0) as web:
        st = study_with_points(tmp_path, web, 10, step=40.0)
        # USD 10 per 1,000: USD 0.10 buys 10 image requests, two points of four headings
        first = harvest(st, provider(web, price_per_1000=10.0, max_cost=0.10, concurrency=4))
        assert web.count("image") == first.stats["paid_requests"] == 8
        assert first.stopped and "`max_cost` USD 0.1 reached" in first.reason
        assert "8 image requests" in first.reason and "cost USD 0.08" in first.reason
        assert captures(st.root)["point_id"].nunique() == 2
        # a budget smaller than one point's images requests nothing at all
        web.reset_log()
        none = harvest(st, provider(web, price_per_1000=10.0, max_cost=0.03))
        assert none.stopped and web.count() == 0
        second = harvest(st, provider(web, price_per_1000=10.0))
        assert not second.stopped
    assert captures(st.root)["point_id"].nunique() == 10


def test_cli_prints_the_estimate_and_refuses_a_negative_price_or_budget(tmp_path):
    with FakeWeb(keys={KEY}, coverage=1.0) as web:
        study = make_study(tmp_path / "s", web, 6, step=40.0)
        base = ["harvest", "--study", str(study), "--provider", "gsv", "--endpoint", web.url]
        survey_run = cli(*base, "--metadata-only", "--rate", "10", "--headings", "0,180")
        assert survey_run.returncode == 0, survey_run.stderr
        # 6 panoramas x 2 headings = 12 image requests: USD 0.084, 1.2 s at 10 requests/s
        assert "gsv: 12 image requests for 6 points" in survey_run.stdout
        assert "about 1 s at 10 requests/s" in survey_run.stdout
        assert "USD 0.08 at USD 7.00 per 1,000 image requests (--price-per-1000" in (
            survey_run.stdout
        )
        run = cli(*base, "--rate", "0", "--headings", "0", "--max-cost", "0.05",
                  "--price-per-1000", "25")  # fmt: skip
        assert run.returncode == 0, run.stderr
        first = run.stdout.splitlines()[0]
        assert first.startswith("gsv: at most 6 image requests and 6 free metadata requests")
        assert "USD 0.15 at USD 25.00 per 1,000" in first
        assert "--max-cost USD 0.05 reached: 2 image requests" in run.stdout
        assert web.count("image") == 2
        assert_one_line_error(cli(*base, "--price-per-1000", "-1"), "--price-per-1000")
        assert_one_line_error(cli(*base, "--max-cost", "-0.5"), "--max-cost")
        assert web.count("image") == 2  # refused before any request
    assert "--price-per-1000" in cli("harvest", "--help").stdout
