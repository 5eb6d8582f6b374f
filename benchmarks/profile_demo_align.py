"""Where the demo's align stage spends its time: one InfoNCE step, one caption step, the eval.

Builds the long demo's alignment setup (preset office-long: QFormer d 128 x 2 layers over 32
tokens, batch 128, caption loss through SmolLM2-135M on 8 items every 10 steps) on a feature
store and pairs made by the pipeline's extract / mine-pairs stages, then times the pieces of
a training step separately, for each variant given:

    python benchmarks/profile_demo_align.py --work DEMO_OUT --threads 1,2 --reps 10

DEMO_OUT holds ``features/``, ``pairs.parquet`` and ``heldout_pairs.parquet``. Wall and
process CPU seconds are both recorded, with the load average before and after: on a shared
machine compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_info  # noqa: E402
from _paths import OFFICE as DATA, portable  # noqa: E402


def timed(fn, reps: int) -> dict:
    fn()  # warm-up (allocator, oneDNN kernels)
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn()
    return {"wall_s": round((time.perf_counter() - w0) / reps, 4), "cpu_s": round((time.process_time() - c0) / reps, 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--cap-reps", type=int, default=3)
    ap.add_argument("--caption-tokens", default="32,16")
    ap.add_argument("--bf16", default="0,1", help="CPU autocast bf16 for the caption LM: 0, 1 or both")
    ap.add_argument("--eval", action="store_true", help="also time evaluate_alignment once per thread count")
    ap.add_argument("--no-caption", action="store_true", help="time only the InfoNCE steps")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parent / "results" / "profile_demo_align.json"))
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from tokenizer_kit.alignment import AlignConfig, QFormerConfig, caption_texts, load_caption_lm
    from tokenizer_kit.alignment._caption import CaptionLM
    from tokenizer_kit.alignment._losses import info_nce
    from tokenizer_kit.alignment._train import AlignmentModel, _batch_for_step, _pair_indices, _TokenCache, evaluate_alignment
    from tokenizer_kit.features import FeatureStore
    from tokenizer_kit.io import read_catalog

    load_before = os.getloadavg()
    work = Path(args.work)
    store = FeatureStore.open(work / "features")
    pairs = pq.read_table(work / "pairs.parquet")
    held = pq.read_table(work / "heldout_pairs.parquet")
    cfg = AlignConfig(qformer=QFormerConfig(feature_dim=store.dim, d_model=128, n_layers=2, pooled_query_init=True), steps=3000, batch_size=128, lr=3e-3, max_tokens=32, caption_weight=0.1, caption_every=10, caption_batch=8)
    cat = read_catalog(DATA / "Office.item.json")
    recs = {r["item_id"]: r for r in cat.to_pylist()}
    caps = caption_texts([recs.get(i, {}) for i in store.item_ids], cfg.caption_fields)
    t0 = time.perf_counter()
    lm, tok = load_caption_lm(None)
    t_lm = time.perf_counter() - t0
    ia, ib, _ = _pair_indices(pairs, store)
    ea, eb, _ = _pair_indices(held, store)
    t0 = time.perf_counter()
    cache = _TokenCache(store, max_tokens=cfg.max_tokens, device=torch.device("cpu"))
    t_cache = time.perf_counter() - t0

    res: dict = {"benchmark": "profile_demo_align", "command": portable("python " + " ".join(sys.argv)), "load_before": load_before,
                 "setup_s": {"load_caption_lm": round(t_lm, 2), "token_cache": round(t_cache, 2)}, "variants": []}
    for threads in [int(x) for x in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for ctoks in [int(x) for x in args.caption_tokens.split(",")]:
            torch.manual_seed(0)
            cap = CaptionLM(lm, tok, caps, max_tokens=ctoks)
            model = AlignmentModel(cfg, lm_hidden=cap.hidden_size)
            opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
            step = [0]

            def batch():
                g = _batch_for_step(step[0], len(ia), cfg.batch_size, cfg.seed)
                step[0] += 1
                a, b = ia[g], ib[g]
                items, inv = np.unique(np.r_[a, b], return_inverse=True)
                return items, torch.from_numpy(inv[: len(a)]), torch.from_numpy(inv[len(a):])

            def nce_step(bf16: bool = False):
                def f():
                    items, ta, tb = batch()
                    tk, mk = cache.batch(items)
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        m, _, tau = model(tk, mk)
                        eye = torch.eye(len(ta), dtype=torch.bool)
                        loss = info_nce(m[ta], m[tb], tau, same_a=(ta[None] == ta[:, None]) & ~eye, same_b=(tb[None] == tb[:, None]) & ~eye)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                return f

            def cap_step(bf16: bool):
                def f():
                    items, ta, tb = batch()
                    tk, mk = cache.batch(items)
                    rows = np.sort(np.random.default_rng(step[0]).choice(len(items), 8, replace=False))
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        m, prefix, tau = model(tk, mk, torch.from_numpy(rows))
                        eye = torch.eye(len(ta), dtype=torch.bool)
                        loss = info_nce(m[ta], m[tb], tau, same_a=(ta[None] == ta[:, None]) & ~eye, same_b=(tb[None] == tb[:, None]) & ~eye)
                        loss = loss + 0.1 * cap.loss(prefix, torch.from_numpy(items[rows]))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                return f

            v = {"threads": threads, "caption_tokens": ctoks, "caption_tokens_mean": float(cap.caption_mask.sum(1).float().mean()), }
            for bf in [int(x) for x in args.bf16.split(",")]:
                v[f"nce_step_bf16_{bf}"] = timed(nce_step(bool(bf)), args.reps)
                if not args.no_caption:
                    v[f"caption_step_bf16_{bf}"] = timed(cap_step(bool(bf)), args.cap_reps)
            res["variants"].append(v)
            print(json.dumps(v), flush=True)
        if args.eval:
            cap = CaptionLM(lm, tok, caps, max_tokens=cfg.caption_max_tokens)
            w0, c0 = time.perf_counter(), time.process_time()
            ev = evaluate_alignment(model, store, ea, eb, cfg, cap=cap)
            res["variants"].append({"threads": threads, "evaluate_alignment": {"wall_s": round(time.perf_counter() - w0, 2), "cpu_s": round(time.process_time() - c0, 2)}, "eval_keys": sorted(ev)})
            print(json.dumps(res["variants"][-1]), flush=True)
    res["load_after"] = os.getloadavg()
    res["machine"] = machine_info()
    Path(args.results).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
