"""Scale benchmark (issue 14): streaming build and assign in bounded memory, against a naive
FAISS residual k-means script that loads everything, and the GEMM share of encode.

Data: generated with ``tokenizer_kit.io.write_clustered_npy`` (documented there): a
hierarchical Gaussian mixture on the unit sphere (256 topics x 32 sub-centres, Zipf-like
popularity, noise 0.35 / sqrt(d), 2% near-duplicates within each 262,144-row chunk), written
chunk by chunk to a float32 ``.npy`` that is then read memory-mapped. Seeds: 0 for the
comparison set, 1 for the large set.

Rows (each "process" row is a whole process, ``python -m tokenizer_kit.cli.app ...``, timed
by wall clock, with peak anonymous memory = the largest sum of ``RssAnon`` over the process
tree, read from /proc/PID/status every 50 ms; page cache of the memory-mapped input is file
memory and does not count):

* ``build``  : ``build-codebook`` on the large set (3 x 256 by default);
* ``assign`` : ``assign --out`` of the large set with that tokenizer;
* ``compare``: on the comparison set, ``build-codebook`` against ``naive`` (below), both as
  whole processes, run back to back (``--repeats`` times each, alternating);
* ``balanced``: ``build-codebook --balanced`` on the comparison set (the cost of balance and
  of the distinct-last-level step at scale);
* ``equal``  : in one process, ``SemanticTokenizer.build`` (in memory) against
  ``build_streaming`` on the first ``--n-equal`` rows (plain and balanced): SIDs equal?
* ``gemm``   : in one process, greedy encode of ``--n-gemm`` rows: our blocked encode, the
  same with FAISS's ``IndexFlatL2.search`` per level, and the GEMMs alone (the same shapes,
  the same threads) -> share of the GEMM bound; plus the best fp32 GEMM rate over batch
  sizes with multi-threaded BLAS;
* ``cold``   : cold start of 10,000 new items into an index over the large set, when track
  ``indexer``'s ``benchmarks/bench_cold_start.py`` provides ``run_cold_start``;
* ``imports``: peak RssAnon of ``build-codebook`` stopped by an input error right after its
  imports (no data read), beside bare interpreters importing numpy/faiss/pyarrow and torch:
  the floor under the build and assign rows;
* ``gpu``    : 3 x 8192 on 10M x 512 with ``--device cuda`` (``--gpu``; needs a GPU machine).

The naive script (``python bench_scale.py naive X.npy OUT.npy``) is what OpenOneRec ships:
``np.load`` the whole matrix, then per level ``faiss.Kmeans(d, K, niter=20)`` trained on the
residuals (FAISS samples 256 points per centroid itself), ``index.search`` of every
residual, ``residual -= centroids[I]`` (in place, so its peak is 2x the input rather than the
3x of ``r = r - c[I]``: a slightly leaner baseline than the scripts it stands for), and the
codes saved with ``np.save``.

    nice -n 10 python benchmarks/bench_scale.py --scratch DIR \\
        --out benchmarks/results/scale_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


# ---- measuring whole processes --------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(cmd: list[str], *, env: dict | None = None, interval: float = 0.05, cwd: Path | None = None) -> dict:
    """Run ``cmd`` as a process; wall time and peak RssAnon / RssFile over its process tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, cwd=cwd or ROOT)
    peak = {"anon": 0, "file": 0}
    done = threading.Event()

    def poll():
        while not done.is_set():
            pids = _tree(proc.pid)
            peak["anon"] = max(peak["anon"], sum(_status_kb(p, "RssAnon") for p in pids))
            peak["file"] = max(peak["file"], sum(_status_kb(p, "RssFile") for p in pids))
            time.sleep(interval)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    res = {
        "cmd": " ".join(str(c) for c in cmd),
        "returncode": proc.returncode,
        "wall_seconds": round(wall, 2),
        "peak_rss_anon_mib": round(peak["anon"] / 1024, 1),
        "peak_rss_file_mib": round(peak["file"] / 1024, 1),
        "load_average_after": os.getloadavg(),
    }
    if proc.returncode != 0:
        res["stderr_tail"] = err.decode(errors="replace")[-2000:]
    try:
        res["stdout_json"] = json.loads(out.decode())
    except (json.JSONDecodeError, UnicodeDecodeError):
        res["stdout_tail"] = out.decode(errors="replace")[-500:]
    return res


