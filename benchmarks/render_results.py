"""Write docs/benchmarks.md from benchmarks/results/*.json: every number in it is read from a
results JSON, none is typed here.

    python benchmarks/render_results.py            # rewrite docs/benchmarks.md
    python benchmarks/render_results.py --check    # exit 1 if docs/benchmarks.md is not what it would write

The prose in this file carries no numbers (tests/test_readme.py checks it); a section whose JSON
is missing says so instead of failing. Output is deterministic: files sorted, floats formatted
with a fixed number of digits, no dates but the ones the JSONs record. Strings that may hold a
machine's paths (commands, working directories) are never copied into the document.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "benchmarks.md"
DASH = "–"


# ---------------------------------------------------------------- formatting helpers

def load(name: str) -> dict | None:
    p = RESULTS / name
    return json.loads(p.read_text()) if p.exists() else None


def f(x, nd: int = 3) -> str:
    """A number with a fixed count of decimals (thousands separated); `–` for a missing value."""
    if x is None or isinstance(x, bool):
        return DASH if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{nd}f}"


def pct(x, nd: int = 1) -> str:
    return DASH if x is None else f"{100 * x:.{nd}f}%"


def ratio(x, nd: int = 2) -> str:
    return DASH if x is None else f"{x:.{nd}f}x"


def per_level(xs, nd: int = 3) -> str:
    return DASH if not xs else " / ".join(f(x, nd) for x in xs)


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def machine(d: dict | None) -> str:
    """One line from a JSON's machine block (benchmarks/_machine.py): CPU, cores, GPU, date."""
    m = (d or {}).get("machine") if isinstance(d, dict) else None
    runs = d.get("runs") if isinstance(d, dict) else None
    if not isinstance(m, dict) and isinstance(runs, dict) and runs:  # a file that collects runs: its first run's
        m = runs[sorted(runs)[0]].get("machine") if isinstance(runs[sorted(runs)[0]], dict) else None
    if not isinstance(m, dict) and isinstance(d, dict) and d.get("cores"):  # a JSON with only its core count and time
        m = {"cpu_count": d["cores"], "date_utc": d.get("at")}
    if not isinstance(m, dict):
        return "not recorded"
    parts = [m.get("cpu_model") or m.get("cpu") or m.get("processor") or "CPU not recorded"]
    if m.get("cpu_count"):
        parts.append(f"{m['cpu_count']} CPUs")
    if isinstance(m.get("cuda"), str) and m["cuda"]:
        parts.append(m["cuda"])
    if m.get("torch_threads"):
        parts.append(f"torch threads {m['torch_threads']}")
    if m.get("date_utc"):
        parts.append(m["date_utc"][:10])
    return ", ".join(parts)


def source(*names: str) -> list[str]:
    """The line under a table: which files it comes from and on which machine they ran."""
    lines = []
    for n in names:
        d = load(n)
        lines.append(f"- `benchmarks/results/{n}`: {machine(d) if d is not None else 'missing'}")
    return ["Source and machine:", "", *lines, ""]


# ---------------------------------------------------------------- sections

def sec_demo() -> list[str]:
    files = ["demo_office_fast.json", "demo_office_fast_2.json", "demo_office_long.json"]
    runs = {n: load(n) for n in files if load(n)}
    stages: list[str] = []
    for d in runs.values():
        stages += [s["stage"] for s in d["stages"] if s["stage"] not in stages]
    rows = []
    for st in stages:
        row = [st]
        for d in runs.values():
            s = next((s for s in d["stages"] if s["stage"] == st), None)
            row += [DASH, DASH] if s is None else [f(s["wall_s"], 1), f(s["cpu_s"], 1)]
        rows.append(row)
    rows.append(["**total**"] + [c for d in runs.values() for c in (f(d["total_wall_s"], 1), f(d["total_cpu_s"], 1))])
    heads = ["stage"] + [c for n in runs for c in (f"{n[:-5]} wall s", f"{n[:-5]} CPU s")]
    out = table(heads, rows)
    res = []
    for n, d in runs.items():
        a, r = d["alignment"], d["retrieval"]["aligned"]["test"]
        res.append([f"`{n}`", f"{f(d['load_before'][0], 1)} {DASH} {f(d['load_after'][0], 1)}",
                    f(a["recall_aligned"], 4), f(a["recall_raw_pooled"], 4), ratio(a["recall_ratio"]),
                    f"{f(a['caption_loss_with_prefix'], 2)} / {f(a['caption_loss_other_item_prefix'], 2)} / "
                    f"{f(a['caption_loss_without_prefix'], 2)}", f(r["recall@10"], 4), f(r["ndcg@10"], 4)])
    out += table(["run", "load (start, end)", "held-out recall@10 aligned", "raw", "aligned / raw",
                  "caption loss own / other item / none", "retrieval R@10", "NDCG@10"], res)
    return out + _demo_make() + _demo_cross() + source(*files, "demo_make_fresh_clone.json", "demo_office_cross_retrieval.json")


def _demo_make() -> list[str]:
    d = load("demo_make_fresh_clone.json")
    if not d:
        return []
    rows = [["`make demo` wall", f(d["make_demo_wall_seconds"], 1)],
            ["`make demo` user + sys CPU", f(d["make_demo_user_seconds"] + d["make_demo_sys_seconds"], 1)],
            ["pipeline total (its own report)", f(d["pipeline_total_seconds_reported"], 1)]]
    rows += [[f"stage `{k}`", f(v, 2)] for k, v in sorted(d["stage_seconds"].items())]
    rows += [["install + `make test` wall (a separate run)", f(d["ci_run_wall_seconds_install_plus_tests"], 1)],
             ["load average before / after", f"{f(d['load_average_before_demo'][0], 2)} / {f(d['load_average_after_demo'][0], 2)}"]]
    r = d["results"]
    rows += [["held-out recall@10 aligned / raw", f"{f(r['heldout_recall_at10_aligned'], 4)} / {f(r['heldout_recall_at10_raw'], 4)}"],
             ["retrieval R@10", f(r["retrieval_recall_at10"], 4)]]
    return [T["demo_make"], "", *table(["`make demo` on a fresh clone", "seconds or value"], rows)]


def _demo_cross() -> list[str]:
    d = load("demo_office_cross_retrieval.json")
    if not d:
        return []
    rows = [[k, f(v["test"]["recall@5"], 4), f(v["test"]["recall@10"], 4), f(v["test"]["ndcg@10"], 4)]
            for k, v in sorted(d["runs"].items())]
    return [T["demo_cross"], "", *table(["run", "R@5", "R@10", "NDCG@10"], rows)]


def _align_row(n: str, d: dict) -> list[str]:
    c, e = d["config"], d["eval"]
    q, pm = c["qformer"], d["data"]["pair_mining"]["config"]
    gpu = d.get("machine", {}).get("cuda")
    return [f"`{n}`", gpu if isinstance(gpu, str) and gpu else "CPU", str(q["d_model"]), str(q["n_layers"]),
            f(c["steps"]), str(c["batch_size"]), str(pm.get("u2i_targets_per_user", DASH)), str(pm.get("u2i_history", DASH)),
            f(c["caption_weight"], 2), str(c["seed"]), f(e["recall_aligned"], 4), f(e["recall_raw_pooled"], 4),
            ratio(e["recall_ratio"]), f(d["timing_s"]["total"], 1)]


