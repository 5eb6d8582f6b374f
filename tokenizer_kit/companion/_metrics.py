"""Top-K retrieval metrics with one relevant item per query, as TIGER (Rajput et al. 2023) reports them.

Full ranking over all items: the model's ranked list is compared with the held-out item.
Recall@K = 1 if the target is among the first K, else 0; NDCG@K = 1 / log2(rank + 2) for
the 0-based rank of the target when it is below K, else 0 (the ideal DCG of one relevant
item is 1). Both are averaged over users.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["retrieval_metrics", "target_ranks"]


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank (n,) of ``targets`` (n,) in ``ranked`` (n, K) item rows (-1 = empty slot); -1 if absent."""
    ranked = np.asarray(ranked, np.int64)
    targets = np.asarray(targets, np.int64)
    if ranked.ndim != 2 or targets.shape != (ranked.shape[0],):
        raise InputError(f"expected ranked (n, K) and targets (n,), got {ranked.shape} and {targets.shape}")
    hit = (ranked == targets[:, None]) & (targets[:, None] >= 0)  # [n, K]
    return np.where(hit.any(1), hit.argmax(1), -1)


def retrieval_metrics(ranked: np.ndarray, targets: np.ndarray, ks=(5, 10)) -> dict[str, float]:
    """``{"recall@5": .., "ndcg@5": .., "recall@10": .., "ndcg@10": ..}`` of ranked lists (n, K) against targets (n,)."""
    ranked = np.asarray(ranked)
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise InputError(f"cut-offs must be >= 1, got {ks}")
    if ranked.ndim == 2 and ranked.shape[1] < max(ks):
        raise InputError(f"ranked lists hold {ranked.shape[1]} items, fewer than K = {max(ks)}; use a beam of at least {max(ks)}")
    rank = target_ranks(ranked, targets)
    n = max(len(rank), 1)
    out: dict[str, float] = {}
    for k in ks:
        inside = (rank >= 0) & (rank < k)
        out[f"recall@{k}"] = float(inside.sum() / n)
        out[f"ndcg@{k}"] = float((1.0 / np.log2(rank[inside] + 2.0)).sum() / n)
    return out
