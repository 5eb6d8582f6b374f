"""The demo's align stage under other settings: held-out recall ratio, caption control, time.

Runs ``train_alignment`` on the files the pipeline's extract and mine-pairs stages wrote
(``WORK/features``, ``WORK/pairs.parquet``, ``WORK/heldout_pairs.parquet``) with the demo's
model (by default the long preset's: QFormer d 128, 2 layers, 8 heads, pooled query init,
32 tokens, batch 128, lr 3e-3, caption loss through SmolLM2-135M; ``--d-model 64 --steps 1500``
is the fast demo's) and the settings given, and records
the align stage's own evaluation (held-out (validation, test) pairs, caption losses with own,
another item's and no prefix), the recall ratio on (last training item, validation item)
pairs, and wall and process-CPU seconds with the load average before and after.

    python benchmarks/align_demo_fast.py --work DEMO_OUT --steps 1000 --caption-every 20 \\
        --caption-tokens 16 --lm-bf16 autocast --threads 1 --seed 0 --tag s1000_s0

``--lm-bf16 autocast`` runs the frozen caption LM under CPU bf16 autocast (AVX512-BF16 /
AMX CPUs), ``weights`` casts its weights to bf16 once; the QFormer stays fp32 either way.
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
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_info  # noqa: E402
from _paths import OFFICE as DATA, portable, scratch  # noqa: E402


class AutocastLM(nn.Module):
    """A frozen causal LM whose forward runs under CPU bf16 autocast."""

    def __init__(self, lm):
        super().__init__()
        self.inner = lm
        self.config = lm.config

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, **kw):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.inner(**kw)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--caption-weight", type=float, default=0.1)
    ap.add_argument("--caption-every", type=int, default=10)
    ap.add_argument("--caption-batch", type=int, default=8)
    ap.add_argument("--caption-tokens", type=int, default=32)
    ap.add_argument("--eval-caption-items", type=int, default=256)
    ap.add_argument("--lm-bf16", choices=("off", "autocast", "weights"), default="off")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--out-dir", default=str(scratch("demo", "runs")), help="the runs (default benchmarks/.scratch/demo/runs)")
    ap.add_argument("--results", default=None, help="default: benchmarks/results/align_demo_fast_TAG.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import pyarrow.parquet as pq

    from align_office import validation_pairs
    from tokenizer_kit.alignment import AlignConfig, AlignData, AlignRunConfig, QFormerConfig, caption_texts, interaction_log, leave_one_out_split, load_caption_lm, pair_recall_at_k, pooled_features, train_alignment
    from tokenizer_kit.alignment._losses import item_vectors
    from tokenizer_kit.alignment._train import AlignmentModel, embed_indices
    from tokenizer_kit.features import FeatureStore
    from tokenizer_kit.io import read_catalog, read_interactions

    load_before = os.getloadavg()
    work = Path(args.work)
    store = FeatureStore.open(work / "features")
    pairs = pq.read_table(work / "pairs.parquet")
    held = pq.read_table(work / "heldout_pairs.parquet")
    cfg = AlignConfig(
        qformer=QFormerConfig(feature_dim=store.dim, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, pooled_query_init=True),
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup, max_tokens=args.max_tokens,
        caption_weight=args.caption_weight, caption_every=args.caption_every, caption_batch=args.caption_batch,
        caption_max_tokens=args.caption_tokens, eval_caption_items=args.eval_caption_items, checkpoint_every=10**6, seed=args.seed,
    )
    w0, c0 = time.perf_counter(), time.process_time()
    lm = None
    captions = None
    if args.caption_weight > 0:
        cat = read_catalog(DATA / "Office.item.json")
        recs = {r["item_id"]: r for r in cat.to_pylist()}
        captions = caption_texts([recs.get(i, {}) for i in store.item_ids], cfg.caption_fields)
        model, tok = load_caption_lm(None)
        if args.lm_bf16 == "weights":
            model = model.to(torch.bfloat16)
        elif args.lm_bf16 == "autocast":
            model = AutocastLM(model)
        lm = (model, tok)
    t_lm = time.perf_counter() - w0
    out = Path(args.out_dir) / args.tag
    run = AlignRunConfig(**vars(cfg), resume=False, device="cpu")
    summary = train_alignment(store=store, pairs=pairs, out=out, config=run, data=AlignData(captions=captions, caption_lm=lm, eval_pairs=held))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0

    # (last training item, validation item) pairs: never touch test items
    log = interaction_log(read_interactions(DATA / "Office.inter.json"))
    va, vb = (np.array([store.index_of(i) for i in side]) for side in validation_pairs(leave_one_out_split(log)))
    am = AlignmentModel(cfg, lm_hidden=None if lm is None else int(lm[0].config.hidden_size))
    from safetensors.torch import load_file

    am.load_state_dict(load_file(str(out / "model.safetensors")))
    aligned = item_vectors(torch.from_numpy(embed_indices(am.qformer, store, list(range(len(store))), max_tokens=cfg.max_tokens))).numpy()
    raw = pooled_features(store, max_tokens=cfg.max_tokens)
    rv_a, rv_r = pair_recall_at_k(aligned, va, vb, 10), pair_recall_at_k(raw, va, vb, 10)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    ev = summary["eval"]
    res = {
        "benchmark": "align_demo_fast",
        "command": portable("python " + " ".join(sys.argv)),
        "machine": machine_info(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "args": portable(vars(args)),
        "config": cfg.to_dict(),
        "seconds": {"wall": round(wall, 1), "cpu": round(cpu, 1), "load_caption_lm": round(t_lm, 1), "train_loop": summary["train_seconds"]},
        "eval": ev,
        "validation": {"n_pairs": int(len(va)), "recall_aligned": rv_a, "recall_raw_pooled": rv_r, "recall_ratio": rv_a / rv_r},
        "targets": {
            "recall_ratio_ge_1.3": ev.get("recall_ratio") is not None and ev["recall_ratio"] >= 1.3,
            "own_prefix_below_none": "caption_loss_with_prefix" in ev and ev["caption_loss_with_prefix"] < ev["caption_loss_without_prefix"],
            "own_prefix_below_other": "caption_loss_other_item_prefix" in ev and ev["caption_loss_with_prefix"] < ev["caption_loss_other_item_prefix"],
        },
        "final_train_metrics": metrics[-2] if len(metrics) > 1 else None,
    }
    path = Path(args.results or Path(__file__).resolve().parent / "results" / f"align_demo_fast_{args.tag}.json")
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({"tag": args.tag, "seconds": res["seconds"], "ratio": ev.get("recall_ratio"), "val_ratio": res["validation"]["recall_ratio"],
                      "cap": [ev.get(k) for k in ("caption_loss_with_prefix", "caption_loss_other_item_prefix", "caption_loss_without_prefix")], "load": [load_before[0], res["load_after"][0]]}))


if __name__ == "__main__":
    main()
