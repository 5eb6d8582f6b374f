"""Concurrent cold-start writers and kill -9 trials, counted, as JSON.

Runs the two slow tests of tests/test_reliability_commit.py with the trial counts given:
two `assign --update` processes at once on one tokenizer (every item of both must end up in
the index, each under its own SID), and writers (`index`, `assign --update`, `compact`)
killed with SIGKILL at random instants (the tokenizer must load, whole, after each; the next
writer must leave nothing behind).

    python benchmarks/reliability_trials.py --concurrent 30 --kills 48 --out benchmarks/results/reliability_trials.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrent", type=int, default=30)
    ap.add_argument("--kills", type=int, default=48)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from _machine import machine_info

    env = {**os.environ, "TOKENIZER_KIT_CONCURRENT_TRIALS": str(args.concurrent), "TOKENIZER_KIT_KILL_TRIALS": str(args.kills),
           "PYTHONPATH": str(HERE.parent), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-m", "slow", "tests/test_reliability_commit.py",
                        "-k", "many_trials or kill_9", "-p", "no:cacheprovider"], cwd=HERE.parent, env=env, capture_output=True, text=True)
    out = p.stdout + p.stderr
    m = re.search(r"kill -9 trials: (\d+), writers killed while running: (\d+)", out)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE.parent, capture_output=True, text=True).stdout.strip()
    res = {
        "commit": commit,
        "passed": p.returncode == 0,
        "concurrent_assign_update_trials": args.concurrent,
        "concurrent_trials_with_nothing_lost": args.concurrent if p.returncode == 0 else None,
        "kill9_trials": int(m.group(1)) if m else None,
        "kill9_writers_killed_mid_run": int(m.group(2)) if m else None,
        "kill9_trials_loadable_after": (int(m.group(1)) if m else None) if p.returncode == 0 else None,
        "seconds": round(time.perf_counter() - t0, 1),
        "pytest_tail": out.strip().splitlines()[-3:],
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("machine",)}, indent=1))


if __name__ == "__main__":
    main()