def sec_alignment() -> list[str]:
    names = sorted(p.name for p in RESULTS.glob("align_office_*.json") if p.name != "align_office_validation.json")
    rows = [_align_row(n, load(n)) for n in names]
    out = table(["file", "device", "d_model", "layers", "steps", "batch", "u2i targets", "u2i history", "caption weight",
                 "seed", "recall@10 aligned", "raw", "aligned / raw", "total s"], rows)
    v = load("align_office_validation.json")
    if v:
        out += [T["align_validation"], ""]
        out += table(["run tag", "validation recall@10", "validation ratio", "held-out recall@10", "held-out ratio"],
                     [[r["tag"], f(r["validation_recall"], 4), ratio(r["validation_ratio"]), f(r["heldout_recall"], 4),
                       ratio(r["heldout_ratio"])] for r in v["runs"]])
    return out + source(*names, "align_office_validation.json")


METHODS = {"raw_faiss_kmeans": "raw FAISS k-means on the residuals", "ours_greedy": "ours, greedy",
           "ours_beam8": "ours, beam search", "ours_balanced": "ours, balanced",
           "faiss_residual_quantizer_beam5": "faiss.ResidualQuantizer, beam", "faiss_residual_quantizer_beam1": "faiss.ResidualQuantizer, greedy",
           "sklearn_residual_kmeans": "scikit-learn residual k-means"}


def sec_rq_kmeans() -> list[str]:
    d = load("rq_kmeans_cpu.json")
    if not d:
        return [T["missing"], ""]
    out = []
    for res in d["results"]:
        out += [f"{res['dataset']} ({f(res['n'])} x {res['d']}, codebooks {' x '.join(map(str, res['codebook_sizes']))}):", ""]
        out += table(["method", "seconds", "relative error", "collisions", "entropy / ln K per level"],
                     [[METHODS.get(k, k), f(m["seconds"], 2), f(m["relative_error"], 4), pct(m["collision_rate"]),
                       per_level(m["entropy_normalized"], 3)] for k, m in res["methods"].items()])
    out += [T["rq_assign"], ""]
    out += table(["data", "assign items/s", "GEMM GFLOP/s", "GEMM-bound items/s", "share of the bound"],
                 [[r["dataset"], f(r["assign"]["items_per_second"], 0), f(r["assign"]["gemm_gflops"], 1),
                   f(r["assign"]["gemm_bound_items_per_second"], 0), pct(r["assign"]["share_of_gemm_bound"])] for r in d["results"]])
    return out + source("rq_kmeans_cpu.json")


def sec_rq_vae() -> list[str]:
    files = ["rq_vae_vs_kmeans_office_with_balanced.json", "rq_vae_vs_kmeans.json"]
    out = []
    for n in files:
        d = load(n)
        for s in (d or {}).get("settings", []):
            ho = s.get("held_out", {})
            out += [f"`{n}`, setting `{s['setting']}` ({f(s['n'])} x {s['d']}, codebooks {' x '.join(map(str, s['codebook_sizes']))}):", ""]
            out += table(["method", "recon MSE", "relative", "held-out MSE", "utilization", "entropy / ln K", "collisions", "build s"],
                         [[k, f"{m['reconstruction_mse']:.6f}", f(m["reconstruction_relative"], 3),
                           f"{ho[k]['held_out_mse']:.6f}" if k in ho else DASH, per_level(m["utilization"], 2),
                           per_level(m["entropy_normalized"], 2), pct(m["collision_rate"]), f(m["build_seconds"], 1)]
                          for k, m in s["table"].items()])
    a = load("rq_vae_ablation.json")
    if a:
        out += [T["rq_vae_ablation"], ""]
        out += table(["variant", "seconds", "recon MSE", "utilization", "entropy / ln K", "collisions", "dead-code restarts"],
                     [[k, f(v["seconds"], 1), f"{v['reconstruction_mse']:.6f}", per_level(v["utilization"], 2),
                       per_level(v["entropy_normalized"], 2), pct(v["collision_rate"]), per_level(v["dead_code_restarts"], 0)]
                      for k, v in a["variants"].items()])
    return out + source(*files, "rq_vae_ablation.json")


def sec_balanced() -> list[str]:
    d = load("balanced_clusters.json")
    if not d:
        return [T["missing"], ""]
    rows = []
    for case, c in sorted(d["cases"].items()):
        for mode in ("plain", "balanced"):
            m = c[mode]
            rows.append([case, f(c["n"]), mode, f(m["seconds"], 1), f(m["relative_mse"], 4),
                         " / ".join(f"{lv['largest']} ({lv['limit']})" for lv in m["levels"]),
                         per_level([lv["entropy_normalised"] for lv in m["levels"]], 3),
                         "yes" if m.get("misses_reported") else "no"])
    return table(["data", "items", "mode", "seconds", "relative MSE", "largest code per level (limit)",
                  "entropy / ln K", "warning given"], rows) + source("balanced_clusters.json")


def _retrieval_rows(n: str) -> list[list[str]]:
    d = load(n)
    return [[f"`{n}`", r["name"], f(r["recall@5"], 4), f(r["ndcg@5"], 4), f(r["recall@10"], 4), f(r["ndcg@10"], 4),
             f(r.get("parameters")), f(r["train_seconds"], 0)] for r in d["rows"]]


def sec_retrieval() -> list[str]:
    names = sorted(p.name for p in RESULTS.glob("retrieval_office_*.json"))
    rows = [r for n in names for r in _retrieval_rows(n)]
    return table(["file", "SIDs", "Recall@5", "NDCG@5", "Recall@10", "NDCG@10", "parameters", "train s"], rows) + source(*names)


def interval_cell(m: dict) -> str:
    """A mean with its interval: ``0.0495 [0.0434, 0.0559]``."""
    return f"{m['mean']:.4f} [{m['lo']:.4f}, {m['hi']:.4f}]"


def diff_cell(d: dict | None, none: str = "reference") -> str:
    """A paired difference with its interval, ``*`` when significant after Holm; ``none`` for no comparison."""
    if d is None:
        return none
    return f"{d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]" + (" *" if d.get("significant") else "")


def _downstream(n: str, d: dict) -> list[str]:
    ref, sets, cmp = d["reference"], d["sets"], d["comparisons"]
    rows = [[k, ",".join(map(str, s["seeds"])), pct(s["shared_target_rate"]), interval_cell(s["item_hit@10"]),
             diff_cell(cmp["item_hit@10"].get(k)), interval_cell(s["item_ndcg@10"]), diff_cell(cmp["item_ndcg@10"].get(k)),
             f(s["recall@10"]["mean"], 4), f(s["ndcg@10"]["mean"], 4)]
            for k, s in sorted(sets.items(), key=lambda kv: (-kv[1]["item_ndcg@10"]["mean"], kv[0]))]
    tag = n[len("downstream_") + len(d["dataset"]):-len(".json")].lstrip("_")  # a named round of runs (--tag)
    out = [f"{d['dataset']}{f' ({tag})' if tag else ''}: {f(d['users'])} test users, {f(d['bootstrap']['replicates'])} bootstrap replicates, "
           f"Holm at alpha {d['bootstrap']['alpha']} over {len(sets) - 1} comparisons per metric.", ""]
    out += table(["SIDs", "seeds", "shared targets", "ItemHit@10", f"vs {ref}", "ItemNDCG@10", f"vs {ref}", "Recall@10", "NDCG@10"], rows)
    if d.get("fewer_seeds"):
        out += [f"Fewer seeds than asked: {', '.join(sorted(d['fewer_seeds']))}.", ""]
    if d.get("not_run"):
        out += [f"Not run: {', '.join(sorted(d['not_run']))}.", ""]
    return out


