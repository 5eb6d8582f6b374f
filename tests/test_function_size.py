"""Small functions (CONVENTIONS: named steps, torchtune's recipes): a function over 80 lines
anywhere in the package fails this test."""

import ast
import os
from pathlib import Path

import pytest

import tokenizer_kit

MAX_LINES = 80
MODULES = sorted(str(p.relative_to(Path(tokenizer_kit.__file__).parent)) for p in Path(tokenizer_kit.__file__).parent.rglob("*.py"))


def long_functions(path: Path, limit: int = MAX_LINES) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out.append(f"{path.name}:{node.lineno} {node.name} ({n} lines)")
    return out


@pytest.mark.parametrize("module", MODULES)
def test_no_function_over_80_lines(module):
    path = Path(tokenizer_kit.__file__).parent / module
    assert not long_functions(path), long_functions(path)


def test_every_module_is_checked():
    """MODULES is the package walked, nested subpackages included, not a hand-kept list."""
    root = Path(tokenizer_kit.__file__).parent
    walked = sorted(str((Path(d) / f).relative_to(root)) for d, _, fs in os.walk(root) for f in fs if f.endswith(".py"))
    assert MODULES == walked and "cli/app.py" in MODULES and any(m.count("/") > 1 for m in MODULES) and len(MODULES) > 100


def test_the_check_counts_lines(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path / "m.py") == [f"m.py:5 long ({MAX_LINES + 1} lines)"]
