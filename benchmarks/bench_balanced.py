"""Balanced builds on clustered data: the largest code per level against the ``balance_cap``
limit, the normalised entropy per level, and the reconstruction cost of balance.

Cases: ``clusters200`` is the case of the SID-contract issue (20,000 x 384 vectors from 200
well-separated Gaussian clusters of equal size, centres N(0, 1), noise 0.5, seed 0); ``office``
the bundled Office MiniLM embeddings (``tests/data``). Each is built plain and balanced,
3 x 256, seed 0, in memory, and the misses the build reports are recorded beside the counts.

    python benchmarks/bench_balanced.py --out benchmarks/results/balanced_clusters.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]


def clusters(n: int = 20000, d: int = 384, c: int = 200, noise: float = 0.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cen = rng.standard_normal((c, d)).astype(np.float32)
    return (cen[np.arange(n) % c] + noise * rng.standard_normal((n, d))).astype(np.float32)


def measure(x: np.ndarray, balanced: bool, sizes: list[int]) -> dict:
    from tokenizer_kit.quantizers import RQKMeans

    t = time.perf_counter()
    q = RQKMeans(codebook_sizes=sizes, seed=0, balanced=balanced).fit(x)
    secs = time.perf_counter() - t
    codes = q.fit_codes_
    err = x.astype(np.float64) - q.decode(codes)
    rel = float(np.mean(err * err) / np.mean(x.astype(np.float64) ** 2))
    levels = []
    counts = []
    for lv, k in enumerate(sizes):
        c = np.bincount(codes[:, lv], minlength=k)
        counts.append(c)
        p = c[c > 0] / c.sum()
        levels.append({"level": lv + 1, "largest": int(c.max()), "n_over_k": round(len(x) / k, 2), "limit": q.balance_limit(len(x), k),
                       "largest_over_n_over_k": round(float(c.max()) * k / len(x), 3), "used": int((c > 0).sum()),
                       "entropy_normalised": round(float(-(p * np.log(p)).sum() / np.log(k)), 4)})
    return {"balanced": balanced, "seconds": round(secs, 1), "relative_mse": round(rel, 5), "levels": levels,
            "misses_reported": q.balance_misses(counts) if balanced else None}


def main() -> None:
    from _machine import machine_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "balanced_clusters.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    office = np.load(ROOT / "tests" / "data" / "office_minilm_f16.npy").astype(np.float32)
    res = {"benchmark": "balanced_clusters", "machine": machine_info(), "cases": {}}
    for name, x in (("clusters200", clusters()), ("office", office)):
        rows = [measure(x, b, [256] * 3) for b in (False, True)]
        res["cases"][name] = {"n": int(len(x)), "dim": int(x.shape[1]), "plain": rows[0], "balanced": rows[1],
                              "balance_relative_mse_cost": round(rows[1]["relative_mse"] / rows[0]["relative_mse"] - 1, 4)}
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res["cases"], indent=1))


if __name__ == "__main__":
    main()
