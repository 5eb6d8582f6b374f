"""Public names a package loads on first use (PEP 562), from one table per package: a CLI start
or a light import does not pay for numpy, pyarrow or torch it never touches."""

from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` is the attribute of the same name in
    the module ``table[name]`` (relative to ``package``), imported when first asked for."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(table[name], package), name)

    return __getattr__
