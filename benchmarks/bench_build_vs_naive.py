"""The unindexed streaming build against the naive FAISS script, paired runs (issue 25, item 5).

For each catalogue size (``--sizes``, generated ``n x d`` float32 ``.npy`` of
``tokenizer_kit.io.write_clustered_npy``, seed 0 as ``bench_scale.py``'s comparison set), runs
``--rounds`` rounds; each round runs, back to back and in an order that alternates from round
to round,

* ``ours``: ``build-codebook gen.npy --row-ids --no-index --levels 3 --codebook-size 256 --seed 0``;
* ``naive``: ``bench_scale.py naive gen.npy codes.npy`` (``np.load`` everything, per level
  ``faiss.Kmeans(d, 256, niter=20)`` on the residuals, ``index.search`` of every residual, the
  residual updated in place; OpenOneRec's script);
* ``before`` (with ``--checkout DIR``): ``ours`` with another source tree first on the path.

Each run is a whole process (``bench_scale.run_measured``: wall clock, peak RssAnon over the
process tree) with its CPU seconds (user + system of the reaped child, from
``resource.getrusage(RUSAGE_CHILDREN)``). Reported: per size the medians over rounds, and the
ratios ours / naive of the paired runs (their median too). ``ours`` rows carry the build's own
phase timings (the manifest's ``build`` record: sampling, training on the sample, the
collision prediction, the encode pass and its parts, total). After the rounds, one process
runs both methods' steps one after the other (``phases``): the naive's load, training, search
and residual update against our training and encode, each timed, which separates compute from
the naive's memory traffic. Run it on a quiet machine; the load average after each run is
recorded.

    python benchmarks/bench_build_vs_naive.py --sizes 1000000,4000000 --rounds 5,3 --checkout DIR \\
        --out benchmarks/results/build_vs_naive.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import PY, ROOT, _cli, run_measured  # noqa: E402


def _input(scratch: Path, n: int, d: int) -> Path:
    """The generated ``n x d`` set (seed 0, bench_scale's comparison set), made if missing."""
    from bench_build_indexed_memory import _input as generated

    return generated(scratch, n, d, seed=0)


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    c0 = _cpu_children()
    res = run_measured(cmd, env=env, cwd=cwd)
    res["cpu_seconds"] = round(_cpu_children() - c0, 2)
    if res["returncode"] != 0:
        raise SystemExit(f"{cmd[:4]} failed: {res.get('stderr_tail', '')[-500:]}")
    return res


def _phases(tok: Path) -> dict:
    """The build's own phase timings, from the ``build`` record of its manifest."""
    info = json.loads((tok / "manifest.json").read_text()).get("build") or {}
    return {k: round(v, 2) for k, v in info.items() if k.endswith("_seconds") and isinstance(v, (int, float))}


def _median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 2)


def phases_main(path: str) -> None:
    """In one process, one after the other, the naive script's steps and ours, each timed (wall
    and process CPU seconds): the naive's load, per level ``faiss.Kmeans.train``,
    ``index.search`` and the residual update; our sample read, training on the sample, the
    collision prediction and the greedy encode of every row with the reconstruction (64k-row
    batches, no writing). Prints JSON."""
    import faiss
    import numpy as np

    from tokenizer_kit.quantizers import RQKMeans, warn_if_crowded

    x = np.load(path, mmap_mode="r")
    n = len(x)
    out: dict = {}

    def clock(name, fn):
        c, w = time.process_time(), time.perf_counter()
        r = fn()
        out[name] = {"wall_seconds": round(time.perf_counter() - w, 2), "cpu_seconds": round(time.process_time() - c, 2)}
        return r

    res = clock("naive_load", lambda: np.load(path))
    for level in range(3):
        km = faiss.Kmeans(x.shape[1], 256, niter=20, seed=level, verbose=False)
        clock(f"naive_train_{level}", lambda: km.train(res))
        _, ids = clock(f"naive_search_{level}", lambda: km.index.search(res, 1))
        clock(f"naive_update_{level}", lambda: res.__isub__(km.centroids[ids[:, 0]]))
    del res
    q = RQKMeans(codebook_sizes=[256] * 3, seed=0)
    rows = q.sample_rows(n)
    sample = clock("ours_sample", lambda: np.ascontiguousarray(x[rows]))
    codes = clock("ours_train", lambda: q.fit_sample(sample, n_total=n))
    clock("ours_predict", lambda: warn_if_crowded(codes, n, q.codebook_sizes, threshold=2.0, seed=0))
    sq = np.empty((1 << 16, 2))

    def encode():
        for s in range(0, n, 1 << 16):
            xb = np.ascontiguousarray(x[s : s + (1 << 16)])
            q.encode(xb, sq_norms=sq[: len(xb)])

    clock("ours_encode", encode)
    for side in ("naive", "ours"):
        for kind in ("train", "search", "update", "encode"):
            keys = [k for k in out if k.startswith(f"{side}_{kind}")]
            if keys:
                out[f"{side}_{kind}_total"] = {u: round(sum(out[k][u] for k in keys), 2) for u in ("wall_seconds", "cpu_seconds")}
    print(json.dumps(out))


