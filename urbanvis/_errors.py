"""One error hierarchy for urbanvis.

Every error a user can cause is an :class:`UrbanvisError` whose message is one line that
says what went wrong and how to fix it. The CLI prints it on stderr and exits with code 2.
Subclasses also inherit a builtin so that callers can catch ``ValueError`` or
``FileNotFoundError`` as they would elsewhere.
"""

from __future__ import annotations


class UrbanvisError(Exception):
    """Base class for every error urbanvis raises on purpose."""

    exit_code = 2


class InputError(UrbanvisError, ValueError):
    """An argument or option value is invalid (bad bbox, non-positive spacing...)."""


class InputFileError(UrbanvisError, FileNotFoundError):
    """An input file is missing, empty or unreadable."""


class CRSError(UrbanvisError, ValueError):
    """A layer has no CRS, or CRSs do not match."""


class PlaceNotFoundError(UrbanvisError, LookupError):
    """A place name could not be geocoded."""


class OfflineError(UrbanvisError, ConnectionError):
    """A network service could not be reached."""


class NoRoadsError(UrbanvisError, ValueError):
    """The requested area or file holds no road of the requested network type."""


class StudyError(UrbanvisError, OSError):
    """The study folder cannot be created, written or read."""


class SchemaVersionError(StudyError):
    """The study was written by a newer urbanvis than this one."""


class MissingDependencyError(UrbanvisError, ImportError):
    """An optional dependency is not installed."""


def one_line(message: str) -> str:
    """Collapse a message to a single line (the CLI's contract)."""
    return " ".join(str(message).split())


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (third-party errors can be long)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