def sec_downstream() -> list[str]:
    names = sorted(p.name for p in RESULTS.glob("downstream_*.json"))
    out = [line for n in names for line in _downstream(n, load(n))]
    return out + source(*names)


def _items(r: dict | None) -> int | None:
    """Items a CLI run reported on stdout (build: its tokenizer's, assign: its own)."""
    sj = (r or {}).get("stdout_json") or {}
    return (sj.get("tokenizers") or [sj])[0].get("n_items")


def _cmd_row(label: str, r: dict | None, n: int | None = None) -> list[str]:
    if not r:
        return [label, DASH, DASH, DASH, DASH]
    return [label, f(_items(r) or n), f(r["wall_seconds"], 1), f(r["peak_rss_anon_mib"], 1), f(r.get("peak_rss_file_mib"), 1)]


def sec_scale() -> list[str]:
    d = load("scale_cpu.json")
    if not d:
        return [T["missing"], ""]
    a, rows = d["args"], d["rows"]
    out = [f"Generated data: {f(a['n'])} x {a['dim']} (build, assign), {f(a['n_compare'])} x {a['dim']} (comparison); "
           f"codebooks {a['levels']} x {a['codebook_size']}.", ""]
    trs = [_cmd_row("`build-codebook`, memory-mapped", rows.get("build")),
           _cmd_row("`assign`, the same items", rows.get("assign")),
           _cmd_row("`build-codebook --balanced`", rows.get("balanced"))]
    cmp_ = rows.get("compare", {})
    for label, key in (("`build-codebook`, the comparison's items", "ours"), ("a naive FAISS script that loads everything", "naive_faiss")):
        r = (cmp_.get(key) or [None])[0]
        trs.append(_cmd_row(label, r, a["n_compare"]))
    out += table(["run", "items", "wall s", "peak RssAnon MiB", "peak RssFile MiB"], trs)
    if "ours_over_naive_best" in cmp_:
        out += [f"Ours over the naive script, wall time: {ratio(cmp_['ours_over_naive_best'])}.", ""]
    out += _scale_defaults(d)
    g = rows.get("gemm")
    if g:
        out += table(["encode blocks", "GEMM only s", "encode s", "FAISS search encode s", "GEMM share of encode", "encode GFLOP/s"],
                     [[f"{f(g['n'])} x {g['d']}", f(g["gemm_only_seconds"], 2), f(g["encode_seconds"], 2),
                       f(g["faiss_search_encode_seconds"], 2), pct(g["gemm_share_of_encode"]), f(g["encode_gflops"], 1)]])
    return out + _scale_equal(rows.get("equal")) + source("scale_cpu.json")


def _scale_label(key: str, r: dict) -> str:
    labels = {"build": "`build-codebook --no-index`", "assign": "`assign`, unindexed", "build_indexed": "`build-codebook` (indexes)",
              "assign_indexed_all_known": "`assign`, indexed, all known", "assign_indexed_10pct_new": "`assign`, indexed"}
    if key == "cold_10k":
        return f"`assign --update`, {f(r.get('new_items'))} new items into the index"
    label = f"`assign --engine ray --workers {r.get('workers')}`, indexed" if key.startswith("ray_") else labels.get(key, key)
    return label + (f", {pct(r['new_share'], 0)} new" if r.get("new_share") is not None else "")


def _scale_defaults(d: dict) -> list[str]:
    """The rows a user's defaults give (the SID index built and used) against the memory target,
    from the JSON's summary; nothing for a JSON without them."""
    s, rows = d.get("summary") or {}, d["rows"]
    srows = s.get("rows") or {}
    if not set(srows) - {"build", "assign"}:
        return []
    over = s.get("wall_over_unindexed_assign") or {}
    trs = []
    for key, v in srows.items():
        r, o = rows[key], over.get(key)
        vs = DASH if not o else ratio(o["ratio"]) + ("" if o["same_run"] else " (another run)")
        trs.append([_scale_label(key, r), f(_items(r) or (r.get("new_items") if key == "cold_10k" else d["args"]["n"])),
                    f(v["wall_seconds"], 1), f(v["peak_rss_anon_mib"], 1), f(v.get("ray_worker_peak_mib"), 1),
                    "yes" if v["within_2gb"] else "no", vs])
    out = [T["scale_defaults"], ""] + table(
        ["run", "items", "wall s", "peak RssAnon MiB", "largest Ray worker MiB",
         f"within {f(s['target_rss_anon_bytes'] / 1e9, 0)} GB", "wall over unindexed `assign`"], trs)
    c = rows.get("cold_10k") or {}
    if c.get("io_after_imports"):
        io = c["io_after_imports"]
        out += [f"Cold start into the index, after the imports: {f(io['rchar'])} bytes read and {f(io['wchar'])} written through "
                f"system calls ({f(io['read_bytes'])} and {f(io['write_bytes'])} on the disk), {f(io['hashed_bytes'])} checksummed; "
                f"{f(c.get('dir_read_bytes'))} of the tokenizer directory's {f(c.get('dir_bytes'))} bytes read into the page cache, "
                f"{f(c.get('added_bytes'))} added.", ""]
    for key in (k for k in srows if k.startswith("ray_")):
        r = rows[key]
        roles = ", ".join(f"{role} {f(b['peak_rss_anon_mib'], 1)}" + (f" ({f(b['processes'])} processes)" if b["processes"] > 1 else "")
                          for role, b in sorted((r.get("peak_rss_anon_by_role") or {}).items(), key=lambda kv: -kv[1]["peak_rss_anon_mib"]))
        out += [f"{_scale_label(key, r)}: table equal to the local one: {r.get('table_equals_local')}; "
                f"peak RssAnon MiB per process, by role: {roles or DASH}.", ""]
    return out


def _scale_equal(e: dict | None) -> list[str]:
    if not e:
        return []
    return [T["scale_equal"], ""] + table(
        ["mode", "identical", "rows differing", "in memory s", "streaming s"],
        [[k, str(e[k]["identical"]), f(e[k]["rows_differing"]), f(e[k]["in_memory_seconds"], 1), f(e[k]["streaming_seconds"], 1)]
         for k in ("plain", "balanced") if k in e])


def sec_determinism() -> list[str]:
    d = load("determinism_cost.json")
    if not d:
        return [T["missing"], ""]
    rows = []
    for step, r in sorted(d["rows"].items()):
        bw = min(x["wall_seconds"] for x in r["before"])
        aw = min(x["wall_seconds"] for x in r["after"])
        rows.append([step, f(bw, 1), f(aw, 1), ratio(r["after_over_before_best_wall"], 3),
                     f(max(x["peak_rss_anon_mib"] for x in r["before"]), 1), f(max(x["peak_rss_anon_mib"] for x in r["after"]), 1)])
    a = d["args"]
    return [f"{f(a['n'])} x {a['dim']} generated items, best of {a['repeats']} runs each.", ""] + table(
        ["step", "before: best wall s", "after: best wall s", "after / before", "before peak RssAnon MiB", "after peak RssAnon MiB"],
        rows) + source("determinism_cost.json")


