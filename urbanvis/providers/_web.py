"""The engine every web provider shares: one pooled async HTTP client, bounded concurrency,
a rate limit, retries with exponential backoff and jitter, a request budget, and a bridge
that streams finished captures to the (synchronous) harvest engine.

A web provider subclasses :class:`WebProvider` and writes one coroutine,
:meth:`WebProvider.capture_group`, that turns a group of points (one point by default) into
capture results using :meth:`Http.get`. Everything else lives here:

- :class:`Http`: ``get`` waits for a concurrency slot and the rate limiter, counts the request
  against ``max_requests``, and retries timeouts, dropped or truncated connections, HTTP 429 and
  5xx, and whatever the provider's ``retry_if`` says (e.g. ``OVER_QUERY_LIMIT``), sleeping
  ``backoff * 2**attempt`` seconds scaled by a random factor in [0.5, 1.5) (and at least any
  ``Retry-After``). Requests that fail for good raise :class:`TransientError` (the capture is
  recorded as failed); :class:`FatalError` stops the whole harvest (a denied key).
- :meth:`WebProvider.stream` runs the event loop in a thread and yields finished groups'
  results in completion order, so the engine commits while requests continue.
- :class:`ImageCache`: images shared by neighbouring points (one panorama, one heading) are
  fetched once; the engine tells the provider which images are already stored.

URLs are redacted (:mod:`urbanvis._secrets`) before they reach any message.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pandas as pd

from .. import _secrets
from .._errors import InputError, UrbanvisError
from .base import CaptureResult

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, *range(500, 600)}) - {501, 505}
"""Statuses worth another try: timeouts, throttling and server errors (not "not implemented")."""


class FatalError(UrbanvisError, RuntimeError):
    """The service refused in a way retries cannot fix (a denied key, an invalid request).

    The message is redacted when the error is made, so no caller can leak a secret in it.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(_secrets.redact(message))


class TransientError(Exception):
    """A request still failed after every retry; the capture is recorded as failed."""


class BudgetExhausted(Exception):
    """``max_requests`` requests have been made; no more are sent."""


@dataclass
class Response:
    """A finished HTTP response, body read in full."""

    status: int
    content_type: str
    body: bytes
    url: str  # redacted

    def json(self) -> Any:
        import json

        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise TransientError(f"unreadable JSON from {self.url}") from exc


@dataclass(frozen=True)
class WebSettings:
    """How hard a web provider may hit its service.

    Parameters
    ----------
    concurrency
        Requests in flight at once (one pooled connection each).
    rate
        Requests per second at most (0 or None: no limit).
    retries
        Retries per request after the first try.
    timeout
        Seconds per request attempt.
    backoff
        First retry delay in seconds; doubled each retry, with jitter; capped by ``backoff_max``.
    max_requests
        Stop after this many requests (retries count: each is billed); None: no budget.
    endpoint
        ``scheme://host[:port]`` replacing the official one (paths stay), for a mirror,
        a proxy or a local test server.
    """

    concurrency: int = 16
    rate: float | None = 50.0
    retries: int = 5
    timeout: float = 30.0
    backoff: float = 0.5
    backoff_max: float = 60.0
    max_requests: int | None = None
    endpoint: str | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "backoff", "backoff_max"):
            if not math.isfinite(float(getattr(self, name))) or float(getattr(self, name)) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be a positive number of seconds")
        if self.rate is not None and not math.isfinite(float(self.rate)):
            raise InputError(f"--rate must be a number of requests/s, got {self.rate}")
        if int(self.concurrency) < 1:
            raise InputError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.rate is not None and float(self.rate) < 0:
            raise InputError(f"--rate must be positive requests/s (or 0 for none), got {self.rate}")
        if int(self.retries) < 0:
            raise InputError(f"--retries must be 0 or more, got {self.retries}")
        if float(self.timeout) <= 0:
            raise InputError(f"--timeout must be positive seconds, got {self.timeout}")
        if self.max_requests is not None and int(self.max_requests) < 1:
            raise InputError(f"--max-requests must be at least 1, got {self.max_requests}")
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InputError(
                    f"--endpoint {_secrets.redact_url(self.endpoint)!r} is not a URL like "
                    f"https://mirror.example.org"
                )
            _secrets.register(parts.password)  # user:password@ of a proxy stays out of text


