"""Write rendered images to PNG or JPEG files (Pillow, imported on first use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._errors import InputError, MissingDependencyError, StudyError

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def save_image(image: np.ndarray, path, *, quality: int = 90) -> Path:
    """Write an ``(H, W, 3)`` uint8 image to ``path``; the suffix picks PNG or JPEG.

    Parameters
    ----------
    image : numpy.ndarray
        RGB image, as returned by :func:`urbanvis.simulate.render`.
    path : str or os.PathLike
        Destination ending in ``.png``, ``.jpg`` or ``.jpeg``; parent folders are created.
    quality : int
        JPEG quality, 1-95 (ignored for PNG).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot write {path.name!r}; end the file name in .png, .jpg or .jpeg")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image must be an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "saving images needs Pillow; install it with `pip install pillow`"
        ) from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"quality": int(quality)} if fmt == "JPEG" else {}
        Image.fromarray(image, "RGB").save(path, fmt, **kwargs)
    except OSError as exc:
        raise StudyError(f"cannot write {path}: {exc.strerror or exc}; check the folder") from None
    return path
