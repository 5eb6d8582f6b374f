"""Intervals and paired tests for retrieval results over seeds and users.

Two sources of noise move a retrieval number: the test users (a different sample of users
would give another mean) and training (another seed gives another model). Every run of a
comparison scores the *same* test users, so sets of SIDs are compared user by user.

One bootstrap covers both (a two-stage, "hierarchical" bootstrap): each replicate draws the
test users with replacement (the same draw for every set: that is the pairing) and, for each
set independently, its seeds with replacement; a set's replicate value is the mean over the
drawn seeds of the mean over the drawn users. The 95% interval of a set is the 2.5 / 97.5
percentiles of its replicate values; the difference between two sets is tested on the
replicate differences (two-sided p = twice the smaller tail, at least 1 / replicates), and
their 95% interval is the difference's percentile interval. With one seed this is the plain
paired bootstrap over users. With three seeds, seed noise is only roughly captured (a
bootstrap over 3 values underestimates their spread by a factor sqrt(2/3)); that is the
price of three seeds, and the reason the tables also show every seed's value.

Several comparisons against one reference are corrected with Holm's step-down method; a
difference is marked significant when its Holm-adjusted p is below ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import InputError

__all__ = ["BootstrapResult", "bootstrap_sets", "holm"]


@dataclass
class BootstrapResult:
    """Replicate values (n_sets, n_boot) of each set's mean and the point means (n_sets,)."""

    names: list[str]
    mean: np.ndarray
    replicates: np.ndarray

    def interval(self, name: str, level: float = 0.95) -> tuple[float, float]:
        r = self.replicates[self.names.index(name)]
        a = (1 - level) / 2
        return float(np.quantile(r, a)), float(np.quantile(r, 1 - a))

    def difference(self, a: str, b: str, level: float = 0.95) -> dict[str, float]:
        """``a - b``: mean, percentile interval and two-sided bootstrap p of the difference."""
        ia, ib = self.names.index(a), self.names.index(b)
        d = self.replicates[ia] - self.replicates[ib]
        n = len(d)
        p = min(1.0, 2 * min((d <= 0).sum() + 1, (d >= 0).sum() + 1) / (n + 1))
        q = (1 - level) / 2
        return {"diff": float(self.mean[ia] - self.mean[ib]), "lo": float(np.quantile(d, q)), "hi": float(np.quantile(d, 1 - q)), "p": float(p)}


def bootstrap_sets(values: Mapping[str, np.ndarray], *, n_boot: int = 4000, seed: int = 0, chunk: int = 500) -> BootstrapResult:
    """Two-stage bootstrap of each set's mean over seeds and users (module docstring).

    ``values[name]``: (n_seeds, n_users) per-user values of one metric, one row per seed; all
    sets must hold the same users in the same order (their seed counts may differ).
    """
    names = list(values)
    if not names:
        raise InputError("nothing to compare: give at least one set of results")
    mats = [np.atleast_2d(np.asarray(values[k], np.float64)) for k in names]
    n = mats[0].shape[1]
    if n == 0 or any(m.shape[1] != n for m in mats):
        raise InputError(f"every set must score the same users; got user counts {[m.shape[1] for m in mats]}")
    rng = np.random.default_rng(seed)
    stacked = np.concatenate(mats, 0)  # [sum seeds, n]
    offsets = np.cumsum([0] + [m.shape[0] for m in mats])
    reps = np.empty((len(names), n_boot))
    for s in range(0, n_boot, chunk):
        b = min(chunk, n_boot - s)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=b).T.astype(np.float64)  # [n, b] user draw counts, shared by all sets
        per_seed = stacked @ w / n  # [sum seeds, b] each seed's mean over the drawn users
        for i in range(len(names)):
            rows = per_seed[offsets[i] : offsets[i + 1]]  # [S_i, b]
            k = rows.shape[0]
            pick = rng.integers(0, k, size=(k, b))  # seeds drawn with replacement, per replicate
            reps[i, s : s + b] = rows[pick, np.arange(b)[None, :]].mean(0)
    return BootstrapResult(names, np.asarray([m.mean() for m in mats]), reps)


def holm(pvalues: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def describe(values: np.ndarray) -> dict[str, Any]:
    """Per-seed means of (n_seeds, n_users) values."""
    v = np.atleast_2d(np.asarray(values, np.float64))
    return {"per_seed": v.mean(1).tolist(), "mean": float(v.mean())}
