"""Project error types.

Every error a user can cause is a ``TokenizerKitError`` (a ``ValueError``), whose message is
one line saying what was expected, what was given and how to fix it. The CLI prints these as
one line on stderr and exits non-zero: 2 for a :class:`UsageError` (the command or its
settings are wrong), 1 for everything else (the inputs, the artifacts or the run).
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["TokenizerKitError", "InputError", "ArtifactError", "UsageError", "usage_error_type"]


class TokenizerKitError(ValueError):
    """Base class for errors caused by user input or user files."""


class InputError(TokenizerKitError):
    """Bad input data: NaN, wrong shape, duplicate ids, empty or too small input."""


class ArtifactError(TokenizerKitError):
    """A missing, corrupt, tampered or too-new artifact directory or file."""


class UsageError(TokenizerKitError):
    """Settings the command cannot run with: a value of the wrong type or out of range, an
    unknown choice, key or preset, settings that conflict or a required one left out
    (the CLI exits 2; input and runtime errors exit 1)."""


@lru_cache(maxsize=None)
def usage_error_type(base: type[TokenizerKitError]) -> type[UsageError]:
    """The usage error that is also a ``base`` (e.g. an ``InputError`` a config class raises),
    so code catching ``base`` keeps working."""
    if issubclass(base, UsageError):
        return base
    if base is TokenizerKitError:
        return UsageError
    return type(f"{base.__name__}Usage", (base, UsageError), {"__module__": __name__, "__doc__": UsageError.__doc__})