def sec_engines() -> list[str]:
    out = []
    for n in ("engines.json", "engines_10m.json"):
        d = load(n)
        if not d:
            continue
        rows = [[r["what"], r["engine"], str(r.get("workers", DASH)), f(r.get("cpus"), 0) if r.get("cpus") else str(r.get("threads", "all")),
                 f(r["items"]), f(r["items_per_s"], 0), f(r.get("worker_items_per_s"), 0), f(r.get("start_s"), 1)] for r in d["rows"]]
        out += [f"`{n}`:", ""] + table(["what", "engine", "workers", "CPUs per worker (local: threads)", "items",
                                        "items/s (map)", "items/s per worker", "Ray start s"], rows)
        out += _projection(d.get("projection"))
    return out + source("engines.json", "engines_10m.json")


def _projection(p: dict | None) -> list[str]:
    if not p:
        return []
    a = p["assumptions"]
    rows = [[str(r["hosts"]), f(r["assign_cpu_hours"] * 60, 1), f(r.get("assign_gpu_hours_read_bound", 0) * 60, 1),
             f(r["extract_minilm_cpu_hours"], 0) if r.get("extract_minilm_cpu_hours") else DASH] for r in p["table"]]
    return [f"Projection to {f(p['items'], 0)} items ({a['cpu_workers_per_host']} one-CPU workers or {a['gpus_per_host']} GPUs "
            f"per host, {a['storage_read_GBps_per_host']} GB/s of storage per host: assumed, not measured):", ""] + table(
        ["hosts", "assign, CPU workers: minutes", "assign, GPU workers (read-bound): minutes", "MiniLM extract, CPU: hours"], rows)


def sec_cold_start() -> list[str]:
    rows = []
    for n in ("cold_start_10m.json", "cold_start_10m_cpu.json"):
        d = load(n)
        if d:
            s = d["summary"]
            rows.append([f"`{n}`", f(d["items"]), f(d["new_items"]), f(s["segment_total_s"], 2), f(s.get("segment_cpu_s"), 2),
                         f(s["segment_commit_s"], 3), f(s["segment_commit_write_bytes"]), f(s["rewrite_total_s"], 2),
                         f(s["rewrite_commit_write_bytes"]), f(s["segment_file_bytes_per_new_item"], 1)])
    return table(["file", "index items", "new items", "segment: total s", "segment: CPU s", "segment: commit s",
                  "segment: bytes written", "rewrite: total s", "rewrite: bytes written", "segment bytes per new item"],
                 rows) + source("cold_start_10m.json", "cold_start_10m_cpu.json")


def sec_decoding() -> list[str]:
    names = ["constrained_decoding.json", "constrained_decoding_auto_start.json", "constrained_decoding_h100.json"]
    rows = []
    for n in names:
        for r in (load(n) or {}).get("runs", []):
            ms, vr = r["median_seconds"], r["valid_rate"]
            rows.append([f"`{n}`", r["model"], str(r["beam"]), r["device"], f(ms["unconstrained"], 4), f(ms["processor"], 4),
                         f(ms["prefix_fn"], 4), ratio(r["ratio_processor"]), ratio(r["ratio_prefix_fn"]),
                         f"{pct(vr['unconstrained'], 0)} / {pct(vr['processor'], 0)} / {pct(vr['prefix_fn'], 0)}"])
    return table(["file", "model", "beams", "device", "unconstrained s", "TrieLogitsProcessor s", "prefix_allowed_tokens_fn s",
                  "processor / unconstrained", "prefix_fn / unconstrained", "real items: none / processor / prefix_fn"],
                 rows) + source(*names)


def sec_plan() -> list[str]:
    d = load("plan_accuracy.json")
    if not d:
        return [T["missing"], ""]
    rows = []
    for cat, c in sorted(d["catalogues"].items()):
        shapes = c.get("shapes") or {c["shape"]: {"real": c["real"], "predicted": {"sample": c["predicted"]}}}
        for shape, s in shapes.items():
            for frac, p in sorted(s["predicted"].items(), reverse=True):
                rows.append([cat, f(c["items"]), shape, f(p.get("sample_items", c.get("sample_items"))),
                             pct(s["real"]["collision_rate"], 2), pct(p["collision_rate"], 2),
                             f(s["real"]["largest_bucket"]), f(p["largest_bucket"])])
    return table(["catalogue", "items", "shape", "sample items", "real collisions", "predicted", "real largest bucket",
                  "predicted"], rows) + source("plan_accuracy.json")


def sec_sid_contract() -> list[str]:
    out = []
    for n in ("sid_contract.json", "sid_contract_1m.json"):
        d = load(n)
        for ds, v in sorted((d or {}).get("datasets", {}).items()):
            diffs = [x for per in v["differ"].values() for x in per.values() if isinstance(x, (int, float))]
            runs = sum(len(per) for per in v["differ"].values())
            out += [f"`{n}`, {ds} ({f(v['n_items'])} x {v['dim']}, ids {v['ids']}): {len(v['differ'])} checks, "
                    f"{runs} (check, setting) runs, settings: {', '.join(sorted(v['settings']))}.", ""]
            out += table(["check", "items whose SID differs, per setting"],
                         [[k, ", ".join(f"{s} {f(x) if isinstance(x, (int, float)) else x}" for s, x in sorted(per.items()))]
                          for k, per in sorted(v["differ"].items())])
            out += [f"Largest count over every run: {f(max(diffs)) if diffs else DASH}.", ""]
    return out + source("sid_contract.json", "sid_contract_1m.json")


def sec_small() -> list[str]:
    out = []
    s = load("swing_speed.json")
    if s:
        out += [T["swing"], ""] + table(
            ["log", "interactions", "vectorised s", "per-item loops s", "speed-up", "item-pair loop s", "speed-up", "max relative difference"],
            [[r["log"], f(r["interactions"]), f(r["vectorised_s"], 3), f(r["per_item_loops_s"], 2), ratio(r["speedup_vs_per_item_loops"], 1),
              f(r["item_pair_reference_s"], 2), ratio(r["speedup_vs_item_pair_reference"], 1), f"{r['max_relative_difference']:.1e}"]
             for r in s["runs"]])
    c = load("caption_lm_load.json")
    if c:
        out += [T["caption_load"], ""] + table(
            ["loader", "CPU s per load", "same weights"],
            [[k, " / ".join(f(x, 2) for x in v), str(c["same_weights_and_vocab"])] for k, v in sorted(c["cpu_s"].items())])
    return out + source("swing_speed.json", "caption_lm_load.json")


def sec_demo_sweeps() -> list[str]:
    out = []
    a = load("demo_align_sweep.json")
    if a:
        rows = []
        for tag, r in sorted(a["runs"].items()):
            c, q, ev, va = r["config"], r["config"]["qformer"], r["eval"], r.get("validation") or {}
            rows.append([tag, str(q["d_model"]), f(c["steps"]), f(c["caption_weight"], 2), str(c["caption_every"]),
                         str(c["caption_max_tokens"]), str(c["seed"]), f(r["seconds"]["cpu"], 1), ratio(ev["recall_ratio"]),
                         ratio(va.get("recall_ratio"))])
        out += [T["align_sweep"], ""] + table(
            ["run", "d_model", "steps", "caption weight", "caption every", "caption tokens", "seed", "CPU s",
             "held-out aligned / raw", "validation aligned / raw"], rows)
    r = load("demo_retrieval_sweep.json")
    if r:
        rows = [[k, x["name"], str(v["config"]["epochs"]), str(v["config"]["max_history"]), f(x["recall@10"], 4),
                 f(x["ndcg@10"], 4), f(x.get("total_cpu_seconds"), 1)]
                for k, v in sorted(r["runs"].items()) if "config" in v for x in v["rows"]]
        out += [T["retrieval_sweep"], ""] + table(["run", "SIDs", "epochs", "history", "R@10", "NDCG@10", "CPU s"], rows)
    return out + source("demo_align_sweep.json", "demo_retrieval_sweep.json")


