"""Tokenizer metrics accumulated batch by batch, in bounded memory.

:class:`StreamingMetrics` gives the same dict as :func:`tokenizer_metrics` (same keys, same
definitions) without holding the catalogue: reconstruction sums and per-level code counts are
running totals; collisions, the largest bucket and prefix fan-out come from one int64 key per
item (the SID in mixed radix), kept in memory up to a budget and spilled to disk by ranges of
the first-level code beyond it (:class:`~tokenizer_kit.io.SpilledKeys`); level-1 / category
NMI from a (categories x K) contingency table.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..io import DEFAULT_KEY_BUDGET, SpilledKeys
from ._metrics import level_stats_from_counts

__all__ = ["StreamingMetrics", "sid_key_radix", "sid_keys_of"]


def sid_key_radix(sizes: Sequence[int]) -> list[int]:
    """``R_l = prod(sizes[l:])`` for l = 0..L (R_L = 1): key // R_l is the prefix of length l."""
    total = 1
    for k in sizes:
        total *= int(k)
    if total >= 2**62:
        raise InputError(f"SID space {list(sizes)} is too large for int64 keys (product >= 2^62); use fewer or smaller levels")
    out = [1]
    for k in reversed(sizes):
        out.append(out[-1] * int(k))
    return out[::-1]


