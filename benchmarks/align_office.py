"""Alignment on Amazon Office: pairs -> QFormer (InfoNCE + caption) -> embeddings -> RQ-Kmeans.

Measures the issue-6 targets:
  1. held-out pair recall@10: aligned embeddings vs mean-pooled raw MiniLM token features;
  2. caption loss with the M~ prefix vs without it (and with another item's M~, a control
     that shows whether the prefix carries item content or only a generic prompt);
  3. how often held-out co-clicked pairs share the level-1 (and level-1+2) RQ-Kmeans code,
     SIDs from aligned vs raw embeddings (with the chance rate sum_k p_k^2 for each).

Held-out pairs: per user, (validation item, test item) of the leave-one-out split; pairs for
training are mined from the training part only.

    python benchmarks/align_office.py               # CPU-sized QFormer, ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_info as machine  # noqa: E402
from office_feature_store import DATA, build  # noqa: E402
from _paths import portable, scratch  # noqa: E402

from tokenizer_kit.alignment import (  # noqa: E402
    AlignConfig,
    PairMiningConfig,
    QFormerConfig,
    AlignData,
    AlignRunConfig,
    caption_texts,
    embed_store,
    interaction_log,
    leave_one_out_split,
    load_caption_lm,
    mine_pairs,
    pair_recall_at_k,
    pooled_features,
    train_alignment,
)
from tokenizer_kit.features import FeatureStore  # noqa: E402
from tokenizer_kit.io import load_embeddings, read_catalog, read_interactions  # noqa: E402


def code_agreement(codes: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    l1 = float(np.mean(codes[a, 0] == codes[b, 0]))
    l12 = float(np.mean((codes[a, 0] == codes[b, 0]) & (codes[a, 1] == codes[b, 1])))
    p = np.bincount(codes[:, 0]) / len(codes)
    return {"level1_same": l1, "level12_same": l12, "level1_chance": float((p**2).sum())}


def validation_pairs(split) -> tuple[list[str], list[str]]:
    """(each user's last training item, validation item) as item ids: pairs for choosing a
    configuration without looking at test items."""
    ids = split.train.item_ids
    last = split.train.user_bounds()[1:] - 1
    last_of = dict(zip(split.train.users[last].tolist(), split.train.items[last].tolist()))
    vi = [(last_of[u], it) for u, it in zip(split.valid.users.tolist(), split.valid.items.tolist()) if u in last_of]
    return [str(ids[x]) for x, _ in vi], [str(ids[y]) for _, y in vi]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=str(scratch("tk_align")), help="feature store and runs (default benchmarks/.scratch/tk_align)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--caption-weight", type=float, default=0.1)
    ap.add_argument("--caption-batch", type=int, default=4)
    ap.add_argument("--caption-every", type=int, default=2)
    ap.add_argument("--pooled-query-init", action="store_true")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--temperature", type=float, default=0.07)
    ap.add_argument("--learn-temperature", action="store_true")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--u2i-history", type=int, default=10)
    ap.add_argument("--swing-topk", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="model init and batch order (pairs and split do not depend on it)")
    ap.add_argument("--checkpoint-every", type=int, default=500)
    ap.add_argument("--cache-tokens-gib", type=float, default=2.0)
    ap.add_argument("--u2i-targets", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is far faster on a loaded 2-core box)")
    ap.add_argument("--store", default=None, help="an existing feature store (default: build WORK/office_store with MiniLM)")
    ap.add_argument("--data", default=str(DATA), help="directory with Office.inter.json and Office.item.json")
    ap.add_argument("--device", default=None, help="torch device for training (default: cuda when present)")
    ap.add_argument("--no-sids", action="store_true", help="skip the RQ-Kmeans SID step (machines without FAISS)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--results", default=str(Path(__file__).resolve().parent / "results" / "align_office.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    t_all = time.time()
    store = FeatureStore.open(args.store) if args.store else FeatureStore.open(build(work / "office_store"))
    data = Path(args.data)

    log = interaction_log(read_interactions(data / "Office.inter.json"))
    split = leave_one_out_split(log)
    t0 = time.time()
    pairs, pstats = mine_pairs(split.train, PairMiningConfig(u2i_targets=args.u2i_targets, u2i_history=args.u2i_history, swing_topk=args.swing_topk))
    t_mine = time.time() - t0
    ids = log.item_ids
    heldout = pa.table({"item_a": ids[split.valid.items].astype(str).tolist(), "item_b": ids[split.test.items].astype(str).tolist()})
    valpairs = validation_pairs(split)

    cat = read_catalog(data / "Office.item.json")
    recs = {r["item_id"]: r for r in cat.to_pylist()}
    caps = caption_texts([recs.get(i, {}) for i in store.item_ids])
    lm = load_caption_lm(None) if args.caption_weight > 0 else None

    cfg = AlignConfig(
        qformer=QFormerConfig(feature_dim=store.dim, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, pooled_query_init=args.pooled_query_init, dropout=args.dropout),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        temperature=args.temperature,
        learn_temperature=args.learn_temperature,
        cache_tokens_gib=args.cache_tokens_gib,
        seed=args.seed,
        warmup_steps=max(1, args.steps // 10),
        max_tokens=args.max_tokens,
        caption_weight=args.caption_weight,
        caption_batch=args.caption_batch,
        caption_every=args.caption_every,
        log_every=10,
        checkpoint_every=args.checkpoint_every,
    )
    out = work / f"office_align{args.tag}"
    t0 = time.time()
    run = AlignRunConfig(**vars(cfg), resume=False, device=args.device)
    summary = train_alignment(store=store, pairs=pairs, out=out, config=run, data=AlignData(captions=caps, caption_lm=lm, eval_pairs=heldout))
    t_train = time.time() - t0
    ev = summary["eval"]

    # embeddings -> RQ-Kmeans SIDs, aligned vs raw
    t0 = time.time()
    emb_path = work / f"office_aligned{args.tag}.parquet"
    embed_store(store, out, emb_path, pooling="flatten")
    t_embed = time.time() - t0
    emb = load_embeddings(emb_path)
    assert list(map(str, emb.ids)) == list(store.item_ids)
    raw = pooled_features(store)
    a = np.array([store.index_of(i) for i in heldout.column("item_a").to_pylist()])
    b = np.array([store.index_of(i) for i in heldout.column("item_b").to_pylist()])
    sids = {}
    if not args.no_sids:
        from tokenizer_kit.quantizers import RQKMeans

        for name, x in (("aligned", np.asarray(emb.vectors, np.float32)), ("raw_pooled", raw)):
            codes = RQKMeans(codebook_sizes=[256] * 3).fit(x).fit_codes_
            sids[name] = code_agreement(codes, a, b)
    va = np.array([store.index_of(i) for i in valpairs[0]])
    vb = np.array([store.index_of(i) for i in valpairs[1]])
    aligned_vec = np.asarray(emb.vectors, np.float32)  # flatten pooling: the vectors recall is scored on
    raw_cfg = pooled_features(store, max_tokens=cfg.max_tokens)  # the baseline the in-training eval uses
    r_va, r_vr = pair_recall_at_k(aligned_vec, va, vb, 10), pair_recall_at_k(raw_cfg, va, vb, 10)
    validation = {"pairs": "(last training item, validation item) per user", "n_pairs": int(len(va)), "recall_aligned": r_va, "recall_raw_pooled": r_vr, "recall_ratio": r_va / r_vr}
    result = {
        "benchmark": "align_office",
        "machine": machine(),
        "train_device": str(args.device or ("cuda" if torch.cuda.is_available() else "cpu")),
        "command": portable("python " + " ".join(sys.argv)),
        "data": {"items_in_store": len(store), "heldout_pairs": int(len(a)), "pair_mining": pstats},
        "config": cfg.to_dict(),
        "timing_s": {"mine_pairs": round(t_mine, 2), "train_and_eval": round(t_train, 1), "embed": round(t_embed, 1), "total": round(time.time() - t_all, 1)},
        "eval": ev,
        "recall_at_10_raw_pooled_all_tokens": pair_recall_at_k(raw, a, b, 10),
        "validation": validation,
        "sid_level_agreement": sids,
        "targets": {
            "recall_ratio_ge_1.3": ev["recall_ratio"] is not None and ev["recall_ratio"] >= 1.3,
            "caption_prefix_lowers_loss": ("caption_loss_with_prefix" in ev) and ev["caption_loss_with_prefix"] < ev["caption_loss_without_prefix"],
            "caption_own_prefix_beats_other_items": ("caption_loss_other_item_prefix" in ev) and ev["caption_loss_with_prefix"] < ev["caption_loss_other_item_prefix"],
            "aligned_sids_level1_more_cooclick": (sids["aligned"]["level1_same"] > sids["raw_pooled"]["level1_same"]) if sids else None,
        },
        "metrics_jsonl": [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()],
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("eval", "sid_level_agreement", "targets", "timing_s")}, indent=2))


if __name__ == "__main__":
    main()