def sec_trie() -> list[str]:
    d = load("trie_scale.json")
    if not d:
        return [T["missing"], ""]
    rows = [[f(r["items"]), str(r["sid_length"]), f(r["max_suffix"]), f(r["trie_build_seconds"], 2), f(r["nodes"]),
             f(r["trie_mb"], 1), f(r["bytes_per_item"], 1), f(r["allowed_next_us"], 1), f(r["item_of_us"], 1)] for r in d["runs"]]
    return table(["items", "SID length", "largest suffix", "trie build s", "nodes", "trie MB", "bytes per item",
                  "allowed_next µs", "item_of µs"], rows) + source("trie_scale.json")


def sec_cli_startup() -> list[str]:
    out = []
    for name in ("cli_startup_quiet.json", "cli_startup.json"):
        d = load(name)
        if not d:
            continue
        rows = []
        for cmd, r in d["commands"].items():
            b, a = r["before"], r["after"]
            rows.append([f"`{cmd}`", f(b["cpu_s_median"], 2), f(a["cpu_s_median"], 2), f(b["wall_s_median"], 2), f(a["wall_s_median"], 2),
                         f(b["rss_anon_mib_median"], 1), f(a["rss_anon_mib_median"], 1), f"{b['torch_imported']} / {a['torch_imported']}"])
        load_avg = d.get("load_average_before")
        out += [f"`{name}`: median of {d['runs']} runs per command, alternating the two checkouts"
                + (f"; load average {', '.join(f(x, 2) for x in load_avg)} when it started." if load_avg else "."), ""]
        out += table(["command", "CPU s before", "CPU s after", "wall s before", "wall s after", "RssAnon MiB before",
                      "RssAnon MiB after", "torch imported before / after"], rows)
        floors = d.get("floors") or {}
        if floors:
            out += [T["cli_floors"], ""] + table(
                ["imports", "CPU s", "wall s", "RssAnon MiB"],
                [[k, f(v["cpu_s_median"], 2), f(v["wall_s_median"], 2), f(v["rss_anon_mib_median"], 1)] for k, v in floors.items()])
    if not out:
        return [T["missing"], ""]
    return out + source("cli_startup_quiet.json", "cli_startup.json")


def sec_assign_indexed() -> list[str]:
    names = ("assign_indexed_1m.json", "assign_indexed_10m.json")
    rows = []
    for name in names:
        d = load(name)
        if not d:
            continue
        n = d["args"]["n"]
        for key, label in (("assign_unindexed", "unindexed"), ("assign_indexed_all_known", "indexed, all known"),
                           ("assign_indexed_10pct_new", "indexed, a tenth new")):
            runs = d["rows"].get(key) or []
            walls = [r["wall_seconds"] for r in runs]
            mem = max((r["peak_rss_anon_mib"] for r in runs), default=None)
            rows.append([f(n), label, f(len(runs)), f(min(walls), 1) if walls else DASH, f(mem, 0)])
        for key in sorted(k for k in d["rows"] if k.startswith("ray_")):
            r = d["rows"][key]
            rows.append([f(n), f"ray, {f(int(key.rsplit('_w', 1)[1]))} worker(s), a tenth new", f(1), f(r["wall_seconds"], 1),
                         f(r["peak_rss_anon_mib"], 0)])
        b = d["rows"].get("build_tok_idx")
        if b:
            rows.append([f(n), "indexed build (set-up)", f(1), f(b["wall_seconds"], 1), f(b["peak_rss_anon_mib"], 0)])
    if not rows:
        return [T["missing"], ""]
    return table(["items", "command", "rounds", "best wall s", "peak RssAnon MiB"], rows) + source(*names)


def sec_build_indexed_memory() -> list[str]:
    names = [p.name for p in sorted(RESULTS.glob("build_indexed_memory_*.json"))]
    rows = []
    for name in names:
        for r in load(name)["rows"]:
            rows.append([r["tree"], "indexed" if r["index"] else "`--no-index`", f(r["n"]), f(r["d"]), f(r["wall_seconds"], 1),
                         f(r["peak_rss_anon_mib"], 1)])
    if not rows:
        return [T["missing"], ""]
    return table(["tree", "build", "items", "d", "wall s", "peak RssAnon MiB"], rows) + source(*names)


def sec_reassign_indexed_memory() -> list[str]:
    d = load("reassign_indexed_memory.json")
    if not d:
        return [T["missing"], ""]
    rows = [[r["tree"], f(r["n"]), f(r["d"]), "timed out" if r.get("timed_out") else f(r["wall_seconds"], 1), f(r["peak_rss_anon_mib"], 1),
             DASH if r.get("moved_items") is None else f(r["moved_items"]),
             DASH if r.get("moved_other_prefix") is None else f(r["moved_other_prefix"])] for r in d["rows"]]
    return table(["tree", "items", "d", "wall s", "peak RssAnon MiB", "moved", "to another prefix"], rows) + source("reassign_indexed_memory.json")


def sec_cold_start_io() -> list[str]:
    d = load("cold_start_io.json")
    if not d:
        return [T["missing"], ""]
    rows = [[label, r["mode"], f(r["items"]), f(r.get("segments_before", 0)), f(r["rchar"]), f(r["wchar"]), f(r["hashed_bytes"]),
             DASH if r.get("dir_read_bytes") is None else f(r["dir_read_bytes"]), f(r["wall_s"], 2)]
            for label, runs in d["runs"].items() for r in runs]
    out = [f"{f(d['new_items'])} new items of dimension {d['dim']}; codebooks {' x '.join(map(str, d['codebook_sizes']))}. "
           "Pages read: the directory's pages in the page cache after the run, evicted before it (memory-mapped reads included).", ""]
    return out + table(["tree", "mode", "catalogue items", "segments", "bytes read (rchar)", "bytes written (wchar)", "bytes hashed",
                        "pages read (bytes)", "wall s"], rows) + source("cold_start_io.json")


def sec_build_vs_naive() -> list[str]:
    d = load("build_vs_naive.json")
    if not d:
        return [T["missing"], ""]
    rows = []
    for z in d["sizes"]:
        for side, m in z["median"].items():
            r = z.get(f"{side}_over_naive") or {}
            rows.append([f(z["n"]), side, f(z["rounds"]), f(m["wall_seconds"], 1), f(m["cpu_seconds"], 1),
                         ratio(r["wall_median"]) if r else "1", ratio(r["cpu_median"]) if r else "1", f(m["peak_rss_anon_mib"], 0)])
    out = table(["items", "run", "rounds", "median wall s", "median CPU s", "wall / naive (paired median)",
                 "CPU / naive (paired median)", "peak RssAnon MiB"], rows)
    ph = [[f(z["n"])] + [f(v, 2) for v in z["ours_phases_median"].values()] for z in d["sizes"] if z.get("ours_phases_median")]
    if ph:
        keys = list(next(z for z in d["sizes"] if z.get("ours_phases_median"))["ours_phases_median"])
        out += ["", T["build_vs_naive_phases"], ""] + table(["items"] + [k.replace("_seconds", "") + " s" for k in keys], ph)
    steps = [("naive_load", "naive: load"), ("naive_train_total", "naive: train"), ("naive_search_total", "naive: search"),
             ("naive_update_total", "naive: residual update"), ("ours_train", "ours: train"), ("ours_predict", "ours: predict"),
             ("ours_encode", "ours: encode")]
    split = [z for z in d["sizes"] if isinstance(z.get("steps_in_one_process"), dict) and "ours_encode" in z["steps_in_one_process"]]
    if split:
        rows = [[label] + [f"{f(z['steps_in_one_process'][k]['wall_seconds'], 2)} / {f(z['steps_in_one_process'][k]['cpu_seconds'], 2)}"
                           for z in split] for k, label in steps]
        out += ["", T["build_vs_naive_steps"], ""] + table(["step"] + [f"{f(z['n'])} items: wall / CPU s" for z in split], rows)
    return out + source("build_vs_naive.json")


