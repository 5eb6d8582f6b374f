"""The verbs that need no torch import none (issue 22, a CLI that starts fast).

torch costs 1-2 s and ~280 MiB before a command does anything. The verbs that do not run a
torch model (every ``--help``, build-codebook and assign with RQ-Kmeans, index, lookup,
report, plan, validate) must not load it, nor ``transformers`` or ``datasets``. Each group
of commands runs in a fresh interpreter through ``_RUN``, which calls the CLI in process,
command after command, and records which heavy modules ``sys.modules`` holds after each one,
so a verb that imports torch is named. RQ-VAE's build (a torch model) shows the probe sees
torch when a verb does load it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenizer_kit.cli.app import _VERBS

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "datasets")

# argv: the results file, then one JSON list of arguments per command
_RUN = """
import json, sys
from tokenizer_kit.cli.app import app

out, commands = sys.argv[1], [json.loads(a) for a in sys.argv[2:]]
results = []
for args in commands:
    try:
        app(args, prog_name="tokenizer-kit")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    results.append({"args": args, "code": code, "heavy": [m for m in HEAVY if m in sys.modules]})
    with open(out, "w") as f:
        json.dump(results, f)
"""


def _run(tmp_path: Path, commands: list[list[str]]) -> list[dict]:
    """Run ``commands`` one after another in one fresh interpreter; each one's exit code and
    the heavy modules loaded once it had run."""
    out = tmp_path / "imports.json"
    code = f"HEAVY = {HEAVY!r}\n" + _RUN
    proc = subprocess.run([sys.executable, "-c", code, str(out), *(json.dumps(c) for c in commands)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    results = json.loads(out.read_text()) if out.exists() else []
    assert len(results) == len(commands), proc.stderr[-2000:]
    for r in results:
        assert r["code"] == 0, f"{r['args']} exited {r['code']}: {proc.stderr[-2000:]}"
    return results


def _first_heavy(results: list[dict]) -> str | None:
    """The first command after which a heavy module was loaded (None: none was)."""
    return next((f"{' '.join(r['args'])} imported {r['heavy']}" for r in results if r["heavy"]), None)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """300 items x 16 to build on and 20 new items (ids 1000-1019) to assign."""
    d = tmp_path_factory.mktemp("torchfree")
    rng = np.random.default_rng(0)
    np.save(d / "x.npy", rng.standard_normal((300, 16)).astype(np.float32))
    np.save(d / "new.npy", rng.standard_normal((20, 16)).astype(np.float32))
    np.save(d / "new.ids.npy", np.arange(1000, 1020))
    return d


def test_every_help_imports_no_torch(tmp_path):
    results = _run(tmp_path, [["--help"], *([v, "--help"] for v in _VERBS)])
    assert _first_heavy(results) is None


def test_rq_kmeans_flow_imports_no_torch(tiny, tmp_path):
    x, new, tok = str(tiny / "x.npy"), str(tiny / "new.npy"), str(tmp_path / "tok")
    commands = [
        ["build-codebook", x, "--row-ids", "--levels", "2", "--codebook-size", "32", "--out", tok],
        ["index", tok, "--policy", "reassign", "--embeddings", x, "--row-ids"],
        ["lookup", tok, "--item", "5", "--format", "json"],
        ["assign", new, "-t", tok, "--out", str(tmp_path / "report.parquet")],
        ["assign", new, "-t", tok, "--update", "--out", str(tmp_path / "new.parquet")],
        ["lookup", tok, "--item", "1005"],
        ["report", tok, "--format", "json"],
        ["plan", x, "--catalogue-size", "300", "--shapes", "2x32"],
        ["validate", str(ROOT / "configs" / "office.toml")],
    ]
    results = _run(tmp_path, commands)
    assert (tmp_path / "new.parquet").exists() and (tmp_path / "tok" / "sids.parquet").exists()
    assert _first_heavy(results) is None


def test_rq_vae_build_imports_torch(tiny, tmp_path):
    """The converse: a verb that trains a torch model is seen loading torch."""
    results = _run(tmp_path, [["build-codebook", str(tiny / "x.npy"), "--row-ids", "--method", "rq-vae", "--max-epochs", "1",
                               "--levels", "2", "--codebook-size", "8", "--no-index", "--out", str(tmp_path / "vae")]])
    assert "torch" in results[0]["heavy"]


def test_registry_gives_configs_without_their_quantizers():
    """Every buildable method's config comes from the name table with no torch loaded, and it is
    the class its quantizer validates with."""
    code = ("import sys\nfrom tokenizer_kit.quantizers import get_config_class, list_methods\n"
            "print(sorted(get_config_class(m).__name__ for m in list_methods()), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split("] ")[1].strip() == "False", out
    from tokenizer_kit.errors import TokenizerKitError
    from tokenizer_kit.quantizers import get_config_class, get_quantizer_class, list_methods

    assert list_methods() == ["rq-kmeans", "rq-vae"]
    for m in (*list_methods(), "external"):
        assert get_config_class(m) is get_quantizer_class(m).config_class
    with pytest.raises(TokenizerKitError, match="unknown quantizer method 'pq'; choose one of"):
        get_config_class("pq")
