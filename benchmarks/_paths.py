"""Where the benchmarks find their inputs and put their scratch files.

Every default is resolved from this file's location (never the working directory), so a
script runs the same from any cwd of any clone: the Office data is the repository's
``data/amazon-office``, scratch space is the git-ignored ``benchmarks/.scratch/``, and the
larger Amazon Scientific data (downstream benchmark only) is a path the user gives.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFICE = REPO / "data" / "amazon-office"
RESULTS = REPO / "benchmarks" / "results"
SCRATCH = REPO / "benchmarks" / ".scratch"  # git-ignored: generated inputs, runs, caches

SCIENTIFIC_ENV = "TOKENIZER_KIT_SCIENTIFIC"
SCIENTIFIC_SOURCE = ("data/Scientific/ of https://github.com/Nishikata97/CollisionGenRec (MIT) at commit 505d5be3: "
                     "Scientific.item.json, Scientific.inter.json, indexes/*.index.json")


def scratch(*parts: str) -> Path:
    """A directory under ``benchmarks/.scratch/`` (not created here)."""
    return SCRATCH.joinpath(*parts)


def scientific_dir(given: str | os.PathLike | None) -> Path:
    """The Amazon Scientific data: ``given`` (``--scientific DIR``), else ``$TOKENIZER_KIT_SCIENTIFIC``;
    exits with one line saying where to get it when neither holds ``Scientific.item.json``."""
    d = given or os.environ.get(SCIENTIFIC_ENV)
    if not d:
        sys.exit(f"the Amazon Scientific data is not bundled: pass --scientific DIR or set {SCIENTIFIC_ENV}=DIR, "
                 f"a copy of {SCIENTIFIC_SOURCE}")
    d = Path(d).expanduser()
    if not (d / "Scientific.item.json").is_file():
        sys.exit(f"{d} has no Scientific.item.json: pass --scientific DIR (or set {SCIENTIFIC_ENV}) to a copy of {SCIENTIFIC_SOURCE}")
    return d


def portable(obj):
    """``obj`` (a results record: str, list, dict) with this machine's paths rewritten as a
    results JSON keeps them: the repository's as repository-relative, the temp dir's as
    ``<tmp>``, the home directory's as ``~``. Used on recorded commands and arguments."""
    import re
    import tempfile

    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v) for v in obj]
    if not isinstance(obj, (str, os.PathLike)):
        return obj
    s = os.fspath(obj)
    for base, name in ((REPO, "."), (Path(tempfile.gettempdir()).resolve(), "<tmp>"), (Path.home(), "~")):
        s = re.sub(re.escape(str(base)) + r"(/|(?=[\s\"':,;)\]]|$))", lambda m: "" if name == "." and m.group(1) else name + m.group(1), s)
    return s
