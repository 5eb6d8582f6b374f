"""SID trie build time and size at 100k / 1M / 10M items (synthetic skewed codes, suffix policy).

Writes ``benchmarks/results/trie_scale.json``.

    python benchmarks/trie_scale.py [--sizes 100000,1000000,10000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from _machine import machine_info as machine  # benchmarks/ is on sys.path when run as a script

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizer_kit.indexer import SIDTrie, suffix_sids  # noqa: E402


def skewed_codes(n: int, k: int, levels: int, rng) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1) ** 0.8  # Zipf-like code usage, as real catalogues show
    p /= p.sum()
    return np.stack([rng.choice(k, n, p=p) for _ in range(levels)], 1).astype(np.int32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000,10000000")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "trie_scale.json"))
    args = ap.parse_args()
    res = {"machine": machine(), "codebook_sizes": [256, 256, 256], "policy": "suffix", "runs": []}
    rng = np.random.default_rng(0)
    for n in [int(s) for s in args.sizes.split(",")]:
        codes = skewed_codes(n, 256, 3, rng)
        t0 = time.perf_counter()
        sids = suffix_sids(codes)
        suffix_s = time.perf_counter() - t0
        del codes
        t0 = time.perf_counter()
        trie = SIDTrie.build(sids)
        build_s = time.perf_counter() - t0
        q = sids[rng.integers(0, n, 2000)]
        t0 = time.perf_counter()
        for r in q:
            trie.allowed_next(r[:2])
        nxt_us = (time.perf_counter() - t0) / len(q) * 1e6
        t0 = time.perf_counter()
        ok = sum(trie.item_of(r) >= 0 for r in q)
        item_us = (time.perf_counter() - t0) / len(q) * 1e6
        row = {
            "items": n, "sid_length": int(sids.shape[1]), "max_suffix": int(sids[:, -1].max()) + 1,
            "suffix_seconds": suffix_s, "trie_build_seconds": build_s, "nodes": trie.n_nodes,
            "trie_bytes": trie.nbytes, "trie_mb": trie.nbytes / 2**20, "bytes_per_item": trie.nbytes / n,
            "processor_edge_key_mb": 8 * (trie.n_nodes - 1) / 2**20,
            "allowed_next_us": nxt_us, "item_of_us": item_us, "lookups_ok": int(ok),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        print(json.dumps(row), flush=True)
        res["runs"].append(row)
        del sids, trie
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
