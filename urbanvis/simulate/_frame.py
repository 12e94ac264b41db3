"""The frame of one render: the label classes, the camera in the street frame, the buffers.

Every drawing pass shares one :class:`Frame`. Its pinhole camera stands in the street
frame of :mod:`.scene` (``a`` metres ahead, ``l`` metres right of the centre line), moved
by the capture's jitter, with a 90 degree horizontal field of view and the horizon a
little above the image centre. Its buffers hold, per pixel, a palette index and a shade
(the albedo is ``palette[index] * shade``), a class label, a depth and a direct-light
factor; the passes write them in place and :mod:`._light` turns them into colours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._paint import Painter, Palette
from .scene import CAM_HEIGHT, Street

# Class labels of the label image.
SKY, SKYLINE, FACADE, WINDOW, ROAD, SIDEWALK, GRASS, TREE, TRUNK, POLE, SIGN, CAR, PERSON, BIKE = (
    range(14)
)
CLASS_NAMES: tuple[str, ...] = (
    "sky",
    "skyline",
    "facade",
    "window",
    "road",
    "sidewalk",
    "grass",
    "tree",
    "trunk",
    "pole",
    "sign",
    "car",
    "person",
    "bike",
)

HFOV = 90.0  # degrees
FAR = 1.0e4  # metres: the depth of the sky and of rays that meet no facade


@dataclass(frozen=True, eq=False)
class Frame:
    """The camera and the per-pixel buffers of one render (the arrays are written in place)."""

    heading: float  # the requested heading, degrees
    yaw_jitter: float  # degrees the camera jitter adds to it
    axis_dir: float  # the street axis in the viewing direction, degrees
    a_cam: float  # camera position in the street frame, metres
    l_cam: float
    delta: float  # camera yaw from the street axis, radians
    cd: float  # its cosine and sine
    sd: float
    f: float  # focal length, pixels
    cx: float  # principal point: the image centre, the horizon a little above it
    cy: float
    cols: np.ndarray  # (W,) column centres, pixels
    xcol: np.ndarray  # (W,) tan of each column's angle from the optical axis
    phi: np.ndarray  # (W,) that angle, radians
    az: np.ndarray  # (W,) each column's compass azimuth, degrees
    rows: np.ndarray  # (H, 1) float32 row centres, pixels
    palette: Palette  # colours; index 0 is the sky, painted last
    material: np.ndarray  # (H, W) palette index
    shade: np.ndarray  # (H, W) float32 albedo factor
    labels: np.ndarray  # (H, W) uint8 class, see CLASS_NAMES
    depth: np.ndarray  # (H, W) float32 optical depth, metres
    direct_f: np.ndarray  # (H, W) float32 share of direct sunlight received

    @property
    def height(self) -> int:
        """Image rows."""
        return self.labels.shape[0]

    @property
    def width(self) -> int:
        """Image columns."""
        return self.labels.shape[1]

    def project(self, a, lat, z_up):
        """Screen ``(u, v)`` and depth of the street-frame point ``(a, lat)``, ``z_up`` high."""
        ar, lr = a - self.a_cam, lat - self.l_cam
        zc = ar * self.cd + lr * self.sd
        xc = -ar * self.sd + lr * self.cd
        return self.cx + self.f * xc / zc, self.cy - self.f * (z_up - CAM_HEIGHT) / zc, zc

    def painter(self) -> Painter:
        """A :class:`~._paint.Painter` of billboards over these buffers."""
        return Painter(
            self.palette, self.material, self.shade, self.labels, self.depth, self.direct_f
        )


def frame_from_street(
    st: Street, heading: float, jitter: tuple[float, float, float], size: tuple[int, int]
) -> Frame:
    """The camera on ``st`` and empty buffers: sky everywhere, at depth ``FAR``, unlit.

    ``jitter`` is the camera's error ``(east m, north m, degrees)``, ``size`` the image's
    ``(height, width)``.
    """
    H, W = size
    jx, jy, jh = jitter
    f32 = np.float32
    # Camera in the street frame: offset (a_cam, l_cam), yaw from the view axis.
    th = math.radians(st.axis)
    a_cam = st.direction * (jx * math.sin(th) + jy * math.cos(th))
    l_cam = st.direction * (jx * math.cos(th) - jy * math.sin(th))
    axis_dir = st.axis if st.direction > 0 else st.axis + 180
    delta = math.radians(((heading + jh - axis_dir + 180.0) % 360.0) - 180.0)
    f = (W / 2) / math.tan(math.radians(HFOV / 2))
    cx, cy = W / 2, H / 2 - 0.04 * H  # horizon a little above the centre
    cols = np.arange(W) + 0.5
    xcol = (cols - cx) / f  # tan(phi) per column
    phi = np.arctan(xcol)
    palette = Palette()
    palette.add((0.0, 0.0, 0.0))
    return Frame(
        heading=heading,
        yaw_jitter=jh,
        axis_dir=axis_dir,
        a_cam=a_cam,
        l_cam=l_cam,
        delta=delta,
        cd=math.cos(delta),
        sd=math.sin(delta),
        f=f,
        cx=cx,
        cy=cy,
        cols=cols,
        xcol=xcol,
        phi=phi,
        az=heading + jh + np.degrees(phi),
        rows=(np.arange(H, dtype=f32) + f32(0.5))[:, None],
        palette=palette,
        material=np.zeros((H, W), np.intp),
        shade=np.ones((H, W), f32),
        labels=np.full((H, W), SKY, np.uint8),
        depth=np.full((H, W), f32(FAR)),
        direct_f=np.zeros((H, W), f32),
    )