def sec_causal_lm() -> list[str]:
    d = load("causal_lm_office_short.json")
    if not d:
        return [T["missing"], ""]
    rows, ref = [], d["reference"]
    for name, s in d["sets"].items():
        run = d["runs"][name][0]
        cfg = run["config"]
        what = f"{cfg['arch']}" + (f" {cfg['model']} {cfg['finetune']}" if cfg.get("model") else "")
        budget = f"{f(cfg['max_steps'])} steps" if cfg.get("max_steps") else f"{f(cfg['epochs'])} epochs"
        hit, ndcg = s["item_hit@10"], s["item_ndcg@10"]
        cmp = d["comparisons"]["item_hit@10"].get(name)
        vs = DASH if cmp is None else f"{cmp['diff']:+.4f} [{cmp['lo']:+.4f}, {cmp['hi']:+.4f}]" + (" *" if cmp["significant"] else "")
        rows.append([name, what, budget, f(run["trainable_parameters"]), f"{f(hit['mean'], 4)} [{f(hit['lo'], 4)}, {f(hit['hi'], 4)}]",
                     f(ndcg["mean"], 4), vs, f(d["wall_seconds"][name], 0)])
    out = [f"Seed {f(d['sets'][ref]['seeds'][0])}, {f(d['users'])} test users shared by every run; differences against "
           f"`{ref}` with bootstrap intervals, `*` significant after Holm.", ""]
    return out + table(["run", "model", "budget", "trainable parameters", "ItemHit@10 [interval]", "ItemNDCG@10",
                        f"ItemHit@10 vs {ref}", "wall s"], rows) + source("causal_lm_office_short.json") + _causal_lm_budget() + _sid_init()


def _causal_lm_budget() -> list[str]:
    """The equal-budget comparison (bench_causal_lm_budget.py), only once its JSON exists."""
    d = load("causal_lm_office_budget.json")
    if not d:
        return []
    rows = []
    for name, s in d["sets"].items():
        bs = d["budgets"][name]
        b = bs[0]
        model = b["arch"] + (f" {b['model']}" if b.get("model") else "")
        hit = s["item_hit@10"]
        rows.append([name, model, DASH if b["cpu_minutes"] is None else f(float(b["cpu_minutes"]), 1),
                     DASH if b["planned_steps"] is None else f(b["planned_steps"]), f(b["steps_run"]),
                     f(sum(x["train_cpu_seconds"] for x in bs) / len(bs), 0), f"{f(hit['mean'], 4)} [{f(hit['lo'], 4)}, {f(hit['hi'], 4)}]",
                     f(s["item_ndcg@10"]["mean"], 4)])
    out = ["", T["causal_lm_budget"], "",
           f"Seeds {', '.join(map(str, d['plan']['seeds']))}; {f(d['users'])} test users shared by every run.", ""]
    out += table(["run", "model", "budget CPU-min", "planned steps", "steps run (first seed)", "train CPU s (mean)",
                  "ItemHit@10 [interval]", "ItemNDCG@10"], rows)
    for key, head in (("lm_vs_t5", "causal LM minus T5, same budget and SIDs"), ("set_vs_set", "SIDs against SIDs, same run")):
        cmp = d.get(key) or {}
        names = list(cmp.get("item_hit@10", {}))
        if names:
            out += table([head, "ItemHit@10", "ItemNDCG@10"],
                         [[n, diff_cell(cmp["item_hit@10"].get(n), DASH), diff_cell(cmp["item_ndcg@10"].get(n), DASH)] for n in names])
    return out + source("causal_lm_office_budget.json")


def _sid_init() -> list[str]:
    """mean against codebook initialisation of the SID tokens (bench_sid_init.py), once its JSON exists."""
    d = load("sid_init_office.json")
    if not d:
        return []
    rows = [[r["sid_init"], f(r["steps"]), f(r["train_loss_mean"], 3), f(r["valid_loss"], 3),
             f(r["test"]["item_hit@10"], 4), f(r["test"]["users"]), f(r["cpu_seconds"], 0)] for r in d["runs"]]
    return ["", T["sid_init"], ""] + table(["SID init", "steps", "mean train loss", "valid loss", "ItemHit@10", "test users",
                                            "CPU s"], rows) + source("sid_init_office.json")


# ---------------------------------------------------------------- the index of every JSON

WHAT = {
    "align_office_": "QFormer alignment on Office: held-out pair recall, aligned against raw features",
    "align_office_validation": "alignment settings scored on validation pairs instead of held-out ones",
    "bad_inputs_": "every verb against malformed inputs: exit codes and one-line errors",
    "balanced_clusters": "balanced RQ-Kmeans: largest code per level against the cap",
    "caption_lm_load": "loading the caption LM: transformers against one GGUF parse",
    "cold_start_": "cold start into a large index: a segment against a rewrite",
    "cold_start_io": "cold start into an index: bytes read, written and checksummed, before and after",
    "build_vs_naive": "unindexed build against the naive FAISS script: paired rounds, medians, wall and CPU",
    "build_indexed_memory": "build-codebook with its index and with --no-index: peak memory and wall time, before and after",
    "reassign_indexed_memory": "index --policy reassign: peak memory and wall time, built in memory (before) and from files (after)",
    "cli_startup": "CLI start-up time and memory, with and without torch imported",
    "assign_indexed": "assign on an indexed tokenizer, streamed, against the unindexed assign",
    "sid_init_office": "the SID tokens' initial embeddings in a causal LM: the mean of its embeddings against the codebooks projected",
    "causal_lm_office_budget": "the causal LM against the encoder-decoder companion at equal calibrated CPU budgets on Office",
    "causal_lm_office_short": "a first look: the offline SmolLM with LoRA against the encoder-decoder companion on Office, one seed",
    "companion_fast_settings": "companion training settings: CPU seconds against retrieval quality",
    "constrained_decoding": "constrained decoding: trie processor and prefix hook against unconstrained generate",
    "demo_align_sweep": "alignment settings searched for the fast demo",
    "demo_make_fresh_clone": "make demo on a fresh clone, timed",
    "demo_office_cross_retrieval": "each demo's SIDs under the other demo's retrieval training",
    "demo_office_": "the demo pipeline, stage by stage: wall and CPU seconds, alignment and retrieval results",
    "demo_retrieval_sweep": "companion epochs and history length on the same SIDs",
    "determinism_cost": "build and assign before and after the exact nearest-code rule",
    "downstream_": "downstream ranking of SID sets, several seeds, bootstrap intervals",
    "downstream/": "one companion run per SID set and seed (the summaries above read them)",
    "engines": "local and Ray engines: items per second for assign and extract",
    "extract-": "feature extraction runs and a resumed extraction",
    "indexer_office": "collision policies on Office: build and cold start",
    "office_cli_": "CLI outputs of the Office flow (build, assign, index, import, lookup)",
    "plan_accuracy": "collision prediction of plan against real builds",
    "reliability_trials": "concurrent updates and killed writers: nothing lost, every directory loadable",
    "retrieval_office_": "companion retrieval on Office SIDs",
    "rq_kmeans_cpu": "RQ-Kmeans against FAISS and scikit-learn",
    "rq_vae_ablation": "RQ-VAE with and without k-means init and dead-code restarts",
    "rq_vae_vs_kmeans": "RQ-Kmeans against RQ-VAE, built by the CLI and measured by report",
    "scale_cpu": "streaming build and assign on generated data: time and memory",
    "sid_contract": "SIDs of every entry point under other kernels and thread counts: items that differ",
    "swing_speed": "vectorised Swing against reference loops",
    "trie_scale": "SID trie size and build time as the index grows",
}


