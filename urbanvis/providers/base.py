"""The one small interface every street-view provider implements (:class:`Provider`).

The harvest engine (:mod:`urbanvis.harvest`) calls nothing on a provider that is not
declared here: :meth:`Provider.check` and :meth:`Provider.prepare` once before the work,
:meth:`Provider.stream` for the captures, :meth:`Provider.close` at the end, then
:attr:`Provider.stats` and :attr:`Provider.stopped_reason` for its summary;
:meth:`Provider.parameters` and :attr:`Provider.name` for the study's settings and
folders. An offline provider writes
:meth:`Provider.capture_points` and :meth:`Provider.parameters` and inherits the rest; the
web providers share :class:`urbanvis.providers._web.WebProvider`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

if TYPE_CHECKING:
    from ..study import Study

CAPTURE_COLUMNS = [
    "capture_id",
    "point_id",
    "provider",
    "pano_id",
    "heading",
    "pitch",
    "fov",
    "captured_at",
    "image_path",
    "sha256",
    "width",
    "height",
    "status",
    "error",
]
"""The ``captures`` layer's columns (design section 3), geometry aside. Never rename these."""

STATUSES = ("ok", "missing", "failed")


@dataclass
class CaptureResult:
    """One capture as a provider returns it: the row (without image_path/sha256) and bytes.

    ``row`` holds at least ``capture_id, point_id, pano_id, heading, pitch, fov,
    captured_at, width, height, status, error, lon, lat``. ``image`` is the encoded file
    (JPEG or PNG) for ``status == "ok"``, else None. ``suffix`` is the file extension.
    """

    row: dict[str, Any]
    image: bytes | None = None
    suffix: str = ".jpg"
    extra: dict[str, Any] = field(default_factory=dict)
    image_key: str | None = None
    """Names the image when several captures can share it (one panorama seen from one
    heading by neighbouring points): the engine stores it once under this name, and an ok
    result whose key is already stored may come without ``image``."""


class Provider(abc.ABC):
    """A source of street-level images for sampled points.

    Subclasses set :attr:`name` and write :meth:`parameters` and :meth:`capture_points`;
    every other member has a default that suits an offline provider.
    """

    name: ClassVar[str]
    """Goes into the ``provider`` column, the ``images/<name>/`` folder and the study's
    ``[harvest.<name>]`` settings."""

    supports_metadata_only: ClassVar[bool] = False
    """Whether the provider can survey coverage without downloading (``metadata_only``);
    the web providers can."""

    metadata_only: bool = False
    """This instance makes metadata requests only (for :func:`urbanvis.harvest.survey`):
    its ``ok`` results come without image bytes."""

    @abc.abstractmethod
    def parameters(self) -> dict[str, Any]:
        """The settings that shape the captures, for provenance (never secrets)."""

    @abc.abstractmethod
    def capture_points(self, points: pd.DataFrame) -> Sequence[CaptureResult]:
        """Every capture of a batch of ``points`` rows (``point_id``, ``bearing``, ``lon``,
        ``lat``), missing and failed ones included, so that a point is recorded as done once
        its batch is committed."""

    def check(self) -> None:  # noqa: B027 (a hook: doing nothing is right)
        """Validate what the provider reads (files, manifests), before the engine locks or
        writes anything in the study (the default does nothing). Raises an UrbanvisError."""

    def prepare(self, study: Study) -> None:  # noqa: B027 (a hook: doing nothing is right)
        """Set up before any capture, once per harvest (the default does nothing).

        Called with the study after the engine holds its lock and before it reads the
        ``points`` layer: the folder provider seeds a study without points from its images
        here, then attaches every image to its nearest point.
        """

    def stream(
        self,
        points: pd.DataFrame,
        *,
        known: Callable[[str], bool] = lambda key: False,
        should_stop: Callable[[], bool] | None = None,
        batch_size: int = 64,
    ) -> Iterator[Sequence[CaptureResult]]:
        """The captures of ``points``, group by group, as they are ready.

        The default calls :meth:`capture_points` on ``batch_size`` points at a time and
        checks ``should_stop()`` before each batch. The web providers yield each group's
        results as its requests finish, skip images for which ``known(image_key)`` says they
        are stored already, and stop early when their request budget is spent (see
        :attr:`stopped_reason`).
        """
        for start in range(0, len(points), max(int(batch_size), 1)):
            if should_stop is not None and should_stop():
                return
            yield self.capture_points(points.iloc[start : start + batch_size])

    def request_estimate(self, points: pd.DataFrame) -> int:
        """Requests the provider will most likely make for ``points`` (0: an offline one).

        The web providers use it to keep within their request budget: a group is started
        only when its estimate fits beside those of the groups in flight.
        """
        return 0

    def cost_estimate(self, points: pd.DataFrame, *, images: int | None = None) -> Any:
        """The requests and price of harvesting ``points`` (a
        :class:`urbanvis.providers._cost.CostEstimate`), or None for a free provider (the
        default). ``images``: a survey's count of the images a harvest would fetch."""
        return None

    def close(self) -> None:  # noqa: B027 (a hook: doing nothing is right)
        """Release what the provider holds (processes, sessions); the default does nothing.

        Called once when the harvest ends, however it ends.
        """

    @property
    def stats(self) -> Mapping[str, int]:
        """Counters of the last run, for the summary and the run record (``requests``,
        ``retries``...); none by default."""
        return {}

    @property
    def stopped_reason(self) -> str | None:
        """Why the last :meth:`stream` stopped before the end on its own (a spent request
        budget), for the summary line; None when it did not."""
        return None
