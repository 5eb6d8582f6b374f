"""Bytes a cold start reads and writes: ``assign NEW --update`` of ``--new`` items into an index of M items.

For each M of ``--items`` a tokenizer directory with an M-item suffix index is built once
(``bench_cold_start.build_base``: RQ-Kmeans trained on clustered data, the base's codes drawn
from a Zipf-like law; cached in ``--workdir``), hard-linked into a run directory, its files
dropped from the page cache, and ``tokenizer-kit assign NEW --ids IDS --tokenizer RUN --update``
run in a fresh process (the CLI's own code, in process after the imports). Counted:

* ``rchar`` / ``wchar``: bytes the process read and wrote through system calls (page cache
  included: what a warm machine still pays), ``read_bytes`` / ``write_bytes`` (the disk);
* ``hashed_bytes``: bytes checksummed (``sha256_file``);
* ``dir_read_bytes``: pages of the tokenizer directory's files in the page cache after the
  run, having been evicted before it (read through ``read`` or a memory map, read-ahead
  included), plus the bytes of the files the run added. Linux only; ``null`` elsewhere. A touch
  of a memory-mapped page reads the kernel's read-around window with it (``read_ahead_kb`` of
  the disk, 8 MB on some virtual disks) unless the mapping is advised random, as the index's
  files are when a cold start loads them: then a touched page is read alone, and what is
  counted is the pages the update touched (4 KB each, however few bytes of it were used);
  ``read_per_file`` gives [bytes read, file size] per file.

Modes: ``memory`` (no ``--out``: the in-memory cold start) and ``stream`` (``--out``: the
streamed cold start). ``--segments 0,1``: each mode into the base as built, and into the base after
one earlier update of ``--new`` other items (an index that already holds a segment: its
arrays are read through the segment's overlay). ``--checkout DIR`` runs another source tree (e.g. ``git archive`` of
an earlier commit) with the same data, for a before/after pair:

    python benchmarks/bench_cold_start_io.py --items 200000,1000000 --new 10000 --out benchmarks/results/cold_start_io.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _paths import RESULTS, scratch  # noqa: E402


def _page_cache_evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _resident_bytes(path: Path) -> int | None:
    """Bytes of ``path`` in the page cache (``mincore`` over a read-only map); None if unknown."""
    size = path.stat().st_size
    if size == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    page = mmap.PAGESIZE
    vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
                return None
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)
    return min(sum(v & 1 for v in vec) * page, size)


def _child(args: argparse.Namespace) -> None:
    """One ``assign --update`` in this process, measured after the imports."""
    import pyarrow.parquet  # noqa: F401 (imports are not the cold start's I/O)
    import safetensors.numpy  # noqa: F401

    import tokenizer_kit.build._tokenizer  # noqa: F401 (the modules that checksum, patched below)
    import tokenizer_kit.io._manifest  # noqa: F401
    from tokenizer_kit.cli.app import app

    hashed = [0]

    def counting(fn):
        def wrapped(path, *a, **k):
            hashed[0] += os.stat(path).st_size
            return fn(path, *a, **k)
        return wrapped

    for name, mod in list(sys.modules.items()):
        if name.startswith("tokenizer_kit") and callable(getattr(mod, "sha256_file", None)):
            setattr(mod, "sha256_file", counting(getattr(mod, "sha256_file")))
    cmd = ["assign", args.npy, "--ids", args.ids, "--tokenizer", args.child, "--update", "--format", "json"]
    if args.mode == "stream":
        cmd += ["--out", str(Path(args.child).parent / "lookup.parquet")]
    io0, t0 = _proc_io(), time.perf_counter()
    try:
        code = app(cmd, standalone_mode=False)
    except SystemExit as e:
        code = e.code
    if code not in (0, None):
        raise SystemExit(f"assign failed (exit {code})")
    wall, io1 = time.perf_counter() - t0, _proc_io()
    res = {k: io1[k] - io0[k] for k in io0}
    res.update(wall_s=wall, hashed_bytes=hashed[0])
    Path(args.result).write_text(json.dumps(res))


def _proc_io() -> dict[str, int]:
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(":") for line in f)}


def _build(workdir: Path, n: int, d: int, sizes: list[int], src: Path) -> Path:
    code = ("import sys, json; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from bench_cold_start import build_base; "
            "p, _ = build_base(Path(sys.argv[2]), int(sys.argv[3]), d=int(sys.argv[4]), sizes=json.loads(sys.argv[5])); print(p)")
    out = subprocess.run([sys.executable, "-c", code, str(HERE), str(workdir), str(n), str(d), json.dumps(sizes)],
                         check=True, capture_output=True, text=True, env=_env(src))
    return Path(out.stdout.strip().splitlines()[-1])


def _env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}


def _update(tok: Path, run: Path, npy: Path, ids: Path, mode: str, src: Path) -> dict:
    """One ``assign --update`` in a fresh process; its counters."""
    result = run / "result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(tok), "--mode", mode, "--npy", str(npy),
           "--ids", str(ids), "--result", str(result)]
    subprocess.run(cmd, check=True, env=_env(src), capture_output=True, text=True)
    return json.loads(result.read_text())


def _run(base: Path, run: Path, new: tuple[Path, Path, Path], mode: str, src: Path, segments: int = 0) -> dict:
    """The measured update into a copy of ``base``; ``segments`` earlier updates (of other
    new items, unmeasured) first, so the index it updates holds that many segments."""
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    tok = run / "tok"
    tok.mkdir()
    for p in base.iterdir():  # a copy sharing the base's immutable files; the manifest is replaced, never edited
        (shutil.copy2 if p.name.endswith(".json") or p.name == "README.md" else os.link)(p, tok / p.name)
    for k in range(segments):
        ids = run / f"prior-{k}.ids.npy"  # the same vectors under other ids: new items again
        np.save(ids, np.load(new[1]) + (k + 1) * 10**9)
        _update(tok, run, new[0], ids, mode, src)
    before = {p.name: p.stat().st_size for p in tok.iterdir()}
    for p in tok.iterdir():
        _page_cache_evict(p)
    evicted = sum(_resident_bytes(p) or 0 for p in tok.iterdir())
    res = _update(tok, run, new[0], new[1], mode, src)
    read, added, per_file = 0, 0, {}
    for p in sorted(tok.iterdir()):
        if p.name.startswith("."):
            continue
        if p.name in before and p.name not in ("manifest.json", "README.md"):
            r = _resident_bytes(p) or 0
            per_file[p.name] = [r, before[p.name]]
            read += r
        else:
            added += p.stat().st_size
    res.update(mode=mode, dir_bytes=sum(before.values()), dir_read_bytes=read if evicted == 0 else None, added_bytes=added,
               read_per_file=per_file if evicted == 0 else None,
               files_after=len(list(tok.iterdir())), segments_before=segments)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", default="200000,1000000", help="Catalogue sizes M, comma-separated.")
    ap.add_argument("--new", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--codebook-sizes", default="256,256,256")
    ap.add_argument("--modes", default="memory,stream")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--segments", default="0,1",
                    help="Segments the index holds before the measured update (earlier updates of other items), comma-separated.")
    ap.add_argument("--checkout", default=None, help="Run this source tree (a checkout of another commit) instead of this one.")
    ap.add_argument("--label", default=None, help="Name of this run in the JSON (default: after, or before with --checkout).")
    ap.add_argument("--workdir", default=str(scratch("cold_start_io")))
    ap.add_argument("--out", default=str(RESULTS / "cold_start_io.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="memory", help=argparse.SUPPRESS)
    ap.add_argument("--npy", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ids", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    src = Path(args.checkout).resolve() if args.checkout else ROOT
    label = args.label or ("before" if args.checkout else "after")
    sizes = [int(k) for k in args.codebook_sizes.split(",")]
    workdir = Path(args.workdir) / label
    workdir.mkdir(parents=True, exist_ok=True)
    from tokenizer_kit.io._synthetic import make_clustered_embeddings

    npy = workdir / f"new-{args.new}-d{args.dim}.npy"
    np.save(npy, make_clustered_embeddings(args.new, args.dim, seed=1))
    ids = workdir / f"new-{args.new}.ids.npy"  # int64, as the index's ids
    np.save(ids, np.arange(10**12, 10**12 + args.new, dtype=np.int64))
    rows = []
    for n in [int(v) for v in args.items.split(",")]:
        base = _build(workdir, n, args.dim, sizes, src)
        for mode in args.modes.split(","):
            for segs in [int(v) for v in args.segments.split(",")]:
                for rep in range(args.repeats):
                    r = _run(base, workdir / "run", (npy, ids), mode, src, segs)
                    r.update(items=n, repeat=rep)
                    rows.append(r)
                    print(json.dumps({k: r[k] for k in ("items", "mode", "segments_before", "dir_bytes", "rchar", "wchar", "hashed_bytes",
                                                         "dir_read_bytes", "added_bytes", "wall_s")}),
                          flush=True)
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data.update(benchmark="cold_start_io", new_items=args.new, dim=args.dim, codebook_sizes=sizes,
                note="rchar/wchar: bytes through read/write system calls after the imports (the input .npy included); "
                     "dir_read_bytes: page-cache pages of the directory after the run, read-around of memory-mapped files included")
    data.setdefault("runs", {})[label] = rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
