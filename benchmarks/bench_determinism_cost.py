"""What machine-independent SIDs cost at scale: ``bench_scale``'s build and assign rows, run with
this checkout and with a checkout of the code before the change, in the same run, alternating.

Both sides run the same whole processes on the same generated, memory-mapped ``.npy``
(``build-codebook --row-ids --no-index`` 3 x 256, then ``assign --row-ids --out`` with the
codebooks the "before" side built, so both assign with the same codebooks), measured as
``bench_scale.run_measured`` measures them (wall clock, peak RssAnon over the process tree).
The "before" side is any source tree of tokenizer-kit given with ``--before-src`` (for
example ``git worktree add ../tk-before <commit>``); it runs with the same interpreter and
packages, with that tree first on the import path.

    python benchmarks/bench_determinism_cost.py --before-src ../tk-before --scratch SCRATCH \\
        --n 10000000 --out benchmarks/results/determinism_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]


def _commit(src: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    from _machine import machine_info
    from _paths import portable
    from bench_scale import run_measured

    from tokenizer_kit.io import write_clustered_npy

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before-src", required=True, help="a tokenizer-kit source tree of the code to compare against")
    ap.add_argument("--scratch", required=True, help="where the generated input and the outputs go (n x dim x 4 bytes and more)")
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=1, help="pairs of runs per row (before, after alternating)")
    ap.add_argument("--steps", default="build,assign")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "determinism_cost.json"))
    args = ap.parse_args()
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    before = Path(args.before_src).resolve()
    sides = {"before": before, "after": ROOT}
    res = {"benchmark": "determinism_cost", "machine": machine_info(), "args": portable(vars(args)),
           "commits": {k: _commit(v) for k, v in sides.items()}, "rows": {}}
    data = scratch / f"gen_{args.n}_{args.dim}.npy"
    if not data.exists() or np.load(data, mmap_mode="r").shape != (args.n, args.dim):
        write_clustered_npy(data, args.n, args.dim, seed=1)

    def cli(side: str, *a) -> list[str]:
        return [sys.executable, "-m", "tokenizer_kit.cli.app", *map(str, a)]

    def env(side: str) -> dict:
        return {"PYTHONPATH": str(sides[side]), "HF_HUB_OFFLINE": "1"}

    def save() -> None:
        res["machine"]["load_average_end"] = os.getloadavg()
        Path(args.out).write_text(json.dumps(res, indent=1))

    build = ["--row-ids", "--no-index", "--levels", 3, "--codebook-size", 256, "--seed", 0, "--format", "json", "--overwrite"]
    steps = args.steps.split(",")
    for step in steps:
        runs = {"before": [], "after": []}
        for _ in range(args.repeats):
            for side in ("before", "after"):
                if step == "build":
                    cmd = cli(side, "build-codebook", data, "--out", scratch / f"tok_{side}", *build)
                else:  # both sides assign with the same codebooks: the one the code before built
                    cmd = cli(side, "assign", data, "--row-ids", "--tokenizer", scratch / "tok_before", "--out", scratch / f"assign_{side}.parquet",
                              "--format", "json")
                runs[side].append(run_measured(cmd, env=env(side), cwd=sides[side]))
                save()
        b = min(r["wall_seconds"] for r in runs["before"])
        a = min(r["wall_seconds"] for r in runs["after"])
        res["rows"][step] = {**runs, "after_over_before_best_wall": round(a / b, 4),
                             "pairs": [round(x["wall_seconds"] / y["wall_seconds"], 4) for x, y in zip(runs["after"], runs["before"])]}
        save()
    print(json.dumps(res["rows"], indent=1)[:4000])


if __name__ == "__main__":
    main()
