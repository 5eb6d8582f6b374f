"""Cold start into a large index: a segment commit (O(new items)) against the full rewrite.

Builds (once, cached in ``--workdir``) a tokenizer directory with an ``n_items`` SID index
(suffix policy), then cold-starts ``n_new`` new items into a hard-linked copy of it, each
run in a fresh process, timing the phases and counting the bytes written:

* ``segment``: load tokenizer + index, assign, ``save`` = append one segment and replace
  the manifest (what ``assign --update`` does now);
* ``rewrite``: the same load and assign, then the whole directory rewritten (what
  ``assign --update`` did before segments: ``compact``);
* ``cli``: ``tokenizer-kit assign NEW --update`` as a whole process (imports included).

Data (documented generator): the tokenizer (RQ-Kmeans, ``--codebook-sizes``) is trained on
``make_clustered_embeddings(train_points, d, seed)``; new items are
``make_clustered_embeddings(n_new, d, seed + 1)`` encoded by it. The base's codes are drawn
per level from a Zipf-like law (p_k ~ 1/k^0.8, as in ``trie_scale.py``), not encoded: encoding
10M x 256 vectors would take minutes and only the index's shape matters here. Ids are int64
(base 0..n-1, new from 10^12 on). Bytes written: ``write_bytes`` of ``/proc/self/io``
around the commit (page-dirtying time), and the sizes of the files the commit added.

    python benchmarks/bench_cold_start.py --items 10000000 --new 10000 --workdir benchmarks/.scratch/indexer

``cold_start_benchmark(...)`` returns the same JSON dict (importable from
``benchmarks/bench_scale.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

__all__ = ["cold_start_benchmark", "build_base"]


def _io() -> dict[str, int]:
    try:
        with open("/proc/self/io") as f:
            return {k: int(v) for k, v in (line.split(":") for line in f)}
    except OSError:
        return {}


def _cpu_s() -> float:
    """User + system CPU seconds of this process (less sensitive than wall time to a shared machine's load)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _zipf_codes(n: int, sizes: list[int], rng, chunk: int = 1 << 22) -> np.ndarray:
    out = np.empty((n, len(sizes)), np.int64)
    for l, k in enumerate(sizes):
        p = 1.0 / np.arange(1, k + 1) ** 0.8
        cdf = np.cumsum(p / p.sum())
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            out[s : s + m, l] = np.minimum(np.searchsorted(cdf, rng.random(m)), k - 1)
    return out


def build_base(workdir: Path, n_items: int, *, d: int = 256, sizes=(256, 256, 256), train_points: int = 20000, seed: int = 0) -> tuple[Path, dict]:
    """A tokenizer directory with an ``n_items`` suffix index (cached by its parameters)."""
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import IndexConfig, SIDIndex
    from tokenizer_kit.build._artifact import TOKENIZER
    from tokenizer_kit.io._synthetic import make_clustered_embeddings

    path = Path(workdir) / f"base-n{n_items}-d{d}-{'x'.join(map(str, sizes))}-s{seed}"
    info_path = path.parent / (path.name + ".json")
    if TOKENIZER.committed(path) and info_path.exists():
        return path, json.loads(info_path.read_text())
    t0 = time.perf_counter()
    x = make_clustered_embeddings(train_points, d, seed=seed)
    tok = SemanticTokenizer.build(x, codebook_sizes=list(sizes), seed=seed, index=False)  # its items are replaced below
    train_s = time.perf_counter() - t0
    tok.item_ids = np.arange(n_items, dtype=np.int64)
    tok.codes = _zipf_codes(n_items, list(sizes), np.random.default_rng(seed))
    t0 = time.perf_counter()
    idx = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy="suffix"))
    index_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx.save(tok, path)
    save_s = time.perf_counter() - t0
    info = {"train_seconds": train_s, "index_seconds": index_s, "save_seconds": save_s,
            "dir_bytes": sum(p.stat().st_size for p in path.iterdir()), "max_suffix": idx.stats["max_suffix"],
            "collision_rate_codes": idx.stats["collision_rate_codes"]}
    info_path.write_text(json.dumps(info, indent=2))
    return path, info


def _link_copy(src: Path, dst: Path) -> None:
    """A copy sharing the base's (immutable) files: a commit replaces the manifest, never edits a file."""
    from tokenizer_kit.build._artifact import TOKENIZER
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for p in src.iterdir():
        if p.name in TOKENIZER.manifest_names:
            shutil.copy2(p, dst / p.name)
        else:
            os.link(p, dst / p.name)


