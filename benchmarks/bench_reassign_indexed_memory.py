"""Peak memory and wall time of ``index DIR --policy reassign --embeddings E`` (re-indexing a
directory that ``build-codebook`` indexed under its default suffix policy).

For each catalogue size, generated ``n x d`` float32 ``.npy`` (independent standard normal
rows, seed 1: codes spread over the SID space, so most collisions are resolved under their own
prefix), builds a tokenizer with

    tokenizer-kit build-codebook gen.npy --levels 3 --codebook-size 256 --row-ids

then runs, on a fresh copy of it per tree,

    tokenizer-kit index tok --policy reassign -e gen.npy --row-ids

as a whole process and records its wall time and the peak of the sum of ``RssAnon`` over the
process tree (``bench_scale.run_measured``, polled every 50 ms; the memory-mapped input and
scratch files are file memory and do not count). ``--checkout DIR`` measures another source
tree first (the 'before' rows, e.g. an export of the tree that indexes in memory), for sizes up
to ``--before-max-n`` (the in-memory build holds the vectors and float64 copies of them: about
4 GB a million items at d = 256) and with ``--timeout`` seconds at most. Recorded commands name
the interpreter ``python`` and the scratch directory ``<scratch>``.

    nice python benchmarks/bench_reassign_indexed_memory.py --n 1000000 4000000 --checkout DIR \\
        --before-max-n 1000000 --out benchmarks/results/reassign_indexed_memory.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_build_indexed_memory import _redact, write_rows  # noqa: E402
from bench_scale import ROOT, _cli, run_measured  # noqa: E402


def _input(scratch: Path, n: int, d: int) -> Path:
    """Standard normal rows, written chunk by chunk (chunk ``s`` from ``default_rng([1, s])``)."""
    import numpy as np

    path = scratch / f"gauss_{n}_{d}.npy"
    if path.exists() and np.load(path, mmap_mode="r").shape == (n, d):
        return path
    m = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, 1 << 18):
        m[s : s + (1 << 18)] = np.random.default_rng([1, s]).standard_normal((min(1 << 18, n - s), d), dtype=np.float32)
    m.flush()
    return path


def _row(tree: Path, label: str, scratch: Path, x: Path, base: Path, timeout: int) -> dict:
    run = scratch / f"run_{label}"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(base, run)
    env = {"PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    res = run_measured(["timeout", str(timeout), *_cli("index", run, "--policy", "reassign", "-e", x, "--row-ids", "--format", "json")],
                       env=env, cwd=tree)
    out = res.pop("stdout_json", None) or {}
    res["cmd"] = _redact(res["cmd"], scratch)
    res.pop("stderr_tail", None)
    shutil.rmtree(run, ignore_errors=True)
    return {"tree": label, "timed_out": res["returncode"] == 124, **res,
            **{k: out.get(k) for k in ("colliding_items_codes", "moved_items", "moved_other_prefix")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--checkout", type=Path, default=None, help="another source tree to measure first (the 'before' rows)")
    ap.add_argument("--before-max-n", type=int, default=1_000_000, help="largest size the 'before' tree is run at")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds each index run may take")
    ap.add_argument("--scratch", type=Path, default=None, help="where inputs and tokenizers go (default: a temporary directory)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reassign_indexed_memory.json")
    a = ap.parse_args()
    scratch = (a.scratch or Path(tempfile.mkdtemp(prefix="bench_reassign_indexed_"))).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in a.n:
        x, base = _input(scratch, n, a.d), scratch / f"tok_{n}"
        if not base.exists():
            built = run_measured(_cli("build-codebook", x, "--levels", "3", "--codebook-size", "256", "--row-ids", "--out", base,
                                      "--format", "json"), env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}, cwd=ROOT)
            assert built["returncode"] == 0, built.get("stderr_tail")
        trees = ([("before", a.checkout.resolve())] if a.checkout and n <= a.before_max_n else []) + [("after", ROOT)]
        for label, tree in trees:
            row = {**_row(tree, label, scratch, x, base, a.timeout), "n": n, "d": a.d}
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("tree", "n", "wall_seconds", "peak_rss_anon_mib", "returncode", "moved_items")}), flush=True)
    write_rows(a.out, "reassign_indexed_memory", rows)


if __name__ == "__main__":
    main()
