"""Throughput of the per-item maps on the local engine and on Ray Data, and a projection to 10^9 items.

One command (it writes its data, measures, writes one JSON, deletes the data)::

    nice -n 10 python benchmarks/bench_engines.py --items 2000000 --out benchmarks/results/engines.json

What it measures, each configuration in a fresh process (so every Ray run pays its own
start, as a user's job does), with the machine's load (``/proc/loadavg``) before and after:

* ``assign``: a frozen 3 x 256 tokenizer (trained on a 262,144-row sample) encodes ``--items``
  generated vectors of ``--dim`` (``io.write_clustered_npy``'s mixture, seed 0: the first
  ``--items`` rows of ``--source-npy`` when it exists, the 10M x 256 file bench_scale made;
  written as ``--files`` Parquet files with 65,536-row row groups). Local engine: the single-file
  ``assign`` (``build._streaming.assign_streaming``, the summary metrics folded in the same pass) on all
  cores and on one thread (what a 1-CPU Ray worker computes with: on a loaded 2-core machine two
  threads can be slower than one, so Ray's overhead is read at equal threads). Ray: ``engines.assign_sharded``
  at 1 worker x 1 CPU, 1 worker x all CPUs (the like-for-like overhead against local) and
  2 workers x 1 CPU, shards of 1,048,576 rows. Also the read-only rate of one worker (Parquet
  decode and checks, no encode): the I/O side of the projection.
* ``extract``: the first ``--extract-items`` Office items (title + description, hf MiniLM, 64
  tokens per field) into a feature store with 128-item shards. Local: ``features.extract_features``
  (torch's threads, and ``cpu_threads = 1``); Ray: ``engines._extract.extract_sharded`` at 1 worker x 1 CPU, 1 worker x all CPUs
  and 2 workers x 1 CPU.

Times: ``wall_s`` is the whole call, Ray's start included; ``map_s`` is the sharded map alone
(``run_sharded``: plan, workers, commit) and gives the per-worker rates; ``start_s`` is
``ray.init``. The projection for 10^9 items on N hosts uses only the measured per-worker
rates and the I/O assumptions written into the JSON next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_info  # noqa: E402
from _paths import OFFICE, portable, scratch  # noqa: E402

SHARD = 1 << 20
EXTRACT_SHARD = 128


def _load() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


# ---- data ---------------------------------------------------------------------------------
def generate(scratch: Path, n: int, d: int, files: int, source_npy: Path | None = None) -> Path:
    """``files`` Parquet files of the mixture: the first ``n`` rows of ``source_npy`` when it
    exists, else written via a memory-mapped .npy (deleted after)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tokenizer_kit.io import write_clustered_npy

    out = scratch / f"emb_{n}x{d}"
    done = out / "_done"
    if done.exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    npy = scratch / "gen.npy"
    if source_npy is not None and source_npy.exists():
        x = np.load(source_npy, mmap_mode="r")
        if x.shape[0] < n or x.shape[1] != d:
            raise SystemExit(f"{source_npy} holds {x.shape}, fewer than {n} x {d}")
        npy = None
    else:
        x = write_clustered_npy(npy, n, d, seed=0)
    per = -(-n // files)
    for k, s in enumerate(range(0, n, per)):
        e = min(s + per, n)
        with pq.ParquetWriter(str(out / f"part-{k:03d}.parquet"), pa.schema([("item_id", pa.int64()), ("embedding", pa.list_(pa.float32(), d))])) as w:
            for a in range(s, e, 65536):
                b = min(a + 65536, e)
                blk = np.ascontiguousarray(x[a:b])
                w.write_table(pa.table({"item_id": pa.array(np.arange(a, b, dtype=np.int64)),
                                        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(blk.ravel()), d)}), row_group_size=65536)
    del x
    if npy is not None:
        npy.unlink()
    done.write_text("ok")
    return out


def build_tokenizer(scratch: Path, data: Path, d: int) -> Path:
    import numpy as np

    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.io import Embeddings, open_embeddings
    from tokenizer_kit.build._artifact import TOKENIZER

    tok_dir = scratch / "tok_3x256"
    if TOKENIZER.committed(tok_dir):
        return tok_dir
    s = open_embeddings(data)
    rows = np.arange(min(s.n, 262144))  # the first rows: every chunk of the generator is an i.i.d. draw of the mixture
    x = s.take(rows)
    tok = SemanticTokenizer.build(Embeddings(ids=rows, vectors=x), method="rq-kmeans", codebook_sizes=[256, 256, 256], seed=0,
                                  index=False)  # codes-only assign runs
    tok.save_pretrained(tok_dir, overwrite=True)
    return tok_dir


