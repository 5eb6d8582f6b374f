"""How far ``tokenizer-kit plan``'s predictions are from real builds.

For each catalogue, real builds (``build-codebook`` defaults: RQ-Kmeans, 20 iterations, 256
points per code, seed 0) give the true share of items whose SID is shared before any policy
and the largest bucket; ``plan`` predicts them from the whole catalogue and from random
subsamples of it (the "sample and the catalogue size" use), with its defaults.

* Office (2,420 items) and Scientific (4,344 items): all-MiniLM-L6-v2 embeddings of title,
  description, brand and categories (``make_office_embeddings.py``; Scientific with
  ``--catalog SCIENTIFIC/Scientific.item.json``, the Scientific data of ``benchmarks/README.md``); shapes 3x256, 4x256,
  3x512; samples of 100%, 50%, 25%.
* Generated sets of ``bench_scale.py`` (4M and 10M x 256, 3x256): the real builds are that
  benchmark's tokenizers (``--real``); the plan sees a 200,000-item sample and the size.

    S=benchmarks/.scratch/scale   # bench_scale.py's default --scratch
    python benchmarks/bench_plan.py --scientific $S/sci_minilm.npy \\
        --generated $S/gen_10m_256.npy:$S/tok_big \\
        --generated $S/gen_4m_256.npy:$S/tok_cmp \\
        --out benchmarks/results/plan_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]


def real_build(x: np.ndarray, levels: int, k: int) -> dict:
    """A real build and its suffix index: the suffix level needs ``max_suffix`` codes."""
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import SIDIndex

    tok = SemanticTokenizer.build(x, codebook_sizes=[k] * levels, seed=0)
    idx = SIDIndex.for_tokenizer(tok)
    return {"collision_rate": tok.metrics["collision_rate"], "largest_bucket": tok.metrics["largest_bucket"],
            "suffix_codes": idx.stats["max_suffix"]}


def check_small(name: str, x: np.ndarray, shapes: list[tuple[int, int]], fractions=(1.0, 0.5, 0.25)) -> dict:
    from tokenizer_kit.quantizers._plan import plan

    n = len(x)
    out = {"items": n, "shapes": {}}
    rng = np.random.default_rng(0)
    subsets = {f: (np.arange(n) if f == 1.0 else np.sort(rng.choice(n, int(f * n), replace=False))) for f in fractions}
    for levels, k in shapes:
        shape = f"{levels}x{k}"
        real = real_build(x, levels, k)
        row = {"real": real, "predicted": {}}
        for f, rows in subsets.items():
            t = time.perf_counter()
            res = plan(np.ascontiguousarray(x[rows]), shapes=shape, catalogue_size=n, sample=len(rows))
            p = res["shapes"][0]["prediction"]
            if not p:
                row["predicted"][str(f)] = {"skipped": res["shapes"][0]["skipped"]}
                continue
            row["predicted"][str(f)] = {
                "sample_items": len(rows),
                "collision_rate": p["collision_rate"],
                "largest_bucket": p["largest_bucket"],
                "error_points": 100 * (p["collision_rate"] - real["collision_rate"]),
                "largest_bucket_ratio": p["largest_bucket"] / max(real["largest_bucket"], 1),
                "suffix_codes": p["suffix_codes"],
                "suffix_codes_ratio": p["suffix_codes"] / max(real["suffix_codes"], 1),
                "measured": p["measured"],
                "caveat": p.get("caveat"),
                "seconds": time.perf_counter() - t,
            }
        out["shapes"][shape] = row
        print(name, shape, json.dumps(row), file=sys.stderr, flush=True)
    return out


def check_generated(path: str, tok_dir: str, sample: int) -> dict:
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.io import open_embeddings
    from tokenizer_kit.quantizers._plan import plan

    m = SemanticTokenizer.read_manifest(tok_dir)
    sizes = m["codebook_sizes"]
    shape = f"{len(sizes)}x{sizes[0]}"
    stream = open_embeddings(path, row_ids=True)  # generated rows carry no ids
    t = time.perf_counter()
    res = plan(stream, shapes=shape, sample=sample)
    p = res["shapes"][0]["prediction"]
    real = {"collision_rate": m["metrics"]["collision_rate"], "largest_bucket": m["metrics"]["largest_bucket"]}
    stats = ((m.get("sections") or {}).get("index") or {}).get("stats") or {}
    # the suffix policy numbers each bucket's items: with no retired SID its level needs the largest bucket's size
    real["suffix_codes"] = stats.get("max_suffix", real["largest_bucket"])
    real["suffix_codes_from"] = "index stats" if "max_suffix" in stats else "largest bucket (no index built)"
    return {
        "items": stream.n,
        "shape": shape,
        "sample_items": sample,
        "real": real,
        "predicted": {"collision_rate": p["collision_rate"], "largest_bucket": p["largest_bucket"], "suffix_codes": p["suffix_codes"],
                      "sample_collision_rate": p["sample_collision_rate"]},
        "error_points": 100 * (p["collision_rate"] - real["collision_rate"]),
        "largest_bucket_ratio": p["largest_bucket"] / max(real["largest_bucket"], 1),
        "suffix_codes_ratio": p["suffix_codes"] / max(real["suffix_codes"], 1),
        "build_predicted_collision_rate": m["build"].get("predicted_collision_rate"),
        "seconds": time.perf_counter() - t,
    }


def main() -> None:
    from _machine import machine_info
    from _paths import portable

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--office", default=str(ROOT / "tests" / "data" / "office_minilm_f16.npy"))
    ap.add_argument("--scientific", default=None, help="Scientific MiniLM embeddings (.npy)")
    ap.add_argument("--shapes", default="3x256,4x256,3x512")
    ap.add_argument("--generated", action="append", default=[], help="EMBEDDINGS.npy:TOKENIZER_DIR of a real build")
    ap.add_argument("--sample", type=int, default=200_000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "plan_accuracy.json"))
    args = ap.parse_args()
    from tokenizer_kit.quantizers._plan import parse_shapes

    shapes = parse_shapes(args.shapes)
    res = {"benchmark": "plan_check", "machine": machine_info(), "args": portable(vars(args)), "catalogues": {}}
    res["catalogues"]["office"] = check_small("office", np.load(args.office).astype(np.float32), shapes)
    if args.scientific:
        res["catalogues"]["scientific"] = check_small("scientific", np.load(args.scientific).astype(np.float32), shapes)
    for spec in args.generated:
        path, tok = spec.rsplit(":", 1)
        res["catalogues"][Path(path).stem] = check_generated(path, tok, args.sample)
        print(json.dumps(res["catalogues"][Path(path).stem]), file=sys.stderr, flush=True)
    res["machine"]["load_average_end"] = __import__("os").getloadavg()
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
