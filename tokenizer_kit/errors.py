"""Project error types.

Every error a user can cause is a ``TokenizerKitError`` (a ``ValueError``), whose message is
one line saying what was expected, what was given and how to fix it. The CLI prints these as
one line on stderr and exits non-zero.
"""

from __future__ import annotations

__all__ = ["TokenizerKitError", "InputError", "ArtifactError"]


class TokenizerKitError(ValueError):
    """Base class for errors caused by user input or user files."""


class InputError(TokenizerKitError):
    """Bad input data: NaN, wrong shape, duplicate ids, empty or too small input."""


class ArtifactError(TokenizerKitError):
    """A missing, corrupt, tampered or too-new artifact directory or file."""
