"""Peak memory and wall time of ``build-codebook`` with its default index and with ``--no-index``.

For each catalogue size (generated ``n x d`` float32 ``.npy``, 512 topics, seed 1), runs

    tokenizer-kit build-codebook gen.npy --levels 3 --codebook-size 256 --row-ids [--no-index]

as a whole process and records its wall time and the peak of the sum of ``RssAnon`` over the
process tree (``bench_scale.run_measured``, polled every 50 ms; the memory-mapped input's
page cache is file memory and does not count). ``--checkout DIR`` runs the same commands
with another source tree first on the path (e.g. an export of an earlier commit), so the
rows of both trees come from one run on one machine. Recorded commands name the interpreter
``python`` and the scratch directory ``<scratch>``.

    nice python benchmarks/bench_build_indexed_memory.py --n 1000000 --checkout DIR \\
        --out benchmarks/results/build_indexed_memory_1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import ROOT, _cli, run_measured  # noqa: E402


def _input(scratch: Path, n: int, d: int, seed: int = 1) -> Path:
    import numpy as np

    from tokenizer_kit.io import write_clustered_npy

    path = scratch / f"gen_{n}_{d}.npy"
    if not path.exists() or np.load(path, mmap_mode="r").shape != (n, d):
        write_clustered_npy(path, n, d, seed=seed)
    return path


def _row(tree: Path, label: str, scratch: Path, x: Path, out: Path, index: bool) -> dict:
    env = {"PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    args = ["build-codebook", x, "--levels", "3", "--codebook-size", "256", "--row-ids", "--out", out, "--overwrite", "--format", "json"]
    res = run_measured(_cli(*args, *([] if index else ["--no-index"])), env=env, cwd=tree)
    res.pop("stdout_json", None)
    res["cmd"] = _redact(res["cmd"], scratch)
    return {"tree": label, "index": index, **res}


def _redact(cmd: str, scratch: Path) -> str:
    """``cmd`` without this machine's paths: the interpreter as ``python``, the scratch directory as ``<scratch>``."""
    from _paths import portable

    cmd = cmd.replace(sys.executable, "python").replace(str(scratch) + os.sep, "<scratch>/")
    return portable(cmd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1_000_000, 2_000_000], help="catalogue sizes (at most 2M here)")
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--checkout", type=Path, default=None, help="another source tree to measure first (the 'before' rows)")
    ap.add_argument("--scratch", type=Path, default=None, help="where inputs and tokenizers go (default: a temporary directory)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "build_indexed_memory.json")
    a = ap.parse_args()
    scratch = (a.scratch or Path(tempfile.mkdtemp(prefix="bench_build_indexed_"))).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    trees = ([("before", a.checkout.resolve())] if a.checkout else []) + [("after", ROOT)]
    rows = []
    for n in a.n:
        x = _input(scratch, n, a.d)
        for label, tree in trees:
            for index in (True, False):
                row = _row(tree, label, scratch, x, scratch / f"tok_{label}_{n}_{int(index)}", index)
                row.update(n=n, d=a.d)
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("tree", "n", "index", "wall_seconds", "peak_rss_anon_mib", "returncode")}), flush=True)
    write_rows(a.out, "build_indexed_memory", rows)


def write_rows(out: Path, bench: str, rows: list[dict], **extra) -> None:
    """The results file ``out``: the benchmark's name, this machine's core count, the time, ``rows``."""
    result = {"bench": bench, "cores": os.cpu_count(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra, "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
