"""The SID contract measured: for each path x each knob, how many items get another SID than
the reference (docs/sid-contract.md; every count should be 0).

    python benchmarks/sid_contract.py --out benchmarks/results/sid_contract.json
    python benchmarks/sid_contract.py --datasets office --settings reference,threads_1 --out sc.json

Datasets: ``office`` (the bundled MiniLM embeddings of the 2,420 Office items,
``tests/data/office_minilm_f16.npy``, 3 x 256 codes) and ``generated`` (``--items`` x ``--dim``
vectors of ``io.make_clustered_embeddings``, seed 0, int64 ids; 3 x 256 codes). Each is
written once in every input layout (``tests/_sid_contract.py prepare``: .npy + ids, Parquet,
three Parquet shards, shuffled rows, a saved HF dataset, a base + two update rounds).

Each setting is one process (``tests/_sid_contract.py run``) with its knobs in the
environment: thread counts (``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``), OpenBLAS
kernels (``OPENBLAS_CORETYPE``), numpy without its AVX-512 kernels
(``NPY_DISABLE_CPU_FEATURES``), torch on its AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2``; its unvectorised ``default`` is a setting of its own, outside the contract).
In each, the probe runs every path: ``build-codebook`` (from each format and layout) and
``assign`` (each format, layout, row order, batch size) through the CLI, Python
``SemanticTokenizer.build`` and ``encode`` (threads 1/2/4, batch sizes, the torch encoder,
shuffled rows), the pipeline's codebook + index stages, ``assign --engine ray``, the LC-Rec
export / import round trip, two cold-start update rounds, and the builds with seed 0 (plain,
balanced, beam 4, RQ-VAE on the CPU). A check is compared, item by item (id and its type,
SID), with the first check of its group in the reference setting; the JSON gives the count
of items that differ per check and setting (or the check's error).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _machine import machine_info  # noqa: E402

PROBE = ROOT / "tests" / "_sid_contract.py"
NUMPY_AVX2 = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy 2.x dispatch groups: AVX-512 off, AVX2 kernels instead
SETTINGS = {
    "reference": {},
    "threads_1": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    "threads_2": {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},
    "threads_4": {"OMP_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4"},
    "kernel_SkylakeX": {"OPENBLAS_CORETYPE": "SkylakeX"},
    "kernel_Haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "kernel_Zen": {"OPENBLAS_CORETYPE": "Zen"},
    "kernel_Sandybridge": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "kernel_Prescott": {"OPENBLAS_CORETYPE": "Prescott"},
    "numpy_avx2": {"NPY_DISABLE_CPU_FEATURES": NUMPY_AVX2},
    "torch_avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    # outside the contract (docs/sid-contract.md, Limits): RQ-VAE training takes other weights
    "torch_default_cpu": {"ATEN_CPU_CAPABILITY": "default"},
    # several knobs at once, for the large dataset (one process each is minutes there)
    "haswell_1thread": {"OPENBLAS_CORETYPE": "Haswell", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    "sandybridge_4threads_numpy_avx2": {"OPENBLAS_CORETYPE": "Sandybridge", "OMP_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4",
                                        "NPY_DISABLE_CPU_FEATURES": NUMPY_AVX2},
    "prescott_2threads_torch_avx2": {"OPENBLAS_CORETYPE": "Prescott", "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2",
                                     "ATEN_CPU_CAPABILITY": "avx2"},
}
DEFAULT_SETTINGS = {
    "office": ["reference", "haswell_1thread", "sandybridge_4threads_numpy_avx2", "prescott_2threads_torch_avx2"],
    "generated": ["reference", "haswell_1thread", "sandybridge_4threads_numpy_avx2", "prescott_2threads_torch_avx2"],
}


def _probe():
    spec = importlib.util.spec_from_file_location("_sid_contract", PROBE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _commit() -> dict:
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty_files": len(git("status", "--porcelain", "--untracked-files=no").splitlines())}


def prepare_data(name: str, scratch: Path, args) -> tuple[Path, dict]:
    import numpy as np

    sc = _probe()
    d = scratch / name
    if name == "office":
        ids = np.array((ROOT / "tests" / "data" / "office_minilm_f16.ids.txt").read_text().split(), dtype=object)
        x = np.load(ROOT / "tests" / "data" / "office_minilm_f16.npy").astype(np.float32)
        desc = {"source": "tests/data/office_minilm_f16.npy (Office items, all-MiniLM-L6-v2, fp16 stored)", "ids": "string"}
    else:
        from tokenizer_kit.io import make_clustered_embeddings

        x = make_clustered_embeddings(args.items, args.dim, seed=0)
        ids = np.arange(args.items, dtype=np.int64)
        desc = {"source": f"io.make_clustered_embeddings({args.items}, {args.dim}, seed=0)", "ids": "int64"}
    desc.update(n_items=int(len(x)), dim=int(x.shape[1]))
    if not (d / "_done").exists():
        shutil.rmtree(d, ignore_errors=True)
        t0 = time.perf_counter()
        sc.prepare(ids, x, d)
        (d / "_done").write_text("")
        desc["prepare_seconds"] = round(time.perf_counter() - t0, 1)
    return d, desc


def run_setting(data: Path, work: Path, tables: Path, knobs: dict, legs: list[str], cfg: dict, timeout: float, quick: bool) -> dict:
    sc = _probe()
    env = {k: v for k, v in os.environ.items() if k not in sc.ENV_KNOBS}
    env.update(knobs, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    out = work.parent / f"{work.name}.json"
    cmd = [sys.executable, str(PROBE), "run", str(data), str(work), "--legs", ",".join(legs), "--cfg", json.dumps(cfg),
           "--tables", str(tables), "--out", str(out)] + (["--quick"] if quick else [])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}: {p.stderr.strip()[-1500:]}", "seconds": round(time.perf_counter() - t0, 1)}
    res = json.loads(out.read_text())
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def count_differences(ref_tables: Path, ref_checks: dict, tables: Path, checks: dict) -> dict:
    """Per check: items whose SID differs from its group's reference check (an item missing
    on either side counts), or the check's error."""
    import pandas as pd

    first = {}
    for name, r in ref_checks.items():
        if "hash" in r:
            first.setdefault(r["group"], name)
    cache: dict[str, pd.Series] = {}

    def read(path: Path) -> pd.Series:
        t = pd.read_parquet(path)
        return pd.Series(t["sid"].to_numpy(), index=t["key"].to_numpy())

    out = {}
    for name, r in checks.items():
        if "error" in r:
            out[name] = {"error": r["error"]}
            continue
        ref_name = first.get(r["group"])
        if ref_name is None:
            out[name] = {"error": f"group {r['group']} has no reference check"}
            continue
        if ref_name not in cache:
            cache[ref_name] = read(ref_tables / f"{ref_name}.parquet")
        a, b = cache[ref_name], read(tables / f"{name}.parquet")
        if r["hash"] == ref_checks[ref_name]["hash"]:
            out[name] = {"differ": 0, "n": int(len(b)), "vs": ref_name}
            continue
        both = a.index.intersection(b.index)
        differ = int((a.loc[both].to_numpy() != b.loc[both].to_numpy()).sum()) + (len(a) - len(both)) + (len(b) - len(both))
        out[name] = {"differ": differ, "n": int(len(b)), "vs": ref_name, "ids_only_on_one_side": int(len(a) + len(b) - 2 * len(both))}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Settings: " + ", ".join(SETTINGS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sid_contract.json"), help="the results JSON")
    ap.add_argument("--datasets", default="office,generated", help="office, generated or both (comma-separated)")
    ap.add_argument("--items", type=int, default=1_000_000, help="generated items")
    ap.add_argument("--dim", type=int, default=64, help="generated vectors' dimension")
    ap.add_argument("--settings", default=None, help="comma-separated settings for every dataset (default: the reference and "
                    "three that change several knobs at once; each single-knob setting is listed below)")
    ap.add_argument("--legs", default=None, help="probe legs (default: sid,codes,builds,cold, and ray in the reference setting; "
                    "generated builds plain only)")
    ap.add_argument("--full", action="store_true", help="every path (Ray included) in every setting (default: the paths that "
                    "cross formats and entry points in the reference setting only, the knobs' checks in the others)")
    ap.add_argument("--scratch", default=None, help="where the data and the runs go (default: a temporary directory, removed after)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per setting")
    args = ap.parse_args()
    scratch = Path(args.scratch) if args.scratch else Path(tempfile.mkdtemp(prefix="sid_contract_"))
    scratch.mkdir(parents=True, exist_ok=True)
    result = {"what": "items whose SID differs from the reference, per path (check) x knob (setting); 0 everywhere = the contract holds",
              **_commit(), "machine": machine_info(), "settings": {s: SETTINGS[s] for s in SETTINGS}, "datasets": {}}
    try:
        for ds in args.datasets.split(","):
            data, desc = prepare_data(ds, scratch, args)
            settings = args.settings.split(",") if args.settings else DEFAULT_SETTINGS[ds]
            if settings[0] != "reference":
                settings = ["reference"] + [s for s in settings if s != "reference"]
            cfg = {"levels": 3, "codebook_size": 256, "rqvae_epochs": 2}
            if ds == "generated":
                cfg.update(builds=["plain"], ray_shard_size=262144)
            base_legs = args.legs.split(",") if args.legs else ["sid", "codes", "builds", "cold"]
            entry = {**desc, "config": cfg, "legs": base_legs, "settings": {}, "differ": {}}
            ref_tables = ref_checks = None
            for s in settings:
                legs = base_legs + (["ray"] if (s == "reference" or args.full) and not args.legs else [])
                tables = scratch / "tables" / ds / s
                shutil.rmtree(tables, ignore_errors=True)
                print(f"[{time.strftime('%H:%M:%S')}] {ds} {s} ...", file=sys.stderr, flush=True)
                quick = s != "reference" and not args.full
                res = run_setting(data, scratch / "runs" / ds / s, tables, SETTINGS[s], legs, cfg, args.timeout, quick)
                entry["settings"][s] = {k: res.get(k) for k in ("env", "blas", "seconds", "error") if res.get(k) is not None}
                if "error" in res:
                    continue
                entry["settings"][s]["check_seconds"] = {n: r.get("seconds") for n, r in res["checks"].items()}
                if s == "reference":
                    ref_tables, ref_checks = tables, res["checks"]
                if ref_checks is None:
                    continue
                for name, c in count_differences(ref_tables, ref_checks, tables, res["checks"]).items():
                    entry["differ"].setdefault(name, {})[s] = c["differ"] if "differ" in c else c
                if s != "reference":
                    shutil.rmtree(tables, ignore_errors=True)
                    shutil.rmtree(scratch / "runs" / ds / s, ignore_errors=True)
                nonzero = {n: v[s] for n, v in entry["differ"].items() if s in v and v[s] != 0}
                print(f"    {res['seconds']} s; nonzero: {json.dumps(nonzero)[:1500]}", file=sys.stderr, flush=True)
                result["datasets"][ds] = {**entry, "partial": True}  # saved after every setting: a long run keeps what it measured
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
            entry["nonzero"] = {n: {s: v for s, v in per.items() if v != 0} for n, per in entry["differ"].items()
                                if any(v != 0 for v in per.values())}
            result["datasets"][ds] = entry
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1) + "\n")
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({ds: e["nonzero"] for ds, e in result["datasets"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
