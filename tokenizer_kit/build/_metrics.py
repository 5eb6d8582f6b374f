"""Tokenizer metrics (OneRec Table 11 and what users ask for beyond it).

Entropies are in nats (the paper's unit: the ceiling for K codes is ln K) and in bits.

Pure functions of codes (and vectors), below every stage that measures: the tokenizer
records them at build time, the indexer counts collisions with them, and
``tokenizer_kit.evaluation`` (which also loads artifacts to report on them) re-exports them.
They live here, not in ``evaluation``, so that the tokenizer does not import the package
that imports the tokenizer.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..errors import InputError

__all__ = [
    "level_stats",
    "level_stats_from_counts",
    "collision_stats",
    "prefix_fanout",
    "reconstruction_stats",
    "category_nmi",
    "tokenizer_metrics",
]


def level_stats(codes: np.ndarray, codebook_size: int) -> dict[str, float]:
    """Utilization, entropy (nats, bits, / ln K), perplexity and Gini of one level's codes (n,)."""
    k = int(codebook_size)
    return level_stats_from_counts(np.bincount(np.asarray(codes, dtype=np.int64), minlength=k)[:k], k)


def level_stats_from_counts(counts: np.ndarray, codebook_size: int) -> dict[str, float]:
    """:func:`level_stats` from the items per code (K,) (what a streaming pass accumulates)."""
    k = int(codebook_size)
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    p = counts[counts > 0] / max(n, 1.0)
    h = float(-(p * np.log(p)).sum()) if n else 0.0
    srt = np.sort(counts)
    # Gini of code frequencies (0 = perfectly even, -> 1 = one code takes everything)
    gini = float((2 * np.arange(1, k + 1) - k - 1).dot(srt) / (k * srt.sum())) if n else 0.0
    return {
        "codebook_size": k,
        "used_codes": int((counts > 0).sum()),
        "utilization": float((counts > 0).mean()),
        "entropy_nats": h,
        "entropy_bits": h / math.log(2),
        "entropy_normalized": h / math.log(k) if k > 1 else 0.0,
        "perplexity": float(math.exp(h)),
        "gini": gini,
        "largest_code_share": float(counts.max() / n) if n else 0.0,
    }


def _row_keys(codes: np.ndarray) -> np.ndarray:
    """One int per row identifying the code tuple (via np.unique on rows)."""
    _, inv = np.unique(np.ascontiguousarray(codes), axis=0, return_inverse=True)
    return inv.reshape(-1)


def collision_stats(codes: np.ndarray) -> dict[str, Any]:
    """Full-SID collisions over ``codes`` (n, L): share of items whose SID is shared."""
    codes = np.asarray(codes)
    n = codes.shape[0]
    if n == 0:
        return {"collision_rate": 0.0, "unique_sids": 0, "largest_bucket": 0, "colliding_items": 0}
    inv = _row_keys(codes)
    counts = np.bincount(inv)
    per_item = counts[inv]
    return {
        "collision_rate": float((per_item > 1).mean()),
        "unique_sids": int(len(counts)),
        "unique_sid_rate": float(len(counts) / n),
        "largest_bucket": int(counts.max()),
        "colliding_items": int((per_item > 1).sum()),
        "excess_items": int(n - len(counts)),
    }


def prefix_fanout(codes: np.ndarray) -> list[dict[str, float]]:
    """For each prefix length l = 1..L-1: number of prefixes and mean / max distinct children."""
    codes = np.asarray(codes)
    out = []
    for l in range(1, codes.shape[1]):
        pre = _row_keys(codes[:, :l])
        child = _row_keys(codes[:, : l + 1])
        pairs = np.unique(np.stack([pre, child], 1), axis=0)
        fan = np.bincount(pairs[:, 0])
        out.append({"prefix_length": l, "prefixes": int(len(fan)), "mean_children": float(fan.mean()), "max_children": int(fan.max())})
    return out


def reconstruction_stats(x: np.ndarray, x_hat: np.ndarray, batch: int = 65536) -> dict[str, float]:
    """MSE per element (the paper's reconstruction loss) and relative error SSE / sum ||x||^2."""
    if x.shape != x_hat.shape:
        raise InputError(f"reconstruction: shapes differ {x.shape} vs {x_hat.shape}")
    sse = 0.0
    ss = 0.0
    for s in range(0, x.shape[0], batch):
        a = np.asarray(x[s : s + batch], dtype=np.float64)
        e = a - np.asarray(x_hat[s : s + batch], dtype=np.float64)
        sse += float((e * e).sum())
        ss += float((a * a).sum())
    return {"reconstruction_mse": sse / x.size, "reconstruction_relative": sse / ss if ss > 0 else float("nan")}


def category_nmi(level1_codes: np.ndarray, categories: Sequence[str | None]) -> dict[str, float]:
    """NMI of level-1 codes with the item's top category (items without one are skipped)."""
    from sklearn.metrics import normalized_mutual_info_score

    keep = np.array([c is not None for c in categories])
    if keep.sum() < 2:
        return {"category_nmi": float("nan"), "category_items": int(keep.sum())}
    cats = np.asarray([c for c in categories if c is not None])
    nmi = normalized_mutual_info_score(cats, np.asarray(level1_codes)[keep])
    return {"category_nmi": float(nmi), "category_items": int(keep.sum()), "categories": int(len(set(cats.tolist())))}


def tokenizer_metrics(
    codes: np.ndarray,
    codebook_sizes: Sequence[int],
    *,
    x: np.ndarray | None = None,
    x_hat: np.ndarray | None = None,
    categories: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """All metrics of one tokenizer's codes (n, L) as a JSON-able dict."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != len(codebook_sizes):
        raise InputError(f"codes of shape {codes.shape} do not match {len(codebook_sizes)} codebook sizes")
    out: dict[str, Any] = {"n_items": int(codes.shape[0]), "n_levels": int(codes.shape[1])}
    if x is not None and x_hat is not None:
        out.update(reconstruction_stats(x, x_hat))
    else:
        out.update({"reconstruction_mse": None, "reconstruction_relative": None})
    out.update(collision_stats(codes))
    out["levels"] = [level_stats(codes[:, l], k) for l, k in enumerate(codebook_sizes)]
    out["prefix_fanout"] = prefix_fanout(codes)
    if categories is not None:
        out.update(category_nmi(codes[:, 0], categories))
    return out
