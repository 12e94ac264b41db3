"""Keep secrets (API keys, URL-signing secrets, tokens) out of every file, log and message.

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

SECRET_ENV = (
    "GOOGLE_MAPS_API_KEY",
    "GOOGLE_MAPS_URL_SECRET",
    "MAPILLARY_TOKEN",
    "CENSUS_API_KEY",
)
"""Environment variables whose values are secrets wherever they appear."""

SECRET_PARAMS = ("key", "signature", "access_token", "client_secret", "token", "sig")
"""Query parameters whose values are blanked in any URL shown to a person or written down."""

MASK = "***"

_registered: set[str] = set()
_lock = threading.Lock()
_param_re = re.compile(
    r"(?P<name>(?<![A-Za-z0-9_])(?:" + "|".join(SECRET_PARAMS) + r"))=(?P<value>[^&\s#\"']+)",
    re.IGNORECASE,
)
_userinfo_re = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_auth_re = re.compile(r"(?P<scheme>(?:OAuth|Bearer)\s+)(?P<value>[^\s\"',}]+)")


def register(*secrets: str | None) -> None:
    """Remember secret values so that :func:`redact` blanks them anywhere from now on."""
    with _lock:
        for secret in secrets:
            if secret and len(secret) >= 4:
                _registered.add(secret)


def known_secrets() -> list[str]:
    """The registered secrets and the values of :data:`SECRET_ENV` (longest first)."""
    values = {os.environ.get(name, "") for name in SECRET_ENV}
    with _lock:
        values |= _registered
    return sorted((v for v in values if v and len(v) >= 4), key=len, reverse=True)


def redact_url(url: str) -> str:
    """``url`` with secret query parameters and any ``user:password@`` replaced by ``***``."""
    out = _userinfo_re.sub(lambda m: f"{m.group('scheme')}{MASK}@", str(url))
    return _param_re.sub(lambda m: f"{m.group('name')}={MASK}", out)


def redact(text: object) -> str:
    """``text`` with every known secret value and secret URL parameter replaced by ``***``."""
    out = redact_url(str(text))
    out = _auth_re.sub(lambda m: f"{m.group('scheme')}{MASK}", out)
    for secret in known_secrets():
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
