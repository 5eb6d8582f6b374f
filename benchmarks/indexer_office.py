"""Collision policies and cold start on Amazon Office (MiniLM embeddings), plain and balanced RQ-Kmeans.

Holds back 10% of the items (seeded), builds a 3 x 256 RQ-Kmeans tokenizer on the rest,
indexes it under each policy, then cold-starts the held-back items. Reports collision
rates, moved items and reconstruction cost, trie build time and size, cold-start time.
Writes ``benchmarks/results/indexer_office.json``.

    python benchmarks/indexer_office.py [--embeddings office.npy --ids office.ids.txt]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _machine import machine_info as machine  # benchmarks/ is on sys.path when run as a script

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizer_kit import SemanticTokenizer  # noqa: E402
from tokenizer_kit.indexer import IndexConfig, SIDIndex  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--embeddings", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "office_minilm_f16.npy"))
    ap.add_argument("--ids", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "office_minilm_f16.ids.txt"))
    ap.add_argument("--holdout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "indexer_office.json"))
    args = ap.parse_args()
    x = np.load(args.embeddings)
    ids = np.asarray([l.strip() for l in open(args.ids) if l.strip()], dtype=object)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(x))
    n_hold = int(round(args.holdout * len(x)))
    hold, keep = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])
    res = {"machine": machine(), "dataset": "amazon-office MiniLM-L6 (384-d)", "items": int(len(x)),
           "built_on": int(len(keep)), "cold_start_items": int(len(hold)), "codebook_sizes": [256, 256, 256], "runs": []}
    for balanced in (False, True):
        t0 = time.perf_counter()
        tok = SemanticTokenizer.build(x[keep], ids=ids[keep], codebook_sizes=[256] * 3, balanced=balanced, seed=args.seed)
        build_s = time.perf_counter() - t0
        for policy in ("none", "suffix", "reassign"):
            t0 = time.perf_counter()
            idx = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy=policy), x=x[keep])
            index_s = time.perf_counter() - t0
            if policy != "none":
                idx.check()
            t0 = time.perf_counter()
            new, table, summary = idx.assign(tok, ids[hold], x[hold])
            cold_s = time.perf_counter() - t0
            if policy != "none":
                new.check()
                before = {str(i): tuple(s) for i, s in zip(idx.item_ids.tolist(), idx.sids.tolist())}
                after = {str(i): tuple(s) for i, s in zip(new.item_ids.tolist(), new.sids.tolist())}
                assert all(after[k] == v for k, v in before.items())
            # reconstruction cost of the cold-start SIDs vs their raw codes
            xp = tok.preprocess(x[hold])
            raw = new.raw_codes[-len(hold):]
            fin = new.sids[-len(hold):, : tok.levels]
            e0 = float(((xp - tok.decode(raw)) ** 2).sum())
            e1 = float(((xp - tok.decode(fin)) ** 2).sum())
            row = {
                "balanced": balanced, "policy": policy, "tokenizer_build_seconds": build_s, "index_seconds": index_s,
                **{k: v for k, v in idx.stats.items() if k != "policy"},
                "sid_length": idx.sid_length, "vocab_tokens": int(sum(idx.level_sizes)),
                "cold_start": {**{k: summary[k] for k in ("new", "collided", "moved", "suffix_vocab_grew")},
                               "seconds": cold_s, "duplicate_sids_after": int(len(new) - len(np.unique(new.sids, axis=0))),
                               "reconstruction_cost_relative": (e1 / e0 - 1.0) if e0 > 0 else 0.0},
            }
            print(json.dumps(row), flush=True)
            res["runs"].append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