# ---- one measurement, in its own process ----------------------------------------------------
def _measure(spec: dict) -> dict:
    from tokenizer_kit.engines import EngineConfig

    out = Path(spec["out"])
    shutil.rmtree(out, ignore_errors=True)
    if out.exists():
        out.unlink()
    res: dict = {}
    t0 = time.perf_counter()
    eng = EngineConfig(engine=spec["engine"], workers=spec.get("workers", 1), cpus_per_worker=spec.get("cpus", 1.0))
    if eng.is_ray:
        from tokenizer_kit.engines import ensure_ray

        t = time.perf_counter()
        ensure_ray(eng)
        res["start_s"] = time.perf_counter() - t
    if spec["what"] == "assign":
        from tokenizer_kit import SemanticTokenizer

        tok = SemanticTokenizer.from_pretrained(spec["tokenizer"], load_sids=False)  # as the assign verb loads it
        if eng.is_ray:
            from tokenizer_kit.engines import Sharding, assign_sharded

            r = assign_sharded(tok, spec["data"], out, engine=eng, sharding=Sharding(shard_size=SHARD), summary=False)
            res["map_s"] = r["seconds"]
            res["shard_s"] = r["shard_seconds"]
        else:
            from tokenizer_kit.build._streaming import assign_streaming, encode_batch

            kw = {"encode": lambda t, x: encode_batch(t, x, threads=spec["threads"])} if spec.get("threads") else {}
            r = assign_streaming(tok, spec["data"], out, **kw)
            res["map_s"] = r["seconds"]
        res["items"] = r["n_items"]
    elif spec["what"] == "read":
        from tokenizer_kit.engines._plan import embedding_batches, embedding_files, plan_files
        from tokenizer_kit.io import open_embeddings

        s = open_embeddings(spec["data"])
        shards = plan_files(embedding_files(spec["data"], s), SHARD)[: spec.get("shards", 2)]
        t = time.perf_counter()
        n = 0
        for sh in shards:
            for _, ids, x in embedding_batches(sh, source=s.source, batch_size=65536, id_column=s.id_column, vector_column=s.vcol, dim=s.dim):
                n += len(x)
        res["map_s"] = time.perf_counter() - t
        res["items"] = n
        res["bytes_per_item"] = 4 * s.dim + 8
    elif spec["what"] == "extract":
        from tokenizer_kit.engines import engine_for
        from tokenizer_kit.pipeline import stages
        from tokenizer_kit.pipeline._stage_configs import ExtractStageConfig

        shard_s = []
        engine_cls = type(engine_for(eng))
        plain = engine_cls.map

        def timed(self, *a, **kw):  # the workers' seconds per shard (model load excluded): the steady per-worker rate
            for rec in plain(self, *a, **kw):
                shard_s.append(rec["shard_seconds"])
                yield rec

        engine_cls.map = timed

        cfg = ExtractStageConfig.from_dict({"text_fields": ["title", "description"], "max_tokens_per_field": 64,
                                            "shard_size": EXTRACT_SHARD, "engine": spec["engine"], "workers": spec.get("workers", 1),
                                            "cpus_per_worker": spec.get("cpus", 1.0), "cpu_threads": spec.get("threads", 0)})
        r = stages.extract(spec["data"], out, cfg)
        res["map_s"] = r.seconds
        res["items"] = r.n_rows
        res["tokens"] = r.n_tokens
        if shard_s:
            res["shard_s"] = sum(shard_s)
    res["wall_s"] = time.perf_counter() - t0
    res["items_per_s"] = res["items"] / res["map_s"]
    if res.get("shard_s"):
        res["worker_items_per_s"] = res["items"] / res["shard_s"]  # one worker's rate while it computes a shard
    res["driver_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(out, ignore_errors=True)
    return res


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def office_catalog(office: Path, n: int, scratch: Path) -> Path:
    """The first ``n`` Office items (by id) as a Parquet catalogue."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = json.loads((office / "Office.item.json").read_text())
    keys = sorted(items, key=int)[:n]
    rows = [{"item_id": k, "title": str(items[k].get("title", "")), "description": str(items[k].get("description", ""))} for k in keys]
    out = scratch / f"office_{len(rows)}.parquet"
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out


def run_one(spec: dict) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    before = _load()
    up = _uptime()
    p = subprocess.run([sys.executable, __file__, "_measure", json.dumps(spec)], capture_output=True, text=True, env=env)
    after = _load()
    if p.returncode != 0:
        raise SystemExit(f"measurement {spec} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    row = {**{k: v for k, v in spec.items() if k not in ("out", "data", "tokenizer")}, **res, "load_before": before, "load_after": after,
           "uptime_before": up, "uptime_after": _uptime()}
    print(json.dumps(row), flush=True)
    return row


# ---- projection -----------------------------------------------------------------------------
def _rate(r: dict | None) -> float | None:
    if r is None:
        return None
    return r.get("worker_items_per_s") or r["items_per_s"]


def projection(rows: list[dict], n_target: float = 1e9) -> dict:
    """Hours for 10^9 items on N hosts from the measured per-worker rates and the stated
    assumptions (nothing else: no GPU was measured)."""
    by = {(r["what"], r["engine"], r.get("workers", 1), r.get("cpus", 1.0)): r for r in rows if not r.get("threads")}
    out: dict = {"items": n_target, "assumptions": {
        "scaling": "shards are independent (each worker reads its own rows and writes its own part; the driver only plans and "
                   "commits the manifest), so N hosts x w workers run at N*w times one worker's measured steady rate, until "
                   "the storage bandwidth caps a host",
        "cpu_workers_per_host": 16,
        "gpus_per_host": 8,
        "storage_read_GBps_per_host": 1.0,
        "storage_note": "assumed, not measured (this machine's disk is shared): 1 GB/s per host from object storage or a parallel "
                        "filesystem; assign reads 4*d+8 bytes per item (d = 256: 1,032 B) and writes about 20",
        "gpu_assign": "no GPU was lent to this task, so no GPU rate was measured. A GPU worker's encode is 3 GEMMs of d x 256 per "
                      "batch (10^9 x 256 x 768 x 2 flop = 0.4 PFLOP in all, minutes on one GPU), so its rate is projected as "
                      "its own process's measured Parquet read-and-check rate (row 'read'), capped by the storage bandwidth",
        "gpu_extract": "not projected: extract's per-GPU rate depends on the VLM (an 8B model) and must be measured on a GPU; the "
                       "CPU MiniLM rate below is only the small-model CPU case",
        "fixed_costs": "Ray start and actor start (model / tokenizer load) are paid once per job and worker (start_s, and map_s "
                       "minus the workers' shard seconds): seconds against hours at 10^9",
    }}
    a1 = by.get(("assign", "ray", 1, 1.0))
    rd = next((r for r in rows if r["what"] == "read"), None)
    ex1 = by.get(("extract", "ray", 1, 1.0))
    if a1 is None or rd is None:
        return out
    asm = out["assumptions"]
    cap = asm["storage_read_GBps_per_host"] * 1e9 / rd["bytes_per_item"]  # items/s per host
    ra, rr, re_ = _rate(a1), _rate(rd), _rate(ex1)
    table = []
    for hosts in (1, 8, 64):
        cpu = min(ra * asm["cpu_workers_per_host"], cap) * hosts
        gpu = min(rr * asm["gpus_per_host"], cap) * hosts
        row = {"hosts": hosts, "assign_cpu_hours": n_target / cpu / 3600, "assign_gpu_hours_read_bound": n_target / gpu / 3600}
        if re_:
            row["extract_minilm_cpu_hours"] = n_target / (re_ * asm["cpu_workers_per_host"] * hosts) / 3600
        table.append(row)
    out["per_worker_measured"] = {"assign_items_per_s_1cpu": ra, "read_items_per_s": rr, "extract_minilm_items_per_s_1cpu": re_}
    out["storage_cap_items_per_s_per_host"] = cap
    out["table"] = table
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engines.json", help="result JSON")
    ap.add_argument("--scratch", type=Path, default=scratch("ray", "bench"),
                    help="where the generated data goes (about 11 GB at 10M x 256; default benchmarks/.scratch/ray/bench)")
    ap.add_argument("--items", type=int, default=10_000_000, help="generated items for assign")
    ap.add_argument("--dim", type=int, default=256, help="their dimension")
    ap.add_argument("--files", type=int, default=10, help="Parquet files to spread them over")
    ap.add_argument("--source-npy", type=Path, default=scratch("scale", "gen_10m_256.npy"),
                    help="take the items from this generated .npy when it exists (bench_scale's 10M x 256)")
    ap.add_argument("--extract-items", type=int, default=600, help="Office items for extract (the first by id)")
    ap.add_argument("--office", type=Path, default=OFFICE, help="Office data (extract; default data/amazon-office)")
    ap.add_argument("--what", default="assign,extract", help="assign, extract or both")
    ap.add_argument("--assign-runs", default="local,local1,read,ray1x1,ray1xall,ray2x1",
                    help="which assign runs (a subset of local,local1,read,ray1x1,ray1xall,ray2x1)")
    ap.add_argument("--keep", action="store_true", help="keep the generated data (default: delete it at the end)")
    ap.add_argument("--prepare-only", action="store_true", help="generate the data and the tokenizer, measure nothing (implies --keep)")
    args = ap.parse_args()
    if args.prepare_only:
        args.scratch.mkdir(parents=True, exist_ok=True)
        build_tokenizer(args.scratch, generate(args.scratch, args.items, args.dim, args.files, args.source_npy), args.dim)
        return

    args.scratch.mkdir(parents=True, exist_ok=True)
    what = set(args.what.split(","))
    rows: list[dict] = []
    result = {"benchmark": "engines", "machine": machine_info(), "command": portable(" ".join(sys.argv)), "rows": rows, "uptime_start": _uptime(),
              "note": "load = /proc/loadavg (1, 5, 15 min) and `uptime` before and after each run; the machine is shared (other "
                      "engineers' jobs ran meanwhile, one core owned by a ranking benchmark), compare rows of one run"}

    def save() -> None:
        result["projection"] = projection(rows)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    try:
        if "assign" in what:
            t = time.perf_counter()
            data = generate(args.scratch, args.items, args.dim, args.files, args.source_npy)
            tok = build_tokenizer(args.scratch, data, args.dim)
            result["assign_setup_s"] = time.perf_counter() - t
            base = {"what": "assign", "data": str(data), "tokenizer": str(tok), "items_planned": args.items, "dim": args.dim}
            runs = set(args.assign_runs.split(","))
            for name, spec in (
                ("local", {**base, "engine": "local", "out": str(args.scratch / "local.parquet")}),
                ("local1", {**base, "engine": "local", "threads": 1, "out": str(args.scratch / "local.parquet")}),
                ("read", {"what": "read", "engine": "local", "data": str(data), "shards": 2, "out": str(args.scratch / "none")}),
                ("ray1x1", {**base, "engine": "ray", "workers": 1, "cpus": 1.0, "out": str(args.scratch / "ray")}),
                ("ray1xall", {**base, "engine": "ray", "workers": 1, "cpus": float(os.cpu_count() or 1), "out": str(args.scratch / "ray")}),
                ("ray2x1", {**base, "engine": "ray", "workers": 2, "cpus": 1.0, "out": str(args.scratch / "ray")}),
            ):
                if name not in runs:
                    continue
                rows.append(run_one(spec))
                save()
        if "extract" in what:
            cat = office_catalog(args.office, args.extract_items, args.scratch)
            for spec in (
                {"what": "extract", "engine": "local", "data": str(cat), "out": str(args.scratch / "store")},
                {"what": "extract", "engine": "local", "threads": 1, "data": str(cat), "out": str(args.scratch / "store")},
                {"what": "extract", "engine": "ray", "workers": 1, "cpus": 1.0, "data": str(cat), "out": str(args.scratch / "store")},
                {"what": "extract", "engine": "ray", "workers": 1, "cpus": float(os.cpu_count() or 1), "data": str(cat),
                 "out": str(args.scratch / "store")},
                {"what": "extract", "engine": "ray", "workers": 2, "cpus": 1.0, "data": str(cat), "out": str(args.scratch / "store")},
            ):
                rows.append(run_one(spec))
                save()
    finally:
        save()
        if not args.keep:
            shutil.rmtree(args.scratch, ignore_errors=True)
    print(json.dumps(result["projection"], indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "_measure":
        print(json.dumps(_measure(json.loads(sys.argv[2]))))
    else:
        main()
