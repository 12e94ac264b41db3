"""The engine every web provider shares: a bridge that streams finished captures to the
(synchronous) harvest engine, with images shared between neighbouring points fetched once.

A web provider subclasses :class:`WebProvider` and writes one coroutine,
:meth:`WebProvider.capture_group`, that turns a group of points (one point by default) into
capture results using :meth:`Http.get <urbanvis.providers._webhttp.Http.get>`. The client
(concurrency, rate limit, retries, budget) is :mod:`._webhttp`; the image checks are
:mod:`._imagecheck`. Here:

- :meth:`WebProvider.stream` runs the event loop in a thread and yields finished groups'
  results in completion order, so the engine commits while requests continue.
- :class:`ImageCache`: images shared by neighbouring points (one panorama, one heading) are
  fetched once; the engine tells the provider which images are already stored.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import dataclasses
import functools
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, ClassVar

import pandas as pd

from ._cost import CURRENCY, CostEstimate
from ._webhttp import BudgetExhausted, Http, WebSettings
from .base import CaptureResult, Provider


class ImageCache:
    """Images shared by neighbouring points are fetched once.

    ``known(key)`` (from the engine) says an image is already stored; otherwise the first
    caller fetches and later callers for the same key wait for that fetch. Finished fetches
    are remembered for the ``size`` most recent keys only (bytes are held until then).
    """

    def __init__(self, known: Callable[[str], bool], size: int = 512) -> None:
        self.known = known
        self.size = size
        self._tasks: collections.OrderedDict[str, asyncio.Future] = collections.OrderedDict()
        self.shared = 0

    async def get(self, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """None when already stored, else the (possibly shared) result of ``fetch()``."""
        if self.known(key):
            self.shared += 1
            return None
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(fetch())
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._forget_failure, key))
            excess = len(self._tasks) - self.size
            if excess > 0:  # the oldest finished entries go; fetches in flight stay
                drop: list[str] = []
                for old_key, old in self._tasks.items():
                    if len(drop) >= excess:
                        break
                    if old.done():
                        drop.append(old_key)
                for old_key in drop:
                    del self._tasks[old_key]
        else:
            self.shared += 1
            self._tasks.move_to_end(key)
        return await asyncio.shield(task)

    def _forget_failure(self, key: str, task: asyncio.Future[Any]) -> None:
        """A failed fetch is shared with those already waiting, never replayed to later ones."""
        failed = task.cancelled() or task.exception() is not None
        if failed and self._tasks.get(key) is task:
            del self._tasks[key]

    async def close(self) -> None:
        """Cancel fetches nobody waits for any more (a stopped or refused run)."""
        pending = [t for t in self._tasks.values() if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for task in self._tasks.values():  # mark finished failures as seen
            if task.done() and not task.cancelled():
                task.exception()
        self._tasks.clear()


_DONE = object()


class WebProvider(Provider):
    """Base class of the web providers (see the module docstring).

    Subclasses set ``name``, implement :meth:`capture_group` and :meth:`parameters`, and may
    override :meth:`groups` (default: one point per group), :meth:`request_estimate` and
    :meth:`session_headers`. ``http`` and ``images`` exist while :meth:`stream` runs.
    """

    supports_metadata_only = True
    default_price_per_1000: ClassVar[float | None] = None
    """USD per 1,000 billed requests when ``price_per_1000`` is not given; None: a free
    service (no estimate, no ``max_cost``)."""
    rough_estimate: ClassVar[bool] = False
    """Whether :meth:`paid_estimate` is a typical figure rather than an upper bound."""

    def __init__(self, settings: WebSettings | None = None) -> None:
        web = settings if settings is not None else WebSettings()
        if web.price_per_1000 is None and self.default_price_per_1000 is not None:
            web = dataclasses.replace(web, price_per_1000=self.default_price_per_1000)
        self.web = web
        self.http: Http | None = None
        self.images: ImageCache | None = None
        self._stats: dict[str, int] = {}

    # --- for subclasses
    def groups(self, points: pd.DataFrame) -> Iterable[pd.DataFrame]:
        """Units of work; each must yield a result row for every one of its points."""
        for i in range(len(points)):
            yield points.iloc[i : i + 1]

    @abc.abstractmethod
    async def capture_group(self, group: pd.DataFrame) -> list[CaptureResult]:
        """The captures of one group of points (from :meth:`groups`), made with
        :meth:`client` and shared images through :meth:`image_cache`."""

    def request_estimate(self, points: pd.DataFrame) -> int:
        """Requests a group will most likely make (used to keep within ``max_requests``)."""
        return len(points)

    def paid_estimate(self, points: pd.DataFrame) -> int:
        """Billed requests (images) a group will make at most (used to keep within
        ``max_cost``); 0 for a free service."""
        return 0

    def cost_estimate(
        self, points: pd.DataFrame, *, images: int | None = None
    ) -> CostEstimate | None:
        """Requests and cost of harvesting ``points``: from the groups' estimates (an upper
        bound: shared and missing images are not fetched), or, with ``images`` (a survey's
        count of distinct images), exactly those image requests."""
        price = self.web.price_per_1000
        if price is None:
            return None
        if images is not None:
            paid, free, bound = int(images), 0, False
        else:
            paid = free = 0
            for group in self.groups(points):
                cost = self.paid_estimate(group)
                paid += cost
                free += max(int(self.request_estimate(group)) - cost, 0)
            bound = paid > 0
        return CostEstimate(
            self.name,
            len(points),
            paid,
            free,
            self.web.rate,
            float(price),
            upper_bound=bound,
            rough=bound and self.rough_estimate,
        )

    def session_headers(self) -> dict[str, str]:
        return {"User-Agent": "urbanvis (+https://github.com/urbanvis/urbanvis)"}

    def client(self) -> Http:
        """The HTTP client of the running :meth:`stream`."""
        if self.http is None:
            raise RuntimeError("requests are made only while stream() runs")
        return self.http

    def image_cache(self) -> ImageCache:
        """The shared-image cache of the running :meth:`stream`."""
        if self.images is None:
            raise RuntimeError("images are fetched only while stream() runs")
        return self.images

    # --- for the engine
    def capture_points(self, points: pd.DataFrame) -> list[CaptureResult]:
        """Every capture of ``points`` at once (through :meth:`stream`)."""
        return [result for group in self.stream(points) for result in group]

    @property
    def stats(self) -> dict[str, int]:
        """``requests``, ``retries`` and ``images_shared`` of the last :meth:`stream`."""
        return self._stats

    def stream(
        self,
        points: pd.DataFrame,
        *,
        known: Callable[[str], bool] = lambda key: False,
        should_stop: Callable[[], bool] | None = None,
        batch_size: int = 64,
    ) -> Iterator[list[CaptureResult]]:
        """Yield each finished group's results, in completion order, while fetching goes on.

        Stops early (quietly) when the request budget is spent or ``should_stop()``; raises
        :class:`FatalError` after yielding what finished before it. Closing the generator
        (e.g. on Ctrl-C in the consumer) cancels the requests in flight. ``batch_size`` is
        not used: groups are as :meth:`groups` makes them, and the engine commits by time.
        """
        out: queue.Queue = queue.Queue(maxsize=max(4 * int(self.web.concurrency), 64))
        stop = threading.Event()
        state: dict[str, Any] = {"loop": None, "task": None, "error": None}

        def run() -> None:
            loop = asyncio.new_event_loop()
            state["loop"] = loop
            try:
                task = loop.create_task(self._produce(points, known, out, stop, should_stop))
                state["task"] = task
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                pass
            except BaseException as exc:  # handed to the consumer thread
                state["error"] = exc
            finally:
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()
                _put(out, _DONE, stop, force=True)

        thread = threading.Thread(target=run, name=f"urbanvis-{self.name}", daemon=True)
        thread.start()
        try:
            while True:
                item = out.get()
                if item is _DONE:
                    break
                yield item
            if state["error"] is not None:
                raise state["error"]
        finally:
            stop.set()
            loop, task = state["loop"], state["task"]
            if thread.is_alive() and loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(task.cancel)
            while thread.is_alive():  # drain so the producer never blocks on a full queue
                with contextlib.suppress(queue.Empty):
                    out.get(timeout=0.05)
            thread.join()

    @property
    def stopped_reason(self) -> str | None:
        """``--max-requests N reached`` when the request budget stopped the last run (or
        ``max_cost``, naming what was spent)."""
        if self.http is not None and self.http.spent:
            price = float(self.web.price_per_1000 or 0.0)
            return (
                f"`max_cost` {CURRENCY} {self.web.max_cost:g} reached: {self.http.paid:,} image "
                f"requests at {CURRENCY} {price:.2f} per 1,000 cost {CURRENCY} "
                f"{self.http.paid * price / 1000:,.2f}"
            )
        if self.http is not None and self.http.exhausted:
            return f"--max-requests {self.web.max_requests} reached"
        return None

    async def _produce(self, points, known, out, stop, should_stop) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=int(self.web.concurrency), ttl_dns_cache=300, enable_cleanup_closed=True
        )
        async with aiohttp.ClientSession(
            connector=connector, headers=self.session_headers(), raise_for_status=False
        ) as session:
            http = self.http = Http(session, self.web)
            images = self.images = ImageCache(known)
            window = 2 * int(self.web.concurrency)
            limit = self.web.max_requests
            budget = http.max_paid
            pending: set[asyncio.Task] = set()
            cost: dict[asyncio.Task, int] = {}
            paid: dict[asyncio.Task, int] = {}
            try:
                for group in self.groups(points):
                    if stop.is_set() or http.exhausted:
                        break
                    if should_stop is not None and should_stop():
                        break
                    need = max(int(self.request_estimate(group)), 1)
                    bill = max(int(self.paid_estimate(group)), 0)
                    # with a budget, start a group only when its requests fit beside those
                    # the groups in flight may still make: a group cut short by the budget
                    # would throw away what it had paid for
                    while len(pending) >= window or (
                        pending
                        and (
                            (
                                limit is not None
                                and http.requests + sum(cost[t] for t in pending) + need > limit
                            )
                            or (
                                budget is not None
                                and http.paid + sum(paid[t] for t in pending) + bill > budget
                            )
                        )
                    ):
                        done, pending = await asyncio.wait(
                            pending, return_when=asyncio.FIRST_COMPLETED
                        )
                        await self._hand_over(done, out, stop)
                    if limit is not None and http.requests and (http.requests + need > limit):
                        http.exhausted = True  # the first group always gets its try
                        break
                    if budget is not None and bill and http.paid + bill > budget:
                        # never the first group either: a cost budget is a promise
                        http.exhausted = http.spent = True
                        break
                    task = asyncio.ensure_future(self.capture_group(group))
                    cost[task] = need
                    paid[task] = bill
                    pending.add(task)
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    await self._hand_over(done, out, stop)
            finally:
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
                await images.close()
                self._stats = {
                    "requests": http.requests,
                    "paid_requests": http.paid,
                    "retries": http.retried,
                    "images_shared": images.shared,
                }

    async def _hand_over(self, done: set[asyncio.Task], out: queue.Queue, stop) -> None:
        error: BaseException | None = None
        for task in done:
            exc = task.exception()  # read every one, so none is reported as unretrieved
            if isinstance(exc, BudgetExhausted):
                continue  # the group is left for the next run
            if exc is not None:
                error = error or exc
                continue
            while not _put(out, task.result(), stop):
                if stop.is_set():
                    return
                await asyncio.sleep(0.005)
        if error is not None:
            raise error


def _put(out: queue.Queue, item: Any, stop: threading.Event, *, force: bool = False) -> bool:
    """Put without blocking; with ``force``, wait for room until ``stop`` is set."""
    while True:
        try:
            out.put(item, block=force, timeout=0.1 if force else None)
            return True
        except queue.Full:
            if not force or stop.is_set():
                return False
