"""No import cycles between the parts of ``tokenizer_kit``.

A part is a subpackage (``io``, ``alignment``, ``cli``, ...), a top-level module
(``_config``, ``errors``, ...) or the root package's ``__init__`` (the
facade that re-exports the public API). Every import counts, at module level or inside a
function (a lazy import is still a dependency), except those under ``if TYPE_CHECKING:``.
Dependencies point one way (DESIGN.md): a cycle means two parts can only be understood,
tested and moved together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tokenizer_kit

ROOT = "tokenizer_kit"


def _module_name(path: Path, pkg_dir: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(pkg_dir.parent).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def _part(module: str) -> str:
    """``tokenizer_kit.io._atomic`` -> ``io``; ``tokenizer_kit`` -> ``tokenizer_kit``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(tree: ast.AST):
    """Import nodes, skipping ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _existing(module: str, pkg_dir: Path) -> str:
    """The longest prefix of ``module`` that is a module or package of the tree
    (``from .x import name`` names an attribute, or a submodule)."""
    parts = module.split(".")
    while len(parts) > 1:
        p = pkg_dir.parent.joinpath(*parts)
        if p.with_suffix(".py").exists() or (p / "__init__.py").exists():
            break
        parts.pop()
    return ".".join(parts)


def import_graph(pkg_dir: Path) -> dict[str, dict[str, list[str]]]:
    """part -> {imported part: ["file:line", ...]} for a package directory."""
    root = pkg_dir.name
    edges: dict[str, dict[str, list[str]]] = {}
    for f in sorted(pkg_dir.rglob("*.py")):
        mod, is_pkg = _module_name(f, pkg_dir)
        here = mod if is_pkg else mod.rpartition(".")[0]
        src = _part(mod)
        for node in _imports(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    m = ".".join(base + ([node.module] if node.module else []))
                else:
                    m = node.module or ""
                targets = [f"{m}.{a.name}" for a in node.names]
            for t in targets:
                if t != root and not t.startswith(root + "."):
                    continue
                dst = _part(_existing(t, pkg_dir))
                if dst != src:
                    where = f"{f.relative_to(pkg_dir.parent)}:{node.lineno}"
                    edges.setdefault(src, {}).setdefault(dst, []).append(where)
    return edges


def cycles(edges: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    nodes = set(edges) | {d for e in edges.values() for d in e}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def _describe(comp: list[str], edges) -> str:
    lines = [" <-> ".join(comp)]
    for a in comp:
        for b in comp:
            if b in edges.get(a, {}):
                lines.append(f"  {a} -> {b}: {', '.join(edges[a][b][:3])}")
    return "\n".join(lines)


def test_no_import_cycles_between_parts():
    pkg = Path(tokenizer_kit.__file__).parent
    edges = import_graph(pkg)
    assert "io" in edges and "build" in edges, "the graph lost its parts; is the walker broken?"
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(_describe(c, edges) for c in found)


def test_detector_finds_a_cycle(tmp_path):
    pkg = tmp_path / "tokenizer_kit"
    for rel, src in {
        "__init__.py": "from .a import f\n",
        "a/__init__.py": "from ._x import f\n",
        "a/_x.py": "def f():\n    from ..b import g\n    return g\n",
        "b/__init__.py": "from .._tokenizer import T\n",
        "_tokenizer.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import g\nfrom .a._x import f\n",
        "c.py": "from .errors import E\n",
        "errors.py": "E = 1\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(src)
    edges = import_graph(pkg)
    assert edges["a"] == {"b": ["tokenizer_kit/a/_x.py:2"]}
    assert "b" not in edges["_tokenizer"]  # TYPE_CHECKING imports do not count
    assert cycles(edges) == [["_tokenizer", "a", "b"]]
