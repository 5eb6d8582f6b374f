"""Which SIDs recommend best: the downstream ranking on Amazon Scientific and Office.

Every set of SIDs gets the same companion (``RetrievalConfig()``, the fast CPU default, or
``--preset``), the same leave-one-out split and the same seeds; each (set, seed) is one
JSON under ``benchmarks/results/downstream/<dataset>/<set>/seed<k>.json``, written as soon
as it ends, so a killed run resumes where it stopped. The summary (per set: mean over seeds,
each seed, 95% interval; per set: paired difference to the reference, Holm-corrected) goes to
``benchmarks/results/downstream_<dataset>.json`` and a Markdown table to stdout.

Sets of SIDs (all 3 x 256 codes + the policy's level where one is needed):

* ours, from two embeddings of each dataset: ``raw`` (mean-pooled MiniLM token features of
  the catalogue text, the pipeline's unaligned baseline) and ``aligned`` (the QFormer
  trained on Swing + user-to-item pairs of the training rows, then embedded); each with
  ``rqkmeans-suffix`` (plain RQ-Kmeans, suffix index: the pipeline's default),
  ``rqkmeans-reassign``, ``balanced`` (balanced RQ-Kmeans, collision-free by construction),
  ``rqvae-suffix``;
* ``+cf`` fusions (LETTER's idea, content + collaborative signal): the content embedding,
  L2-normalised, concatenated with ``cf_weight`` x a collaborative embedding of the items
  (PPMI of co-occurrence within 3 steps in the training rows, truncated SVD, 64 dims);
* the ten peer indexes of CollisionGenRec (Scientific only);
* ``random``: distinct random 3 x 256 SIDs, the floor.

Embeddings come from ``tokenizer-kit pipeline`` with ``configs/office.toml``'s settings on
each dataset (retrieval off), in ``--workdir`` (default ``benchmarks/.scratch/downstream/<dataset>``,
git-ignored); ``prepare`` runs it when its outputs are missing. Office is the repository's
``data/amazon-office``; Scientific is not bundled: ``--scientific DIR`` (or
``$TOKENIZER_KIT_SCIENTIFIC``) is a copy of ``data/Scientific/`` of the public repository
Nishikata97/CollisionGenRec (MIT) at commit 505d5be3. Usage::

    python benchmarks/bench_downstream.py prepare --dataset scientific --scientific DIR
    python benchmarks/bench_downstream.py run --dataset scientific --scientific DIR --seeds 0,1,2 [--shard 0/2]
    python benchmarks/bench_downstream.py summary --dataset scientific --scientific DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine_info  # noqa: E402
from benchmarks._paths import OFFICE, RESULTS, scientific_dir, scratch  # noqa: E402
from benchmarks.render_results import diff_cell, interval_cell  # noqa: E402
from tokenizer_kit.companion import RetrievalConfig, compare_retrieval, random_sid_index  # noqa: E402
from tokenizer_kit.io import atomic_write_json  # noqa: E402

DATASETS = {
    "scientific": {"dir": None, "stem": "Scientific", "peers": True},  # --scientific DIR (main sets it)
    "office": {"dir": OFFICE, "stem": "Office", "peers": False},
}
PEERS = ("rkmeans_native", "rkmeans_zcr", "rkmeans_zcr_cf", "rqvae_native", "rqvae_zcr",
         "letter_native", "letter_zcr", "quasid_native", "quasid_zcr", "mql4grec")
OURS = ("rqkmeans-suffix", "rqkmeans-reassign", "balanced", "rqvae-suffix")
CF = {"window": 3, "dim": 64, "weight": 1.0}
log = logging.getLogger("bench_downstream")


def paths(ds: str, workdir: Path) -> dict[str, Path]:
    d = DATASETS[ds]
    return {"items": d["dir"] / f"{d['stem']}.item.json", "inter": d["dir"] / f"{d['stem']}.inter.json",
            "work": workdir, "sids": workdir / "sids", "runs": RESULTS / "downstream" / ds}


# ---- prepare: embeddings (the pipeline's stage functions) and SID sets --------------------------------------
ALIGN_PRESET = "no-caption"  # main's InfoNCE-only preset: the caption LM made 3,000 steps take ~19 h on this shared machine


def stage_configs() -> dict:
    """The stage configs of ``configs/office.toml`` (extract, mine_pairs, align with ``ALIGN_PRESET``
    on top, embed), as the pipeline would parse them."""
    from tokenizer_kit._config import load_preset, read_config_file
    from tokenizer_kit.pipeline._stage_configs import AlignStageConfig, EmbedConfig, ExtractConfig, MinePairsConfig

    toml = read_config_file(ROOT / "configs" / "office.toml")
    align = {**toml.get("align", {}), **load_preset("align", ALIGN_PRESET)}  # the preset wins over the demo's caption settings
    align.setdefault("seed", toml.get("seed", 0))
    return {"extract": ExtractConfig.from_dict(toml.get("extract", {})), "mine_pairs": MinePairsConfig.from_dict(toml.get("mine_pairs", {})),
            "align": AlignStageConfig.from_dict(align), "embed": EmbedConfig.from_dict(toml.get("embed", {}))}


def _alignment_summary(align_dir: Path) -> dict | None:
    """The training summary of the alignment at ``align_dir`` with its held-out evaluation, or None."""
    from tokenizer_kit.alignment import ALIGNMENT, read_alignment_eval
    from tokenizer_kit.io import read_manifest

    if not ALIGNMENT.committed(align_dir):
        return None
    summary = dict(read_manifest(align_dir, ALIGNMENT, verify="none").get("summary") or {})
    ev = read_alignment_eval(align_dir)
    return {**summary, "eval": ev} if ev is not None else summary


def prepare_embeddings(ds: str, workdir: Path) -> dict:
    """extract -> mine-pairs -> align -> embed (+ the raw pooled baseline) with the pipeline's
    stage functions, each skipped when its output exists; returns the settings and summaries."""
    from tokenizer_kit.pipeline import stages
    from tokenizer_kit.features import FEATURE_STORE

    p = paths(ds, workdir)
    W = workdir / "pipeline"
    W.mkdir(parents=True, exist_ok=True)
    cfg = stage_configs()
    feats, pairs, held, align_dir = W / "features", W / "pairs.parquet", W / "heldout_pairs.parquet", W / f"alignment_{ALIGN_PRESET}"
    aligned, raw = W / "embeddings" / f"aligned_{ALIGN_PRESET}.parquet", W / "embeddings" / "raw.parquet"
    info: dict = {"settings": {k: v.to_flat_dict() for k, v in cfg.items()}, "align_preset": ALIGN_PRESET}
    t = time.perf_counter()
    if not FEATURE_STORE.committed(feats):
        stages.extract(p["items"], feats, cfg["extract"])
    if not (pairs.exists() and held.exists()):
        stages.mine_pairs(p["inter"], pairs, cfg["mine_pairs"], heldout_out=held, overwrite=True)
    done = _alignment_summary(align_dir) or {}
    if done.get("steps_done", -1) < done.get("steps", 0) or not done:  # (a finished run keeps its last checkpoint)
        t0 = time.perf_counter()
        stages.align(feats, pairs, align_dir, cfg["align"], catalog=p["items"], eval_pairs=held)
        info["align_seconds"] = time.perf_counter() - t0
    if not aligned.exists():
        stages.embed(feats, align_dir, aligned, cfg["embed"], overwrite=True)
    if not raw.exists():
        stages.raw_embeddings(feats, raw)
    info["alignment"] = _alignment_summary(align_dir)
    info["seconds"] = time.perf_counter() - t
    return info


def collaborative_embeddings(inter: Path, item_ids: np.ndarray, *, window: int, dim: int) -> np.ndarray:
    """(n, dim) L2-normalised item vectors from the training rows: PPMI of co-occurrence within
    ``window`` steps of each user's sequence, truncated SVD (U sqrt(S)). Items never co-occurring get 0."""
    from scipy import sparse
    from scipy.sparse.linalg import svds

    from tokenizer_kit.io import TRAIN, interaction_log, leave_one_out_roles, read_interactions

    logi = interaction_log(read_interactions(inter), item_ids=np.asarray(item_ids).astype(str))
    train = logi.subset(leave_one_out_roles(logi) == TRAIN)
    n = len(item_ids)
    b = train.user_bounds()
    rows, cols = [], []
    for s, e in zip(b[:-1], b[1:]):
        seq = train.items[s:e]
        for off in range(1, window + 1):
            a, c = seq[:-off], seq[off:]
            keep = a != c
            rows += [a[keep], c[keep]]
            cols += [c[keep], a[keep]]
    r, c = np.concatenate(rows), np.concatenate(cols)
    co = sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    co.sum_duplicates()
    total = co.sum()
    rs = np.maximum(np.asarray(co.sum(1)).ravel(), 1e-12)
    coo = co.tocoo()
    pmi = np.maximum(np.log(coo.data * total / (rs[coo.row] * rs[coo.col])), 0)
    ppmi = sparse.csr_matrix((pmi, (coo.row, coo.col)), shape=(n, n))
    v0 = np.random.default_rng(0).standard_normal(n)
    u, s, _ = svds(ppmi, k=dim, v0=v0)
    order = np.argsort(-s)
    u, s = u[:, order], s[order]
    u *= np.sign(u[np.abs(u).argmax(0), np.arange(u.shape[1])])  # a fixed sign per component
    x = u * np.sqrt(s)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def build_sets(ds: str, workdir: Path) -> dict[str, dict]:
    """Our SID sets as LC-Rec index files under ``<workdir>/sids`` (skipped when present); their stats."""
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import IndexConfig, SIDIndex
    from tokenizer_kit.io import load_embeddings

    p = paths(ds, workdir)
    p["sids"].mkdir(parents=True, exist_ok=True)
    info: dict[str, dict] = {}
    emb_dir = workdir / "pipeline" / "embeddings"
    embs = {"raw": load_embeddings(emb_dir / "raw.parquet"), "aligned": load_embeddings(emb_dir / f"aligned_{ALIGN_PRESET}.parquet")}
    ids = embs["raw"].ids
    for k in embs:
        if list(map(str, embs[k].ids)) != list(map(str, ids)):
            raise SystemExit(f"{k} embeddings list other items than the raw ones")
    cf = collaborative_embeddings(p["inter"], ids, window=CF["window"], dim=CF["dim"])
    for k in ("raw", "aligned"):
        x = embs[k].vectors.astype(np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        embs[f"{k}+cf"] = np.concatenate([x, CF["weight"] * cf], 1)
    for emb_name, emb in embs.items():
        x = np.ascontiguousarray(emb.vectors if hasattr(emb, "vectors") else emb, np.float32)
        variants = OURS if "+cf" not in emb_name else ("rqkmeans-suffix",)
        toks = {}
        for v in variants:
            out = p["sids"] / f"{emb_name}-{v}.index.json"
            if out.exists():
                continue
            method = "rq-vae" if v.startswith("rqvae") else "rq-kmeans"
            key = (method, v == "balanced")
            if key not in toks:
                t0 = time.perf_counter()
                toks[key] = SemanticTokenizer.build(x, ids=ids, method=method, codebook_sizes=[256] * 3, balanced=v == "balanced", seed=0) \
                    if method == "rq-kmeans" else SemanticTokenizer.build(x, ids=ids, method=method, codebook_sizes=[256] * 3, seed=0)
                log.info("%s %s built in %.1fs", emb_name, key, time.perf_counter() - t0)
            policy = "reassign" if v.endswith("reassign") else "suffix"
            idx = SIDIndex.for_tokenizer(toks[key], config=IndexConfig(policy=policy).validate(), x=x, ids=ids)
            idx.export_lcrec(out)
            info[f"{emb_name}-{v}"] = {"method": method, "balanced": v == "balanced", "policy": policy, "stats": idx.stats}
    return info


def sources(ds: str, workdir: Path, names: list[str] | None = None) -> dict[str, object]:
    """name -> SIDs (LC-Rec path or an in-memory index) of every set of this dataset, in table order."""
    p = paths(ds, workdir)
    out: dict[str, object] = {}
    for emb in ("aligned", "raw"):
        for v in OURS:
            out[f"{emb}-{v}"] = p["sids"] / f"{emb}-{v}.index.json"
    for emb in ("aligned", "raw"):
        out[f"{emb}+cf-rqkmeans-suffix"] = p["sids"] / f"{emb}+cf-rqkmeans-suffix.index.json"
    if DATASETS[ds]["peers"]:
        for peer in PEERS:
            out[f"peer-{peer}"] = DATASETS[ds]["dir"] / "indexes" / f"{peer}.index.json"
    items = sorted(json.loads(p["items"].read_text()), key=lambda i: (len(i), i))
    out["random"] = random_sid_index(np.asarray(items, dtype=object), [256, 256, 256], seed=0)
    if names:
        unknown = sorted(set(names) - set(out))
        if unknown:
            raise SystemExit(f"unknown sets {unknown}; known: {list(out)}")
        out = {k: out[k] for k in dict.fromkeys(names)}  # in the order given: the run's priority
    return out


# ---- commands -------------------------------------------------------------------------------------------
def _workdir(a) -> Path:
    return Path(a.workdir) if a.workdir else scratch("downstream", a.dataset)


def _shown(path: Path, workdir: Path) -> str:
    """``path`` as a results JSON records it: never a path of this machine."""
    path = Path(path).resolve()
    for base, name in ((DATASETS["scientific"]["dir"], "<scientific>"), (workdir, "<workdir>"), (ROOT, None)):
        if base is not None and path.is_relative_to(Path(base).resolve()):
            rel = path.relative_to(Path(base).resolve()).as_posix()
            return rel if name is None else f"{name}/{rel}"
    return path.name


def cmd_prepare(a) -> None:
    workdir = _workdir(a)
    emb = prepare_embeddings(a.dataset, workdir)
    info = build_sets(a.dataset, workdir)
    prev = workdir / "sets.json"
    old = json.loads(prev.read_text()) if prev.exists() else {}
    atomic_write_json(prev, {**old, "embeddings": {**old.get("embeddings", {}), **emb}, "sets": {**old.get("sets", {}), **info}, "cf": CF})
    print(json.dumps({k: v["stats"].get("duplicate_sids") for k, v in info.items()}, indent=1))


def _run_name(a) -> str:
    """``<dataset>[_<preset>][_<tag>]``: the runs directory under ``results/downstream/`` and the
    summary's name; a tag keeps a new round of runs (e.g. on re-made embeddings) apart from stored ones."""
    return a.dataset + ("" if a.preset == "fast" else f"_{a.preset}") + (f"_{a.tag}" if a.tag else "")


def _config(a) -> RetrievalConfig:
    return RetrievalConfig.preset(a.preset, **({"device": a.device} if a.device else {}))


def cmd_run(a) -> None:
    workdir = _workdir(a)
    p = paths(a.dataset, workdir)
    srcs = sources(a.dataset, workdir, a.sets)
    seeds = [int(s) for s in a.seeds.split(",")]
    jobs = [(n, s) for n in srcs for s in seeds]
    i, k = (int(v) for v in a.shard.split("/"))
    runs_dir = p["runs"].with_name(_run_name(a))
    for n, s in jobs[i::k]:
        if isinstance(srcs[n], Path) and not srcs[n].exists():
            log.warning("%s: %s does not exist yet (run prepare); skipped", n, srcs[n])
            continue
        if (runs_dir / n / f"seed{s}.json").exists() or not _claim(runs_dir / n / f"seed{s}.claim"):
            continue  # done, or another worker has it
        t0 = time.perf_counter()
        try:
            compare_retrieval({n: srcs[n]}, p["inter"], _config(a), seeds=[s], runs_dir=runs_dir, n_boot=10)
            run = json.loads((runs_dir / n / f"seed{s}.json").read_text())
            if isinstance(srcs[n], Path):  # the stored run names its SIDs file without this machine's path
                atomic_write_json(runs_dir / n / f"seed{s}.json", {**run, "sids": _shown(srcs[n], workdir)})
        finally:
            (runs_dir / n / f"seed{s}.claim").unlink(missing_ok=True)
        log.info("%s seed %d: %.0fs (load %s)", n, s, time.perf_counter() - t0, os.getloadavg())


def _claim(path: Path) -> bool:
    """Take the job whose claim file is ``path`` (created exclusively, holding this pid); a claim
    whose process is gone is taken over. Workers started at any time share the job list this way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(path.read_text() or 0), 0)
                return False  # its worker is alive
            except (ProcessLookupError, ValueError):
                path.unlink(missing_ok=True)  # a killed worker's claim
                continue
            except PermissionError:
                return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True
    return False


def cmd_summary(a) -> None:
    """Summarise the stored runs (never trains: a set is summarised over the seeds it has), write
    ``benchmarks/results/downstream_<dataset>.json`` and its Markdown table (stdout; with
    ``--docs``, docs/benchmarks.md is rewritten from the results)."""
    from tokenizer_kit.companion import summarize_runs

    workdir = _workdir(a)
    p = paths(a.dataset, workdir)
    srcs = sources(a.dataset, workdir, a.sets)
    seeds = [int(s) for s in a.seeds.split(",")]
    runs_dir = p["runs"].with_name(_run_name(a))
    have = {n: [s for s in seeds if (runs_dir / n / f"seed{s}.json").exists()] for n in srcs}
    runs: dict[str, list] = {}
    for n, ss in have.items():
        if ss:  # read back through compare_retrieval: it checks each stored run's settings and SIDs
            runs[n] = compare_retrieval({n: srcs[n]}, p["inter"], _config(a), seeds=ss, runs_dir=runs_dir, n_boot=10)["runs"][n]
    if a.reference not in runs:
        raise SystemExit(f"the reference {a.reference} has no stored run yet in {runs_dir}")
    res = summarize_runs({a.reference: runs[a.reference], **runs}, reference=a.reference, n_boot=4000)
    res["config"] = _config(a).to_dict()
    res["train_epochs_run"] = {n: [len(r["train"]["losses"]) for r in rs] for n, rs in runs.items()}
    res["seconds"] = {n: [round(r["seconds"]["total"], 1) for r in rs] for n, rs in runs.items()}
    res["runs_dir"] = str(runs_dir.relative_to(ROOT))
    res["not_run"] = sorted(n for n in srcs if not have[n])
    res["fewer_seeds"] = {n: have[n] for n in runs if len(have[n]) < len(seeds)}
    sets_json = workdir / "sets.json"
    prep = json.loads(sets_json.read_text()) if sets_json.exists() else {}
    out = {"benchmark": "downstream", "dataset": a.dataset, "interactions": _shown(p["inter"], workdir), "cf": CF,
           "embeddings": prep.get("embeddings"), "set_stats": prep.get("sets"),
           "machine": machine_info(), "load_at_summary": os.getloadavg(), **res}
    name = f"downstream_{_run_name(a)}"
    atomic_write_json(RESULTS / f"{name}.json", out)
    table = markdown(out, f"benchmarks/results/{name}.json")
    print(table)
    if a.docs:
        from benchmarks import render_results

        render_results.main([])


def markdown(res: dict, source: str = "") -> str:
    """The ranking as a Markdown table, best ItemNDCG@10 first: mean over seeds with the 95%
    two-stage bootstrap interval, and the paired difference to the reference (* Holm-adjusted p < alpha)."""
    ref, sets, cmp = res["reference"], res["sets"], res["comparisons"]
    lines = [f"| SIDs | seeds | shared targets | ItemHit@10 | vs {ref} | ItemNDCG@10 | vs {ref} | Recall@10 | NDCG@10 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in sorted(sets, key=lambda n: -sets[n]["item_ndcg@10"]["mean"]):
        s = sets[n]
        lines.append("| " + " | ".join([
            n, ",".join(map(str, s["seeds"])), f"{s['shared_target_rate']:.1%}",
            interval_cell(s["item_hit@10"]), diff_cell(cmp["item_hit@10"].get(n)),
            interval_cell(s["item_ndcg@10"]), diff_cell(cmp["item_ndcg@10"].get(n)),
            f"{s['recall@10']['mean']:.4f}", f"{s['ndcg@10']['mean']:.4f}"]) + " |")
    notes = [f"\n{res['users']:,} test users; mean over seeds [95% interval, two-stage bootstrap over users and seeds, "
             f"{res['bootstrap']['replicates']} replicates]; differences paired on the same users, * = Holm-adjusted p < "
             f"{res['bootstrap']['alpha']} over the {len(sets) - 1} comparisons of that metric"]
    if res.get("fewer_seeds"):
        notes.append(f"; fewer seeds than asked (seed noise less covered): {', '.join(res['fewer_seeds'])}")
    if res.get("not_run"):
        notes.append(f"; not run: {', '.join(res['not_run'])}")
    if source:
        notes.append(f" ({source}).")
    return "\n".join(lines) + "".join(notes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("prepare", "run", "summary"))
    ap.add_argument("--dataset", choices=tuple(DATASETS), required=True)
    ap.add_argument("--workdir", default=None, help="embeddings and SID sets (default benchmarks/.scratch/downstream/<dataset>)")
    ap.add_argument("--scientific", default=None, help="the Amazon Scientific data directory (default $TOKENIZER_KIT_SCIENTIFIC)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sets", nargs="*", default=None, help="only these sets (default: all)")
    ap.add_argument("--shard", default="0/1", help="i/k: run every k-th (set, seed) job from the i-th (parallel workers)")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--tag", default=None, help="name this round of runs: results/downstream/<dataset>_<tag>/ and downstream_<dataset>_<tag>.json")
    ap.add_argument("--device", default=None)
    ap.add_argument("--reference", default="aligned-rqkmeans-suffix")
    ap.add_argument("--docs", action="store_true", help="summary: also rewrite docs/benchmarks.md (benchmarks/render_results.py)")
    a = ap.parse_args(argv)
    if a.dataset == "scientific":
        DATASETS["scientific"]["dir"] = scientific_dir(a.scientific)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(1)  # a shared 2-core machine: a second thread mostly waits (as the companion's cpu_threads)
    {"prepare": cmd_prepare, "run": cmd_run, "summary": cmd_summary}[a.command](a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
