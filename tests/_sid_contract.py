"""The SID contract's probe: every path that hands out SIDs, run on one dataset in one process.

``docs/sid-contract.md`` states the contract: an item's SID is fixed by the tokenizer
directory's content and the item's vector and id (and, for cold-started items, the order of
the update rounds), never by the engine, the entry point, the thread count, the CPU and BLAS
kernel, the batch size, the shard layout, the file format or the order of rows.

This module runs the paths; the knobs that live in the environment (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``OPENBLAS_CORETYPE``, ``NPY_DISABLE_CPU_FEATURES``,
``ATEN_CPU_CAPABILITY``) are set by whoever starts the process, so one process is one
setting of those knobs, and nothing here pins a thread count or a kernel. Knobs that are
arguments (``threads``, batch sizes, the torch encoder, formats, shard layouts, row order,
the engine) are checks of their own.

Each check gives a table ``item_id -> sid`` and belongs to a group; every check of a group
must give the same table as every other check of that group, in every process. The
``hash`` of a check covers the id (with its type) and the SID of every item, so a changed id
type counts too. ``tests/test_sid_contract.py`` compares the hashes across processes;
``benchmarks/sid_contract.py`` also counts the items that differ (``--tables``).

Run as a script (one process = one setting)::

    python tests/_sid_contract.py prepare EMB.npy IDS.txt DATA_DIR
    python tests/_sid_contract.py run DATA_DIR WORK_DIR --legs sid,codes,builds,cold --out hashes.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

LEGS = ("sid", "codes", "builds", "cold", "ray")
ENV_KNOBS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES",
             "ATEN_CPU_CAPABILITY")
N_NEW = 0.1  # share of the items held out for the cold-start leg, arriving in two update rounds


# ---- data --------------------------------------------------------------------------------------
def _parquet(path: Path, ids: np.ndarray, x: np.ndarray, row_group_size: int | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = x.shape[1]
    id_arr = pa.array(ids.tolist(), pa.int64() if ids.dtype.kind in "iu" else pa.string())
    table = pa.table({"item_id": id_arr, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(x).ravel()), d)})
    pq.write_table(table, path, row_group_size=row_group_size)


def prepare(ids: np.ndarray, x: np.ndarray, data_dir: str | os.PathLike, *, hf: bool = True, seed: int = 0) -> Path:
    """The dataset in every input layout the paths read: ``emb.npy`` + ``emb.ids.txt``,
    ``emb.parquet``, ``shards/`` (three Parquet files of uneven sizes, small row groups),
    ``shuffled.parquet`` (the rows permuted), ``hf/`` (a saved ``datasets.Dataset``), and for
    the cold start ``base.parquet`` with ``new_1.parquet`` and ``new_2.parquet`` (two update
    rounds); a catalogue (``catalog.json``) and interactions for the pipeline's config."""
    d = Path(data_dir)
    d.mkdir(parents=True, exist_ok=True)
    x = np.ascontiguousarray(x, np.float32)
    n = len(x)
    np.save(d / "emb.npy", x)
    (d / "emb.ids.txt").write_text("\n".join(map(str, ids.tolist())) + "\n")
    if ids.dtype.kind in "iu":  # a .txt of ids is read as strings: integer ids travel as .npy
        np.save(d / "emb.ids.npy", ids.astype(np.int64))
        (d / "emb.ids.txt").unlink()
    _parquet(d / "emb.parquet", ids, x)
    (d / "shards").mkdir(exist_ok=True)
    cuts = [0, n // 3 + 7, n // 3 + 8, n]  # a one-row file in the middle
    for k in range(3):
        _parquet(d / "shards" / f"part-{k}.parquet", ids[cuts[k] : cuts[k + 1]], x[cuts[k] : cuts[k + 1]],
                 row_group_size=max(1, n // 10))
    perm = np.random.default_rng(seed).permutation(n)
    _parquet(d / "shuffled.parquet", ids[perm], x[perm])
    if hf:
        import datasets

        import pyarrow.parquet as pq

        datasets.Dataset(pq.read_table(d / "emb.parquet")).save_to_disk(str(d / "hf"))
    m = max(2, int(n * N_NEW))
    held = np.sort(np.random.default_rng(seed + 1).choice(n, m, replace=False))
    base = np.setdiff1d(np.arange(n), held)
    _parquet(d / "base.parquet", ids[base], x[base])
    _parquet(d / "new_1.parquet", ids[held[: m // 2]], x[held[: m // 2]])
    _parquet(d / "new_2.parquet", ids[held[m // 2 :]], x[held[m // 2 :]])
    (d / "catalog.json").write_text(json.dumps({str(i): {"title": f"item {i}", "categories": "all"} for i in ids.tolist()[:50]}))
    (d / "inter.json").write_text(json.dumps({"u0": [str(i) for i in ids.tolist()[:5]]}))
    return d


def load_prepared(data_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    d = Path(data_dir)
    x = np.load(d / "emb.npy")
    ids = np.load(d / "emb.ids.npy") if (d / "emb.ids.npy").exists() else np.array((d / "emb.ids.txt").read_text().split(), dtype=object)
    return ids, x


# ---- what a check gives ----------------------------------------------------------------------------
def sid_of_codes(codes: np.ndarray) -> list[str]:
    from tokenizer_kit import SemanticTokenizer  # noqa: F401  (sid_string lives beside it)
    from tokenizer_kit.build._tokenizer import sid_string

    return [sid_string(r) for r in np.asarray(codes, np.int64).tolist()]


def _key(i: Any) -> str:
    return f"{type(i).__name__}:{i}"


def digest(ids, sids) -> str:
    """sha256 (16 hex) of the rows ``type:id<TAB>sid``, sorted by that key: row order does not
    count, an id's type and every SID do."""
    rows = sorted(f"{_key(i)}\t{s}" for i, s in zip(ids, sids))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def table_digest(table) -> str:
    """sha256 (16 hex) of a whole output table (every column), rows sorted by item id."""
    cols = sorted(table.column_names)
    ids = table.column("item_id").to_pylist()
    order = sorted(range(len(ids)), key=lambda r: _key(ids[r]))
    data = {c: table.column(c).to_pylist() for c in cols}
    rows = [json.dumps([_key(ids[r])] + [data[c][r] for c in cols], default=str) for r in order]
    return hashlib.sha256(("|".join(f"{c}:{table.schema.field(c).type}" for c in cols) + "\n" + "\n".join(rows)).encode()).hexdigest()[:16]


def _pylist(col) -> list:
    return [v.item() if hasattr(v, "item") else v for v in col]


class Probe:
    """Runs checks; keeps each one's hash, size and time, and writes its table when ``tables``."""

    def __init__(self, data_dir: Path, work_dir: Path, *, tables: Path | None = None, quick: bool = False):
        self.data = Path(data_dir)
        self.work = Path(work_dir)
        self.tables = tables
        self.quick = quick
        self.results: dict[str, dict[str, Any]] = {}
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        if tables is not None:
            tables.mkdir(parents=True, exist_ok=True)

    def check(self, group: str, name: str, fn: Callable[[], tuple[list, list[str]] | tuple[list, list[str], str]]) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            out = fn()
        except Exception as e:  # a path that fails is a result too: its error, not a hash
            self.results[name] = {"group": group, "error": f"{type(e).__name__}: {e}"[:500], "seconds": time.perf_counter() - t0}
            return
        ids, sids = out[0], out[1]
        rec = {"group": group, "hash": digest(ids, sids), "n": len(ids), "seconds": round(time.perf_counter() - t0, 3),
               "cpu_s": round(time.process_time() - c0, 3)}
        if len(out) > 2:
            rec["table_hash"] = out[2]
        self.results[name] = rec
        if self.tables is not None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"key": [_key(i) for i in ids], "sid": list(sids)}), self.tables / f"{name}.parquet")


# ---- the paths -------------------------------------------------------------------------------------
def _cli(*args) -> dict:
    from typer.testing import CliRunner

    from tokenizer_kit.cli.app import app

    r = CliRunner().invoke(app, [str(a) for a in args] + ["--format", "json", "-q"])
    if r.exit_code != 0:
        raise RuntimeError(f"tokenizer-kit {' '.join(map(str, args))} exited {r.exit_code}: {r.output.strip()[-300:]}")
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


def _sids_of(source) -> tuple[list, list[str]]:
    from tokenizer_kit import load_sids

    t = load_sids(source, format="arrow")
    return _pylist(t.column("item_id").to_pylist()), t.column("sid").to_pylist()


def _assign_table(path: Path) -> tuple[list, list[str], str]:
    """An ``assign --out`` file or shard directory: its SIDs and the whole table's hash."""
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    t = t.replace_schema_metadata(None)
    return t.column("item_id").to_pylist(), t.column("sid").to_pylist(), table_digest(t)


def _codes(ids, codes) -> tuple[list, list[str]]:
    return _pylist(ids.tolist()), sid_of_codes(codes)


def leg_sid(p: Probe, cfg: dict) -> None:
    """One tokenizer (the defaults of each entry point), the SIDs every path hands out."""
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.io import load_embeddings

    d, w = p.data, p.work
    shape = ["--levels", cfg["levels"], "--codebook-size", cfg["codebook_size"]]
    g = "sid"
    tok = w / "cli_tok"
    p.check(g, "sid.cli_build.parquet", lambda: (_cli("build-codebook", d / "emb.parquet", "--out", tok, *shape), _sids_of(tok))[1])
    if not (tok / "manifest.json").exists():
        return
    if not p.quick:
        for name, src in (("npy", [d / "emb.npy", "--ids", _ids_file(d)]), ("shards", [d / "shards"]), ("hf", [d / "hf"])):
            if name == "hf" and not (d / "hf").exists():
                continue
            out = w / f"cli_tok_{name}"
            p.check(g, f"sid.cli_build.{name}", lambda src=src, out=out: (_cli("build-codebook", *src, "--out", out, *shape), _sids_of(out))[1])
        # a build reads its rows in order (k-means samples and numbers them by position): the same rows
        # shuffled are another input, outside the contract; measured, in a group of its own
        out = w / "cli_tok_shuffled"
        p.check("build_row_order", "build_row_order.cli_build.shuffled",
                lambda: (_cli("build-codebook", d / "shuffled.parquet", "--out", out, *shape), _sids_of(out))[1])

    def python_build():
        emb = load_embeddings(d / "emb.parquet")
        t = SemanticTokenizer.build(emb, codebook_sizes=[int(cfg["codebook_size"])] * int(cfg["levels"]))
        t.save_pretrained(w / "py_tok")
        return _sids_of(w / "py_tok")

    if not p.quick:  # under the knobs, build.plain is the Python build
        p.check(g, "sid.python_build", python_build)
    if not p.quick:
        p.check(g, "sid.pipeline_codebook", lambda: _pipeline_codebook(d, w, cfg))
    for name, src, extra in (("parquet", d / "emb.parquet", []), ("npy", d / "emb.npy", ["--ids", _ids_file(d)]),
                             ("shards", d / "shards", []), ("hf", d / "hf", []), ("shuffled", d / "shuffled.parquet", []),
                             ("batch_1000", d / "emb.parquet", ["--batch-size", 1000]), ("batch_4096", d / "emb.parquet", ["--batch-size", 4096])):
        if (name == "hf" and not (d / "hf").exists()) or (p.quick and name not in ("parquet", "shuffled", "batch_1000")):
            continue
        out = w / f"assign_{name}.parquet"
        p.check(g, f"sid.cli_assign.{name}", lambda src=src, out=out, extra=extra: (_cli("assign", src, "-t", tok, "--out", out, *extra),
                                                                                       _assign_table(out))[1])
    lc = w / "tok.index.json"

    def export_import():
        _cli("index", tok, "--export-lcrec", lc)
        _cli("import-index", lc, "--out", w / "imported")
        return _sids_of(w / "imported")

    p.check(g, "sid.export_import", export_import)
    p.check(g, "sid.lcrec_export", lambda: _sids_of(lc))


def _ids_file(d: Path) -> Path:
    return d / "emb.ids.npy" if (d / "emb.ids.npy").exists() else d / "emb.ids.txt"


def _pipeline_codebook(d: Path, w: Path, cfg: dict):
    """The pipeline's codebook and index stages as a run of a config with default [codebook]
    and [index] tables (the stages before them would write the embeddings this one reads)."""
    from tokenizer_kit.pipeline._config import load_config
    from tokenizer_kit.pipeline._run import _Chain

    conf = load_config({"workdir": str(w / "pipeline"), "data": {"catalog": str(d / "catalog.json"), "interactions": str(d / "inter.json")},
                        "codebook": {"levels": int(cfg["levels"]), "codebook_size": str(cfg["codebook_size"])}})
    chain = _Chain(conf, None, None)
    chain.tokenize("aligned", d / "emb.parquet", "embed")
    return _sids_of(chain.p.tokenizer("aligned"))


def leg_codes(p: Probe, cfg: dict) -> None:
    """The codes of every item from one frozen tokenizer, through every encode knob."""
    from tokenizer_kit import SemanticTokenizer

    d, w = p.data, p.work
    tok_dir = w / "cli_tok"
    if not (tok_dir / "manifest.json").exists():
        _cli("build-codebook", d / "emb.parquet", "--out", tok_dir, "--levels", cfg["levels"], "--codebook-size", cfg["codebook_size"],
             "--no-index")
    tok = SemanticTokenizer.from_pretrained(tok_dir)
    ids, x = load_prepared(d)
    g = "codes"
    p.check(g, "codes.build", lambda: _codes(tok.item_ids, tok.codes))
    p.check(g, "codes.encode", lambda: _codes(ids, tok.encode(x)))
    for t in (1, 2, 4):
        p.check(g, f"codes.encode.threads_{t}", lambda t=t: _codes(ids, tok.encode(x, threads=t)))
    for b in (1, 1000, 65536):
        if b == 1 and (p.quick or len(x) > 20000):  # one row at a time: the small datasets only
            continue
        p.check(g, f"codes.encode.batch_{b}", lambda b=b: _codes(ids, _encode_in(tok, x, b)))
    p.check(g, "codes.encode.torch_cpu", lambda: _codes(ids, tok.quantizer.torch_encoder(["cpu"]).encode(np.ascontiguousarray(x))))
    perm = np.random.default_rng(5).permutation(len(x))
    p.check(g, "codes.encode.shuffled", lambda: _codes(ids[perm], tok.encode(np.ascontiguousarray(x[perm]))))
    p.check(g, "codes.encode.reloaded", lambda: _codes(ids, SemanticTokenizer.from_pretrained(tok_dir).encode(x)))


def _encode_in(tok, x, b: int) -> np.ndarray:
    """Calls of ``b`` rows each (a caller's batches), and the quantizer's own ``batch_size``."""
    return np.concatenate([tok.encode(np.ascontiguousarray(x[s : s + b]), batch_size=max(b, 1)) for s in range(0, len(x), b)])


def leg_builds(p: Probe, cfg: dict) -> None:
    """Builds with a fixed seed (plain, balanced, beam 4, RQ-VAE on the CPU): their codes."""
    from tokenizer_kit import SemanticTokenizer

    ids, x = load_prepared(p.data)
    x = np.ascontiguousarray(x)
    sizes = [int(cfg["codebook_size"])] * int(cfg["levels"])
    builds = {"plain": ("rq-kmeans", {}), "balanced": ("rq-kmeans", {"balanced": True}), "beam4": ("rq-kmeans", {"beam_size": 4}),
              "rqvae": ("rq-vae", {"max_epochs": int(cfg.get("rqvae_epochs", 2)), "device": "cpu"})}
    for name in cfg.get("builds", list(builds)):
        method, kw = builds[name]
        p.check(f"build.{name}", f"build.{name}",
                lambda method=method, kw=kw: _codes(ids, SemanticTokenizer.build(x, ids=ids, method=method, codebook_sizes=sizes, seed=0,
                                                                                 **kw).codes))


def leg_cold(p: Probe, cfg: dict) -> None:
    """A tokenizer built on ``base``, then two update rounds of new items, in that order."""
    d, w = p.data, p.work
    tok = w / "cold_tok"

    def run():
        _cli("build-codebook", d / "base.parquet", "--out", tok, "--levels", cfg["levels"], "--codebook-size", cfg["codebook_size"])
        _cli("assign", d / "new_1.parquet", "-t", tok, "--update")
        _cli("assign", d / "new_2.parquet", "-t", tok, "--update")
        return _sids_of(tok)

    p.check("cold", "cold.cli_update_2_rounds", run)


def leg_ray(p: Probe, cfg: dict) -> None:
    """``assign --engine ray`` (Ray must be started by the caller, or is started here) on the
    tokenizer of the sid leg: the same table as the local engine's."""
    d, w = p.data, p.work
    tok = w / "cli_tok"
    if not (tok / "manifest.json").exists():
        return
    for name, src in (("parquet", d / "emb.parquet"), ("shards", d / "shards")):
        out = w / f"ray_{name}"
        p.check("sid", f"sid.ray_assign.{name}", lambda src=src, out=out: (
            _cli("assign", src, "-t", tok, "--out", out, "--engine", "ray", "--shard-size", cfg.get("ray_shard_size", 1000)),
            _assign_table(out))[1])


LEG_FNS = {"sid": leg_sid, "codes": leg_codes, "builds": leg_builds, "cold": leg_cold, "ray": leg_ray}


def run(data_dir, work_dir, *, legs=("sid", "codes", "builds", "cold"), cfg: dict | None = None, tables: Path | None = None,
        quick: bool = False) -> dict[str, Any]:
    """Every check of ``legs``; returns ``{"env": the knobs' variables, "checks": {name: result}}``."""
    cfg = {"levels": 3, "codebook_size": 256, **(cfg or {})}
    p = Probe(Path(data_dir), Path(work_dir), tables=tables, quick=quick)
    for leg in legs:
        LEG_FNS[leg](p, cfg)
    return {"env": {k: os.environ.get(k) for k in ENV_KNOBS}, "blas": blas_seen(), "checks": p.results}


def blas_seen() -> list[dict]:
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover
        return []
    return [{k: i.get(k) for k in ("internal_api", "architecture", "num_threads", "version")} for i in threadpoolctl.threadpool_info()]


def compare(runs: dict[str, dict], reference: str) -> list[str]:
    """Every difference: a check whose hash is not its group's (the group's first check in the
    reference run), a check that failed, or a group of the reference that a run lacks."""
    want = {}
    for name, r in runs[reference]["checks"].items():
        if "hash" in r:
            want.setdefault(r["group"], (name, r["hash"]))
    bad = []
    for label, res in runs.items():
        for name, r in res["checks"].items():
            if "error" in r:
                bad.append(f"{label}: {name} failed: {r['error']}")
            elif r["group"] in want and r["hash"] != want[r["group"]][1]:
                bad.append(f"{label}: {name} {r['hash']} != {reference}:{want[r['group']][0]} {want[r['group']][1]}")
        missing = set(want) - {r["group"] for r in res["checks"].values()}
        bad += [f"{label}: no check of group {g}" for g in sorted(missing)]
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("prepare", help="write the dataset in every layout")
    pr.add_argument("npy")
    pr.add_argument("ids", help="ids file (.txt: strings, .npy: as stored)")
    pr.add_argument("data_dir")
    pr.add_argument("--no-hf", action="store_true")
    rn = sub.add_parser("run", help="run the checks in this process; print or write the JSON")
    rn.add_argument("data_dir")
    rn.add_argument("work_dir")
    rn.add_argument("--legs", default="sid,codes,builds,cold")
    rn.add_argument("--cfg", default="{}", help="JSON: levels, codebook_size, builds, rqvae_epochs")
    rn.add_argument("--tables", default=None, help="write each check's item -> SID table here")
    rn.add_argument("--quick", action="store_true", help="the knobs' checks only: skip the builds from every format, the "
                    "pipeline, the HF and shard inputs of assign, one-row batches")
    rn.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.cmd == "prepare":
        ids = np.load(a.ids, allow_pickle=False) if a.ids.endswith(".npy") else np.array(Path(a.ids).read_text().split(), dtype=object)
        prepare(ids, np.load(a.npy), a.data_dir, hf=not a.no_hf)
        return 0
    import logging

    logging.getLogger("tokenizer_kit").setLevel(logging.ERROR)
    res = run(a.data_dir, a.work_dir, legs=a.legs.split(","), cfg=json.loads(a.cfg), tables=Path(a.tables) if a.tables else None,
              quick=a.quick)
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
