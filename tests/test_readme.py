"""The README and the guides run as written: every ```bash and ```python block of README.md and of
each docs/*.md, in order, one temporary directory per document, on the bundled Office data. The
documents carry no unfilled placeholder, and docs/benchmarks.md is what
``benchmarks/render_results.py`` writes from the results JSONs.

Markers: an HTML comment on the line right before a block's opening fence.

    <!-- readme: no-run REASON -->   never run by this test (a cluster, a GPU, your own files or
                                    model, a make target); REASON is required and says what it needs
    <!-- readme: slow -->            run only under ``-m slow`` (minutes: MiniLM over the catalogue,
                                    extraction, alignment, RQ-VAE, the pipeline, retrieval training)

Blocks fenced as anything but bash/sh/python (```text, ```toml, a bare ```) are never run:
use ```text for output and for cluster-only command lines.

The working directory holds links to the checkout's ``data/``, ``configs/``, ``tests/`` and
``benchmarks/`` (commands read the bundled data as ``data/amazon-office/...``, as from a clone's
root), and ``Office.item.json`` / ``Office.inter.json`` links beside them. A ``tokenizer-kit ...`` line runs this checkout's CLI in-process (exit code 0
expected); other shell lines run under ``bash -euo pipefail``; a python block runs in a fresh
namespace. The fast run (``make test``) skips slow blocks and seeds what they write that later
blocks read: ``office.parquet`` from ``tests/data/office_minilm_f16.npy`` (the mean-pooled
MiniLM embeddings of the Office items that ``embed-text Office.item.json`` writes); the guides
in docs/ find it seeded in the slow run too, where only the README's quickstart makes it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
DATA = REPO / "data" / "amazon-office"
_MARKER = re.compile(r"^<!--\s*readme:\s*(no-run|slow)\b\s*(.*?)\s*-->$")
_RUN_LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    lang: str  # "bash", "python" or "" (not run)
    code: str
    marker: str  # "", "no-run" or "slow"
    reason: str


def readme_blocks(text: str) -> list[Block]:
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^```\s*([\w+-]*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).lower()
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        prev = lines[start - 1].strip() if start > 0 else ""
        mk = _MARKER.match(prev)
        blocks.append(Block(start + 1, _RUN_LANGS.get(lang, ""), "\n".join(lines[start + 1 : j]) + "\n",
                            mk.group(1) if mk else "", mk.group(2) if mk else ""))
        i = j + 1
    return blocks


def shell_commands(code: str) -> list[str]:
    """One string per command: backslash continuations joined, blank and comment lines dropped."""
    out, cur = [], ""
    for raw in code.splitlines():
        if raw.rstrip().endswith("\\"):
            cur += raw.rstrip()[:-1] + " "
            continue
        cmd = (cur + raw).strip()
        cur = ""
        if cmd and not cmd.startswith("#"):
            out.append(cmd)
    return out


def _workspace(root: Path, seed: bool) -> Path:
    for name in ("Office.item.json", "Office.inter.json"):
        (root / name).symlink_to(DATA / name)
    for name in ("data", "configs", "tests", "benchmarks"):
        (root / name).symlink_to(REPO / name)
    if seed:
        import pyarrow as pa
        import pyarrow.parquet as pq

        x = np.load(REPO / "tests/data/office_minilm_f16.npy").astype(np.float32)
        ids = (REPO / "tests/data/office_minilm_f16.ids.txt").read_text().split()
        pq.write_table(pa.table({"item_id": ids, "embedding": pa.array(list(x), pa.list_(pa.float32(), x.shape[1]))}),
                       root / "office.parquet")
    return root


def _run_cli(argv: list[str]) -> tuple[int, str]:
    from typer.testing import CliRunner

    from tokenizer_kit.cli.app import app

    r = CliRunner().invoke(app, argv, env={"COLUMNS": "200", "HF_HUB_OFFLINE": "1"})
    out = r.output + (f"\n{type(r.exception).__name__}: {r.exception}" if r.exception and not isinstance(r.exception, SystemExit) else "")
    return r.exit_code, out


def _run_block(b: Block, cwd: Path, doc: str = "README.md") -> None:
    where = f"{doc}:{b.line}"
    if b.lang == "python":
        ns = {"__name__": "__readme__"}
        try:
            exec(compile(b.code, where, "exec"), ns)
        except Exception as e:  # noqa: BLE001 - reported with the block's line
            pytest.fail(f"{where} (python) raised {type(e).__name__}: {e}")
        return
    for cmd in shell_commands(b.code):
        argv = shlex.split(cmd, comments=True)
        if argv and argv[0] == "tokenizer-kit" and not any(c in cmd.split("#")[0] for c in "|><;&$`"):
            code, out = _run_cli(argv[1:])
        else:
            env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
            shim = cwd / ".bin"
            if not shim.exists():
                shim.mkdir()
                (shim / "tokenizer-kit").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tokenizer_kit.cli.app "$@"\n')
                (shim / "tokenizer-kit").chmod(0o755)
                # a script, not a link: a venv's python found through a link elsewhere misses the venv's packages
                (shim / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
                (shim / "python").chmod(0o755)
            env["PATH"] = f"{shim}:{env.get('PATH', '')}"
            p = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
            code, out = p.returncode, p.stdout + p.stderr
        assert code == 0, f"{where}: `{cmd}` exited {code}:\n{out[-3000:]}"


def _run_doc(path: Path, tmp_path: Path, monkeypatch, *, slow: bool) -> list[int]:
    assert DATA.is_dir(), f"the bundled data is missing: {DATA.relative_to(REPO)} is part of the repository"
    cwd = _workspace(tmp_path, seed=not slow or path != README)  # only the README's slow run makes office.parquet itself
    monkeypatch.chdir(cwd)
    ran, name = [], str(path.relative_to(REPO))
    for b in readme_blocks(path.read_text()):
        if not b.lang or b.marker == "no-run" or (b.marker == "slow" and not slow):
            continue
        _run_block(b, cwd, name)
        ran.append(b.line)
    return ran


def _run_readme(tmp_path: Path, monkeypatch, *, slow: bool) -> list[int]:
    return _run_doc(README, tmp_path, monkeypatch, slow=slow)


def check_markers(path: Path) -> list[Block]:
    """Each runnable block compiles (python) and a no-run marker gives its reason; markers are
    known and sit right before a block. Returns the runnable blocks."""
    text, name = path.read_text(), path.relative_to(REPO)
    runnable = [b for b in readme_blocks(text) if b.lang]
    for b in runnable:
        if b.marker == "no-run":
            assert len(b.reason) >= 10, f"{name}:{b.line}: a no-run marker needs its reason"
        if b.lang == "python":
            compile(b.code, f"{name}:{b.line}", "exec")
    lines = text.splitlines()
    for k, ln in enumerate(lines):
        if ln.strip().startswith("<!-- readme:"):
            assert _MARKER.match(ln.strip()), f"{name}:{k + 1}: unknown marker {ln.strip()!r}"
            assert k + 1 < len(lines) and lines[k + 1].startswith("```"), f"{name}:{k + 1}: a marker goes right before a block"
    return runnable


def test_every_block_runs_or_says_why_not():
    """Each bash/python block runs (fast or slow) or carries a no-run marker with its reason;
    markers sit right before a block; the tour's files exist where they are read."""
    runnable = check_markers(README)
    assert len(runnable) >= 10
    fast = [b for b in runnable if not b.marker]
    assert sum(b.lang == "python" for b in fast) >= 1 and sum(b.lang == "bash" for b in fast) >= 4


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_markers(doc):
    check_markers(doc)