def sid_keys_of(codes: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """One int64 per row of ``codes`` (n, L): the SID read in mixed radix over ``sizes``."""
    codes = np.asarray(codes, dtype=np.int64)
    key = np.zeros(codes.shape[0], np.int64)
    for level, k in enumerate(sizes):
        key *= int(k)
        key += codes[:, level]
    return key


class StreamingMetrics:
    """Accumulate ``add_reconstruction`` / ``add_codes`` over batches; ``result()`` at the end."""

    def __init__(
        self,
        codebook_sizes: Sequence[int],
        *,
        key_budget: int = DEFAULT_KEY_BUDGET,
        spill_dir=None,
    ):
        self.sizes = [int(k) for k in codebook_sizes]
        self.radix = sid_key_radix(self.sizes)
        self.counts = [np.zeros(k, np.int64) for k in self.sizes]
        self.n = 0
        self.sse = 0.0
        self.ss = 0.0
        self.elements = 0
        self.recon = False
        k0, r1 = self.sizes[0], self.radix[1]
        parts = min(64, k0)
        self.keys = SpilledKeys(parts, lambda key: (key // r1) * parts // k0, budget=key_budget, spill_dir=spill_dir)
        self._cat_index: dict[str, int] | None = None
        self._contingency: np.ndarray | None = None

    def add_reconstruction(self, x: np.ndarray, x_hat: np.ndarray, chunk: int = 8192) -> None:
        """Squared error of reconstructions ``x_hat`` against ``x`` (b, d), summed in float64
        as :func:`reconstruction_stats` does (``chunk`` rows at a time)."""
        for s in range(0, x.shape[0], chunk):
            a = np.asarray(x[s : s + chunk], dtype=np.float64)
            e = a - np.asarray(x_hat[s : s + chunk], dtype=np.float64)
            self.sse += float((e * e).sum())
            self.ss += float((a * a).sum())
            self.elements += a.size
        self.recon = True

    def add_sq_norms(self, sq: np.ndarray, dim: int) -> None:
        """Reconstruction from per-row ``(||x||^2, ||x - x_hat||^2)`` (b, 2) float64 of rows of
        ``dim`` elements (what
        ``RQKMeans.encode(..., sq_norms=)`` fills), summed in float64."""
        sq = np.asarray(sq, dtype=np.float64)
        self.ss += float(np.add.reduce(sq[:, 0]))
        self.sse += float(np.add.reduce(sq[:, 1]))
        self.elements += int(sq.shape[0]) * int(dim)
        self.recon = True

    def add_sse_delta(self, delta: float) -> None:
        """Change of the squared error when codes move after the pass (distinct last level)."""
        self.sse += float(delta)

    def add_codes(self, codes: np.ndarray, categories: Sequence[str | None] | None = None) -> None:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[1] != len(self.sizes):
            raise InputError(f"codes of shape {codes.shape} do not match {len(self.sizes)} codebook sizes")
        self.n += codes.shape[0]
        for level, k in enumerate(self.sizes):
            self.counts[level] += np.bincount(codes[:, level], minlength=k)[:k]
        self.keys.add(sid_keys_of(codes, self.sizes))
        if categories is not None:
            self._add_categories(codes[:, 0], categories)

    def _add_categories(self, level1: np.ndarray, categories: Sequence[str | None]) -> None:
        if self._cat_index is None:
            self._cat_index = {}
            self._contingency = np.zeros((0, self.sizes[0]), np.int64)
        idx = np.empty(len(categories), np.int64)
        for i, c in enumerate(categories):
            if c is None:
                idx[i] = -1
                continue
            j = self._cat_index.get(c)
            if j is None:
                j = self._cat_index[c] = len(self._cat_index)
            idx[i] = j
        if len(self._cat_index) > self._contingency.shape[0]:
            grown = np.zeros((len(self._cat_index), self.sizes[0]), np.int64)
            grown[: self._contingency.shape[0]] = self._contingency
            self._contingency = grown
        keep = idx >= 0
        np.add.at(self._contingency, (idx[keep], level1[keep]), 1)

    def _category_nmi(self) -> dict[str, Any]:
        from sklearn.metrics import mutual_info_score

        c = self._contingency
        items = int(c.sum())
        if items < 2:
            return {"category_nmi": float("nan"), "category_items": items}
        c = c[c.sum(1) > 0][:, c.sum(0) > 0]
        if c.shape[0] == c.shape[1] == 1:
            return {"category_nmi": 1.0, "category_items": items, "categories": int(c.shape[0])}

        def h(m):
            p = m[m > 0] / m.sum()
            return float(-(p * np.log(p)).sum())

        mi = float(mutual_info_score(None, None, contingency=c))
        denom = (h(c.sum(1)) + h(c.sum(0))) / 2.0  # sklearn's default, arithmetic mean
        nmi = mi / denom if denom > 0 else 1.0
        return {"category_nmi": float(nmi), "category_items": items, "categories": int(c.shape[0])}

    def _collisions_and_fanout(self) -> tuple[dict[str, Any], list[dict[str, float]]]:
        levels = len(self.sizes)
        unique = colliding = largest = 0
        fan_pre = [0] * levels
        fan_sum = [0] * levels
        fan_max = [0] * levels
        for part in self.keys.partitions():
            if not len(part):
                continue
            u, c = np.unique(part, return_counts=True)
            unique += len(u)
            colliding += int(c[c > 1].sum())
            largest = max(largest, int(c.max()))
            for l in range(1, levels):
                child = np.unique(u // self.radix[l + 1])
                fan = np.unique(child // self.sizes[l], return_counts=True)[1]
                fan_pre[l] += len(fan)
                fan_sum[l] += int(fan.sum())
                fan_max[l] = max(fan_max[l], int(fan.max()))
        n = self.n
        if n == 0:
            coll = {"collision_rate": 0.0, "unique_sids": 0, "largest_bucket": 0, "colliding_items": 0}
        else:
            coll = {
                "collision_rate": colliding / n,
                "unique_sids": int(unique),
                "unique_sid_rate": unique / n,
                "largest_bucket": int(largest),
                "colliding_items": int(colliding),
                "excess_items": int(n - unique),
            }
        fanout = [
            {"prefix_length": l, "prefixes": int(fan_pre[l]), "mean_children": fan_sum[l] / fan_pre[l], "max_children": int(fan_max[l])}
            for l in range(1, levels)
            if fan_pre[l]
        ]
        return coll, fanout

    def result(self) -> dict[str, Any]:
        """The same dict as :func:`~tokenizer_kit.tokenizer_metrics` for all codes added."""
        out: dict[str, Any] = {"n_items": int(self.n), "n_levels": len(self.sizes)}
        if self.recon and self.elements:
            out["reconstruction_mse"] = self.sse / self.elements
            out["reconstruction_relative"] = self.sse / self.ss if self.ss > 0 else float("nan")
        else:
            out.update({"reconstruction_mse": None, "reconstruction_relative": None})
        coll, fanout = self._collisions_and_fanout()
        out.update(coll)
        out["levels"] = [level_stats_from_counts(c, k) for c, k in zip(self.counts, self.sizes)]
        out["prefix_fanout"] = fanout
        if self._contingency is not None:
            out.update(self._category_nmi())
        return out

    def close(self) -> None:
        self.keys.close()

    def __enter__(self) -> "StreamingMetrics":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
