"""Does RQ-VAE collapse without its guards? Office MiniLM 3 x 256, four variants:
full (k-means init + dead-code restarts), no k-means init, no restarts, neither.

    python benchmarks/bench_rq_vae_ablation.py --office tests/data/office_minilm_f16.npy \
        --out benchmarks/results/rq_vae_ablation.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rq_vae_vs_kmeans import machine  # noqa: E402


def main() -> None:
    from tokenizer_kit.evaluation import tokenizer_metrics
    from tokenizer_kit.quantizers import RQVAE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--office", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data" / "office_minilm_f16.npy")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rq_vae_ablation.json")
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    x = np.load(args.office)
    variants = {
        "full": {},
        "no_kmeans_init": {"kmeans_init": False},
        "no_restarts": {"restart_dead_codes": False},
        "neither": {"kmeans_init": False, "restart_dead_codes": False},
    }
    out = {"benchmark": "rq_vae_ablation", "machine": machine(), "n": int(x.shape[0]), "d": int(x.shape[1]), "epochs": args.epochs, "variants": {}}
    for name, over in variants.items():
        cfg = {"codebook_sizes": [256] * 3, "max_epochs": args.epochs, "batch_size": 256, "cpu_threads": 1, **over}
        t0 = time.perf_counter()
        q = RQVAE(**cfg).fit(x)
        m = tokenizer_metrics(q.fit_codes_, q.codebook_sizes, x=x, x_hat=q.decode(q.fit_codes_))
        row = {
            "config": cfg,
            "seconds": time.perf_counter() - t0,
            "reconstruction_mse": m["reconstruction_mse"],
            "utilization": [l["utilization"] for l in m["levels"]],
            "entropy_normalized": [l["entropy_normalized"] for l in m["levels"]],
            "collision_rate": m["collision_rate"],
            "dead_code_restarts": q.summary()["dead_code_restarts"],
        }
        out["variants"][name] = row
        print(name, json.dumps({k: v for k, v in row.items() if k != "config"}), file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