def _cli(*args) -> list[str]:
    return [PY, "-m", "tokenizer_kit.cli.app", *map(str, args)]


# ---- the naive baseline (what OpenOneRec ships), run as its own process ---------------------
def naive_faiss_main(path: str, out: str, levels: int = 3, k: int = 256, niter: int = 20, seed: int = 0) -> None:
    import faiss

    residual = np.load(path)  # the whole matrix in memory (float32)
    n, d = residual.shape
    codes = np.zeros((n, levels), dtype=np.int64)
    for level in range(levels):
        km = faiss.Kmeans(d, k, niter=niter, seed=seed + level, verbose=False)
        km.train(residual)
        _, ids = km.index.search(residual, 1)
        codes[:, level] = ids[:, 0]
        residual -= km.centroids[ids[:, 0]]  # in place: leaner than the usual `r = r - c[I]`
    np.save(out, codes)


# ---- in-process measurements ------------------------------------------------------------------
def gemm_share(x: np.ndarray, k: int, levels: int, seed: int = 0) -> dict:
    """Encode time against the time of its GEMMs alone, same blocks and threads, same run."""
    import faiss

    from tokenizer_kit.quantizers import RQKMeans
    from tokenizer_kit.quantizers._encode import BLOCK_ROWS, cpu_threads, run_blocks

    n, d = x.shape
    q = RQKMeans(codebook_sizes=[k] * levels, seed=seed, niter=10, max_points_per_centroid=64).fit(np.ascontiguousarray(x[: 64 * k * 4]))
    neg = [t.neg2ct for t in q._tables]

    def gemms(s, e):
        buf = np.empty((e - s, k), np.float32)
        for l in range(levels):
            np.matmul(x[s:e], neg[l], out=buf)

    def timed(fn, reps=3):
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    t_gemm = timed(lambda: run_blocks(gemms, n))
    t_enc = timed(lambda: q.encode(x))
    idx = []
    for c in q.codebooks:
        ix = faiss.IndexFlatL2(d)
        ix.add(c)
        idx.append(ix)

    def faiss_encode():
        for s in range(0, n, BLOCK_ROWS):
            r = np.array(x[s : s + BLOCK_ROWS])
            for l in range(levels):
                _, ids = idx[l].search(r, 1)
                r -= q.codebooks[l][ids[:, 0]]

    faiss.omp_set_num_threads(cpu_threads())
    t_faiss = timed(faiss_encode)
    flops = 2.0 * n * d * k * levels
    best_rate = 0.0
    best_bs = None
    for bs in (1024, 4096, 16384, 65536):
        bs = min(bs, n)
        a = np.ascontiguousarray(x[:bs])
        t = timed(lambda: [a @ neg[0] for _ in range(max(1, 65536 // bs))], reps=3)
        rate = 2.0 * bs * d * k * max(1, 65536 // bs) / t
        if rate > best_rate:
            best_rate, best_bs = rate, bs
    return {
        "n": n,
        "d": d,
        "codebook_sizes": [k] * levels,
        "threads": cpu_threads(),
        "block_rows": BLOCK_ROWS,
        "gemm_only_seconds": t_gemm,
        "encode_seconds": t_enc,
        "faiss_search_encode_seconds": t_faiss,
        "gemm_share_of_encode": t_gemm / t_enc,
        "gemm_share_of_faiss_encode": t_gemm / t_faiss,
        "encode_gflops": flops / t_enc / 1e9,
        "gemm_gflops_same_blocks": flops / t_gemm / 1e9,
        "best_gemm_gflops_any_batch": best_rate / 1e9,
        "best_gemm_batch": best_bs,
        "encode_share_of_best_gemm_rate": (flops / t_enc) / best_rate,
    }


def sids_equal(x: np.ndarray, scratch: Path) -> dict:
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.build._streaming import build_streaming
    from tokenizer_kit.io import EmbeddingSource
    from tokenizer_kit.quantizers import RQKMeansConfig

    np.save(scratch / "equal.npy", x)
    out = {"n": int(len(x)), "d": int(x.shape[1])}
    for name, kw in (("plain", {}), ("balanced", {"balanced": True})):
        cfg = dict(codebook_sizes=[256] * 3, seed=0, **kw)
        t = time.perf_counter()
        mem = SemanticTokenizer.build(x, index=False, **cfg)  # codes only, as build_streaming
        t_mem = time.perf_counter() - t
        t = time.perf_counter()
        build_streaming(EmbeddingSource(scratch / "equal.npy", row_ids=True), scratch / f"equal_{name}", RQKMeansConfig(**cfg), overwrite=True)
        t_st = time.perf_counter() - t
        st = SemanticTokenizer.from_pretrained(scratch / f"equal_{name}")
        out[name] = {
            "identical": bool(np.array_equal(st.codes, mem.codes)),
            "rows_differing": int((st.codes != mem.codes).any(1).sum()),
            "in_memory_seconds": t_mem,
            "streaming_seconds": t_st,
            "collision_rate": mem.metrics["collision_rate"],
        }
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "naive":
        naive_faiss_main(*sys.argv[2:4])
        return
    from _machine import machine_info
    from _paths import portable

    from tokenizer_kit.io import write_clustered_npy

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scratch", default=str(ROOT / "benchmarks" / ".scratch" / "scale"),
                    help="where the generated inputs and outputs go (tens of GB; default benchmarks/.scratch/scale)")
    ap.add_argument("--n", type=int, default=10_000_000, help="rows of the large set")
    ap.add_argument("--n-compare", type=int, default=4_000_000, help="rows of the set where ours meets the naive script")
    ap.add_argument("--n-equal", type=int, default=200_000)
    ap.add_argument("--n-gemm", type=int, default=500_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side of the comparison (alternating)")
    ap.add_argument("--steps", default="build,assign,compare,balanced,equal,gemm,cold")
    ap.add_argument("--gpu", action="store_true", help="also the GPU row: 3 x 8192 on 10M x 512 with --device cuda")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale_cpu.json"))
    ap.add_argument("--cold-repeats", type=int, default=2, help="segment/rewrite runs of the cold-start row (best kept)")
    ap.add_argument("--merge", action="store_true", help="keep the rows of an existing --out and replace only the steps run now")
    args = ap.parse_args()
    steps = set(args.steps.split(","))
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    res: dict = {"benchmark": "scale", "machine": machine_info(), "args": portable(vars(args)), "rows": {}}
    if args.merge and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        res["rows"] = old.get("rows", {})
        # the rows this run replaces keep their numbers here (rows it keeps stay in "rows")
        replaced = {k: v for k, v in res["rows"].items() if k in steps or (k == "gpu" and args.gpu)}
        res["earlier_runs"] = old.get("earlier_runs", []) + [{"machine": old.get("machine"), "args": old.get("args"),
                                                              "rows": sorted(old.get("rows", {})), "replaced_rows": replaced}]
    R = res["rows"]

    def save():
        res["machine"]["load_average_end"] = os.getloadavg()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))

    def name(n: int, d: int) -> str:
        return f"gen_{n // 1_000_000}m_{d}.npy" if n % 1_000_000 == 0 else f"gen_{n}_{d}.npy"

    big = scratch / name(args.n, args.dim)
    cmp_ = scratch / name(args.n_compare, args.dim)
    needs = {big: {"build", "assign", "equal", "gemm"}, cmp_: {"compare", "balanced"}}  # generated only for the steps run
    for path, n, seed in ((big, args.n, 1), (cmp_, args.n_compare, 0)):
        if not steps & needs[path]:
            continue
        if not path.exists() or np.load(path, mmap_mode="r").shape != (n, args.dim):
            t = time.perf_counter()
            write_clustered_npy(path, n, args.dim, seed=seed)
            res.setdefault("generated", {})[path.name] = time.perf_counter() - t
    shape = dict(levels=args.levels, size=args.codebook_size)
    # generated rows carry no ids (--row-ids numbers them); the build row is the codebook build
    # alone (--no-index: the SID index's cost is the cold-start row's base "index_seconds")
    build_args = ["--row-ids", "--no-index", "--levels", shape["levels"], "--codebook-size", shape["size"], "--seed", 0,
                  "--format", "json", "--overwrite"]

    if "build" in steps:
        R["build"] = run_measured(_cli("build-codebook", big, "--out", scratch / "tok_big", *build_args))
        save()
    if "assign" in steps and (scratch / "tok_big").exists():
        R["assign"] = run_measured(_cli("assign", big, "--row-ids", "--tokenizer", scratch / "tok_big", "--out", scratch / "assign_big.parquet", "--format", "json"))
        save()
    if "compare" in steps:
        ours, naive = [], []
        for _ in range(args.repeats):
            naive.append(run_measured([PY, __file__, "naive", str(cmp_), str(scratch / "naive_codes.npy")]))
            ours.append(run_measured(_cli("build-codebook", cmp_, "--out", scratch / "tok_cmp", *build_args)))
            save()
        best_o = min(r["wall_seconds"] for r in ours)
        best_n = min(r["wall_seconds"] for r in naive)
        R["compare"] = {"ours": ours, "naive_faiss": naive, "ours_over_naive_best": best_o / best_n}
        for i, (o, nv) in enumerate(zip(ours, naive)):
            R["compare"][f"ratio_run{i}"] = o["wall_seconds"] / nv["wall_seconds"]
        save()
    if "balanced" in steps:
        R["balanced"] = run_measured(_cli("build-codebook", cmp_, "--out", scratch / "tok_cmp_bal", "--balanced", *build_args))
        save()
    if "equal" in steps:
        x = np.ascontiguousarray(np.load(big, mmap_mode="r")[: args.n_equal])
        R["equal"] = sids_equal(x, scratch)
        save()
    if "gemm" in steps:
        x = np.ascontiguousarray(np.load(big, mmap_mode="r")[: args.n_gemm])
        R["gemm"] = gemm_share(x, args.codebook_size, args.levels)
        save()
    if "cold" in steps:
        from bench_cold_start import cold_start_benchmark  # track indexer's benchmark

        cold = cold_start_benchmark(args.n, 10_000, workdir=scratch / "cold", d=args.dim, sizes=[args.codebook_size] * args.levels, repeats=args.cold_repeats, cli=True)
        cold.pop("machine", None)
        R["cold"] = cold
        save()
    if "imports" in steps:  # the RssAnon a verb holds before it reads any data (its imports)
        tiny = scratch / "imports_tiny.npy"
        np.save(tiny, np.zeros((4, args.dim), np.float32))  # no ids beside it: the verb stops at open_embeddings
        R["imports"] = {
            "build_codebook_until_input_error": run_measured(_cli("build-codebook", tiny, "--out", scratch / "imports_tok", "--format", "json")),
            "python_numpy_faiss_pyarrow": run_measured([PY, "-c", "import numpy, faiss, pyarrow.parquet, safetensors"]),
            "python_torch": run_measured([PY, "-c", "import torch"]),
            "note": "build-codebook imports torch through pipeline/_stage_configs.py -> alignment, companion, features (their configs live beside torch modules)",
        }
        tiny.unlink()
        save()
    if args.gpu:
        g = scratch / "gen_10m_512.npy"
        if not g.exists():
            write_clustered_npy(g, 10_000_000, 512, seed=2)
        R["gpu"] = run_measured(_cli("build-codebook", g, "--out", scratch / "tok_gpu", "--levels", 3, "--codebook-size", 8192, "--device", "cuda", "--seed", 0, "--format", "json", "--overwrite"))
    elif "gpu" not in R or "skipped" in R["gpu"]:
        R["gpu"] = {"skipped": "no GPU on this machine: run with --gpu on a CUDA machine with faiss-gpu (make install-gpu); target 3 x 8192 on 10M x 512 under 180 s on one H100"}
    save()
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk in ("wall_seconds", "peak_rss_anon_mib", "ours_over_naive_best", "gemm_share_of_encode", "skipped")} if isinstance(v, dict) else v for k, v in R.items()}, indent=1))


if __name__ == "__main__":
    main()