def what(name: str) -> str:
    keys = sorted((k for k in WHAT if name.startswith(k)), key=len, reverse=True)
    return WHAT[keys[0]] if keys else "not described yet"


def sec_index() -> list[str]:
    rows = [[f"`{p.name}`", what(p.name), machine(json.loads(p.read_text()))] for p in sorted(RESULTS.glob("*.json"))]
    ds = RESULTS / "downstream"
    for d in sorted(x for x in ds.glob("*") if x.is_dir()) if ds.is_dir() else []:
        files = sorted(d.rglob("*.json"))
        first = json.loads(files[0].read_text()) if files else None
        rows.append([f"`downstream/{d.name}/` ({len(files)} files)", what("downstream/"), machine(first)])
    return table(["file", "what it measures", "machine (first file for a directory)"], rows)


# ---------------------------------------------------------------- the document

T = {
    "head": "# Benchmark results\n\nWritten by `python benchmarks/render_results.py` from `benchmarks/results/*.json`; "
            "do not edit by hand (`--check` fails when this file and the JSONs disagree). Every table names the files "
            "it reads and the machine each ran on. Most runs shared a small CPU machine with other jobs: compare "
            "numbers within one table, and CPU seconds rather than wall seconds where both are given.\n",
    "missing": "The results file of this section is missing.",
    "demo": "The demo pipeline (`make demo`: configs/office.toml; `make demo-long`: configs/office_long.toml), "
            "timed stage by stage by `benchmarks/demo_timing.py`. Every stage runs on one thread, so on an idle "
            "machine the wall time approaches the CPU time; these runs shared their machine.",
    "demo_make": "`make demo` itself on a fresh clone (install not included):",
    "demo_cross": "Each demo's SIDs under the other demo's retrieval training (`evaluate-retrieval`):",
    "demo_sweeps": "The searches that set `configs/office.toml`: alignment settings and companion training "
                   "settings, one run each; the machine was heavily loaded, so compare CPU seconds.",
    "align_sweep": "Alignment (`python benchmarks/align_demo_fast.py`; tags: d = QFormer width, s = steps, c = caption "
                   "every so many steps, t = caption tokens, nocap = no caption loss, h = user-to-item history, last "
                   "s = seed):",
    "retrieval_sweep": "Companion epochs and history length on the same SIDs (`python benchmarks/bench_retrieval.py`):",
    "trie": "The suffix index and its trie on generated SIDs (`python benchmarks/trie_scale.py`): size, build time and "
            "lookup latency.",
    "alignment": "Held-out pairs are each user's (validation item, test item) of the leave-one-out split; recall@10 of "
                 "pair retrieval in both directions over all items; the baseline is the mean-pooled raw MiniLM token "
                 "features. `python benchmarks/align_office.py`.",
    "align_validation": "The same settings scored on (last training item, validation item) pairs, which never touch "
                        "test items (`python benchmarks/align_validation.py`):",
    "rq_kmeans": "Our RQ-Kmeans (FAISS's recipe in our own Lloyd loop) against the established tools on the same "
                 "embeddings, one run (`python benchmarks/bench_rq_kmeans.py`).",
    "rq_assign": "Greedy assignment throughput against the bound set by the machine's float GEMM rate, same run:",
    "rq_vae": "RQ-Kmeans, balanced RQ-Kmeans and RQ-VAE, each built by `build-codebook` and measured by `report` "
              "(`python benchmarks/bench_rq_vae_vs_kmeans.py`); held-out MSE: fit on most items, reconstruct the rest.",
    "rq_vae_ablation": "RQ-VAE ablation (`python benchmarks/bench_rq_vae_ablation.py`):",
    "balanced": "Balanced mode against plain RQ-Kmeans on far-apart generated clusters and on Office "
                "(`python benchmarks/bench_balanced.py`). The limit is the cap times items per code; a level that "
                "misses it is named in a warning.",
    "retrieval": "The companion (a small random-init T5, trie-constrained beam search) trained on each SID set, "
                 "leave-one-out over the Office users, full ranking (`python benchmarks/bench_retrieval.py`).",
    "downstream": "Every SID set gets the same companion, the same leave-one-out split and the same seeds; ItemHit and "
                  "ItemNDCG are collision-corrected (a beam SID shared by several items counts for each a share), "
                  "Recall and NDCG credit a colliding SID for every item behind it. Intervals: two-stage bootstrap over "
                  "users and seeds; differences paired on the same users, * = significant after Holm "
                  "(`python benchmarks/bench_downstream.py summary`).",
    "scale": "Streaming `build-codebook` and `assign` on generated data (`tokenizer_kit.io.write_clustered_npy`), "
             "`python benchmarks/bench_scale.py`. Peak memory is anonymous memory (RssAnon) over the process tree; "
             "the memory-mapped input's page cache is RssFile. The builds of the first table run with `--no-index` "
             "(codebooks and codes, no SID index) and its `assign` uses that tokenizer.",
    "scale_defaults": "With the defaults a user types: `build-codebook` builds the SID index (suffix policy), "
                      "`assign` reads it (known items keep their indexed SID, new ones are placed by the cold start), "
                      "`assign --update` appends new items to a copy of that tokenizer, and the Ray engine does the same "
                      "assign; each against the memory target, and the assigns' wall time over the unindexed one (measured in the same run "
                      "unless the last column says otherwise).",
    "scale_equal": "The streaming build against the in-memory one on the same items:",
    "determinism": "The cost of the exact nearest-code rule (the SID contract): the same commands before and after "
                   "the change, same machine (`python benchmarks/bench_determinism_cost.py`).",
    "engines": "The local engine against Ray Data actor pools (`python benchmarks/bench_engines.py`). \"map\" includes "
               "actor starts; \"per worker\" is one worker's rate while it computes a shard; Ray's own start is apart.",
    "cold_start": "`assign --update` into a large index: an appended segment against rewriting the index "
                  "(`python benchmarks/bench_cold_start.py`); best of the repeats.",
    "decoding": "`generate` with `TrieLogitsProcessor`, with transformers' `prefix_allowed_tokens_fn` on the same "
                "trie, and unconstrained, on Office SIDs (`python benchmarks/constrained_decoding.py`); median seconds.",
    "plan": "`tokenizer-kit plan` predictions against real builds (`python benchmarks/bench_plan.py`); "
            "predictions from the whole catalogue and from smaller samples.",
    "sid_contract": "Items whose SID differs from the reference run, per path and setting "
                    "(`python benchmarks/sid_contract.py`; see docs/sid-contract.md).",
    "cli_startup": "Start-up time and memory of CLI verbs before and after the verbs that need no torch stopped "
                   "importing it (`python benchmarks/bench_cli_startup.py`), first on a quiet machine, then on a loaded one, "
                   "where CPU seconds are steadier than wall seconds.",
    "cli_floors": "What the imports alone cost, same runs:",
    "assign_indexed": "`assign --out` on an indexed tokenizer streams the cold start (known items' SIDs read per batch "
                      "from the stored index, only the items to place gathered), against the unindexed assign of the "
                      "same codebooks, whole processes, peak anonymous memory over the process tree "
                      "(`python benchmarks/bench_assign_indexed.py`); the Ray rows include Ray's own processes. "
                      "These runs shared a loaded machine.",
    "build_indexed_memory": "`build-codebook` with its default suffix index against `--no-index`, whole processes "
                            "(`python benchmarks/bench_build_indexed_memory.py`): wall time and peak anonymous memory "
                            "(RssAnon) over the process tree; the memory-mapped input's page cache is file memory and "
                            "does not count. Before is the source tree that builds the index in memory, after the one "
                            "that builds it from the directory's files in bounded memory; the rows of one file ran in one "
                            "run (a file with only after rows measured the current tree alone, on a quiet machine).",
    "reassign_indexed_memory": "`index DIR --policy reassign -e E` re-indexing a directory `build-codebook` indexed (suffix), "
                               "whole processes (`python benchmarks/bench_reassign_indexed_memory.py`; standard normal "
                               "vectors, three levels of two hundred and fifty-six codes): wall time and peak anonymous memory "
                               "(RssAnon) over the process tree; memory-mapped input and scratch files are file memory and do "
                               "not count. Before is the source tree that indexes in memory (run only where it fits), after the "
                               "one that resolves the prefixes from files one first-level bucket at a time, with the same SIDs "
                               "(at the size both ran, the two trees wrote byte-identical index and trie files). The before row "
                               "ran earlier than the after rows, on the same machine shared with other jobs (the file's `note`).",
    "cold_start_io": "Bytes one `assign NEW --ids IDS --tokenizer DIR --update` moves, in a fresh process after its imports, "
                     "with the tokenizer directory's files dropped from the page cache first "
                     "(`python benchmarks/bench_cold_start_io.py`). Read and written: bytes through read and write system "
                     "calls, the new items' input included; hashed: bytes checksummed. Modes: memory (no `--out`) and "
                     "stream (`--out`). Before is the source tree that checksums every file it loads, after the one that "
                     "checks the files it reads whole and the sizes of the memory-mapped ones.",
    "causal_lm": "SIDs in a pretrained causal LM (the offline SmolLM, LoRA, `evaluate-retrieval --arch causal-lm`) against the "
                 "default encoder-decoder companion on Office (`python benchmarks/bench_causal_lm_office.py`; docs/causal-lm.md). A first look "
                 "on a loaded machine, one seed, budgets not matched: the LM's step budget is a small part of one epoch.",
    "sid_init": "Which initialisation of the SID tokens trains faster (`python benchmarks/bench_sid_init.py`): the same "
                "model, seed, batches and step count, the SID rows started from the mean of the model's embeddings or "
                "from the codebooks projected; lower losses after the same steps mean faster training.",
    "causal_lm_budget": "At equal CPU budgets (`python benchmarks/bench_causal_lm_budget.py`): each budget is process CPU "
                        "seconds of training, turned into a fixed step count by timing a few steps of each model first; the "
                        "runs record the CPU seconds training really took. Differences are paired on the same users, with "
                        "bootstrap intervals, `*` significant after Holm over each table's rows.",
    "build_vs_naive": "The unindexed `build-codebook` against the naive FAISS script (load everything, `faiss.Kmeans` per "
                      "level, search every residual), whole processes run back to back in alternating order, medians over "
                      "rounds (`python benchmarks/bench_build_vs_naive.py`); the ratios are medians of the paired rounds' "
                      "ratios. Before is the source tree that decoded every batch to measure the reconstruction and "
                      "imported scipy for the collision prediction.",
    "build_vs_naive_phases": "Where the build's time goes (its own phase timings, medians): sampling, training on the sample "
                             "(with the collision prediction), the encode pass (codes, reconstruction, metrics, writing).",
    "build_vs_naive_steps": "Both methods' steps one after the other in one process (the script's `phases` mode): compute "
                            "(training, search, encode) apart from the naive's memory traffic (loading the matrix, the "
                            "residual update that gathers a full copy per level).",
    "small": "Smaller measurements.",
    "swing": "Swing pair mining, vectorised, against the per-item loop and an item-pair loop "
             "(`python benchmarks/swing_speed.py`):",
    "caption_load": "Loading the caption LM (`python benchmarks/bench_caption_lm_load.py`):",
    "index": "Every results file, what it measures and the machine it ran on.",
}

