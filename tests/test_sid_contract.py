"""The SID contract (docs/sid-contract.md), tested: every path x every knob gives the same SIDs.

One dataset (1,200 Office MiniLM vectors, 3 x 32 codes: many shared prefixes, so the suffix
level and the cold start have work to do) goes through every path in this process (the
reference: this machine's default BLAS kernel and thread count), and through the knobs' checks
in three more processes, each under another OpenBLAS kernel, thread count and CPU dispatch
of numpy or torch (set through the environment, as a user's machine would; nothing pins them).
Each check's SIDs are hashed per item (id with its type, SID); the tests compare hashes
byte for byte. ``benchmarks/sid_contract.py`` runs the same probe on more data and more knobs
and counts the items that differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import _sid_contract as sc
from conftest import DATA
from test_engines import ray_cluster  # noqa: F401  (the session's one local Ray)

HERE = Path(__file__).resolve().parent
CFG = {"levels": 3, "codebook_size": 32, "rqvae_epochs": 1}
# each process changes several knobs at once against the reference; the benchmark takes them one by one
NUMPY_AVX2 = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy 2.x dispatch groups: AVX-512 off, AVX2 kernels instead
KNOBS = {
    "haswell_1thread": {"OPENBLAS_CORETYPE": "Haswell", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    "sandybridge_2threads_numpy_avx2": {"OPENBLAS_CORETYPE": "Sandybridge", "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2",
                                        "NPY_DISABLE_CPU_FEATURES": NUMPY_AVX2},
    # torch's AVX2 kernels (AVX-512 is the default here); its unvectorised "default" path trains
    # RQ-VAE to other weights (docs/sid-contract.md, Limits), so it is not a knob the contract covers
    "prescott_4threads_torch_avx2": {"OPENBLAS_CORETYPE": "Prescott", "OMP_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4",
                                     "ATEN_CPU_CAPABILITY": "avx2"},
}
GROUPS = ["sid", "codes", "build.plain", "build.balanced", "build.beam4", "build.rqvae", "cold"]


def _env(knobs: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in sc.ENV_KNOBS}
    env.update(knobs, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]))
    return env


@pytest.fixture(scope="module")
def contract_data(tmp_path_factory):
    ids = np.array((DATA / "office_minilm_f16.ids.txt").read_text().split()[:1200], dtype=object)
    x = np.load(DATA / "office_minilm_f16.npy")[:1200].astype(np.float32)
    return sc.prepare(ids, x, tmp_path_factory.mktemp("contract") / "data")


@pytest.fixture(scope="module")
def runs(contract_data, tmp_path_factory):
    """The reference in this process (every path), and the knobs' checks in one process per
    setting, started first so that they run while this process works."""
    base = tmp_path_factory.mktemp("contract_runs")
    procs = {}
    for label, knobs in KNOBS.items():
        out = base / f"{label}.json"
        cmd = [sys.executable, str(HERE / "_sid_contract.py"), "run", str(contract_data), str(base / label), "--quick",
               "--cfg", json.dumps(CFG), "--out", str(out)]
        procs[label] = (subprocess.Popen(cmd, env=_env(knobs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out)
    res = {"reference": sc.run(contract_data, base / "reference", cfg=CFG)}
    for label, (proc, out) in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{label}: exit {proc.returncode}: {err[-2000:]}"
        res[label] = json.loads(out.read_text())
    res["_work"] = base / "reference"
    return res


def test_knobs_are_set_in_their_process(runs):
    """The knobs reached the libraries: each process loaded its OpenBLAS kernel (numpy's
    OpenBLAS 0.3.31 names its Prescott-level kernel Katmai) and thread count (some OpenBLAS builds
    cap it at the core count); a setting that did not take would make the
    comparison below vacuous."""
    alias = {"Prescott": {"Prescott", "Katmai"}}
    cores = os.cpu_count() or 1
    for label, knobs in KNOBS.items():
        blas = [b for b in runs[label]["blas"] if b["internal_api"] == "openblas"]
        kernel = knobs["OPENBLAS_CORETYPE"]
        assert blas and all(b["architecture"] in alias.get(kernel, {kernel}) for b in blas), (label, blas)
        want = int(knobs["OPENBLAS_NUM_THREADS"])
        assert all(b["num_threads"] in (want, min(want, cores)) for b in blas), (label, blas)
        assert runs[label]["env"]["OPENBLAS_CORETYPE"] == kernel


@pytest.mark.parametrize("group", GROUPS)
def test_every_path_and_knob_gives_the_same_sids(runs, group):
    checks = {label: {n: r for n, r in res["checks"].items() if r["group"] == group} for label, res in runs.items() if label != "_work"}
    assert all(checks.values()), {label: len(c) for label, c in checks.items()}
    sub = {label: {"checks": c} for label, c in checks.items()}
    bad = sc.compare(sub, "reference")
    assert not bad, "\n".join(bad)
    assert all(r["n"] == 1200 for c in checks.values() for r in c.values())


def test_every_path_ran(runs):
    """The reference covers each entry point, engine-free path, input format and knob."""
    names = set(runs["reference"]["checks"])
    for want in ("sid.cli_build.parquet", "sid.cli_build.npy", "sid.cli_build.shards", "sid.cli_build.hf",
                 "sid.python_build", "sid.pipeline_codebook", "sid.cli_assign.shards", "sid.cli_assign.hf", "sid.cli_assign.shuffled",
                 "sid.export_import", "codes.encode.torch_cpu", "codes.encode.threads_4", "codes.encode.batch_1", "cold.cli_update_2_rounds"):
        assert want in names, want
    sid_len = {r["n"] for n, r in runs["reference"]["checks"].items() if n.startswith("sid.")}
    assert "build_row_order.cli_build.shuffled" in names  # measured, not compared: a build's input is its rows in order
    assert sid_len == {1200}


def test_assign_tables_are_identical(runs):
    """Not only the SIDs: ``assign --out`` writes the same table (every column) from every
    input format, layout, row order and batch size, under every knob."""
    tables = {f"{label}:{n}": r["table_hash"] for label, res in runs.items() if label != "_work"
              for n, r in res["checks"].items() if "table_hash" in r}
    assert len(tables) >= 7 + 3 * 3
    assert len(set(tables.values())) == 1, tables


def test_ray_engine_gives_the_local_table(runs, contract_data, ray_cluster):  # noqa: F811
    """``assign --engine ray`` (shards of 500 rows, 1-CPU workers) on the reference tokenizer:
    the local engine's SIDs and table, byte for byte."""
    p = sc.Probe(contract_data, runs["_work"].parent / "ray", tables=None)
    p.work = runs["_work"]  # the reference's tokenizer; new outputs go beside it
    sc.leg_ray(p, {**CFG, "ray_shard_size": 500})
    ref = runs["reference"]["checks"]["sid.cli_assign.parquet"]
    assert set(p.results) == {"sid.ray_assign.parquet", "sid.ray_assign.shards"}
    for name, r in p.results.items():
        assert "error" not in r, r
        assert (r["hash"], r["table_hash"]) == (ref["hash"], ref["table_hash"]), name


def test_the_digest_sees_one_changed_sid_and_an_id_type():
    """The comparison can fail: one SID, or an id's type, changes the hash; row order does not."""
    ids, sids = ["1", "2", "3"], ["<a_1><b_2>", "<a_1><b_3>", "<a_2><b_0>"]
    h = sc.digest(ids, sids)
    assert sc.digest(ids[::-1], sids[::-1]) == h
    assert sc.digest(ids, sids[:2] + ["<a_2><b_1>"]) != h
    assert sc.digest([1, 2, 3], sids) != h
    runs = {"a": {"checks": {"x": {"group": "g", "hash": h}}}, "b": {"checks": {"y": {"group": "g", "hash": "0" * 16}}}}
    assert sc.compare(runs, "a") == [f"b: y {'0' * 16} != a:x {h}"]
