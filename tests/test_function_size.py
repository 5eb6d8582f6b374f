"""Small functions (CONVENTIONS: named steps, torchtune's recipes) in the modules the
second-wave refactor split: a function over 80 lines there fails this test."""

import ast
from pathlib import Path

import pytest

import tokenizer_kit

MAX_LINES = 80
SPLIT_MODULES = [
    "alignment/_train.py",
    "quantizers/_rq_vae.py",
    "features/_extract.py",
    "companion/_data.py",
    "companion/_evaluate.py",
    "companion/_model.py",
    "companion/_causal_lm.py",
    "generative/_sid_lm.py",
    "generative/_init.py",
    "generative/_lora.py",
    "evaluation/_report.py",
    "indexer/_index.py",
    "indexer/_cold_start.py",
    "indexer/_segments.py",
    "indexer/policies/_suffix.py",
    "indexer/policies/_reassign.py",
    "_config.py",
    "_streaming.py",
    "quantizers/_plan.py",
    *sorted(f"cli/{p.name}" for p in (Path(tokenizer_kit.__file__).parent / "cli").glob("*.py")),
    *sorted(f"pipeline/{p.name}" for p in (Path(tokenizer_kit.__file__).parent / "pipeline").glob("*.py")),
]


def long_functions(path: Path, limit: int = MAX_LINES) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out.append(f"{path.name}:{node.lineno} {node.name} ({n} lines)")
    return out


@pytest.mark.parametrize("module", SPLIT_MODULES)
def test_no_function_over_80_lines(module):
    path = Path(tokenizer_kit.__file__).parent / module
    assert not long_functions(path), long_functions(path)


def test_the_check_counts_lines(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path / "m.py") == [f"m.py:5 long ({MAX_LINES + 1} lines)"]