SECTIONS: list[tuple[str, str, Callable[[], list[str]]]] = [
    ("Demo pipeline", "demo", sec_demo),
    ("Demo tuning sweeps", "demo_sweeps", sec_demo_sweeps),
    ("Alignment on Office", "alignment", sec_alignment),
    ("RQ-Kmeans against FAISS and scikit-learn", "rq_kmeans", sec_rq_kmeans),
    ("RQ-Kmeans against RQ-VAE", "rq_vae", sec_rq_vae),
    ("Balanced clusters", "balanced", sec_balanced),
    ("Generative retrieval on Office", "retrieval", sec_retrieval),
    ("Downstream ranking", "downstream", sec_downstream),
    ("Scale: streaming build and assign", "scale", sec_scale),
    ("Cost of determinism", "determinism", sec_determinism),
    ("Cluster throughput: local and Ray engines", "engines", sec_engines),
    ("Cold start into a large index", "cold_start", sec_cold_start),
    ("Assign on an indexed tokenizer", "assign_indexed", sec_assign_indexed),
    ("Indexed build memory", "build_indexed_memory", sec_build_indexed_memory),
    ("Reassign index memory", "reassign_indexed_memory", sec_reassign_indexed_memory),
    ("Cold start I/O", "cold_start_io", sec_cold_start_io),
    ("SID trie size", "trie", sec_trie),
    ("Constrained decoding", "decoding", sec_decoding),
    ("Collision planning", "plan", sec_plan),
    ("SID contract", "sid_contract", sec_sid_contract),
    ("CLI start-up", "cli_startup", sec_cli_startup),
    ("Build against the naive FAISS script", "build_vs_naive", sec_build_vs_naive),
    ("SIDs in a causal LM", "causal_lm", sec_causal_lm),
    ("Other measurements", "small", sec_small),
    ("Index of results files", "index", sec_index),
]


def render() -> str:
    out = [T["head"], "Sections: " + ", ".join(f"[{t}](#{anchor(t)})" for t, _, _ in SECTIONS) + ".", ""]
    for title, key, fn in SECTIONS:
        out += [f"## {title}", "", T[key], ""] + fn()
    return "\n".join(out).rstrip("\n") + "\n"


def anchor(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c == "-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from what this would write")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    text = render()
    if a.check:
        if not a.out.exists() or a.out.read_text() != text:
            print(f"{a.out.name} is out of date: run python benchmarks/render_results.py", file=sys.stderr)
            return 1
        return 0
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
