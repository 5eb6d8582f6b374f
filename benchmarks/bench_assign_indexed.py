"""Assign on an indexed tokenizer at scale (issue 25, item 2): peak memory and wall time of
``assign --out`` with the SID index (all items known, and 10% new) beside the unindexed
assign, measured in one run.

Data: ``big``, ``--n`` rows of ``tokenizer_kit.io.write_clustered_npy`` (seed 1, as
``bench_scale.py``'s large set), read memory-mapped, ids = row numbers (``--row-ids``). The 10%
new items are ``big`` read with other ids (``--ids mix_N.ids.npy``): every 10th row (row r with
r % 10 == 9) under id n + r, which the index does not hold, the others under their row number.
So the new items are spread over every batch, and each has the embedding of an indexed item:
its codes equal an indexed SID's, and the suffix policy places it after it (the costliest
placement; no second 10 GB input to generate).

Tokenizers: ``tok_idx``, ``build-codebook --row-ids`` with its defaults (3 x 256, seed 0),
which index (suffix policy, with the items' fingerprints); ``tok_plain``, the same directory
without its index (``derive_plain``: quantizer and codes kept, as ``--no-index`` writes
them). Each row is a whole process (``python -m tokenizer_kit.cli.app ...``) measured by
``bench_scale.run_measured``: wall clock and the peak of the sum of ``RssAnon`` over the
process tree, polled from /proc/PID/status every 50 ms (the page cache of the memory-mapped
input is file memory and does not count).

    nice python benchmarks/bench_assign_indexed.py --n 10000000 \\
        --out benchmarks/results/assign_indexed_10m.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import ROOT, _cli, run_measured  # noqa: E402


def _name(n: int, d: int) -> str:
    return f"gen_{n // 1_000_000}m_{d}.npy" if n % 1_000_000 == 0 else f"gen_{n}_{d}.npy"


def make_inputs(scratch: Path, n: int, d: int) -> tuple[Path, Path, dict]:
    """``big`` (generated if missing, seed 1) and the ids file that makes every 10th row new."""
    from tokenizer_kit.io import write_clustered_npy

    times = {}
    big = scratch / _name(n, d)
    if not big.exists() or np.load(big, mmap_mode="r").shape != (n, d):
        t = time.perf_counter()
        write_clustered_npy(big, n, d, seed=1)
        times[big.name] = round(time.perf_counter() - t, 1)
    rows = np.arange(n, dtype=np.int64)
    mix_ids = scratch / f"mix_{n}.ids.npy"
    np.save(mix_ids, np.where(rows % 10 == 9, n + rows, rows))
    return big, mix_ids, times


def _same_table(local: Path, shards: Path) -> bool:
    """The ray engine's shard directory holds the local output file's rows, in order (read
    whole in this process, which is not measured)."""
    import pyarrow.parquet as pq

    a, b = pq.read_table(local), pq.read_table(shards)
    return bool(a.schema.equals(b.schema) and a.equals(b))


def derive_plain(tok_idx: Path, tok_plain: Path) -> dict:
    """``tok_idx`` without its index: the same quantizer file and the items' codes (the SIDs'
    code levels: under the suffix policy the quantizer's codes), no trie, no index arrays: what
    ``build-codebook --no-index`` writes, without a second build (minutes at 10M)."""
    from tokenizer_kit import SemanticTokenizer

    t = time.perf_counter()
    tok = SemanticTokenizer.from_pretrained(tok_idx)
    if tok.sections["index"]["policy"] != "suffix":
        raise SystemExit("tok_idx is not indexed under the suffix policy: its SIDs' code levels are not the quantizer's codes")
    tok.sections.pop("index")
    tok.attachments.clear()
    tok.sid_suffix = None
    tok.save_pretrained(tok_plain, overwrite=True)
    return {"seconds": round(time.perf_counter() - t, 1), "how": "tok_idx without its index: quantizer and codes kept, no trie or index arrays"}


def main() -> None:
    from _machine import machine_info
    from _paths import portable
    from tokenizer_kit.build._artifact import TOKENIZER

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scratch", default=str(ROOT / "benchmarks" / ".scratch" / "assign_indexed"),
                    help="generated inputs, tokenizers and outputs (2 x n x d x 4 bytes and more)")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=1, help="rounds of the three assign rows (alternating)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "assign_indexed.json"))
    ap.add_argument("--ray", default="", help="worker counts of the ray rows (10%% new), e.g. 1,2; their tables are compared "
                    "with the local one")
    args = ap.parse_args()
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    res: dict = {"benchmark": "assign_indexed", "machine": machine_info(), "args": portable(vars(args)), "rows": {}}
    big, mix_ids, res["generated_seconds"] = make_inputs(scratch, args.n, args.dim)
    R = res["rows"]

    def save():
        res["machine"]["load_average_end"] = os.getloadavg()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(portable(res), indent=1).replace(sys.executable, "python")  # the interpreter's path is this machine's
        Path(args.out).write_text(text)

    shape = ["--levels", args.levels, "--codebook-size", args.codebook_size, "--seed", 0, "--row-ids", "--format", "json", "--overwrite"]
    if not TOKENIZER.committed(scratch / "tok_idx"):
        R["build_tok_idx"] = run_measured(_cli("build-codebook", big, "--out", scratch / "tok_idx", *shape))
        save()
    if not TOKENIZER.committed(scratch / "tok_plain"):
        R["derive_tok_plain"] = derive_plain(scratch / "tok_idx", scratch / "tok_plain")
        save()
    rows = {
        "assign_unindexed": ("tok_plain", big, ["--row-ids"]),
        "assign_indexed_all_known": ("tok_idx", big, ["--row-ids"]),
        "assign_indexed_10pct_new": ("tok_idx", big, ["--ids", mix_ids]),
    }
    for r in range(args.repeats):
        for key, (tok, src, extra) in rows.items():
            out = scratch / f"{key}.parquet"
            run = run_measured(_cli("assign", src, "--tokenizer", scratch / tok, "--out", out, *extra, "--format", "json"))
            R.setdefault(key, []).append(run)
            if not (args.ray and key == "assign_indexed_10pct_new"):
                out.unlink(missing_ok=True)
            save()
    if all(R.get(k) for k in rows):
        res["summary"] = _summary(R, rows)
        save()
        print(json.dumps(res["summary"], indent=1))
    for w in [int(k) for k in args.ray.split(",") if k]:
        out = scratch / f"ray_w{w}"
        R[f"ray_assign_indexed_10pct_new_w{w}"] = run = run_measured(_cli(
            "assign", big, "--ids", mix_ids, "--tokenizer", scratch / "tok_idx", "--out", out, "--engine", "ray", "--workers", w,
            "--format", "json"))
        run["table_equals_local"] = _same_table(scratch / "assign_indexed_10pct_new.parquet", out)
        save()


def _summary(R: dict, rows: dict) -> dict:
    best = {k: min(x["wall_seconds"] for x in R[k]) for k in rows}
    return {
        **{f"{k}_best_wall_seconds": v for k, v in best.items()},
        **{f"{k}_peak_rss_anon_mib": max(x["peak_rss_anon_mib"] for x in R[k]) for k in rows},
        "all_known_over_unindexed_wall": round(best["assign_indexed_all_known"] / best["assign_unindexed"], 3),
        "new_10pct_over_unindexed_wall": round(best["assign_indexed_10pct_new"] / best["assign_unindexed"], 3),
        # paired within each round (the three rows run back to back): on a loaded machine the
        # rounds differ more than the rows do
        "per_round_all_known_over_unindexed": [round(a["wall_seconds"] / u["wall_seconds"], 3)
                                               for a, u in zip(R["assign_indexed_all_known"], R["assign_unindexed"])],
        "per_round_10pct_new_over_unindexed": [round(a["wall_seconds"] / u["wall_seconds"], 3)
                                               for a, u in zip(R["assign_indexed_10pct_new"], R["assign_unindexed"])],
    }


if __name__ == "__main__":
    main()
