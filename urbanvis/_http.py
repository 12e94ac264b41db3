"""The synchronous HTTP client of urbanvis's core (the providers' async one is providers/_web.py).

:func:`get` sends one GET with urbanvis's User-Agent, retries timeouts, dropped connections,
429 and 5xx with backoff (``Retry-After`` honoured up to 30 s), and fails with a one-line
:class:`~urbanvis._errors.OfflineError`: :class:`HttpStatusError` (an answer other than 200)
or :class:`UnreachableError` (no answer). Neither message holds the URL, and secrets (given,
registered or in the environment, see :mod:`urbanvis._secrets`) are blanked from the server's
text. Standard-library ``urllib`` is used so that no HTTP library logs a URL (which may hold
a key) at debug level.

:func:`osmnx_errors` gives the requests that osmnx sends itself (Nominatim, Overpass) the
same one-line, redacted errors.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

from . import _secrets
from ._errors import OfflineError, first_line
from ._version import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"urbanvis/{__version__}"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 3
TIMEOUT = 60.0
MAX_RETRY_AFTER = 30.0


class HttpError(OfflineError):
    """A request got no usable answer."""


class HttpStatusError(HttpError):
    """An HTTP answer other than 200 (or 204), with the start of its (redacted) body."""

    def __init__(self, message: object = "", *, code: int = 0, text: str = "", **kw) -> None:
        super().__init__(message, **kw)
        self.code = code
        self.text = text


class UnreachableError(HttpError):
    """No HTTP answer at all (refused, DNS, timeout); ``reason`` names no URL."""

    def __init__(self, message: object = "", *, reason: str = "", **kw) -> None:
        super().__init__(message, **kw)
        self.reason = reason


def get(
    url: str,
    *,
    secrets: tuple[str | None, ...] = (),
    timeout: float = TIMEOUT,
    attempts: int = ATTEMPTS,
) -> bytes:
    """GET ``url`` and return the body of a 200 (or 204) answer.

    Retries 429/5xx answers, timeouts and dropped connections up to ``attempts`` times in
    all. ``secrets`` (e.g. an API key in the query) are blanked from every message.

    Raises
    ------
    HttpStatusError
        Any other status, or a retried one on the last attempt; ``code`` and ``text``.
    UnreachableError
        No answer; ``reason`` (e.g. ``connection refused``).
    """
    _secrets.register(*secrets)
    host = host_of(url)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    text = _secrets.redact(exc.read(4096).decode("utf-8", "replace"), *secrets)
                except (OSError, http.client.HTTPException):  # the body never came
                    text = ""
            if exc.code in RETRY_STATUS and not last:
                backoff(attempt, exc.headers.get("Retry-After"))
                continue
            raise HttpStatusError(
                f"{host} answered HTTP {exc.code}", code=exc.code, text=text
            ) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError) and not last:
                backoff(attempt, None)
                continue
            raise _unreachable(host, reason, secrets) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            if not last:  # timed out, dropped or cut short: worth another try
                backoff(attempt, None)
                continue
            raise _unreachable(host, exc, secrets) from None
    raise AssertionError("unreachable")  # pragma: no cover


def backoff(attempt: int, retry_after: str | None) -> None:
    """Sleep before retry ``attempt + 1``: 1, 2, 4... s, or the server's ``Retry-After``."""
    delay = 2.0**attempt
    if retry_after and retry_after.isdigit():
        delay = min(float(retry_after), MAX_RETRY_AFTER)
    log.debug("server busy; retrying in %.0f s", delay)
    time.sleep(delay)


def host_of(url: str) -> str:
    """The host (and port) of a URL, without any user or password; ``a local folder`` for
    ``file://`` URLs."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return "a local folder"
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


@contextlib.contextmanager
def osmnx_errors(*, unreachable: str, failed: str) -> Iterator[None]:
    """Turn a failed osmnx request into a one-line, redacted :class:`OfflineError`.

    ``unreachable`` is the message when no connection could be made; ``failed`` (its
    ``{reason}`` replaced by what went wrong) when the server failed or answered an error
    status. Other errors (no result, a bad answer) pass through for the caller to word.
    """
    import osmnx as ox
    import requests

    try:
        yield
    except requests.exceptions.ConnectionError as exc:
        raise OfflineError(_secrets.redact(unreachable)) from exc
    except requests.exceptions.RequestException as exc:
        raise OfflineError(_secrets.redact(failed.replace("{reason}", type(exc).__name__))) from exc
    except ox._errors.ResponseStatusCodeError as exc:
        raise OfflineError(_secrets.redact(failed.replace("{reason}", first_line(exc)))) from exc


def _unreachable(host: str, reason: object, secrets: tuple[str | None, ...]) -> UnreachableError:
    text = _secrets.redact(_reason(reason), *secrets)
    return UnreachableError(f"cannot reach {host} ({text})", reason=text)


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    if isinstance(reason, TimeoutError):
        return "timed out"
    return str(reason) or type(reason).__name__
