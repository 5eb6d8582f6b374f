"""Shared behaviour of the dataclass configs: validate everything at once, strict from_dict."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

from .errors import TokenizerKitError

__all__ = ["ValidatedConfig"]


class ValidatedConfig:
    """Mixin for dataclass configs: define ``errors() -> list[str]`` and ``label``."""

    label: ClassVar[str] = "config"

    def errors(self) -> list[str]:  # pragma: no cover - subclasses define it
        return []

    def validate(self):
        """Raise one error listing every problem, or return ``self``."""
        errs = self.errors()
        if errs:
            raise TokenizerKitError(f"invalid {self.label} config: " + "; ".join(errs))
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Build from a dict; unknown keys are an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TokenizerKitError(f"unknown {cls.label} config keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)
