"""No part of ``tokenizer_kit`` reaches into another part's private modules.

A module whose name starts with ``_`` belongs to the subpackage that holds it: other
subpackages import what its package ``__init__`` exports (CONVENTIONS 5). Inside one
top-level subpackage (``indexer`` with ``indexer.policies``) private modules are shared.
The root package's own private modules are private to the root, except the shared
infrastructure every part may use (``SHARED``). Every import counts, at module level, inside
a function or under ``if TYPE_CHECKING:``.

``ALLOWLIST`` holds the imports that break the rule today. It may only shrink: a new private
import fails, and so does an entry that no longer occurs, so the list stays exact. Running
this file as a script prints the current violations in the list's format.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tokenizer_kit

ROOT = "tokenizer_kit"
PKG_DIR = Path(tokenizer_kit.__file__).parent
# root-level private modules that every part may import
SHARED = frozenset({"_config", "_progress", "_exports", "_torch_utils", "_version"})

# importing file (relative to the package) -> private modules of other parts it imports
ALLOWLIST: dict[str, tuple[str, ...]] = {
    "_stream_metrics.py": ("tokenizer_kit.io._spill",),
    "_streaming.py": ("tokenizer_kit.io._fingerprint", "tokenizer_kit.io._manifest", "tokenizer_kit.io._sids",
                      "tokenizer_kit.io._spill", "tokenizer_kit.quantizers._encode", "tokenizer_kit.quantizers._plan"),
    "_tokenizer.py": ("tokenizer_kit.io._manifest",),
    "alignment/_embed.py": ("tokenizer_kit.io._manifest",),
    "alignment/_train.py": ("tokenizer_kit.io._manifest",),
    "cli/_align.py": ("tokenizer_kit.pipeline._stage_configs",),
    "cli/_assign.py": ("tokenizer_kit.pipeline._verb_configs",),
    "cli/_build.py": ("tokenizer_kit.pipeline._stage_configs", "tokenizer_kit.pipeline._verb_configs"),
    "cli/_embed.py": ("tokenizer_kit.pipeline._stage_configs",),
    "cli/_embed_text.py": ("tokenizer_kit.pipeline._verb_configs",),
    "cli/_evaluate_retrieval.py": ("tokenizer_kit.pipeline._stage_configs",),
    "cli/_extract.py": ("tokenizer_kit.pipeline._stage_configs",),
    "cli/_index.py": ("tokenizer_kit._tokenizer", "tokenizer_kit.pipeline._verb_configs"),
    "cli/_mine_pairs.py": ("tokenizer_kit.pipeline._stage_configs",),
    "cli/_plan.py": ("tokenizer_kit.pipeline._verb_configs", "tokenizer_kit.quantizers._plan"),
    "cli/_render.py": ("tokenizer_kit.evaluation._compare",),
    "cli/_report.py": ("tokenizer_kit.pipeline._verb_configs",),
    "companion/_model.py": ("tokenizer_kit.io._manifest",),
    "engines/_assign.py": ("tokenizer_kit._stream_metrics", "tokenizer_kit._streaming", "tokenizer_kit._tokenizer",
                           "tokenizer_kit.indexer._stream_assign", "tokenizer_kit.io._manifest", "tokenizer_kit.io._sids"),
    "engines/_embed.py": ("tokenizer_kit.alignment._embed", "tokenizer_kit.features._text_embed",
                          "tokenizer_kit.io._embeddings"),
    "engines/_extract.py": ("tokenizer_kit.features._backends", "tokenizer_kit.features._extract",
                            "tokenizer_kit.features._store", "tokenizer_kit.io._atomic", "tokenizer_kit.io._lock",
                            "tokenizer_kit.io._manifest"),
    "engines/_index.py": ("tokenizer_kit.indexer._ids", "tokenizer_kit.indexer.policies._suffix", "tokenizer_kit.io._sids"),
    "engines/_output.py": ("tokenizer_kit.io._atomic", "tokenizer_kit.io._manifest"),
    "engines/_plan.py": ("tokenizer_kit.io._stream",),
    "engines/_run.py": ("tokenizer_kit.io._atomic", "tokenizer_kit.io._lock", "tokenizer_kit.io._manifest"),
    "evaluation/__init__.py": ("tokenizer_kit._metrics",),
    "evaluation/_compare.py": ("tokenizer_kit._tokenizer",),
    "evaluation/_report.py": ("tokenizer_kit._metrics", "tokenizer_kit._tokenizer"),
    "features/_store.py": ("tokenizer_kit.io._atomic", "tokenizer_kit.io._lock", "tokenizer_kit.io._manifest"),
    "generative/_sid_lm.py": ("tokenizer_kit._tokenizer", "tokenizer_kit.alignment._caption"),
    "indexer/__init__.py": ("tokenizer_kit._tokenizer",),
    "indexer/_cold_start.py": ("tokenizer_kit._tokenizer",),
    "indexer/_import.py": ("tokenizer_kit._tokenizer",),
    "indexer/_index.py": ("tokenizer_kit._tokenizer", "tokenizer_kit.io._fingerprint", "tokenizer_kit.io._manifest"),
    "indexer/_load.py": ("tokenizer_kit._tokenizer",),
    "indexer/_segments.py": ("tokenizer_kit.io._manifest",),
    "indexer/_stream_assign.py": ("tokenizer_kit._streaming", "tokenizer_kit.io._sids"),
    "indexer/_vocab.py": ("tokenizer_kit._tokenizer",),
    "pipeline/_run.py": ("tokenizer_kit._tokenizer", "tokenizer_kit.engines._config"),
    "pipeline/_stage_configs.py": ("tokenizer_kit.engines._config",),
    "pipeline/_stages.py": ("tokenizer_kit._streaming", "tokenizer_kit._tokenizer", "tokenizer_kit.engines._embed",
                            "tokenizer_kit.engines._extract", "tokenizer_kit.engines._output",
                            "tokenizer_kit.indexer._stream_assign", "tokenizer_kit.io._manifest"),
    "pipeline/_verb_configs.py": ("tokenizer_kit.engines._config",),
}


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


def against_allowlist(found: dict[str, set[str]], allowlist: dict[str, tuple[str, ...]]):
    """``(new, gone)``: violations the list does not hold, entries that no longer occur."""
    allowed = {f: set(m) for f, m in allowlist.items()}
    new = {f: sorted(m - allowed.get(f, set())) for f, m in found.items() if m - allowed.get(f, set())}
    gone = {f: sorted(m - found.get(f, set())) for f, m in allowed.items() if m - found.get(f, set())}
    return new, gone


def test_no_new_private_imports_and_the_allowlist_is_exact():
    new, gone = against_allowlist(violations(), ALLOWLIST)
    assert not new, (f"imports of another part's private modules: {new}; import the name from that "
                     "subpackage's __init__ (export it there if it is missing)")
    assert not gone, f"allowlisted private imports that no longer occur: {gone}; remove them from ALLOWLIST"


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


def test_the_allowlist_comparison_reports_both_ways():
    found = {"a.py": {"tokenizer_kit.io._lock", "tokenizer_kit.io._atomic"}}
    assert against_allowlist(found, {"a.py": ("tokenizer_kit.io._lock", "tokenizer_kit.io._atomic")}) == ({}, {})
    assert against_allowlist(found, {"a.py": ("tokenizer_kit.io._lock",)}) == ({"a.py": ["tokenizer_kit.io._atomic"]}, {})
    assert against_allowlist({}, {"b.py": ("tokenizer_kit.io._lock",)}) == ({}, {"b.py": ["tokenizer_kit.io._lock"]})


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
        print(f'    "{f}": {tuple(sorted(mods))!r},'.replace("'", '"'))
