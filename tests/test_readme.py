"""The README runs as written: every ```bash and ```python block of README.md, in order, in one
temporary directory, on the bundled Office data.

Markers: an HTML comment on the line right before a block's opening fence.

    <!-- readme: no-run REASON -->   never run by this test (a cluster, a GPU, your own files or
                                    model, a make target); REASON is required and says what it needs
    <!-- readme: slow -->            run only under ``-m slow`` (minutes: MiniLM over the catalogue,
                                    extraction, alignment, RQ-VAE, the pipeline, retrieval training)

Blocks fenced as anything but bash/sh/python (```text, ```toml, a bare ```) are never run:
use ```text for output and for cluster-only command lines.

The working directory holds ``Office.item.json`` and ``Office.inter.json`` (links to
``data/amazon-office``) and links to the checkout's ``configs/``, ``tests/`` and
``benchmarks/``. A ``tokenizer-kit ...`` line runs this checkout's CLI in-process (exit code 0
expected); other shell lines run under ``bash -euo pipefail``; a python block runs in a fresh
namespace. The fast run (``make test``) skips slow blocks and seeds what they write that later
blocks read: ``office.parquet`` from ``tests/data/office_minilm_f16.npy`` (the mean-pooled
MiniLM embeddings of the Office items that ``embed-text Office.item.json`` writes).
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
    for name in ("configs", "tests", "benchmarks"):
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


def _run_block(b: Block, cwd: Path) -> None:
    where = f"README.md:{b.line}"
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


def _run_readme(tmp_path: Path, monkeypatch, *, slow: bool) -> list[int]:
    if not DATA.is_dir():
        pytest.skip(f"the bundled data is not at {DATA}")
    cwd = _workspace(tmp_path, seed=not slow)
    monkeypatch.chdir(cwd)
    ran = []
    for b in readme_blocks(README.read_text()):
        if not b.lang or b.marker == "no-run" or (b.marker == "slow" and not slow):
            continue
        _run_block(b, cwd)
        ran.append(b.line)
    return ran


def test_every_block_runs_or_says_why_not():
    """Each bash/python block runs (fast or slow) or carries a no-run marker with its reason;
    markers sit right before a block; the tour's files exist where they are read."""
    text = README.read_text()
    blocks = readme_blocks(text)
    runnable = [b for b in blocks if b.lang]
    assert len(runnable) >= 10
    for b in runnable:
        if b.marker == "no-run":
            assert len(b.reason) >= 10, f"README.md:{b.line}: a no-run marker needs its reason"
        if b.lang == "python":
            compile(b.code, f"README.md:{b.line}", "exec")
    lines = text.splitlines()
    for k, ln in enumerate(lines):
        if ln.strip().startswith("<!-- readme:"):
            assert _MARKER.match(ln.strip()), f"README.md:{k + 1}: unknown marker {ln.strip()!r}"
            assert k + 1 < len(lines) and lines[k + 1].startswith("```"), f"README.md:{k + 1}: a marker goes right before a block"
    fast = [b for b in runnable if not b.marker]
    assert sum(b.lang == "python" for b in fast) >= 1 and sum(b.lang == "bash" for b in fast) >= 4


def test_readme_runs_fast_blocks(tmp_path, monkeypatch):
    ran = _run_readme(tmp_path, monkeypatch, slow=False)
    assert len(ran) >= 6
    assert (tmp_path / "tok" / "README.md").exists() and (tmp_path / "report.html").exists() and (tmp_path / "imp").is_dir()


@pytest.mark.slow
def test_readme_runs_every_block(tmp_path, monkeypatch):
    ran = _run_readme(tmp_path, monkeypatch, slow=True)
    assert (tmp_path / "office.parquet").exists() and len(ran) >= 12
