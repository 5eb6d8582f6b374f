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

* ``build``  : ``build-codebook --no-index`` on the large set (3 x 256 by default);
* ``assign`` : ``assign --out`` of the large set with that (unindexed) tokenizer;

the same with the defaults a user types (``build-codebook`` builds the SID index unless told
``--no-index``), in the same run, so that their ratios to the unindexed rows hold:

* ``build_indexed``: ``build-codebook BIG --row-ids --levels 3 --codebook-size 256 --seed 0``
  (indexes: suffix policy) -> ``tok_idx``;
* ``assign_indexed_all_known``: ``assign BIG --row-ids --tokenizer tok_idx --out ...``;
* ``assign_indexed_10pct_new``: the same with ``--ids MIX``, every 10th row (r % 10 == 9) under
  the new id n + r (``bench_assign_indexed.make_inputs``);
* ``cold_10k``: ``assign NEW --ids IDS --tokenizer COPY --update`` of 10,000 new items (rows
  of the large set under new ids) into a hard-linked copy of ``tok_idx`` whose files were
  dropped from the page cache: bytes read and written after the imports (rchar, wchar,
  read_bytes, write_bytes of /proc/self/io, and checksummed), the directory's pages read
  (page-cache residency after the run, ``bench_cold_start_io``'s helpers), peak RssAnon, wall;
* ``ray_assign_indexed_wN`` (``_w1``, ``_w2`` by default; any N): ``assign BIG --ids MIX
  --tokenizer tok_idx --out DIR --engine ray --workers N``, with each process's own peak
  RssAnon by role (driver, ray worker, raylet, gcs, dashboard, ...) beside the tree's, and
  whether its table equals the local ``assign_indexed_10pct_new`` output.

``summary`` in the JSON sets each of these rows against the 2 GB (2e9 bytes) RssAnon target
(peak, wall, within_2gb) and gives the indexed assigns' wall time over the unindexed ``assign``
(target within 1.5x; ``same_run`` says both were measured by one run).

The other rows:

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

``--steps`` picks the rows (comma-separated). The default runs every row above but
``imports`` (and ``gpu``, which ``--gpu`` adds): build, assign, the indexed rows, compare,
balanced, equal, gemm, cold. ``--merge`` keeps the rows of an existing ``--out`` and replaces
only the steps run now. The rows a user's defaults give, with the unindexed pair they are
compared with, into the committed results:

    nice -n 10 python benchmarks/bench_scale.py --scratch DIR --merge \\
        --steps build,assign,build_indexed,assign_indexed_all_known,assign_indexed_10pct_new,cold_10k,ray_assign_indexed_w1,ray_assign_indexed_w2 \\
        --out benchmarks/results/scale_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace").strip() for a in f.read().split(b"\0") if a.strip()]
    except OSError:
        return []


# a process's command line -> its role: Ray's binaries by name, its Python processes by script;
# Ray retitles its processes "ray::NAME" (workers: ray::IDLE, then their actor or task)
RAY_BINARIES = {"raylet": "raylet", "gcs_server": "gcs"}
RAY_TITLES = {"ray::DashboardAgent": "dashboard agent", "ray::RuntimeEnvAgent": "runtime env agent"}
RAY_SCRIPTS = (("workers/default_worker.py", "ray worker"), ("dashboard/agent.py", "dashboard agent"),
               ("dashboard/dashboard.py", "dashboard"), ("runtime_env/agent/main.py", "runtime env agent"),
               ("log_monitor.py", "log monitor"), ("autoscaler/_private/monitor.py", "monitor"), ("ray_client_server", "ray client server"))


def process_role(cmdline: list[str], root: bool = False) -> str:
    """The role of a process in a measured tree, from its command line: ``driver`` for the
    command itself, else a Ray component (raylet, gcs, ray worker, dashboard, ...) or the
    executable's name."""
    if root:
        return "driver"
    if not cmdline:
        return "unknown"
    if cmdline[0].startswith("ray::"):
        return RAY_TITLES.get(cmdline[0].split(".")[0], "ray worker")
    exe = Path(cmdline[0]).name
    if exe in RAY_BINARIES:  # before the scripts: the raylet's arguments name the worker's script
        return RAY_BINARIES[exe]
    script = next((a for a in cmdline[1:] if a.endswith(".py")), "")
    return next((role for key, role in RAY_SCRIPTS if script.endswith(key)), exe)


class _TreePeaks:
    """Peaks over a process tree, sampled: the summed RssAnon / RssFile, and optionally each
    process's own RssAnon with its role (``process_role``) and, for Ray workers, its title."""

    def __init__(self, root: int, per_process: bool):
        self.root, self.per_process = root, per_process
        self.anon = self.file = 0
        self.procs: dict[int, dict] = {}

    def sample(self) -> None:
        pids = _tree(self.root)
        anon = {p: _status_kb(p, "RssAnon") for p in pids}
        self.anon = max(self.anon, sum(anon.values()))
        self.file = max(self.file, sum(_status_kb(p, "RssFile") for p in pids))
        if not self.per_process:
            return
        for p, kb in anon.items():
            # read each time: a Ray worker retitles itself (ray::IDLE, then its actor's name), and a
            # forked child shows its parent's command line, and counts the parent's copy-on-write
            # pages as its RssAnon, until it execs: a new role starts the peak anew
            cmd = _cmdline(p)
            if not cmd:
                continue
            rec = self.procs.setdefault(p, {"pid": p, "role": "", "peak_kb": 0})
            role = process_role(cmd, p == self.root)
            if role != rec["role"]:
                rec.update(role=role, peak_kb=0)
            if rec["role"] == "ray worker" and cmd[0] not in ("ray::IDLE", ""):
                rec["title"] = cmd[0].split(".")[0][:80]  # its actor (ray::MapWorker(...)) or task, without the method
            rec["peak_kb"] = max(rec["peak_kb"], kb)

    def per_process_report(self) -> dict:
        procs = sorted(self.procs.values(), key=lambda r: -r["peak_kb"])
        rows = [{**{k: v for k, v in r.items() if k != "peak_kb"}, "peak_rss_anon_mib": round(r["peak_kb"] / 1024, 1)} for r in procs]
        by_role: dict[str, dict] = {}
        for r in rows:
            b = by_role.setdefault(r["role"], {"processes": 0, "peak_rss_anon_mib": 0.0})
            b["processes"] += 1
            b["peak_rss_anon_mib"] = max(b["peak_rss_anon_mib"], r["peak_rss_anon_mib"])
        titles: dict[str, float] = {}
        for r in rows:
            if "title" in r:
                titles[r["title"]] = max(titles.get(r["title"], 0.0), r["peak_rss_anon_mib"])
        return {"per_process": rows, "peak_rss_anon_by_role": by_role, "peak_rss_anon_by_ray_worker_title": titles}


def run_measured(cmd: list[str], *, env: dict | None = None, interval: float = 0.05, cwd: Path | None = None,
                 per_process: bool = False) -> dict:
    """Run ``cmd`` as a process; wall time and peak RssAnon / RssFile over its process tree.
    ``per_process``: also each process's own peak RssAnon with its role (``per_process``,
    largest first) and the largest per role (``peak_rss_anon_by_role``: driver, ray worker,
    raylet, gcs, ...)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, cwd=cwd or ROOT)
    peaks = _TreePeaks(proc.pid, per_process)
    done = threading.Event()

    def poll():
        while not done.is_set():
            peaks.sample()
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
        "peak_rss_anon_mib": round(peaks.anon / 1024, 1),
        "peak_rss_file_mib": round(peaks.file / 1024, 1),
        "load_average_after": os.getloadavg(),
    }
    if per_process:
        res.update(peaks.per_process_report())
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


# ---- the rows with the defaults a user types (the SID index built and used) ---------------------
TARGET_RSS_ANON_BYTES = 2 * 10**9  # issue 25: every row on the large set within 2 GB of RssAnon
INDEXED_STEPS = ("build_indexed", "assign_indexed_all_known", "assign_indexed_10pct_new", "cold_10k",
                 "ray_assign_indexed_w1", "ray_assign_indexed_w2")
OTHER_STEPS = ("compare", "balanced", "equal", "gemm", "cold")
DEFAULT_STEPS = ("build", "assign", *INDEXED_STEPS, *OTHER_STEPS)
LARGE_ROWS = ("build", "assign", "build_indexed", "assign_indexed_all_known", "assign_indexed_10pct_new", "cold_10k")
COLD_NEW = 10_000
RAY_STEP = re.compile(r"ray_assign_indexed_w(\d+)$")


def _ray_workers(steps: set[str]) -> list[int]:
    return sorted(int(m.group(1)) for m in map(RAY_STEP.match, steps) if m)


def _linked_copy(base: Path, dst: Path) -> None:
    """``dst``: ``base``'s files hard-linked (an update writes beside and replaces, never edits a
    file), its JSON manifest and README copied; ``base`` stays usable."""
    for p in sorted(base.rglob("*")):
        q = dst / p.relative_to(base)
        if p.is_dir():
            q.mkdir(parents=True, exist_ok=True)
        else:
            q.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copy2 if p.suffix == ".json" or p.name == "README.md" else os.link)(p, q)


def cold_start_row(scratch: Path, big: Path, tok_idx: Path, new: int = COLD_NEW) -> dict:
    """``assign NEW --ids IDS --tokenizer COPY --update`` of ``new`` items into the indexed
    tokenizer of the large set, on a hard-linked copy with its files dropped from the page cache.
    The process is ``bench_cold_start_io.py``'s child (the CLI's ``assign`` in process, its
    /proc/self/io counters after the imports); measured whole by ``run_measured``. The new items
    are rows spread over the large set (row r = k * (n // new)) under ids n + r, which the index
    does not hold: each has an indexed item's embedding, so the suffix policy places it after it."""
    from bench_cold_start_io import _page_cache_evict, _resident_bytes

    n = np.load(big, mmap_mode="r").shape[0]
    rows = np.arange(new, dtype=np.int64) * (n // new)
    npy, ids = scratch / f"cold_new_{new}.npy", scratch / f"cold_new_{new}.ids.npy"
    np.save(npy, np.ascontiguousarray(np.load(big, mmap_mode="r")[rows]))
    np.save(ids, n + rows)
    run = scratch / "cold_10k"
    shutil.rmtree(run, ignore_errors=True)
    tok = run / "tok"
    _linked_copy(tok_idx, tok)
    before = {p: p.stat().st_size for p in tok.rglob("*") if p.is_file()}
    for p in before:
        _page_cache_evict(p)
    evicted = sum(_resident_bytes(p) or 0 for p in before)
    result = run / "io.json"
    row = run_measured([PY, Path(__file__).with_name("bench_cold_start_io.py"), "--child", tok, "--mode", "memory",
                        "--npy", npy, "--ids", ids, "--result", result], env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    if row["returncode"] != 0:
        return row
    io = json.loads(result.read_text())
    read = sum(_resident_bytes(p) or 0 for p in before if p.name not in ("manifest.json", "README.md"))
    added = sum(p.stat().st_size for p in tok.rglob("*") if p.is_file() and p not in before)
    row.update(new_items=new, io_after_imports={k: io[k] for k in ("rchar", "wchar", "read_bytes", "write_bytes", "hashed_bytes")},
               assign_seconds_after_imports=round(io["wall_s"], 2), dir_bytes=sum(before.values()),
               dir_read_bytes=read if evicted == 0 else None, added_bytes=added)
    return row


def indexed_rows(R: dict, steps: set[str], scratch: Path, big: Path, build_args: list, record) -> None:
    """The indexed rows of ``steps`` (module docstring), each stored by ``record(name, row)``."""
    from bench_assign_indexed import _same_table, make_inputs

    from tokenizer_kit.build._artifact import TOKENIZER

    tok_idx = scratch / "tok_idx"
    if "build_indexed" in steps:
        indexing = [a for a in build_args if a != "--no-index"]  # build-codebook indexes by default
        record("build_indexed", run_measured(_cli("build-codebook", big, "--out", tok_idx, *indexing)))
    todo = [s for s in INDEXED_STEPS[1:] if s in steps] + [f"ray_assign_indexed_w{w}" for w in _ray_workers(steps)]
    todo = list(dict.fromkeys(todo))
    if todo and not TOKENIZER.committed(tok_idx):
        for s in todo:
            record(s, {"skipped": "no indexed tokenizer in the scratch directory: run the build_indexed step"})
        return
    n, d = np.load(big, mmap_mode="r").shape
    mix, share = None, None
    if "assign_indexed_10pct_new" in steps or _ray_workers(steps):
        mix = make_inputs(scratch, n, d)[1]  # row r under id n + r (new) when r % 10 == 9, else r (known)
        share = float((np.load(mix) >= n).mean())
    local = scratch / "assign_indexed_10pct_new.parquet"
    for key, ids in (("assign_indexed_all_known", ["--row-ids"]), ("assign_indexed_10pct_new", ["--ids", mix])):
        if key in steps:
            row = run_measured(_cli("assign", big, *ids, "--tokenizer", tok_idx, "--out", scratch / f"{key}.parquet", "--format", "json"))
            record(key, {**row, "new_share": share} if key.endswith("new") else row)
    for w in _ray_workers(steps):
        out = scratch / f"ray_assign_indexed_w{w}"
        shutil.rmtree(out, ignore_errors=True)  # a shard directory left by another run would be resumed
        row = run_measured(_cli("assign", big, "--ids", mix, "--tokenizer", tok_idx, "--out", out, "--engine", "ray",
                                "--workers", w, "--format", "json"), per_process=True)
        same = _same_table(local, out) if row["returncode"] == 0 and local.exists() else None
        row.update(workers=w, new_share=share, table_equals_local=same, local_table_from_this_run="assign_indexed_10pct_new" in steps)
        record(f"ray_assign_indexed_w{w}", row)
    if "cold_10k" in steps:
        record("cold_10k", cold_start_row(scratch, big, tok_idx))


def summary(R: dict) -> dict:
    """Every row on the large set against the memory target, and the indexed assign's wall time
    over the unindexed one (``same_run``: both rows measured by one run of this script)."""
    rows = {}
    for key in [*LARGE_ROWS, *sorted(k for k in R if RAY_STEP.match(k))]:
        r = R.get(key) or {}
        if "peak_rss_anon_mib" not in r:
            continue
        rows[key] = {"peak_rss_anon_mib": r["peak_rss_anon_mib"], "wall_seconds": r["wall_seconds"], "ok": r["returncode"] == 0,
                     "within_2gb": r["returncode"] == 0 and r["peak_rss_anon_mib"] * 2**20 <= TARGET_RSS_ANON_BYTES}
        if "peak_rss_anon_by_role" in r:
            rows[key]["largest_process_mib"] = max(v["peak_rss_anon_mib"] for v in r["peak_rss_anon_by_role"].values())
            rows[key]["ray_worker_peak_mib"] = r["peak_rss_anon_by_role"].get("ray worker", {}).get("peak_rss_anon_mib")
            rows[key]["table_equals_local"] = r.get("table_equals_local")
    out = {"target_rss_anon_bytes": TARGET_RSS_ANON_BYTES, "rows": rows, "wall_over_unindexed_assign": {}}
    base = R.get("assign") or {}
    for key in [k for k in rows if k.startswith(("assign_indexed", "ray_assign_indexed"))]:
        if base.get("returncode") == 0 and rows[key]["ok"]:
            ratio = R[key]["wall_seconds"] / base["wall_seconds"]
            out["wall_over_unindexed_assign"][key] = {
                "ratio": round(ratio, 3), "within_1_5x": ratio <= 1.5,
                "same_run": base.get("run_started_utc") is not None and base.get("run_started_utc") == R[key].get("run_started_utc")}
    return out


# ---- the run -----------------------------------------------------------------------------------
def _parse_args() -> argparse.Namespace:
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
    ap.add_argument("--steps", default=",".join(DEFAULT_STEPS),
                    help="comma-separated steps (module docstring); also imports, and ray_assign_indexed_wN for N workers")
    ap.add_argument("--gpu", action="store_true", help="also the GPU row: 3 x 8192 on 10M x 512 with --device cuda")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale_cpu.json"))
    ap.add_argument("--cold-repeats", type=int, default=2, help="segment/rewrite runs of the cold-start row (best kept)")
    ap.add_argument("--merge", action="store_true", help="keep the rows of an existing --out and replace only the steps run now")
    args = ap.parse_args()
    unknown = [s for s in args.steps.split(",") if s not in (*DEFAULT_STEPS, "imports") and not RAY_STEP.match(s)]
    if unknown:
        ap.error(f"unknown steps {unknown}: expected a comma-separated list of {', '.join(DEFAULT_STEPS)}, imports "
                 "or ray_assign_indexed_wN")
    return args


def _portable_text(res: dict, scratch: Path) -> str:
    """The results as JSON without this machine's paths: the scratch directory as
    ``<scratch>/NAME``, the interpreter as ``<venv>/bin/python`` (or ``python``), then ``portable``."""
    from _paths import portable

    py = f"<venv>/bin/{Path(PY).name}" if sys.prefix != sys.base_prefix else "python"
    text = json.dumps(res).replace(str(scratch), f"<scratch>/{scratch.name}").replace(PY, py)
    return json.dumps(portable(json.loads(text)), indent=1)


def _start(args: argparse.Namespace, steps: set[str]) -> dict:
    """The results record: this run's machine and arguments; with ``--merge`` the rows of the
    existing ``--out`` (the ones this run replaces are kept under ``earlier_runs``)."""
    from _machine import machine_info
    from _paths import portable

    res: dict = {"benchmark": "scale", "machine": machine_info(), "args": portable(vars(args)), "rows": {},
                 "run_started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if args.merge and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        res["rows"] = old.get("rows", {})
        replaced = {k: v for k, v in res["rows"].items() if k in steps or (k == "gpu" and args.gpu)}
        res["earlier_runs"] = old.get("earlier_runs", []) + [{"machine": old.get("machine"), "args": old.get("args"),
                                                              "rows": sorted(old.get("rows", {})), "replaced_rows": replaced}]
        for key in ("generated", "generated_note"):
            if key in old:
                res[key] = old[key]
    return res


def _inputs(args: argparse.Namespace, steps: set[str], scratch: Path, res: dict) -> tuple[Path, Path]:
    """The large set and the comparison set, generated when a step needs one and it is missing."""
    from tokenizer_kit.io import write_clustered_npy

    def name(n: int, d: int) -> str:
        return f"gen_{n // 1_000_000}m_{d}.npy" if n % 1_000_000 == 0 else f"gen_{n}_{d}.npy"

    big = scratch / name(args.n, args.dim)
    cmp_ = scratch / name(args.n_compare, args.dim)
    on_big = {"build", "assign", "equal", "gemm", *INDEXED_STEPS} | {s for s in steps if RAY_STEP.match(s)}
    needs = {big: on_big, cmp_: {"compare", "balanced"}}
    for path, n, seed in ((big, args.n, 1), (cmp_, args.n_compare, 0)):
        if not steps & needs[path]:
            continue
        if not path.exists() or np.load(path, mmap_mode="r").shape != (n, args.dim):
            t = time.perf_counter()
            write_clustered_npy(path, n, args.dim, seed=seed)
            res.setdefault("generated", {})[path.name] = time.perf_counter() - t
    return big, cmp_


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "naive":
        naive_faiss_main(*sys.argv[2:4])
        return
    args = _parse_args()
    steps = set(args.steps.split(","))
    scratch = Path(args.scratch).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    res = _start(args, steps)
    R = res["rows"]

    def save():
        res["machine"]["load_average_end"] = os.getloadavg()
        res["summary"] = summary(R)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(_portable_text(res, scratch))

    def record(key: str, row: dict) -> None:
        R[key] = {**row, "run_started_utc": res["run_started_utc"]}
        save()

    big, cmp_ = _inputs(args, steps, scratch, res)
    # generated rows carry no ids (--row-ids numbers them); the build and assign rows are the
    # unindexed ones (--no-index), the indexed rows drop that flag
    build_args = ["--row-ids", "--no-index", "--levels", args.levels, "--codebook-size", args.codebook_size, "--seed", 0,
                  "--format", "json", "--overwrite"]
    if "build" in steps:
        record("build", run_measured(_cli("build-codebook", big, "--out", scratch / "tok_big", *build_args)))
    if "assign" in steps and (scratch / "tok_big").exists():
        record("assign", run_measured(_cli("assign", big, "--row-ids", "--tokenizer", scratch / "tok_big", "--out", scratch / "assign_big.parquet", "--format", "json")))
    indexed_rows(R, steps, scratch, big, build_args, record)
    other_rows(args, steps, scratch, big, cmp_, build_args, R, record)
    save()
    keep = ("wall_seconds", "peak_rss_anon_mib", "ours_over_naive_best", "gemm_share_of_encode", "skipped")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk in keep} if isinstance(v, dict) else v for k, v in R.items()}, indent=1))
    print(json.dumps(res["summary"], indent=1))


def other_rows(args, steps: set[str], scratch: Path, big: Path, cmp_: Path, build_args: list, R: dict, record) -> None:
    """The comparison with the naive script, the balanced build, equal SIDs, GEMM share, the
    segment/rewrite cold start, the imports' floor and the GPU row."""
    from tokenizer_kit.io import write_clustered_npy

    if "compare" in steps:
        ours, naive = [], []
        for _ in range(args.repeats):
            naive.append(run_measured([PY, __file__, "naive", str(cmp_), str(scratch / "naive_codes.npy")]))
            ours.append(run_measured(_cli("build-codebook", cmp_, "--out", scratch / "tok_cmp", *build_args)))
        best_o = min(r["wall_seconds"] for r in ours)
        best_n = min(r["wall_seconds"] for r in naive)
        row = {"ours": ours, "naive_faiss": naive, "ours_over_naive_best": best_o / best_n}
        for i, (o, nv) in enumerate(zip(ours, naive)):
            row[f"ratio_run{i}"] = o["wall_seconds"] / nv["wall_seconds"]
        record("compare", row)
    if "balanced" in steps:
        record("balanced", run_measured(_cli("build-codebook", cmp_, "--out", scratch / "tok_cmp_bal", "--balanced", *build_args)))
    if "equal" in steps:
        record("equal", sids_equal(np.ascontiguousarray(np.load(big, mmap_mode="r")[: args.n_equal]), scratch))
    if "gemm" in steps:
        record("gemm", gemm_share(np.ascontiguousarray(np.load(big, mmap_mode="r")[: args.n_gemm]), args.codebook_size, args.levels))
    if "cold" in steps:
        from bench_cold_start import cold_start_benchmark  # track indexer's benchmark

        cold = cold_start_benchmark(args.n, 10_000, workdir=scratch / "cold", d=args.dim, sizes=[args.codebook_size] * args.levels, repeats=args.cold_repeats, cli=True)
        cold.pop("machine", None)
        record("cold", cold)
    if "imports" in steps:  # the RssAnon a verb holds before it reads any data (its imports)
        tiny = scratch / "imports_tiny.npy"
        np.save(tiny, np.zeros((4, args.dim), np.float32))  # no ids beside it: the verb stops at open_embeddings
        record("imports", {
            "build_codebook_until_input_error": run_measured(_cli("build-codebook", tiny, "--out", scratch / "imports_tok", "--format", "json")),
            "python_numpy_faiss_pyarrow": run_measured([PY, "-c", "import numpy, faiss, pyarrow.parquet, safetensors"]),
            "python_torch": run_measured([PY, "-c", "import torch"]),
            "note": "build-codebook imports torch through pipeline/_stage_configs.py -> alignment, companion, features (their configs live beside torch modules)",
        })
        tiny.unlink()
    if args.gpu:
        g = scratch / "gen_10m_512.npy"
        if not g.exists():
            write_clustered_npy(g, 10_000_000, 512, seed=2)
        record("gpu", run_measured(_cli("build-codebook", g, "--out", scratch / "tok_gpu", "--levels", 3, "--codebook-size", 8192, "--device", "cuda", "--seed", 0, "--format", "json", "--overwrite")))
    elif "gpu" not in R or "skipped" in R["gpu"]:
        R["gpu"] = {"skipped": "no GPU on this machine: run with --gpu on a CUDA machine with faiss-gpu (make install-gpu); target 3 x 8192 on 10M x 512 under 180 s on one H100"}


if __name__ == "__main__":
    main()
