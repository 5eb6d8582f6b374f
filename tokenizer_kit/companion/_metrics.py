"""Top-K retrieval metrics with one relevant item per query: the standard ones (TIGER, LC-Rec,
LETTER) and the collision-corrected ones of CollisionGenRec (Zhang et al., CIKM 2026).

The model returns a ranked list of beam SIDs. Two readings of that list:

* **Standard, SID level** (what TIGER / LC-Rec / LETTER code computes, by comparing SID
  strings): ``recall@K`` (= their Hit@K) is 1 when the target item's SID is among the first
  K beams, ``ndcg@K`` is ``1 / log2(r + 2)`` for its 0-based beam rank ``r < K``. An SID
  shared by G items is credited in full whichever of the G items the user wanted.
* **Collision-corrected, item level** (CollisionGenRec's CCE, their Sec. 3.1): each beam SID
  stands for the G items behind it, in a uniformly random order. With ``P`` items behind the
  beams ranked above the target's SID and ``G`` items sharing it, the target falls at each
  item position ``P .. P+G-1`` with probability 1/G, so ``item_hit@K = min(G, max(0, K-P)) / G``
  and ``item_ndcg@K = sum_{i=1..min(G, K-P)} 1 / log2(P + i + 1) / G``. K counts items, not beams.

Without shared SIDs (G = 1 everywhere, P = r) the two readings agree exactly. ``shared_target_rate``
is the share of users whose target's SID is shared with another item.

:class:`UserRanks` keeps, per user, what these need (r, P, G), so the metrics of any K,
per user, can be recomputed later, and runs on the same users can be paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["UserRanks", "retrieval_metrics", "target_ranks", "user_ranks"]

METRICS = ("recall", "ndcg", "item_hit", "item_ndcg")


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank (n,) of ``targets`` (n,) in ``ranked`` (n, K) item rows (-1 = empty slot); -1 if absent."""
    ranked = np.asarray(ranked, np.int64)
    targets = np.asarray(targets, np.int64)
    if ranked.ndim != 2 or targets.shape != (ranked.shape[0],):
        raise InputError(f"expected ranked (n, K) and targets (n,), got {ranked.shape} and {targets.shape}")
    hit = (ranked == targets[:, None]) & (targets[:, None] >= 0)  # [n, K]
    return np.where(hit.any(1), hit.argmax(1), -1)


def retrieval_metrics(ranked: np.ndarray, targets: np.ndarray, ks=(5, 10)) -> dict[str, float]:
    """``{"recall@5": .., "ndcg@5": .., ...}`` of ranked item lists (n, K) against targets (n,):
    one item per slot, so the standard and the item-level readings coincide."""
    ranked = np.asarray(ranked)
    ks = _check_ks(ks)
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


def _check_ks(ks) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise InputError(f"cut-offs must be >= 1, got {ks}")
    return ks


@dataclass
class UserRanks:
    """Where each user's target landed among the beams, (n,) int64 arrays.

    ``rank``: 0-based beam rank of the target's SID (-1: not among the beams);
    ``before``: items behind the beam SIDs ranked above it (P; 0 where ``rank`` is -1);
    ``group``: items sharing the target's SID (G >= 1).
    """

    rank: np.ndarray
    before: np.ndarray
    group: np.ndarray

    def __len__(self) -> int:
        return int(len(self.rank))

    def per_user(self, name: str) -> np.ndarray:
        """(n,) float64 values of one metric, ``"item_ndcg@10"``, ``"recall@5"``, ..."""
        metric, _, k = name.partition("@")
        if metric not in METRICS or not k.isdigit() or int(k) < 1:
            raise InputError(f"unknown metric {name!r}; expected one of {', '.join(m + '@K' for m in METRICS)}")
        k = int(k)
        r, p, g = self.rank, self.before, np.maximum(self.group, 1)
        found = r >= 0
        if metric == "recall":
            return (found & (r < k)).astype(np.float64)
        if metric == "ndcg":
            return np.where(found & (r < k), 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0)
        eff = np.where(found, np.minimum(g, np.maximum(0, k - p)), 0)  # target positions inside the top K
        if metric == "item_hit":
            return eff / g
        # sum_{i=1..eff} 1/log2(P+i+1) = H(P+eff) - H(P), H(m) = sum_{j<m} 1/log2(j+2)
        top = int((p + eff).max()) if len(p) else 0
        h = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(top) + 2.0))])
        return (h[p + eff] - h[p]) / g

    def metrics(self, ks=(5, 10)) -> dict[str, float]:
        """Means over users: recall / ndcg / item_hit / item_ndcg at each K, and ``shared_target_rate``."""
        out: dict[str, float] = {}
        for k in _check_ks(ks):
            for m in METRICS:
                out[f"{m}@{k}"] = float(self.per_user(f"{m}@{k}").mean()) if len(self) else 0.0
        out["shared_target_rate"] = float((self.group > 1).mean()) if len(self) else 0.0
        return out

    def to_json(self) -> dict[str, Any]:
        """Compact form: ``n``, the users whose target's SID was among the beams as
        ``[position, rank, before, group]`` rows, and the group sizes of the others only as
        a count of shared ones (all the metrics need)."""
        hit = np.flatnonzero(self.rank >= 0)
        rows = np.stack([hit, self.rank[hit], self.before[hit], self.group[hit]], 1)
        return {"n": len(self), "hits": rows.tolist(), "shared_misses": int((self.group[self.rank < 0] > 1).sum())}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "UserRanks":
        """Inverse of :meth:`to_json` (misses get group 1 except ``shared_misses`` of them, which
        only ``shared_target_rate`` reads)."""
        n = int(d["n"])
        rank, before, group = np.full(n, -1, np.int64), np.zeros(n, np.int64), np.ones(n, np.int64)
        rows = np.asarray(d["hits"], np.int64).reshape(-1, 4)
        rank[rows[:, 0]], before[rows[:, 0]], group[rows[:, 0]] = rows[:, 1], rows[:, 2], rows[:, 3]
        miss = np.flatnonzero(rank < 0)[: int(d.get("shared_misses", 0))]
        group[miss] = 2
        return cls(rank, before, group)


def user_ranks(beam_groups: np.ndarray, target_groups: np.ndarray, group_sizes: np.ndarray) -> UserRanks:
    """:class:`UserRanks` of ranked beam SIDs.

    ``beam_groups`` (n, beam): id of each beam's SID (an index into ``group_sizes``), best
    first, -1 for an empty slot; ``target_groups`` (n,): id of each target's SID;
    ``group_sizes`` (n_sids,): items per SID.
    """
    bg = np.asarray(beam_groups, np.int64)
    tg = np.asarray(target_groups, np.int64)
    gs = np.asarray(group_sizes, np.int64)
    if bg.ndim != 2 or tg.shape != (bg.shape[0],):
        raise InputError(f"expected beam SIDs (n, beam) and targets (n,), got {bg.shape} and {tg.shape}")
    match = (bg == tg[:, None]) & (tg[:, None] >= 0)  # [n, beam]
    rank = np.where(match.any(1), match.argmax(1), -1)
    sizes = np.where(bg >= 0, gs[np.maximum(bg, 0)], 0)  # [n, beam] items behind each beam SID
    cum = np.concatenate([np.zeros((len(bg), 1), np.int64), np.cumsum(sizes, 1)], 1)  # [n, beam+1]
    before = np.where(rank >= 0, cum[np.arange(len(bg)), np.maximum(rank, 0)], 0)
    return UserRanks(rank.astype(np.int64), before.astype(np.int64), gs[np.maximum(tg, 0)].astype(np.int64))
