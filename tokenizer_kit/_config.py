"""Shared behaviour of the dataclass configs: validate everything at once, strict from_dict."""

from __future__ import annotations

from dataclasses import MISSING, field, fields
from typing import Any, ClassVar

from .errors import TokenizerKitError

__all__ = ["ValidatedConfig", "setting"]


def setting(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, **meta: Any):
    """A config field that carries its own help text (and any CLI hints in ``meta``).

    The stage's dataclass is the one source of a setting's name, default, help and
    validation: CLI options and config-file keys are derived from these fields.

    >>> steps: int = setting(3000, help="Training steps.")
    """
    return field(default=default, default_factory=default_factory, metadata={"help": help, **meta})


class ValidatedConfig:
    """Mixin for dataclass configs: define ``errors() -> list[str]``, ``label`` and, for another
    error type than ``TokenizerKitError``, ``error_type``."""

    label: ClassVar[str] = "config"
    error_type: ClassVar[type[TokenizerKitError]] = TokenizerKitError

    def errors(self) -> list[str]:  # pragma: no cover - subclasses define it
        return []

    def validate(self):
        """Raise one error listing every problem, or return ``self``."""
        errs = self.errors()
        if errs:
            raise self.error_type(f"invalid {self.label} config: " + "; ".join(errs))
        return self

    @classmethod
    def check_keys(cls, d: dict[str, Any]) -> None:
        """Unknown keys in ``d`` are an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise cls.error_type(f"unknown {cls.label} config keys {unknown}; known keys are {sorted(known)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Build from a dict; unknown keys are an error naming the known ones."""
        cls.check_keys(d)
        return cls(**d)
