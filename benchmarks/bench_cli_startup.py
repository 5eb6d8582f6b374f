"""Start-up time and memory of the CLI's quick commands, for one or more checkouts.

    git worktree add --detach ../before 9f0b0f1      # main before the torch-free verbs
    python benchmarks/bench_cli_startup.py --checkout before=../before --checkout after=. \
        --out benchmarks/results/cli_startup.json
    git worktree remove ../before

Each command runs in a fresh interpreter that imports ``tokenizer_kit`` from the checkout
(``PYTHONPATH``) and calls the CLI as the ``tokenizer-kit`` script does, in a scratch
directory. Measured per run: wall time from spawn to exit; CPU time (user + system, from
``wait4``: on a loaded machine it moves far less than wall time); peak ``RssAnon`` of the process
tree, polled from ``/proc/PID/status`` (anonymous memory: the heap and the libraries' data,
not the shared library pages that ``VmRSS`` adds); and, from inside the process at exit,
whether ``torch``, ``transformers`` or ``datasets`` were loaded. The checkouts alternate
command by command (their order flips every run), so load on a shared machine falls on
both alike. The floors (bare Python, numpy, pyarrow, typer and rich, torch) say what bounds
a command: the CLI cannot start faster or smaller than the libraries it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# runs the CLI as the console script does, and records at exit what it had imported
_CLI = """
import atexit, json, os, sys
def _report():
    with open(os.environ["TK_BENCH_IMPORTS"], "w") as f:
        json.dump([m for m in ("torch", "transformers", "datasets", "faiss", "pyarrow", "pandas", "typer", "rich")
                   if m in sys.modules], f)
