"""No part of ``tokenizer_kit`` reaches into another part's private modules.

A module whose name starts with ``_`` belongs to the subpackage that holds it: other
subpackages import what its package ``__init__`` exports (CONVENTIONS 5). Inside one
top-level subpackage (``indexer`` with ``indexer.policies``) private modules are shared.
The root package's own private modules are private to the root, except the shared
infrastructure every part may use (``SHARED``). Every import counts, at module level, inside
a function or under ``if TYPE_CHECKING:``.

There are no exceptions: a name another part needs is exported by its package (loaded on
first use, ``_exports.lazy_exports``, where it would pull in torch or another heavy module).
Running this file as a script prints the violations, one importing file a line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tokenizer_kit

ROOT = "tokenizer_kit"
PKG_DIR = Path(tokenizer_kit.__file__).parent
# root-level private modules that every part may import
SHARED = frozenset({"_config", "_progress", "_exports", "_torch_utils", "_version"})

def _module_names(pkg_dir: Path) -> dict[str, bool]:
    """Dotted name -> whether it is a package, for every module of the tree."""
    out = {}
    for f in pkg_dir.rglob("*.py"):
        parts = list(f.relative_to(pkg_dir.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = is_pkg
    return out


def _imported(node: ast.AST, here: str) -> list[str]:
    """Dotted names an import node reaches (``from m import a`` gives ``m.a``: an attribute or a
    submodule); ``here`` is the package a relative import starts from."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = here.split(".")
        m = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
    else:
        m = node.module or ""
    return [f"{m}.{a.name}" for a in node.names]


def _subpackage(module: str, modules: dict[str, bool]) -> str:
    """``tokenizer_kit.io._lock`` -> ``io``; a root-level module or the root package -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and modules.get(".".join(parts[:2])) else ""


def private_imports(source: str, module: str, is_pkg: bool, modules: dict[str, bool]) -> set[str]:
    """Private modules of other parts that ``source`` (module ``module``) imports."""
    here = module if is_pkg else module.rpartition(".")[0]
    mine = _subpackage(module, modules)
    out = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for name in _imported(node, here):
            parts = name.split(".")
            if parts[0] != ROOT:
                continue
            while len(parts) > 1 and ".".join(parts) not in modules:
                parts.pop()  # an attribute, not a module
            private = next((i for i, p in enumerate(parts) if p.startswith("_")), None)
            if private is None:
                continue
            owner = parts[1] if private >= 2 else ""
            if owner != mine and not (owner == "" and parts[private] in SHARED):
                out.add(".".join(parts[: private + 1]))
    return out


def violations(pkg_dir: Path = PKG_DIR) -> dict[str, set[str]]:
    modules = _module_names(pkg_dir)
    out = {}
    for f in sorted(pkg_dir.rglob("*.py")):
        parts = list(f.relative_to(pkg_dir.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_pkg else parts)
        found = private_imports(f.read_text(), module, is_pkg, modules)
        if found:
            out[f.relative_to(pkg_dir).as_posix()] = found
    return out


def test_no_part_imports_another_parts_private_modules():
    found = violations()
    assert not found, (f"imports of another part's private modules: {found}; import the name from that "
                       "subpackage's __init__ (export it there if it is missing)")


# ---- the check itself, on planted sources ----------------------------------------------------
_PACKAGES = ("tokenizer_kit", "tokenizer_kit.io", "tokenizer_kit.engines", "tokenizer_kit.indexer", "tokenizer_kit.indexer.policies")
_TREE = {m: m in _PACKAGES for m in (
    *_PACKAGES, "tokenizer_kit._config", "tokenizer_kit._tokenizer", "tokenizer_kit.errors", "tokenizer_kit.io._lock",
    "tokenizer_kit.engines._run", "tokenizer_kit.engines._plan", "tokenizer_kit.indexer._index",
    "tokenizer_kit.indexer.policies._base",
)}


def _check(source: str, module: str = "tokenizer_kit.engines._run", is_pkg: bool = False) -> set[str]:
    return private_imports(source, module, is_pkg, _TREE)


def test_the_check_flags_planted_private_imports():
    assert _check("from tokenizer_kit.io._lock import writer_lock") == {"tokenizer_kit.io._lock"}
    assert _check("from ..io._lock import writer_lock") == {"tokenizer_kit.io._lock"}
    assert _check("from ..io import _lock") == {"tokenizer_kit.io._lock"}
    assert _check("import tokenizer_kit.io._lock") == {"tokenizer_kit.io._lock"}
    assert _check("def f():\n    from ..io._lock import writer_lock\n") == {"tokenizer_kit.io._lock"}
    assert _check("from .._tokenizer import SemanticTokenizer") == {"tokenizer_kit._tokenizer"}
    assert _check("from ...io._lock import x", "tokenizer_kit.indexer.policies._base") == {"tokenizer_kit.io._lock"}
    assert _check("from .io._lock import x", "tokenizer_kit._tokenizer") == {"tokenizer_kit.io._lock"}
    assert _check("from ..engines._run import x", "tokenizer_kit.io", is_pkg=True) == {"tokenizer_kit.engines._run"}


def test_the_check_passes_allowed_imports():
    assert _check("from ._plan import Shard") == set()  # same subpackage
    assert _check("from ..io import writer_lock\nfrom ..errors import InputError") == set()  # public names
    assert _check("from .._config import setting") == set()  # shared root infrastructure
    assert _check("from .._index import x", "tokenizer_kit.indexer.policies._base") == set()  # one top-level subpackage
    assert _check("from .policies._base import x", "tokenizer_kit.indexer._index") == set()
    assert _check("from ._tokenizer import x\nfrom ._config import y", "tokenizer_kit", is_pkg=True) == set()  # root's own
    assert _check("import numpy as np\nfrom numpy._core import x") == set()  # other packages


if __name__ == "__main__":
    for f, mods in violations().items():
        print(f"{f}: {', '.join(sorted(mods))}")
