"""The HTTP client every web provider shares: one pooled async session, bounded
concurrency, a rate limit, retries with exponential backoff and jitter, and a request budget.

:class:`Http` ``get`` waits for a concurrency slot and the rate limiter, counts the request
against ``max_requests``, and retries timeouts, dropped or truncated connections, HTTP 429 and
5xx, and whatever the provider's ``retry_if`` says (e.g. ``OVER_QUERY_LIMIT``), sleeping
``backoff * 2**attempt`` seconds scaled by a random factor in [0.5, 1.5) (and at least any
``Retry-After``). Requests that fail for good raise :class:`TransientError` (the capture is
recorded as failed); :class:`FatalError` stops the whole harvest (a denied key).
:class:`WebSettings` holds how hard a provider may hit its service, and :func:`read_secret`
reads its key.

URLs are redacted (:mod:`urbanvis._secrets`) before they reach any message.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from .. import _secrets
from .._errors import InputError, UrbanvisError
from .._files import not_a_file
from ._cost import paid_budget

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
    price_per_1000
        What 1,000 billed (image) requests cost, for estimates and ``max_cost``; None: the
        provider's default (:mod:`._cost`), 0: free.
    max_cost
        Stop before the billed requests would cost more than this (retries count); None:
        no cost budget.
    """

    concurrency: int = 16
    rate: float | None = 50.0
    retries: int = 5
    timeout: float = 30.0
    backoff: float = 0.5
    backoff_max: float = 60.0
    max_requests: int | None = None
    endpoint: str | None = None
    price_per_1000: float | None = None
    max_cost: float | None = None

    def __post_init__(self) -> None:
        for name in ("price_per_1000", "max_cost"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(float(value)) and float(value) >= 0):
                raise InputError(f"`{name}` must be 0 or more (USD), got {value}")
        for name in ("timeout", "backoff", "backoff_max"):
            if not math.isfinite(float(getattr(self, name))) or float(getattr(self, name)) < 0:
                raise InputError(f"`{name}` must be a positive number of seconds")
        if self.rate is not None and not math.isfinite(float(self.rate)):
            raise InputError(f"`rate` must be a number of requests/s, got {self.rate}")
        if int(self.concurrency) < 1:
            raise InputError(f"`concurrency` must be at least 1, got {self.concurrency}")
        if self.rate is not None and float(self.rate) < 0:
            raise InputError(f"`rate` must be positive requests/s (or 0 for none), got {self.rate}")
        if int(self.retries) < 0:
            raise InputError(f"`retries` must be 0 or more, got {self.retries}")
        if float(self.timeout) <= 0:
            raise InputError(f"`timeout` must be positive seconds, got {self.timeout}")
        if self.max_requests is not None and int(self.max_requests) < 1:
            raise InputError(f"`max_requests` must be at least 1, got {self.max_requests}")
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InputError(
                    f"`endpoint` {_secrets.redact_url(self.endpoint)!r} is not a URL like "
                    f"https://mirror.example.org"
                )
            _secrets.register(parts.password)  # user:password@ of a proxy stays out of text

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> WebSettings:
        """The settings among a provider's options (None: the default)."""
        names = (
            "concurrency", "rate", "retries", "timeout", "max_requests", "endpoint",
            "price_per_1000", "max_cost",
        )  # fmt: skip
        return cls(**{k: options[k] for k in names if options.get(k) is not None})


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
        self.paid = 0
        self.max_paid = paid_budget(settings.max_cost, settings.price_per_1000)
        self.exhausted = False
        self.spent = False  # the cost budget, not the request budget, stopped the run
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
        paid: bool = False,
    ) -> Response:
        """GET ``url`` and read the body (see :meth:`request`)."""
        return await self.request(
            "GET", url, params, headers=headers, sign=sign, retry_if=retry_if, rewrite=rewrite,
            paid=paid,
        )  # fmt: skip

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
        paid: bool = False,
    ) -> Response:
        """Send one request (with retries) and read the body.

        ``url`` is the official URL: the endpoint override is applied here unless
        ``rewrite=False`` (for URLs a service handed back, such as paging links or CDN
        thumbnails). ``sign(url) -> url`` adds a signature to the final URL;
        ``retry_if(response)`` returns a reason to retry a response that HTTP calls fine
        (e.g. ``OVER_QUERY_LIMIT``), or None. Returns any response that is neither retried
        nor exhausted: the caller reads statuses. A ``paid`` request (each try) counts
        against ``max_cost`` as well.
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
            self._spend(paid)
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

    def _spend(self, paid: bool = False) -> None:
        limit = self.settings.max_requests
        if limit is not None and self.requests >= int(limit):
            self.exhausted = True
            raise BudgetExhausted
        if paid and self.max_paid is not None and self.paid >= self.max_paid:
            self.exhausted = self.spent = True
            raise BudgetExhausted
        self.requests += 1
        self.paid += int(paid)

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


def read_secret(env: str, key_file: str | None, *, what: str, param: str = "key_file") -> str:
    """A secret from ``key_file`` (first non-empty line) or the environment variable ``env``.

    ``param`` is the keyword that gave ``key_file``, named in error messages.
    """
    import os
    from pathlib import Path

    if key_file:
        path = Path(key_file).expanduser()
        if not path.is_file():
            raise InputError(
                f"`{param}` {key_file} {not_a_file(path)}; give the file holding the {what}"
            )
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise InputError(
                f"cannot read `{param}` {key_file} ({reason}); give a readable text file "
                f"with the {what} on its first line"
            ) from None
        lines = [s.strip() for s in text.splitlines() if s.strip()]
        if not lines:
            raise InputError(f"`{param}` {key_file} is empty; put the {what} on its first line")
        value = lines[0]
    else:
        value = os.environ.get(env, "").strip()
        if not value:
            raise InputError(f"no {what}: set {env} (or pass `{param}` FILE)")
    _secrets.register(value)
    return value