atexit.register(_report)
from tokenizer_kit.cli.app import app
sys.argv[0] = "tokenizer-kit"
app()
"""

# what the commands cannot go below: the interpreter and the libraries they import
FLOORS = {
    "python": "pass",
    "numpy": "import numpy",
    "numpy+pyarrow.parquet": "import numpy, pyarrow.parquet",
    "numpy+pyarrow.parquet+pandas": "import numpy, pyarrow.parquet, pandas",
    "numpy+typer+rich": "import numpy, typer, rich.console, rich.markdown",
    "numpy+faiss": "import numpy, faiss",
    "torch": "import torch",
}


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from ``/proc/PID/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def run_once(argv: list[str], env: dict[str, str], cwd: Path, poll_s: float = 0.002) -> dict:
    """Wall seconds, CPU seconds (user + system: what load on the machine changes least) and
    peak RssAnon (MiB) of the process tree of one command. (Not ``ru_maxrss``: a forked child
    starts with the parent's pages counted, so it reads the benchmark's own size for small
    commands.)"""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, status, usage = 0, None, None
    while status is None:
        peak = max(peak, sum(_status_kib(p, "RssAnon") for p in _tree(proc.pid)))
        pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status, usage = os.waitstatus_to_exitcode(st), ru
        else:
            time.sleep(poll_s)
    wall = time.perf_counter() - t0
    proc.returncode = status  # reaped here, so Popen must not wait for it
    err = proc.stderr.read().decode(errors="replace")
    if status != 0:
        raise SystemExit(f"{' '.join(argv[3:])} failed ({status}): {err[-500:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_anon_mib": peak / 1024}


def _commit(checkout: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()


def _data(ws: Path, n: int = 2000, d: int = 64) -> None:
    rng = np.random.default_rng(0)
    np.save(ws / "x.npy", rng.standard_normal((n, d)).astype(np.float32))
    np.save(ws / "x.ids.npy", np.arange(n))
    np.save(ws / "new.npy", rng.standard_normal((50, d)).astype(np.float32))
    np.save(ws / "new.ids.npy", np.arange(n, n + 50))


COMMANDS = {
    "--help": lambda ws, tag: ["--help"],
    "build-codebook --help": lambda ws, tag: ["build-codebook", "--help"],
    "build-codebook (2,000 x 64, 2 x 32, RQ-Kmeans)": lambda ws, tag: [
        "build-codebook", "x.npy", "--levels", "2", "--codebook-size", "32", "--out", f"build_{tag}"],
    "assign (50 new items, report only)": lambda ws, tag: ["assign", "new.npy", "-t", f"tok_{tag.split('_')[0]}", "--out", f"a_{tag}.parquet"],
    "lookup --item 5": lambda ws, tag: ["lookup", f"tok_{tag.split('_')[0]}", "--item", "5"],
}


def _env(checkout: Path | None, imports: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TK_BENCH_IMPORTS=str(imports))
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    return env


def _summary(runs: list[dict]) -> dict:
    walls, cpus, rss = [r["wall_s"] for r in runs], [r["cpu_s"] for r in runs], [r["rss_anon_mib"] for r in runs]
    return {"wall_s_median": round(statistics.median(walls), 3), "wall_s_min": round(min(walls), 3),
            "cpu_s_median": round(statistics.median(cpus), 3),
            "rss_anon_mib_median": round(statistics.median(rss), 1), "rss_anon_mib_max": round(max(rss), 1),
            "wall_s": [round(w, 3) for w in walls], "cpu_s": [round(c, 3) for c in cpus], "rss_anon_mib": [round(m, 1) for m in rss]}


def measure(checkouts: dict[str, Path], runs: int, ws: Path) -> dict:
    imports = ws / "imports.json"
    for label, co in checkouts.items():  # the tokenizer assign and lookup read, one per checkout
        run_once([sys.executable, "-c", _CLI, *COMMANDS["build-codebook (2,000 x 64, 2 x 32, RQ-Kmeans)"](ws, label)],
                 _env(co, imports), ws)
        (ws / f"build_{label}").rename(ws / f"tok_{label}")
    res = {c: {label: {"runs": [], "imported": None} for label in checkouts} for c in COMMANDS}
    floors: dict[str, list[dict]] = {f: [] for f in FLOORS}
    for i in range(runs):
        order = list(checkouts) if i % 2 == 0 else list(checkouts)[::-1]
        for name, args in COMMANDS.items():
            for label in order:
                r = run_once([sys.executable, "-c", _CLI, *args(ws, f"{label}_{i}")], _env(checkouts[label], imports), ws)
                res[name][label]["runs"].append(r)
                res[name][label]["imported"] = json.loads(imports.read_text())
        for name, code in FLOORS.items():
            floors[name].append(run_once([sys.executable, "-c", code], _env(None, imports), ws))
        print(f"run {i + 1}/{runs} done, load {os.getloadavg()[0]:.1f}", flush=True)
    commands = {c: {label: {**_summary(v["runs"]), "imported": v["imported"], "torch_imported": "torch" in v["imported"]}
                    for label, v in per.items()} for c, per in res.items()}
    return {"commands": commands, "floors": {f: _summary(v) for f, v in floors.items()}}


def _table(out: dict) -> str:
    labels = list(out["checkouts"])
    lines = [f"{'median of ' + str(out['runs']) + ' runs':50s}" + "".join(f"{lab + ' s':>12s}{'cpu s':>8s}{'RssAnon MiB':>13s}{'torch':>7s}" for lab in labels)]
    for c, per in out["commands"].items():
        lines.append(f"{c:50s}" + "".join(f"{per[lab]['wall_s_median']:12.3f}{per[lab]['cpu_s_median']:8.3f}{per[lab]['rss_anon_mib_median']:13.1f}"
                                          f"{'yes' if per[lab]['torch_imported'] else 'no':>7s}" for lab in labels))
    for f, s in out["floors"].items():
        lines.append(f"{'floor: ' + f:50s}{s['wall_s_median']:12.3f}{s['cpu_s_median']:8.3f}{s['rss_anon_mib_median']:13.1f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkout", action="append", required=True, metavar="LABEL=DIR",
                    help="a checkout of tokenizer-kit to measure (repeat: before=..., after=.)")
    ap.add_argument("--runs", type=int, default=7, help="runs of every command per checkout (the median is reported)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "cli_startup.json")
    args = ap.parse_args()
    checkouts = {}
    for spec in args.checkout:
        label, _, d = spec.partition("=")
        checkouts[label] = Path(d).resolve()
    from _machine import machine_info

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as tmp:
        ws = Path(tmp)
        _data(ws)
        measured = measure(checkouts, args.runs, ws)
    out = {
        "benchmark": "bench_cli_startup",
        "checkouts": {label: {"commit": _commit(co)} for label, co in checkouts.items()},
        "runs": args.runs,
        "python": sys.executable.rsplit("/", 1)[-1],
        **measured,
        "seconds": round(time.perf_counter() - t0, 1),
        "load_average_before": [round(v, 2) for v in load_before],
        "machine": machine_info(),
    }
    print(_table(out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
