"""One error hierarchy for urbanvis.

Every error a user can cause is an :class:`UrbanvisError` whose message is one line that
says what went wrong and how to fix it. The CLI prints it on stderr and exits with code 2.
Subclasses also inherit a builtin so that callers can catch ``ValueError`` or
``FileNotFoundError`` as they would elsewhere.

Errors know no front end. A message names the parameters it is about between backticks,
by their Python keyword (`` `spacing` must be positive``), and each front end words them
its own way: :meth:`UrbanvisError.worded` with a naming function (the CLI writes
``--spacing``, the QGIS plugin the parameter's label, ``str()`` the keyword itself).
``param`` is the first parameter the message names, or the one given explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_REF = re.compile(r"`([a-z_][a-z0-9_]*)`")


def param_refs(message: str) -> list[str]:
    """The parameter names a message refers to (between backticks), in order."""
    return _REF.findall(message)


def word_params(message: str, name_of: Callable[[str], str]) -> str:
    """``message`` with each `` `param` `` reference replaced by ``name_of(param)``."""
    return _REF.sub(lambda m: name_of(m.group(1)), message)


class UrbanvisError(Exception):
    """Base class for every error urbanvis raises on purpose.

    Parameters
    ----------
    message
        One line that says what went wrong and how to fix it; parameters between
        backticks (`` `radius` ``), by their Python keyword.
    param
        The parameter the error is about, when the message does not name it.
    """

    exit_code = 2

    def __init__(self, message: object = "", *, param: str | None = None) -> None:
        super().__init__(message)
        text = str(message)
        refs = param_refs(text)
        self.param: str | None = param or (refs[0] if refs else None)
        self._template = text

    def worded(self, name_of: Callable[[str], str]) -> str:
        """The message with its parameters named the way a front end names them."""
        return word_params(self._template, name_of)

    def __str__(self) -> str:
        return self.worded(lambda name: name)

    def __reduce__(self):  # keep ``param`` across processes (workers, torchrun ranks)
        return (self.__class__, (self._template,), dict(self.__dict__))


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


class Stopped(UrbanvisError):
    """``should_stop()`` asked for a stop before the work had anything to keep.

    Stages catch it and return a result whose ``stopped`` is true; nothing was written.
    """

    exit_code = 130


class MissingDependencyError(UrbanvisError, ImportError):
    """An optional dependency is not installed."""


def one_line(message: str) -> str:
    """Collapse a message to a single line (the CLI's contract)."""
    return " ".join(str(message).split())


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (third-party errors can be long)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
