"""A clone is all it takes: no tracked file names the workplace's ``shared`` folder beside the
clone or a path of one machine.

Code, configs, docs, the README, the Makefile, tests, benchmarks and their results read only
files inside the repository or paths a user passes (``--scientific DIR``, a placeholder such
as ``<tmp>/...`` in a recorded command). Genuine system paths (``/dev/null``, ``/proc/...``,
``#!/usr/bin/env``) are allowed by name; URLs (``s3://``, ``https://``) are not paths here.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# an absolute path: "/" + a name, where the "/" does not continue a word, a relative path
# ("a/b", "./x", "../x"), a URL ("s3://b/x"), a shell or glob expression ("$OUT/x", "${D}/x",
# "**/x"), or an HTML closing tag ("</td>")
_ABSOLUTE = re.compile(r"(?<![\w./~\])}*$@%+<\\])/(?!/)[A-Za-z_][\w.\-]*(?:/[\w.\-]*)*")
_PLACEHOLDER = re.compile(r"<[A-Za-z][\w .\-]*>")  # <tmp>, <scratch>, <main checkout>, <a_0>: not a machine's
_SHARED = re.compile(r"\.\./shared\b|\.parents?\b(?:\[\d+\])?\s*/\s*[\"']shared[\"']")  # the sibling data dir, as text or pathlib
ALLOWED = ("/dev/", "/proc/", "/sys/", "/usr/bin/env", "/bin/sh", "/bin/bash",
           "/etc/passwd",  # a test's deliberately hostile manifest entry
           "/path/")  # the usual placeholder: /path/to/checkout
NOT_SCANNED = {
    "data/amazon-office/Office.item.json",  # third-party catalogue text: product descriptions hold "10\"/min" and the like
    "tests/test_self_contained.py",  # this file: the bad lines below are planted on purpose
}


def machine_paths(line: str) -> list[str]:
    """The references to the ``shared`` folder beside the clone and absolute paths of one machine in ``line``."""
    line = _PLACEHOLDER.sub("P", line)
    found = [m.group(0) for m in _SHARED.finditer(line)]
    for m in _ABSOLUTE.finditer(line):
        p = m.group(0)
        if not any(p == a.rstrip("/") or p.startswith(a) for a in ALLOWED):
            found.append(p)
    return found


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        return [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # an sdist: every file that shipped
        skip = {".git", ".venv", "__pycache__", "build", "dist", ".pytest_cache", ".scratch"}
        return [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                if p.is_file() and not skip & set(p.relative_to(ROOT).parts) and not p.name.endswith(".egg-info")]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_no_tracked_file_names_a_machine_path():
    files = [f for f in _tracked() if f not in NOT_SCANNED and os.path.basename(f) != ".gitignore"]
    texts = {f: _text(ROOT / f) for f in files if (ROOT / f).is_file()}
    scanned = [f for f, t in texts.items() if t is not None]
    assert len(scanned) > 100 and "Makefile" in scanned and "tests/conftest.py" in scanned, scanned[:20]
    bad = [f"{f}:{i}: {p}" for f in scanned for i, line in enumerate(texts[f].splitlines(), 1) for p in machine_paths(line)]
    assert not bad, (f"{len(bad)} machine paths or references to the shared folder beside the clone (use a path inside the repository, an option "
                     "the user passes, or a placeholder such as <tmp>/...):\n" + "\n".join(bad[:60]))


# planted machine paths, written with `@` for a `/` that starts a path (`..@shared` too) so that this
# file does not itself carry what it looks for; `_planted` restores them
BAD_PLANTED = [
    ('DATA = Path("@work/shared/data/amazon-office")', "@work/shared/data/amazon-office"),
    ('ap.add_argument("--work", default="@tmp/tk_align")', "@tmp/tk_align"),
    ('PY=${PYTHON:-@work/main/.venv/bin/python}', "@work/main/.venv/bin/python"),
    ('    "path": "@home/alice/tokenizer-kit",', "@home/alice/tokenizer-kit"),
    ("cd @Users/bob/src && make demo", "@Users/bob/src"),
    ("x = np.load('@mnt/data/x.npy')", "@mnt/data/x.npy"),
    ("echo done >@tmp/log.txt", "@tmp/log.txt"),
    ('"out": "@root/out/align.json"', "@root/out/align.json"),
    ("catalog = \"../..@shared/data/amazon-office/Office.item.json\"", "..@shared"),
    ("the data is in ..@shared beside the checkout", "..@shared"),
    ('DATA = ROOT.parent / "shared" / "data"', '.parent / "shared"'),
    ('default=Path(__file__).resolve().parents[2] / "shared" / "data"', '.parents[2] / "shared"'),
    ("the default is @scratch", "@scratch"),
    ("scp host:/srv/data/x .", "@srv/data/x"),
]


def _planted(s: str) -> str:
    return s.replace("@", "/")


BAD = [(_planted(line), _planted(path)) for line, path in BAD_PLANTED]
GOOD = [
    "#!/usr/bin/env bash", "#!/bin/sh", "cmd > /dev/null 2>&1", "read /proc/self/status every 50 ms", "/proc is not writable",
    "tokenizer-kit assign s3://bucket/embeddings/ -t tok", "hdfs://namenode/x gs://b/y", "https://github.com/Nishikata97/CollisionGenRec",
    "configs/office.toml reads data/amazon-office/Office.item.json", "../data/amazon-office/Office.inter.json", "./configs/x",
    '"message": "error: <tmp>/ws/nope.npy does not exist"', "<scientific>/indexes/rkmeans_zcr.index.json", "<main checkout>/.venv",
    "<p>No collisions</p>", "12.3 items/s and/or 1/2", "$OUT/results ${ROOT}/benchmarks", "benchmarks/results/downstream/**/*.claim",
    "PYTHONPATH=/path/to/checkout python benchmarks/bad_inputs.py", "<a_0><b_77>/<c_3>", "10\\/min", "${PYTHON:-python}",
]


def test_the_matcher_flags_machine_paths_and_passes_system_paths():
    for line, path in BAD:
        assert path in machine_paths(line), line
    for line in GOOD:
        assert machine_paths(line) == [], line
