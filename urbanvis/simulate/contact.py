"""A contact sheet of the synthetic city: one place over time, a street, neighbourhoods."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._errors import InputError
from .city import City

DATES = (
    "2016-01-15T10:00",
    "2017-04-20T08:30",
    "2018-07-04T13:00",
    "2019-10-12T16:30",
    "2021-06-21T19:30",
    "2023-12-02T12:00",
)


def contact_sheet(
    path: str | os.PathLike[str], *, seed: int = 0, size: int = 160, place=(1200.0, 850.0)
) -> Path:
    """Write a PNG grid: row 1 one place at 6 dates; row 2 six places 15 m apart along a
    street; row 3 six neighbourhoods 1.5 km apart, all at one date."""
    from PIL import Image, ImageDraw

    from .renderer import render

    if not 32 <= size <= 1024:
        raise InputError(f"`size` (a contact sheet tile) must be 32..1024 pixels, got {size}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"`contact_sheet` must be a .png file name, got {path.name}")
    city = City(seed=seed)
    x0, y0 = place
    heading = 90.0
    rows = [
        ("one place, six dates", [(x0, y0, d) for d in DATES]),
        ("six places 15 m apart", [(x0 + 15 * k, y0, DATES[2]) for k in range(6)]),
        ("six neighbourhoods", [(x0 + 1500 * k, y0 + 900 * k, DATES[2]) for k in range(6)]),
    ]
    label = 18
    sheet = Image.new("RGB", (6 * size, 3 * (size + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (title, shots) in enumerate(rows):
        top = r * (size + label)
        draw.text((4, top + 3), title, fill=(20, 20, 20))
        for c, (x, y, when) in enumerate(shots):
            image = render(city, x, y, heading, when, size=size)
            sheet.paste(Image.fromarray(np.asarray(image)), (c * size, top + label))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