def test_readme_runs_fast_blocks(tmp_path, monkeypatch):
    ran = _run_readme(tmp_path, monkeypatch, slow=False)
    assert len(ran) >= 6
    assert (tmp_path / "tok" / "README.md").exists() and (tmp_path / "tok_hf").is_dir() and (tmp_path / "cold.parquet").exists()


@pytest.mark.parametrize("doc", [d for d in DOCS if any(b.lang and not b.marker for b in readme_blocks(d.read_text()))],
                         ids=lambda p: p.name)
def test_doc_runs_fast_blocks(doc, tmp_path, monkeypatch):
    assert _run_doc(doc, tmp_path, monkeypatch, slow=False)


@pytest.mark.slow
def test_readme_runs_every_block(tmp_path, monkeypatch):
    ran = _run_readme(tmp_path, monkeypatch, slow=True)
    assert (tmp_path / "office.parquet").exists() and len(ran) >= 12


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_doc_runs_every_block(doc, tmp_path, monkeypatch):
    ran = _run_doc(doc, tmp_path, monkeypatch, slow=True)
    runnable = [b.line for b in readme_blocks(doc.read_text()) if b.lang and b.marker != "no-run"]
    assert ran == runnable, f"{doc.name}: blocks at lines {sorted(set(runnable) - set(ran))} did not run"


# ---- unfilled placeholders ------------------------------------------------------------------

