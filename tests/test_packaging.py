"""The package as a user installs it: ``python -m build`` makes a wheel and an sdist, each
installs into a fresh virtual environment, and the installed ``tokenizer-kit`` runs there.

Nothing is downloaded: the build runs without isolation on this environment's setuptools,
and the fresh environment sees this environment's dependencies through one ``.pth`` line
naming its site-packages. Lines of a ``.pth`` file are appended to ``sys.path`` without being
processed as site directories, so the ``.pth`` files inside that directory (among them a
development install's editable hook) are not run: the tests check that the only
``tokenizer_kit`` the fresh environment can import is the one installed into it.
"""

import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, ROOT


def test_artifacts_record_the_installed_version(tmp_path):
    """The version a tokenizer's manifest records is the package's: the one in
    tokenizer_kit/_version.py and the one in the installed package metadata."""
    import tokenizer_kit
    from tokenizer_kit import SemanticTokenizer

    installed = importlib.metadata.version("tokenizer-kit")
    assert installed == tokenizer_kit.__version__, (
        f"installed metadata says {installed}, tokenizer_kit/_version.py says {tokenizer_kit.__version__}: "
        "reinstall the package (pip install --no-deps -e .)"
    )
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    tok = SemanticTokenizer.build(x, codebook_sizes=[4, 4], seed=0, index=False)
    tok.save_pretrained(tmp_path / "tok")
    manifest = json.loads((tmp_path / "tok" / "manifest.json").read_text())
    assert manifest["package"] == "tokenizer-kit" and manifest["package_version"] == installed


# ---- slow: build, install into fresh environments, run ---------------------------------------
def _run(args, **kw):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """One wheel and one sdist of this checkout, built the way a user builds them."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT])
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def _package_data() -> set[str]:
    """Every non-Python file under tokenizer_kit/ (the package reads them: presets)."""
    pkg = ROOT / "tokenizer_kit"
    return {p.relative_to(ROOT).as_posix() for p in pkg.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}


@pytest.mark.slow
def test_wheel_contents(dists):
    import tokenizer_kit

    names = zipfile.ZipFile(dists["wheel"]).namelist()
    info = f"tokenizer_kit-{tokenizer_kit.__version__}.dist-info"
    assert {n.split("/")[0] for n in names} == {"tokenizer_kit", info}  # no tests, benchmarks, data, configs
    assert _package_data() and _package_data() <= set(names)
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tokenizer_kit").rglob("*.py")}
    assert sources <= set(names)
    assert f"{info}/licenses/LICENSE" in names
    meta = zipfile.ZipFile(dists["wheel"]).read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta and "License-File: LICENSE" in meta


@pytest.mark.slow
def test_sdist_contents(dists):
    with tarfile.open(dists["sdist"]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml"} <= names
    assert _package_data() <= names and not any(n.startswith(("tests/", "data/", "benchmarks/")) for n in names)


def _fresh_venv(where: Path) -> Path:
    """A new virtual environment that sees this one's dependencies through one .pth line."""
    _run([sys.executable, "-m", "venv", where])
    py = where / "bin" / "python"
    # ensurepip of Python 3.11 adds setuptools 65, too old for pyproject's PEP 639 license
    # fields; a user's `pip install` builds in isolation with setuptools>=77 (build-system)
    _run([py, "-m", "pip", "uninstall", "-y", "-q", "setuptools"])
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "project_deps.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    return py


_PROBE = """
import importlib.metadata as md, importlib.util, json, sys
from pathlib import Path
import tokenizer_kit
dist = md.distribution("tokenizer-kit")
found = [p for p in sys.path if p and (Path(p) / "tokenizer_kit" / "__init__.py").exists()]
print(json.dumps({"file": tokenizer_kit.__file__, "version": tokenizer_kit.__version__,
                  "metadata": md.version("tokenizer-kit"), "dist": str(dist.locate_file("")),
                  "importable_from": found}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installs_and_runs_in_a_fresh_venv(dists, kind, tmp_path):
    venv = tmp_path / "venv"
    py = _fresh_venv(venv)
    extra = ["--no-build-isolation"] if kind == "sdist" else []
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", *extra, dists[kind]], cwd=tmp_path)

    probe = json.loads(_run([py, "-c", _PROBE], cwd=tmp_path).stdout)
    site = Path(probe["file"]).parents[1]
    assert Path(probe["file"]).resolve().is_relative_to(venv.resolve())
    assert probe["importable_from"] == [str(site)]  # the development checkout does not leak in
    assert Path(probe["dist"]).resolve().is_relative_to(venv.resolve())
    assert probe["metadata"] == probe["version"]

    cli = venv / "bin" / "tokenizer-kit"
    assert "build-codebook" in _run([cli, "--help"], cwd=tmp_path).stdout
    assert _run([cli, "--version"], cwd=tmp_path).stdout.strip() == f"tokenizer-kit {probe['version']}"
    _run([cli, "build-codebook", DATA / "office_minilm_f16.npy", "--ids", DATA / "office_minilm_f16.ids.txt",
          "-o", tmp_path / "tok", "--codebook-size", "16", "--levels", "3", "-q"], cwd=tmp_path)
    manifest = json.loads((tmp_path / "tok" / "manifest.json").read_text())
    assert manifest["package_version"] == probe["version"] and manifest["n_items"] == 2420
    assert (tmp_path / "tok" / "sids.parquet").exists()
