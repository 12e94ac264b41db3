"""Checks of image bodies: does it decode, is it the size asked for, is it Google's grey
"no imagery" placeholder. Used on every image a web provider fetches (:class:`ImageBody`
as a ``retry_if``) and on images found on disk by the image store."""

from __future__ import annotations

import io

from ._webhttp import Response, _short

GREY_PLACEHOLDER = (228, 227, 223)
"""The light grey of Google's "Sorry, we have no imagery here" picture, RGB."""


class BadImage(Exception):
    """Bytes that are not the image asked for (does not decode, wrong size)."""


def check_image(
    body: bytes, *, size: tuple[int, int] | None = None, placeholder: bool = True
) -> tuple[int, int, bool]:
    """Decode ``body`` fully (at reduced scale) and return ``(width, height, is_placeholder)``.

    Raises :class:`BadImage` when it does not decode or is not ``size`` (width, height).
    The placeholder test: almost every pixel within a few levels of one light neutral grey.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as img:
            width, height = img.size
            if size is not None and (width, height) != tuple(size):
                raise BadImage(f"image is {width}x{height}, asked for {size[0]}x{size[1]}")
            img.draft("RGB", (max(width // 8, 1), max(height // 8, 1)))
            small = np.asarray(img.convert("RGB"))
    except BadImage:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise BadImage(f"image does not decode ({_short(exc) or type(exc).__name__})") from None
    grey = False
    if placeholder and small.size:
        flat = small.reshape(-1, 3).astype(np.int16)
        median = np.median(flat, axis=0)
        near = np.abs(flat - median).max(axis=1) <= 6
        neutral = float(median.max() - median.min()) <= 12 and float(median.mean()) >= 180
        grey = neutral and float(near.mean()) >= 0.9
    return width, height, grey


class ImageBody:
    """A ``retry_if`` for image requests: a 200 that is not a decodable image of the asked
    size is retried like a server error; the last good check is kept in ``checked``
    (``(width, height, is_placeholder)``) so the image is decoded once."""

    def __init__(self, *, size: tuple[int, int] | None = None, placeholder: bool = True):
        self.size = size
        self.placeholder = placeholder
        self.checked: tuple[int, int, bool] | None = None

    def __call__(self, response: Response) -> str | None:
        if response.status != 200:
            return None
        if not response.content_type.startswith("image/"):
            return f"expected an image, got {response.content_type or 'no content type'}"
        try:
            self.checked = check_image(response.body, size=self.size, placeholder=self.placeholder)
        except BadImage as exc:
            return str(exc)
        return None

    def result(self) -> tuple[int, int, bool]:
        """``(width, height, is_placeholder)`` of the 200 answer this check let through."""
        if self.checked is None:
            raise RuntimeError("no 200 answer was checked: pass the ImageBody as retry_if")
        return self.checked