_PLACEHOLDER = re.compile(
    r"\b(?:TODO|TBD|FIXME|XXX+)\b"                    # notes to self
    r"|(?i:<fill\b[^>]*>?)"                             # <fill in>, <FILL ME>
    r"|\{\{[^{}]*\}\}|\{[A-Za-z_][A-Za-z0-9_]*\}"       # {{ jinja }}, {format_field}
    r"|\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b"                # ASSIGN_S, GEMM_LINE (checked against real names below)
)
_CAPS = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
# names a document may spell in capitals: environment variables of other tools
_KNOWN_CAPS = {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "MKL_CBWR", "NPY_DISABLE_CPU_FEATURES",
               "ATEN_CPU_CAPABILITY", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE", "HF_HOME"}


def _code_names() -> set[str]:
    """ALL_CAPS names that exist in the code (constants, environment variables it reads)."""
    files = [*REPO.glob("tokenizer_kit/**/*.py"), *REPO.glob("benchmarks/*.py"), REPO / "Makefile"]
    files += [p for p in REPO.glob("tests/*.py") if p.name != Path(__file__).name]
    return {m for p in files if p.is_file() for m in _CAPS.findall(p.read_text(errors="replace"))}


def placeholders(text: str, known: set[str] = frozenset()) -> list[str]:
    """Unfilled placeholders in a document: TODO/TBD/FIXME/XXX, ``<fill ...>``, ``{field}`` or
    ``{{ field }}`` templates outside code blocks, and ALL_CAPS_WITH_UNDERSCORES tokens that name nothing real
    (not in ``known`` nor a known environment variable)."""
    out, fences = [], [m.span() for m in re.finditer(r"^```.*?^```", text, re.S | re.M)]
    for m in _PLACEHOLDER.finditer(text):
        tok = m.group(0)
        if tok.startswith("{") and any(a <= m.start() < b for a, b in fences):
            continue  # f-strings and dict literals in code blocks
        if _CAPS.fullmatch(tok) and (tok in known or tok in _KNOWN_CAPS):
            continue
        out.append(tok)
    return out


def test_placeholder_check_flags_a_planted_one():
    known = {"TOKENIZER_KIT_DEBUG"}
    clean = 'Set TOKENIZER_KIT_DEBUG=1 or OPENBLAS_CORETYPE=Haswell; ids in X.ids.{npy,txt,json}; {"error": {"type"}}'
    assert placeholders(clean, known) == []
    assert placeholders("| assign, the same 10M items | ASSIGN_S | ASSIGN_MB |", known) == ["ASSIGN_S", "ASSIGN_MB"]
    assert placeholders("on every GPU. GEMM_LINE", known) == ["GEMM_LINE"]
    assert placeholders("TODO: numbers; TBD", known) == ["TODO", "TBD"]
    assert placeholders("took <fill in> s", known) == ["<fill in>"]
    assert placeholders("took {seconds} s, {{ rate }} items/s", known) == ["{seconds}", "{{ rate }}"]
    assert placeholders('```python\nprint(f"new{i}")\n```\n', known) == []


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_no_unfilled_placeholders(doc):
    found = placeholders(doc.read_text(), _code_names())
    assert not found, f"{doc.relative_to(REPO)}: unfilled placeholders {sorted(set(found))}"


# ---- docs/benchmarks.md is generated ----------------------------------------------------------

def test_benchmarks_doc_is_up_to_date():
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "render_results.py"), "--check"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"docs/benchmarks.md differs from what benchmarks/render_results.py writes: {p.stderr}"


def test_benchmarks_check_fails_on_a_stale_file(tmp_path):
    stale = tmp_path / "benchmarks.md"
    stale.write_text((REPO / "docs" / "benchmarks.md").read_text().replace("|", "/", 1))
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "render_results.py"), "--check", "--out", str(stale)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "out of date" in p.stderr


def test_benchmarks_prose_types_no_number():
    """Numbers in docs/benchmarks.md come from the JSONs: the renderer's prose has no digit."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_results", REPO / "benchmarks" / "render_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    texts = {**{f"T[{k}]": v for k, v in mod.T.items()}, **{f"WHAT[{k}]": v for k, v in mod.WHAT.items()}}
    texts.update({f"METHODS[{k}]": v for k, v in mod.METHODS.items()})
    texts.update({f"section {t}": t for t, _, _ in mod.SECTIONS})
    # names are not numbers: inline code (`bench_rq_kmeans.py`), metric cut-offs (recall@10), T5
    names = re.compile(r"`[^`]*`|@\d+|\bT5\b")
    assert not {k: v for k, v in texts.items() if re.search(r"\d", names.sub("", v))}