def _new_items(n_new: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from tokenizer_kit.io._synthetic import make_clustered_embeddings

    return np.arange(10**12, 10**12 + n_new, dtype=np.int64), make_clustered_embeddings(n_new, d, seed=seed + 1)


def _child(run_dir: Path, mode: str, n_new: int, d: int, seed: int) -> dict:
    """One cold start in this (fresh) process; phases timed, bytes counted."""
    ids, x = _new_items(n_new, d, seed)
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import SIDIndex
    from tokenizer_kit.build._artifact import TOKENIZER

    before = {p.name for p in run_dir.iterdir()}
    cpu0 = _cpu_s()
    t = [time.perf_counter()]
    # segment: as `assign --update` loads (item ids only; SIDs read through the index's trie)
    tok = SemanticTokenizer.from_pretrained(run_dir, load_sids="ids" if mode == "segment" else True)
    t.append(time.perf_counter())
    idx = SIDIndex.from_tokenizer(tok)
    t.append(time.perf_counter())
    new, _, summary = idx.assign(tok, ids, x)
    t.append(time.perf_counter())
    io0 = _io()
    if mode == "segment":
        new.save(tok, run_dir)
    else:
        new.compact(tok, run_dir)
    t.append(time.perf_counter())
    cpu1 = _cpu_s()
    io1 = _io()
    added = sorted({p.name for p in run_dir.iterdir()} - before)
    return {
        "mode": mode,
        "load_tokenizer_s": t[1] - t[0], "load_index_s": t[2] - t[1], "assign_s": t[3] - t[2], "commit_s": t[4] - t[3],
        "total_s": t[4] - t[0], "cpu_s": cpu1 - cpu0,
        "commit_write_bytes": io1.get("write_bytes", 0) - io0.get("write_bytes", 0),
        "commit_wchar": io1.get("wchar", 0) - io0.get("wchar", 0),
        "new_files": {n: (run_dir / n).stat().st_size for n in added if not n.startswith(".")},
        "manifest_bytes": TOKENIZER.manifest_path(run_dir).stat().st_size,
        "collided": summary["collided"], "index_items_after": summary["index_items"],
        "peak_rss_mb": _rss_peak_mb(),
    }


def _run_child(run_dir: Path, mode: str, n_new: int, d: int, seed: int) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(run_dir), "--mode", mode, "--new", str(n_new), "--dim", str(d), "--seed", str(seed)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_cli(run_dir: Path, n_new: int, d: int, seed: int, workdir: Path) -> dict:
    ids, x = _new_items(n_new, d, seed)
    npy = workdir / f"new-{n_new}-d{d}-s{seed}.npy"
    np.save(npy, x)
    npy.with_suffix(".ids.txt").write_text("\n".join(map(str, ids.tolist())) + "\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "tokenizer_kit.cli.app", "assign", str(npy), "--ids", str(npy.with_suffix(".ids.txt")),
           "--tokenizer", str(run_dir), "--update", "--format", "json"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    res = json.loads(out.stdout)
    return {"mode": "cli", "total_s": wall, "updated": res.get("updated"), "index_items_after": res.get("index_items")}


def cold_start_benchmark(n_items: int = 10_000_000, n_new: int = 10_000, *, workdir: str | os.PathLike | None = None,
                         d: int = 256, sizes=(256, 256, 256), seed: int = 0, repeats: int = 2, cli: bool = True) -> dict:
    """Cold start of ``n_new`` items into an ``n_items`` index: segment commit vs full rewrite (see the module docstring)."""
    from _machine import machine_info

    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="bench_cold_start_"))
    workdir.mkdir(parents=True, exist_ok=True)
    base, base_info = build_base(workdir, n_items, d=d, sizes=sizes, seed=seed)
    runs = []
    modes = ["segment", "rewrite"] * repeats + (["cli"] * repeats if cli else [])
    for k, mode in enumerate(modes):
        run_dir = workdir / f"run-{mode}"
        _link_copy(base, run_dir)
        r = _run_cli(run_dir, n_new, d, seed, workdir) if mode == "cli" else _run_child(run_dir, mode, n_new, d, seed)
        r["repeat"] = k // 2 if mode != "cli" else k - 2 * repeats
        runs.append(r)
        shutil.rmtree(run_dir)
    seg = [r for r in runs if r["mode"] == "segment"]
    rew = [r for r in runs if r["mode"] == "rewrite"]
    best = lambda rs, key: min(r[key] for r in rs)  # noqa: E731
    summary = {
        "segment_total_s": best(seg, "total_s"), "rewrite_total_s": best(rew, "total_s"),
        "segment_cpu_s": best(seg, "cpu_s"), "rewrite_cpu_s": best(rew, "cpu_s"),
        "segment_commit_s": best(seg, "commit_s"), "rewrite_commit_s": best(rew, "commit_s"),
        "segment_commit_write_bytes": best(seg, "commit_write_bytes"), "rewrite_commit_write_bytes": best(rew, "commit_write_bytes"),
        "segment_file_bytes_per_new_item": sum(seg[0]["new_files"].values()) / n_new,
        "target_total_s": 5.0,
    }
    if cli:
        summary["cli_total_s"] = min(r["total_s"] for r in runs if r["mode"] == "cli")
    return {
        "benchmark": "cold_start", "machine": machine_info(), "items": n_items, "new_items": n_new, "dim": d,
        "codebook_sizes": list(sizes), "policy": "suffix", "base": base_info, "runs": runs, "summary": summary,
        "note": "best of the repeats; each run a fresh process on a hard-linked copy of the base (page cache warm); "
                "cpu_s: user + system seconds of the measured phases (the process may use both cores)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=10_000_000)
    ap.add_argument("--new", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--codebook-sizes", default="256,256,256")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-cli", action="store_true")
    ap.add_argument("--workdir", default=None, help="Where the base index is built and cached (a 10M index takes ~1 GB).")
    ap.add_argument("--out", default=str(HERE / "results" / "cold_start.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="segment", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(Path(args.child), args.mode, args.new, args.dim, args.seed)))
        return
    res = cold_start_benchmark(args.items, args.new, workdir=args.workdir, d=args.dim,
                               sizes=tuple(int(k) for k in args.codebook_sizes.split(",")), seed=args.seed,
                               repeats=args.repeats, cli=not args.no_cli)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["summary"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