def with_endpoint(url: str, endpoint: str | None) -> str:
    """``url`` with its scheme and host replaced by ``endpoint``'s (path and query kept)."""
    if not endpoint:
        return url
    new = urlsplit(endpoint)
    old = urlsplit(url)
    prefix = new.path.rstrip("/")
    return urlunsplit((new.scheme, new.netloc, prefix + old.path, old.query, old.fragment))


class RateLimiter:
    """At most ``rate`` acquisitions per second, spaced evenly (no bursts)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / float(rate) if rate else 0.0
        self._next = 0.0

    async def acquire(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class Http:
    """The pooled client: concurrency slots, rate limit, budget and retries (module doc)."""

    def __init__(self, session: Any, settings: WebSettings, *, seed: int | None = None) -> None:
        self.session = session
        self.settings = settings
        self.slots = asyncio.Semaphore(int(settings.concurrency))
        self.limiter = RateLimiter(settings.rate)
        self.requests = 0
        self.retried = 0
        self.exhausted = False
        self._random = random.Random(seed)

    async def get(
        self,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        sign: Callable[[str], str] | None = None,
        retry_if: Callable[[Response], str | None] | None = None,
        rewrite: bool = True,
    ) -> Response:
        """GET ``url`` and read the body (see :meth:`request`)."""
        return await self.request(
            "GET", url, params, headers=headers, sign=sign, retry_if=retry_if, rewrite=rewrite
        )

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        *,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        sign: Callable[[str], str] | None = None,
        retry_if: Callable[[Response], str | None] | None = None,
        rewrite: bool = True,
    ) -> Response:
        """Send one request (with retries) and read the body.

        ``url`` is the official URL: the endpoint override is applied here unless
        ``rewrite=False`` (for URLs a service handed back, such as paging links or CDN
        thumbnails). ``sign(url) -> url`` adds a signature to the final URL;
        ``retry_if(response)`` returns a reason to retry a response that HTTP calls fine
        (e.g. ``OVER_QUERY_LIMIT``), or None. Returns any response that is neither retried
        nor exhausted: the caller reads statuses.
        """
        import aiohttp

        full = with_endpoint(url, self.settings.endpoint) if rewrite else url
        if params:
            full = f"{full}{'&' if '?' in full else '?'}{urlencode(params, safe=',|:')}"
        if sign is not None:
            full = sign(full)
        shown = _secrets.redact_url(full)
        timeout = aiohttp.ClientTimeout(total=float(self.settings.timeout))
        attempts = int(self.settings.retries) + 1
        reason = ""
        hint: float | None = None
        for attempt in range(attempts):
            if attempt:
                self.retried += 1
                await asyncio.sleep(self._delay(attempt, reason, hint))
            self._spend()
            retry_after = None
            hint = None
            async with self.slots:
                await self.limiter.acquire()
                try:
                    async with self.session.request(
                        method,
                        yarl_url(full),
                        data=data,
                        headers=headers,
                        timeout=timeout,
                        allow_redirects=True,
                    ) as resp:
                        body = await resp.read()
                        response = Response(
                            resp.status, resp.headers.get("Content-Type", ""), body, shown
                        )
                        retry_after = resp.headers.get("Retry-After")
                except TimeoutError:
                    reason = f"timed out after {self.settings.timeout:g} s"
                    continue
                except aiohttp.ClientError as exc:
                    reason = _secrets.redact(f"{type(exc).__name__}: {_short(exc)}")
                    continue
            if response.status in RETRY_STATUSES:
                reason = f"HTTP {response.status}"
                hint = _seconds(retry_after)
                continue
            why = retry_if(response) if retry_if is not None else None
            if why:
                reason = why
                continue
            return response
        raise TransientError(f"{reason} ({attempts} tries) for {shown}")

    def _spend(self) -> None:
        limit = self.settings.max_requests
        if limit is not None and self.requests >= int(limit):
            self.exhausted = True
            raise BudgetExhausted
        self.requests += 1

    def _delay(self, attempt: int, reason: str, hint: float | None) -> float:
        base = min(self.settings.backoff * 2 ** (attempt - 1), self.settings.backoff_max)
        delay = base * (0.5 + self._random.random())
        if hint is not None:  # the server's Retry-After, within reason
            delay = max(delay, min(hint, self.settings.backoff_max))
        log.debug("retry %d in %.2f s: %s", attempt, delay, reason)
        return delay


def yarl_url(url: str) -> Any:
    """The URL as yarl sees it, already encoded (so a signature stays valid)."""
    import yarl

    return yarl.URL(url, encoded=True)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


# ----------------------------------------------------------------------- image checks
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
            task.add_done_callback(lambda t, k=key: self._forget_failure(k, t))
            excess = len(self._tasks) - self.size
            if excess > 0:  # the oldest finished entries go; fetches in flight stay
                drop = []
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

    def _forget_failure(self, key: str, task: asyncio.Future) -> None:
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


# ------------------------------------------------------------------------ the provider
_DONE = object()


class WebProvider:
    """Base class of the web providers (see the module docstring).

    Subclasses set ``name``, implement :meth:`capture_group` and :meth:`parameters`, and may
    override :meth:`groups` (default: one point per group) and :meth:`session_headers`.
    """

    name = "web"
    metadata_only = False

    def __init__(self, settings: WebSettings | None = None) -> None:
        self.web = settings if settings is not None else WebSettings()
        self.http: Http | None = None
        self.images: ImageCache | None = None
        self.stats: dict[str, int] = {}

    # --- for subclasses
    def groups(self, points: pd.DataFrame) -> Iterable[pd.DataFrame]:
        """Units of work; each must yield a result row for every one of its points."""
        for i in range(len(points)):
            yield points.iloc[i : i + 1]

    async def capture_group(self, group: pd.DataFrame) -> list[CaptureResult]:
        raise NotImplementedError

    def request_estimate(self, group: pd.DataFrame) -> int:
        """Requests a group will most likely make (used to keep within ``max_requests``)."""
        return len(group)

    def session_headers(self) -> dict[str, str]:
        return {"User-Agent": "urbanvis (+https://github.com/urbanvis/urbanvis)"}

    def parameters(self) -> dict[str, Any]:
        raise NotImplementedError

    # --- for the engine
    def stream(
        self,
        points: pd.DataFrame,
        *,
        known: Callable[[str], bool] = lambda key: False,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[list[CaptureResult]]:
        """Yield each finished group's results, in completion order, while fetching goes on.

        Stops early (quietly) when the request budget is spent or ``should_stop()``; raises
        :class:`FatalError` after yielding what finished before it. Closing the generator
        (e.g. on Ctrl-C in the consumer) cancels the requests in flight.
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
            self.http = Http(session, self.web)
            self.images = ImageCache(known)
            window = 2 * int(self.web.concurrency)
            limit = self.web.max_requests
            pending: set[asyncio.Task] = set()
            cost: dict[asyncio.Task, int] = {}
            try:
                for group in self.groups(points):
                    if stop.is_set() or self.http.exhausted:
                        break
                    if should_stop is not None and should_stop():
                        break
                    need = max(int(self.request_estimate(group)), 1)
                    # with a budget, start a group only when its requests fit beside those
                    # the groups in flight may still make: a group cut short by the budget
                    # would throw away what it had paid for
                    while len(pending) >= window or (
                        limit is not None
                        and pending
                        and self.http.requests + sum(cost[t] for t in pending) + need > limit
                    ):
                        done, pending = await asyncio.wait(
                            pending, return_when=asyncio.FIRST_COMPLETED
                        )
                        await self._hand_over(done, out, stop)
                    if (
                        limit is not None
                        and self.http.requests
                        and (self.http.requests + need > limit)
                    ):
                        self.http.exhausted = True  # the first group always gets its try
                        break
                    task = asyncio.ensure_future(self.capture_group(group))
                    cost[task] = need
                    pending.add(task)
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    await self._hand_over(done, out, stop)
            finally:
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
                await self.images.close()
                self.stats = {
                    "requests": self.http.requests,
                    "retries": self.http.retried,
                    "images_shared": self.images.shared,
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


def read_secret(env: str, key_file: str | None, *, what: str, option: str = "--key-file") -> str:
    """A secret from ``key_file`` (first non-empty line) or the environment variable ``env``."""
    import os
    from pathlib import Path

    if key_file:
        path = Path(key_file).expanduser()
        if not path.is_file():
            raise InputError(
                f"{option} {key_file} does not exist; give the file holding the {what}"
            )
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise InputError(
                f"cannot read {option} {key_file} ({reason}); give a readable text file "
                f"with the {what} on its first line"
            ) from None
        lines = [s.strip() for s in text.splitlines() if s.strip()]
        if not lines:
            raise InputError(f"{option} {key_file} is empty; put the {what} on its first line")
        value = lines[0]
    else:
        value = os.environ.get(env, "").strip()
        if not value:
            raise InputError(f"no {what}: set {env} (or pass {option} FILE)")
    _secrets.register(value)
    return value
