"""Keep secrets (API keys, URL-signing secrets, tokens) out of every file, log and message.

What counts as a secret is said once, here: :data:`SECRET_WORDS` for names (query
parameters, keyword arguments, settings; :func:`is_secret_name`) and :data:`SECRET_ENV` for
environment variables.

Two layers: :func:`redact_url` blanks the values of query parameters that carry secrets in
any URL before it is formatted into text, and :func:`redact` replaces the literal value of
every registered secret (and of the well-known secret environment variables) wherever it
appears in a string. :class:`RedactingFilter` applies :func:`redact` to every log record of
the ``urbanvis`` logger, and the CLI applies it to every error it prints.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

GSV_KEY_ENV = "GOOGLE_MAPS_API_KEY"
GSV_SECRET_ENV = "GOOGLE_MAPS_URL_SECRET"
MAPILLARY_TOKEN_ENV = "MAPILLARY_TOKEN"
CENSUS_KEY_ENV = "CENSUS_API_KEY"
SECRET_ENV = (GSV_KEY_ENV, GSV_SECRET_ENV, MAPILLARY_TOKEN_ENV, CENSUS_KEY_ENV)
"""Environment variables whose values are secrets wherever they appear."""

SECRET_WORDS = frozenset(
    {"key", "apikey", "secret", "token", "password", "signature", "sig", "credential"}
)
"""The one list of what makes a name secret: a query parameter, a function parameter or a
setting whose name holds one of these words (``key``, ``api_key``, ``access_token``,
``signing_secret``, ``apiKey``) carries a secret. Whole words only: ``keyword`` and
``signed`` do not. See :func:`is_secret_name`."""

MASK = "***"

_registered: set[str] = set()
_lock = threading.Lock()
_word_re = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_param_re = re.compile(
    r"(?P<name>(?<![A-Za-z0-9_.-])[A-Za-z][A-Za-z0-9_.-]*)=(?P<value>[^&\s#\"']+)"
)
_userinfo_re = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_auth_re = re.compile(r"(?P<scheme>(?:OAuth|Bearer)\s+)(?P<value>[^\s\"',}]+)")


def is_secret_name(name: str) -> bool:
    """Whether a name (query parameter, keyword argument, setting) names a secret.

    It does when one of its words, split at ``_``, ``-``, ``.`` and lower-to-upper case
    changes, is in :data:`SECRET_WORDS`.
    """
    return any(word.lower() in SECRET_WORDS for word in _word_re.split(str(name)) if word)


def drop_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the entries whose names are secret (:func:`is_secret_name`)."""
    return {k: v for k, v in values.items() if not is_secret_name(str(k))}


def register(*secrets: str | None) -> None:
    """Remember secret values so that :func:`redact` blanks them anywhere from now on.

    The URL-quoted form of each value is remembered too (a key with ``/`` or ``+`` in a
    query string).
    """
    with _lock:
        for secret in secrets:
            if secret and len(secret) >= 4:
                _registered.update({secret, quote(secret, safe="")})


def known_secrets() -> list[str]:
    """The registered secrets and the values of :data:`SECRET_ENV` (longest first)."""
    values = {os.environ.get(name, "") for name in SECRET_ENV}
    with _lock:
        values |= _registered
    return sorted((v for v in values if v and len(v) >= 4), key=len, reverse=True)


def redact_url(url: str) -> str:
    """``url`` with secret query parameters and any ``user:password@`` replaced by ``***``."""
    out = _userinfo_re.sub(lambda m: f"{m.group('scheme')}{MASK}@", str(url))
    return _param_re.sub(_mask_param, out)


def _mask_param(match: re.Match[str]) -> str:
    name = match.group("name")
    return f"{name}={MASK}" if is_secret_name(name) else match.group(0)


def redact(text: object, *also: str | None) -> str:
    """``text`` with every known secret value and secret URL parameter replaced by ``***``.

    ``also``: more secret values to blank (plain and URL-quoted), whatever their length.
    """
    out = redact_url(str(text))
    out = _auth_re.sub(lambda m: f"{m.group('scheme')}{MASK}", out)
    extra = {form for s in also if s for form in (s, quote(s, safe=""))}
    for secret in sorted(extra.union(known_secrets()), key=len, reverse=True):
        if secret in out:
            out = out.replace(secret, MASK)
    return out


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_filter(logger_name: str = "urbanvis") -> None:
    """Add one :class:`RedactingFilter` to the logger and to each of its handlers."""
    logger = logging.getLogger(logger_name)
    targets = [logger, *logger.handlers]
    for target in targets:
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())