def _size(scratch: Path, n: int, d: int, rounds: int, checkout: str | None) -> dict:
    x = _input(scratch, n, d)
    build = ["--row-ids", "--no-index", "--levels", 3, "--codebook-size", 256, "--seed", 0, "--format", "json", "--overwrite"]
    sides = {
        "ours": lambda: _run(_cli("build-codebook", x, "--out", scratch / "tok", *build)),
        "naive": lambda: _run([PY, str(ROOT / "benchmarks" / "bench_scale.py"), "naive", str(x), str(scratch / "naive_codes.npy")]),
    }
    if checkout:
        tree = Path(checkout).resolve()  # `python -m` puts the working directory first on the path
        sides["before"] = lambda: _run(_cli("build-codebook", x, "--out", scratch / "tok_before", *build), env={"PYTHONPATH": str(tree)},
                                       cwd=tree)
    runs: dict[str, list[dict]] = {k: [] for k in sides}
    order = list(sides)
    for r in range(rounds):
        for side in (order if r % 2 == 0 else order[::-1]):
            res = sides[side]()
            res["round"] = r
            if side != "naive":
                res["phases"] = _phases(scratch / ("tok" if side == "ours" else "tok_before"))
            res.pop("stdout_json", None)
            runs[side].append(res)
    out: dict = {"n": n, "d": d, "rounds": rounds, "runs": runs, "median": {}}
    for side, rows in runs.items():
        out["median"][side] = {"wall_seconds": _median(rows, "wall_seconds"), "cpu_seconds": _median(rows, "cpu_seconds"),
                               "peak_rss_anon_mib": max(r["peak_rss_anon_mib"] for r in rows)}
    for side in [s for s in runs if s != "naive"]:
        wall = [a["wall_seconds"] / b["wall_seconds"] for a, b in zip(runs[side], runs["naive"])]
        cpu = [a["cpu_seconds"] / b["cpu_seconds"] for a, b in zip(runs[side], runs["naive"])]
        out[f"{side}_over_naive"] = {"wall_per_round": [round(v, 3) for v in wall], "cpu_per_round": [round(v, 3) for v in cpu],
                                     "wall_median": round(statistics.median(wall), 3), "cpu_median": round(statistics.median(cpu), 3),
                                     "wall_of_medians": round(out["median"][side]["wall_seconds"] / out["median"]["naive"]["wall_seconds"], 3)}
    split = run_measured([PY, __file__, "phases", str(x)])
    out["steps_in_one_process"] = split.get("stdout_json") or {"failed": split.get("stderr_tail", "")[-300:]}
    phases = [r["phases"] for r in runs["ours"] if r.get("phases")]
    if phases:
        out["ours_phases_median"] = {k: round(statistics.median(p.get(k, 0.0) for p in phases), 2) for k in phases[0]}
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "phases":
        phases_main(sys.argv[2])
        return
    from _machine import machine_info
    from _paths import portable, scratch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000000,4000000", help="catalogue sizes, comma-separated")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--rounds", default="5", help="paired rounds per size (the order alternates); one number, or one per size")
    ap.add_argument("--checkout", default=None, help="another source tree run as 'before' in the same rounds")
    ap.add_argument("--scratch", default=None, help="inputs and outputs (default benchmarks/.scratch/build_vs_naive)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "build_vs_naive.json"))
    ap.add_argument("--steps-only", action="store_true", help="only the one-process step split, added to the sizes of an existing --out")
    args = ap.parse_args()
    work = Path(args.scratch) if args.scratch else scratch("build_vs_naive")
    work.mkdir(parents=True, exist_ok=True)
    if args.steps_only:
        res = json.loads(Path(args.out).read_text())
        for z in res["sizes"]:
            split = run_measured([PY, __file__, "phases", str(_input(work, z["n"], z["d"]))])
            z["steps_in_one_process"] = split.get("stdout_json") or {"failed": split.get("stderr_tail", "")[-300:]}
        Path(args.out).write_text(json.dumps(res, indent=1))
        return
    res: dict = {"benchmark": "build_vs_naive", "machine": machine_info(), "args": portable(vars(args)), "sizes": []}
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rounds = [int(r) for r in args.rounds.split(",") if r]
    rounds = rounds * len(sizes) if len(rounds) == 1 else rounds
    if len(rounds) != len(sizes):
        raise SystemExit(f"--rounds: give one number or one per size ({len(sizes)}), got {args.rounds!r}")
    for n, r in zip(sizes, rounds):
        t = time.perf_counter()
        res["sizes"].append(_size(work, n, args.dim, r, args.checkout))
        res["sizes"][-1]["benchmark_seconds"] = round(time.perf_counter() - t, 1)
        res["machine"]["load_average_end"] = os.getloadavg()
        text = json.dumps(portable(res), indent=1).replace(sys.executable, "python").replace(str(work), "<scratch>")
        if args.checkout:
            text = text.replace(str(Path(args.checkout).resolve()), "<checkout>")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(json.dumps([{"n": s["n"], **{k: v for k, v in s.items() if k.endswith("_over_naive")}} for s in res["sizes"]], indent=1))


if __name__ == "__main__":
    main()
