"""RQ-Kmeans build and assign against raw FAISS, faiss.ResidualQuantizer and scikit-learn.

Same embeddings, same levels x codebook size, one run:
- ours: greedy, beam (encode with beam 8 on the same codebooks), balanced;
- raw FAISS k-means on the same residuals (faiss.Kmeans + IndexFlatL2 search per level):
  the floor our build time is compared with (target <= 1.2x);
- faiss.ResidualQuantizer with its default beam (max_beam_size 5) and with beam 1;
- scikit-learn residual k-means (KMeans, n_init=1, same iterations, same per-level
  sample cap as FAISS: max_points_per_centroid x K points, then predict on all).
Assign throughput (greedy encode of all items) is compared with the bound set by this
machine's fp32 GEMM rate measured in the same run: n x sum(K) x d x 2 flops.

Datasets: the Office catalogue embedded with all-MiniLM-L6-v2 (tests/data, 2,420 x 384),
and a generated set (tokenizer_kit.io.make_clustered_embeddings: hierarchical Gaussian
mixture, Zipf topic popularity, 2% near-duplicates, L2-normalised; default 200k x 256).

    python benchmarks/bench_rq_kmeans.py --out benchmarks/results/rq_kmeans_cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info  # noqa: E402
from _paths import portable  # noqa: E402

from tokenizer_kit.evaluation import collision_stats, level_stats  # noqa: E402
from tokenizer_kit.io import make_clustered_embeddings  # noqa: E402
from tokenizer_kit.quantizers import RQKMeans  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def quality(x, x_hat, codes, sizes):
    rel = float(((x.astype(np.float64) - x_hat) ** 2).sum() / (x.astype(np.float64) ** 2).sum())
    lv = [level_stats(codes[:, l], k) for l, k in enumerate(sizes)]
    return {
        "relative_error": rel,
        "collision_rate": collision_stats(codes)["collision_rate"],
        "entropy_normalized": [round(l["entropy_normalized"], 4) for l in lv],
        "entropy_nats": [round(l["entropy_nats"], 4) for l in lv],
        "utilization": [round(l["utilization"], 4) for l in lv],
    }


def raw_faiss(x, sizes, niter, seed, mppc):
    import faiss

    r = x.copy()
    codes = np.empty((len(x), len(sizes)), np.int64)
    cbs = []
    for l, k in enumerate(sizes):
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed + l, max_points_per_centroid=mppc, min_points_per_centroid=1, verbose=False)
        km.train(r)
        _, I = km.index.search(r, 1)
        codes[:, l] = I[:, 0]
        r -= km.centroids[I[:, 0]]
        cbs.append(km.centroids)
    return codes, x - r


def faiss_rq(x, sizes, beam, niter):
    import faiss

    nbits = [int(np.log2(k)) for k in sizes]
    rq = faiss.ResidualQuantizer(x.shape[1], len(sizes), nbits[0])
    rq.max_beam_size = beam
    rq.cp.niter = niter
    rq.train(x)
    packed = rq.compute_codes(x)
    x_hat = rq.decode(packed)
    # unpack codes to (n, L) for the same metrics
    codes = np.zeros((len(x), len(sizes)), np.int64)
    bits = np.unpackbits(packed, axis=1, bitorder="little")
    off = 0
    for l, b in enumerate(nbits):
        codes[:, l] = (bits[:, off : off + b] * (1 << np.arange(b))).sum(1)
        off += b
    return codes, x_hat


def sklearn_rq(x, sizes, niter, seed, mppc):
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    r = x.copy()
    codes = np.empty((len(x), len(sizes)), np.int64)
    for l, k in enumerate(sizes):
        cap = mppc * k
        sample = r if len(r) <= cap else r[rng.choice(len(r), cap, replace=False)]
        km = KMeans(n_clusters=k, n_init=1, max_iter=niter, random_state=seed + l, algorithm="lloyd").fit(sample)
        lab = km.predict(r)
        codes[:, l] = lab
        r -= km.cluster_centers_[lab].astype(np.float32)
    return codes, x - r


def gemm_rate(b, d, k, reps=20):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((b, d)).astype(np.float32)
    c = rng.standard_normal((d, k)).astype(np.float32)
    a @ c
    t = time.perf_counter()
    for _ in range(reps):
        a @ c
    dt = (time.perf_counter() - t) / reps
    return 2.0 * b * d * k / dt


def timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def run_dataset(name, x, sizes, args):
    niter, seed, mppc = args.niter, args.seed, args.mppc
    res = {"dataset": name, "n": int(x.shape[0]), "d": int(x.shape[1]), "codebook_sizes": sizes, "methods": {}}
    M = res["methods"]

    (codes, x_hat), t = timed(raw_faiss, x, sizes, niter, seed, mppc)
    M["raw_faiss_kmeans"] = {"seconds": t, **quality(x, x_hat, codes, sizes)}

    q, t = timed(lambda: RQKMeans(codebook_sizes=sizes, niter=niter, seed=seed, max_points_per_centroid=mppc, device="cpu").fit(x))
    M["ours_greedy"] = {"seconds": t, **quality(x, q.decode(q.fit_codes_), q.fit_codes_, sizes)}
    M["ours_greedy"]["time_vs_raw_faiss"] = t / M["raw_faiss_kmeans"]["seconds"]

    codes, t_enc = timed(q.encode, x, beam_size=8)
    M["ours_beam8"] = {"seconds": t + t_enc, "encode_seconds": t_enc, **quality(x, q.decode(codes), codes, sizes)}

    qb, t = timed(lambda: RQKMeans(codebook_sizes=sizes, niter=niter, seed=seed, max_points_per_centroid=mppc, balanced=True, device="cpu").fit(x))
    M["ours_balanced"] = {"seconds": t, **quality(x, qb.decode(qb.fit_codes_), qb.fit_codes_, sizes)}
    M["ours_balanced"]["time_vs_raw_faiss"] = t / M["raw_faiss_kmeans"]["seconds"]
    M["ours_balanced"]["relative_error_vs_greedy"] = M["ours_balanced"]["relative_error"] / M["ours_greedy"]["relative_error"]

    if not args.skip_faiss_rq:
        for beam in (5, 1):
            (codes, x_hat), t = timed(faiss_rq, x, sizes, beam, niter)
            M[f"faiss_residual_quantizer_beam{beam}"] = {"seconds": t, **quality(x, x_hat, codes, sizes)}
    if not args.skip_sklearn:
        (codes, x_hat), t = timed(sklearn_rq, x, sizes, niter, seed, mppc)
        M["sklearn_residual_kmeans"] = {"seconds": t, **quality(x, x_hat, codes, sizes)}

    # assign throughput vs the GEMM bound, same run
    bs = q.config.encode_batch_size
    _, t_assign = timed(q.encode, x)
    _, t_assign2 = timed(q.encode, x)
    t_assign = min(t_assign, t_assign2)
    rate = max(gemm_rate(min(bs, len(x)), x.shape[1], k) for k in set(sizes))
    bound = rate / (2.0 * sum(sizes) * x.shape[1])
    res["assign"] = {
        "items_per_second": len(x) / t_assign,
        "gemm_gflops": rate / 1e9,
        "gemm_bound_items_per_second": bound,
        "share_of_gemm_bound": (len(x) / t_assign) / bound,
        "batch_size": bs,
    }
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--office", default=str(ROOT / "tests" / "data" / "office_minilm_f16.npy"))
    ap.add_argument("--n-synth", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--codebook-size", type=int, default=256)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--niter", type=int, default=20)
    ap.add_argument("--mppc", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--skip-faiss-rq", action="store_true")
    ap.add_argument("--data", default=None, help="(ignored; kept for `make bench`)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rq_kmeans_cpu.json"))
    args = ap.parse_args()
    sizes = [args.codebook_size] * args.levels
    out = {"benchmark": "rq_kmeans", "machine": machine_info(), "args": portable(vars(args)), "results": []}
    x = np.load(args.office).astype(np.float32)
    out["results"].append(run_dataset("office_minilm", x, sizes, args))
    print(json.dumps(out["results"][-1], indent=1), file=sys.stderr)
    if args.n_synth:
        xs = make_clustered_embeddings(args.n_synth, args.dim, n_topics=256, n_sub=32, dup_rate=0.02, seed=0)
        out["results"].append(run_dataset(f"generated_{args.n_synth}x{args.dim}", xs, sizes, args))
    out["machine"]["load_average_end"] = __import__("os").getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out["results"], indent=1))


if __name__ == "__main__":
    main()
