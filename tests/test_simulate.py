"""The synthetic street-view city: determinism, measured image structure, bad input."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest

from urbanvis._errors import InputError
from urbanvis.simulate import (
    CLASS_NAMES,
    FIELD_NAMES,
    City,
    capture,
    latent_fields,
    render,
    save_image,
)
from urbanvis.simulate._hash import hash_uniform
from urbanvis.simulate.scene import lots_from_street, street_from_place

WHEN = "2021-06-01T10:30"


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A 16x16 colour thumbnail (block means), as a float vector."""
    h, w, _ = image.shape
    return image.reshape(16, h // 16, 16, w // 16, 3).mean(axis=(1, 3)).ravel()


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two images' thumbnails (0-255 scale)."""
    return float(np.abs(thumbnail(a) - thumbnail(b)).mean())


def random_time(rng) -> str:
    """A daytime capture on a random date of 2021."""
    return (
        f"2021-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
        f"T{rng.integers(8, 17):02d}:{rng.integers(0, 60):02d}"
    )


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_byte_identical_images():
    a = capture(City(seed=11), 812.5, 1933.0, 37.0, WHEN)
    b = capture(City(seed=11), 812.5, 1933.0, 37.0, WHEN)
    assert a.image.dtype == np.uint8 and a.image.shape == (224, 224, 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes()
    assert a.record == b.record


def test_another_seed_gives_another_city():
    a = render(City(seed=1), 812.5, 1933.0, 37.0, WHEN, size=64)
    b = render(City(seed=2), 812.5, 1933.0, 37.0, WHEN, size=64)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 10
    fa = latent_fields(City(seed=1), 812.5, 1933.0)
    fb = latent_fields(City(seed=2), 812.5, 1933.0)
    assert any(abs(float(fa[k]) - float(fb[k])) > 0.01 for k in FIELD_NAMES)


def test_hash_is_the_same_vectorised_and_one_by_one():
    keys = np.array([-3, 0, 5, 2**40])
    together = hash_uniform(9, 4, keys, 2)
    alone = [float(hash_uniform(9, 4, int(k), 2)[0]) for k in keys]
    assert together.tolist() == alone
    assert ((together >= 0) & (together < 1)).all()


# ------------------------------------------------------------------ measured structure


def test_one_place_at_two_dates_is_closer_than_50_m_apart_closer_than_far_apart():
    city = City(seed=3)
    rng = np.random.default_rng(0)
    same, near, far = [], [], []
    for _ in range(24):
        x, y = rng.uniform(0, 5000, 2)
        h = rng.uniform(0, 360)
        a = render(city, x, y, h, random_time(rng), size=64)
        b = render(city, x, y, h, random_time(rng), size=64)
        # 50 m further along the street (the next-but-two road sample)
        dx, dy = 50 * np.sin(np.radians(h)), 50 * np.cos(np.radians(h))
        c = render(city, x + dx, y + dy, h, random_time(rng), size=64)
        # another neighbourhood, 3 km away
        ang = rng.uniform(0, 2 * np.pi)
        g = render(
            city,
            x + 3000 * np.cos(ang),
            y + 3000 * np.sin(ang),
            rng.uniform(0, 360),
            random_time(rng),
            size=64,
        )
        same.append(distance(a, b))
        near.append(distance(a, c))
        far.append(distance(a, g))
    assert np.mean(same) < np.mean(near) < np.mean(far), (
        np.mean(same),
        np.mean(near),
        np.mean(far),
    )


def test_places_15_m_apart_overlap_and_100_m_apart_differ():
    city = City(seed=4)
    rng = np.random.default_rng(1)
    d15, d100 = [], []
    for _ in range(12):
        x, y = rng.uniform(0, 5000, 2)
        h = rng.uniform(0, 360)
        kw = dict(size=64, dynamic=False, jitter=False)
        a = render(city, x, y, h, WHEN, **kw)
        ux, uy = np.sin(np.radians(h)), np.cos(np.radians(h))
        d15.append(distance(a, render(city, x + 15 * ux, y + 15 * uy, h, WHEN, **kw)))
        d100.append(distance(a, render(city, x + 100 * ux, y + 100 * uy, h, WHEN, **kw)))
    assert np.mean(d15) < np.mean(d100)
    assert min(d100) > 1.0


def test_places_15_m_apart_see_the_same_buildings():
    city = City(seed=4)

    def near_lots(x, y):  # identity -> (height, colour) of lots 0-60 m ahead
        lots = lots_from_street(city, street_from_place(city, x, y, 30.0))
        ahead = (lots.a1 > 0) & (lots.a0 < 60)
        return {
            int(i): (float(h), tuple(c))
            for i, h, c in zip(
                lots.ident[ahead], lots.height[ahead], lots.colour[ahead], strict=True
            )
        }

    ux, uy = np.sin(np.radians(30.0)), np.cos(np.radians(30.0))
    here = near_lots(1000.0, 1000.0)
    on15 = near_lots(1000.0 + 15 * ux, 1000.0 + 15 * uy)
    on100 = near_lots(1000.0 + 100 * ux, 1000.0 + 100 * uy)
    shared = here.keys() & on15.keys()
    assert len(shared) >= 0.5 * len(here)
    assert all(here[i] == on15[i] for i in shared)  # the same building looks the same
    assert not here.keys() & on100.keys()


def test_without_the_dynamic_layer_and_jitter_two_dates_are_byte_identical():
    city = City(seed=5)
    a = render(city, 100.0, 200.0, 80.0, "2019-01-05T07:00", dynamic=False, jitter=False)
    b = render(city, 100.0, 200.0, 80.0, "2023-08-20T22:00", dynamic=False, jitter=False)
    assert a.tobytes() == b.tobytes()


def test_without_the_dynamic_layer_two_dates_differ_only_by_a_little_jitter():
    city = City(seed=5)
    rng = np.random.default_rng(2)
    jitter_only, dynamic = [], []
    for _ in range(12):
        x, y = rng.uniform(0, 5000, 2)
        h = rng.uniform(0, 360)
        t1, t2 = random_time(rng), random_time(rng)
        a = render(city, x, y, h, t1, size=64, dynamic=False)
        b = render(city, x, y, h, t2, size=64, dynamic=False)
        jitter_only.append(distance(a, b))
        dynamic.append(
            distance(render(city, x, y, h, t1, size=64), render(city, x, y, h, t2, size=64))
        )
    assert 0 < np.mean(jitter_only) < 0.6 * np.mean(dynamic)


def test_camera_jitter_stays_within_3_m_and_5_degrees():
    city = City(seed=6)
    for day in range(1, 29):
        r = capture(city, 500.0, 500.0, 359.0, f"2021-02-{day:02d}T12:00", size=16).record
        assert np.hypot(r.camera_x - r.x, r.camera_y - r.y) <= 3.0 + 1e-9
        turn = (r.camera_heading - r.heading + 180) % 360 - 180
        assert abs(turn) <= 5.0 + 1e-9


# ------------------------------------------------------------------ layers and record


def test_latent_fields_are_smooth_arrays_in_0_1():
    city = City(seed=7)
    x, y = np.meshgrid(np.arange(0, 5000, 50.0), np.arange(0, 5000, 50.0))
    f = city.latent_fields(x, y)
    assert set(f) == set(FIELD_NAMES) and len(FIELD_NAMES) >= 4
    for v in f.values():
        assert v.shape == x.shape and v.min() >= 0 and v.max() <= 1
        assert np.abs(np.diff(v, axis=1)).max() < 0.25  # 50 m steps change little
        assert v.std() > 0.1  # but the city has distinct neighbourhoods
    one = latent_fields(city, 10.0, 20.0)
    assert all(np.ndim(v) == 0 for v in one.values())


def test_record_describes_the_dynamic_content():
    city = City(seed=8)
    day = capture(city, 1500.0, 2500.0, 10.0, "2021-07-01T12:00", weather="clear").record
    night = capture(city, 1500.0, 2500.0, 10.0, "2021-07-01T01:00", weather="clear").record
    static = capture(city, 1500.0, 2500.0, 10.0, "2021-07-01T12:00", dynamic=False).record
    assert day.weather == "clear" and day.season == "summer"
    assert night.lighting < 0.3 * day.lighting
    assert static.cars == static.pedestrians == static.bikes == 0
    for r in (day, night, static):
        assert all(isinstance(n, int) and n >= 0 for n in (r.cars, r.pedestrians, r.bikes))
        assert 0 <= r.greenery_visible <= 1 and 0 <= r.sky_visible <= 1
        assert set(FIELD_NAMES) <= set(r.to_dict())


def test_traffic_counts_vary_with_time_and_the_season_strips_leaves():
    city = City(seed=9)
    rng = np.random.default_rng(3)
    cars, summer, winter = 0, 0.0, 0.0
    for _ in range(10):
        x, y = rng.uniform(0, 5000, 2)
        h = rng.uniform(0, 360)
        rec = capture(city, x, y, h, "2021-07-10T12:00", size=64, weather="clear").record
        cars += rec.cars + rec.pedestrians + rec.bikes
        summer += rec.greenery_visible
        winter += capture(
            city, x, y, h, "2021-01-10T12:00", size=64, weather="clear"
        ).record.greenery_visible
    assert cars > 0
    assert winter < summer


@pytest.mark.parametrize("size", [(48, 80), (1, 1), 17, (300, 120)])
def test_any_size(size):
    c = capture(City(seed=1), 10.0, 10.0, 0.0, WHEN, size=size)
    hw = (size, size) if isinstance(size, int) else size
    assert c.image.shape == (*hw, 3) and c.labels.shape == hw
    assert c.labels.max() < len(CLASS_NAMES)


def test_weather_changes_the_image():
    city = City(seed=2)
    images = {
        w: render(city, 0.0, 0.0, 45.0, WHEN, size=64, weather=w)
        for w in ("clear", "overcast", "rain", "fog")
    }
    assert len({im.tobytes() for im in images.values()}) == 4
    # fog washes out contrast
    assert images["fog"].std() < images["clear"].std()


def test_save_image_png_and_jpeg(tmp_path):
    from PIL import Image

    image = render(City(seed=1), 0.0, 0.0, 0.0, datetime(2021, 6, 1, 12), size=32)
    png = save_image(image, tmp_path / "a" / "x.png")
    assert np.array_equal(np.asarray(Image.open(png)), image)
    jpg = save_image(image, tmp_path / "x.jpg", quality=80)
    assert np.asarray(Image.open(jpg)).shape == image.shape
    with pytest.raises(InputError, match=r"\.png"):
        save_image(image, tmp_path / "x.gif")


def test_import_is_light():
    code = (
        "import sys, urbanvis.simulate as s; "
        "s.render(s.City(), 0.0, 0.0, 0.0, '2021-06-01T12:00', size=16); "
        "print(','.join(m for m in ('PIL', 'geopandas', 'scipy', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "args", "match"),
    [
        ({"size": 0}, (), "size"),
        ({"size": -3}, (), "size"),
        ({"size": (0, 10)}, (), "size"),
        ({"size": 2.5}, (), "size"),
        ({"sise": 64}, (), "did you mean 'size'"),
        ({"colour": 1}, (), "options are size, dynamic, jitter, weather"),
        ({"weather": "snow"}, (), "clear, overcast, rain, fog"),
        ({}, (float("nan"), 0.0, 0.0, WHEN), "NaN"),
        ({}, (0.0, 0.0, float("inf"), WHEN), "finite"),
        ({}, (0.0, 0.0, 0.0, "yesterday"), "ISO 8601"),
        ({}, ("a", 0.0, 0.0, WHEN), "numbers"),
    ],
)
def test_bad_input_raises_input_error_with_one_line_fix(kwargs, args, match):
    args = args or (0.0, 0.0, 0.0, WHEN)
    with pytest.raises(InputError, match=match) as err:
        render(City(seed=1), *args, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"extent": (0, 0, -1, 5)}, {"seed": 1.5}, {"latitude": 95.0}, {"field_scale": 0.0}],
)
def test_bad_city_raises_input_error(kwargs):
    with pytest.raises(InputError):
        City(**kwargs)


def test_latent_fields_reject_nan():
    with pytest.raises(InputError, match="NaN"):
        latent_fields(City(), np.array([0.0, np.nan]), 0.0)
