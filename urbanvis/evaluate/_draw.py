"""Small PNG figures drawn with PIL (matplotlib is not a dependency): heat-map grids and
line plots. Each function returns the PNG as bytes, so callers write them atomically."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# viridis at 0, .25, .5, .75, 1 (interpolated linearly in between)
_VIRIDIS = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)
_GREY = (200, 200, 200)


def colormap(values: np.ndarray) -> np.ndarray:
    """uint8 RGB of ``values`` in [0, 1] on the viridis scale."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    low = np.floor(v).astype(int).clip(0, len(_VIRIDIS) - 2)
    t = (v - low)[..., None]
    return np.round(_VIRIDIS[low] * (1 - t) + _VIRIDIS[low + 1] * t).astype(np.uint8)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _font():
    return ImageFont.load_default()


def heatmap_grid(
    image: np.ndarray,
    maps: np.ndarray,
    marks: Sequence[tuple[int, int]],
    *,
    patch_size: int,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str = "",
    cell: int = 128,
) -> bytes:
    """A grid of ``image`` overlaid with ``maps[row, col]`` (each ``(h, w)``, scaled to its max).

    ``image`` is float RGB in [0, 1] ``(S, S, 3)``; ``marks[col]`` is the (row, col) patch
    outlined in every cell of that column.
    """
    rows, cols = maps.shape[:2]
    side = image.shape[0]
    scale = max(1, round(cell / side))
    size = side * scale
    base = Image.fromarray(np.round(image * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.NEAREST
    )
    left, top, gap = 70, 36 if title else 20, 4
    canvas = Image.new("RGB", (left + cols * (size + gap), top + rows * (size + gap)), color=_WHITE)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    if title:
        draw.text((4, 2), title, fill=_BLACK, font=font)
    for c, label in enumerate(col_labels):
        draw.text((left + c * (size + gap) + 2, top - 14), label, fill=_BLACK, font=font)
    for r in range(rows):
        y = top + r * (size + gap)
        draw.text((4, y + size // 2 - 6), row_labels[r], fill=_BLACK, font=font)
        for c in range(cols):
            x = left + c * (size + gap)
            m = maps[r, c]
            m = m / m.max() if m.max() > 0 else m
            heat = Image.fromarray(colormap(m)).resize((size, size), Image.Resampling.NEAREST)
            canvas.paste(Image.blend(base, heat, 0.6), (x, y))
            pr, pc = marks[c]
            step = patch_size * scale
            draw.rectangle(
                [x + pc * step, y + pr * step, x + (pc + 1) * step - 1, y + (pr + 1) * step - 1],
                outline=(255, 0, 0),
                width=max(1, scale // 2),
            )
    return _png(canvas)


def line_plot(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    points: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    xlabel: str,
    ylabel: str,
    title: str,
    width: int = 720,
    height: int = 440,
) -> bytes:
    """Lines with markers, one per label, with optional scatter ``points`` of the same colour."""
    xs = [np.asarray(x, float) for x, _ in series.values()]
    ys = [np.asarray(y, float) for _, y in series.values()]
    for x, y in (points or {}).values():
        xs.append(np.asarray(x, float).ravel())
        ys.append(np.asarray(y, float).ravel())
    allx, ally = np.concatenate(xs), np.concatenate(ys)
    ally = ally[np.isfinite(ally)]
    x0, x1 = float(allx.min()), float(allx.max())
    y0, y1 = (float(ally.min()), float(ally.max())) if ally.size else (0.0, 1.0)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = (y1 - y0) * 0.08 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    left, right, top, bottom = 70, 20 + 190, 44, 50
    pw, ph = width - left - right, height - top - bottom

    def px(x, y):
        return (left + (x - x0) / (x1 - x0) * pw, top + (y1 - y) / (y1 - y0) * ph)

    canvas = Image.new("RGB", (width, height), color=_WHITE)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    draw.text((4, 6), title, fill=_BLACK, font=font)
    draw.rectangle([left, top, left + pw, top + ph], outline=_BLACK)
    for t in np.linspace(y0, y1, 6):
        _, yy = px(x0, t)
        draw.line([left, yy, left + pw, yy], fill=_GREY)
        draw.text((4, yy - 6), f"{t:.3g}", fill=_BLACK, font=font)
    for t in np.unique(np.round(np.linspace(x0, x1, min(12, int(x1 - x0) + 1)))):
        xx, _ = px(t, y0)
        draw.line([xx, top + ph, xx, top + ph + 4], fill=_BLACK)
        draw.text((xx - 4, top + ph + 6), f"{t:g}", fill=_BLACK, font=font)
    draw.text((left + pw // 2 - 20, height - 18), xlabel, fill=_BLACK, font=font)
    draw.text((4, top - 14), ylabel, fill=_BLACK, font=font)
    for i, (label, (x, y)) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        if points and label in points:
            px_, py_ = points[label]
            for a, b in zip(np.ravel(px_), np.ravel(py_), strict=True):
                if np.isfinite(b):
                    cx, cy = px(a, b)
                    draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], outline=colour)
        coords = [px(a, b) for a, b in zip(x, y, strict=True) if np.isfinite(b)]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=2)
        for cx, cy in coords:
            draw.rectangle([cx - 3, cy - 3, cx + 3, cy + 3], fill=colour)
        ly = top + 6 + 16 * i
        draw.rectangle([left + pw + 10, ly, left + pw + 22, ly + 10], fill=colour)
        draw.text((left + pw + 28, ly - 1), label[:30], fill=_BLACK, font=font)
    return _png(canvas)
