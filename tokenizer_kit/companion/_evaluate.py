"""``evaluate_retrieval``: train the companion model on a tokenizer's SIDs and score it (one call)."""

from __future__ import annotations

import logging
import os
import platform
import time
from typing import Any, Callable

import numpy as np
import torch

from ._data import leave_one_out_split, load_sid_index, user_sequences
from ._metrics import retrieval_metrics, target_ranks
from ._model import GenerativeRetriever, RetrievalConfig

__all__ = ["evaluate_retrieval"]

logger = logging.getLogger(__name__)


def evaluate_retrieval(
    sids,
    interactions,
    config: RetrievalConfig | dict | None = None,
    *,
    max_users: int | None = None,
    model_out: str | os.PathLike | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Downstream check of SIDs: leave-one-out next-item retrieval, full ranking, Recall/NDCG@K.

    ``sids``: a tokenizer directory, an LC-Rec ``*.index.json`` or a ``SIDIndex``.
    ``interactions``: a path (Parquet, LC-Rec ``*.inter.json``) or a ``pyarrow.Table``.
    ``max_users``: keep only the first that many users (sorted by id), for quick runs.
    Returns a JSON-ready dict: test and validation metrics, training losses, timings.
    """
    cfg = RetrievalConfig.from_dict(config) if isinstance(config, dict) else (config or RetrievalConfig()).validate()
    t_all = time.perf_counter()
    index = load_sid_index(sids)
    users, seqs, seq_stats = user_sequences(interactions, index)
    if max_users is not None:
        users, seqs = users[: int(max_users)], seqs[: int(max_users)]
    split = leave_one_out_split(seqs, max_history=cfg.max_history)
    logger.info("split: %s", split.stats)
    retr = GenerativeRetriever(index, cfg)
    t0 = time.perf_counter()
    history = retr.fit(split.train_hist, split.train_target,
                       valid=split.subset("valid", cfg.max_eval_users), on_epoch=on_epoch)
    train_s = time.perf_counter() - t0

    def score(part: str) -> tuple[dict[str, Any], float]:
        hist, tgt = split.subset(part, cfg.max_eval_users)
        t = time.perf_counter()
        toks, _ = retr.generate_sids(hist)
        first = retr.items_of_sids(toks)  # [n, beam]
        ranked = retr.rank_sids(toks)
        m = retrieval_metrics(ranked, tgt, cfg.ks)
        m["users"] = int(len(tgt))
        m["invalid_sid_rate"] = float((first < 0).mean()) if first.size else 0.0
        r = target_ranks(ranked, tgt)
        m["mean_rank_of_hits"] = float(r[r >= 0].mean()) if (r >= 0).any() else None
        return m, time.perf_counter() - t

    if cfg.eval_every:
        valid, valid_s = score("valid")
    else:  # beam search on the validation users only when it selects the epoch; its loss is cheap
        t = time.perf_counter()
        vh, vt = split.subset("valid", cfg.max_eval_users)
        valid = {"loss": retr.loss(vh, vt), "users": int(len(vt))}
        valid_s = time.perf_counter() - t
    test, test_s = score("test")
    if model_out is not None:
        retr.save(model_out)
    source = sids if isinstance(sids, (str, os.PathLike)) else getattr(index, "stats", {}).get("source", "in-memory index")
    return {
        "sids": str(source),
        "sid_length": int(index.sid_length),
        "level_sizes": [int(k) for k in index.level_sizes],
        "n_items": int(len(index)),
        "duplicate_sids": int(len(index) - index.trie.n_leaves),
        "data": {**seq_stats, **split.stats},
        "config": cfg.to_dict(),
        "parameters": retr.n_parameters,
        "device": str(retr.device),
        "test": test,
        "valid": valid,
        "train": {
            "epochs": cfg.epochs,
            "losses": [round(h["loss"], 6) for h in history],
            "epoch_records": history,
            "seconds": train_s,
        },
        "seconds": {"train": train_s, "valid": valid_s, "test": test_s, "total": time.perf_counter() - t_all},
        "machine": machine_info(),
        "model_out": None if model_out is None else str(model_out),
    }


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
