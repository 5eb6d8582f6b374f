"""Item-pair mining from interactions: Swing (Yang et al. 2020) and user-to-item pairs.

Swing similarity of items i and j::

    sim(i, j) = sum over unordered user pairs {u, v} who both interacted with i and j of
                w_u * w_v / (alpha + |I_u ∩ I_v|),        w_u = |I_u| ** -user_weight_power

after two caps: each user keeps the latest ``max_items_per_user`` distinct items and each
item the latest ``max_users_per_item`` users (the usual guards against heavy users and
blockbuster items). The fast path is sparse linear algebra: with the capped user x item
item pairs of every user are grouped by item pair, user pairs are formed inside each group,
and each term is weighted and summed with numpy (see ``swing_similarity``); nothing loops over
users or items in Python. ``swing_reference`` is the plain Python definition (tests, benchmarks).

User-to-item pairs (OneRec): for each user, the latest positive training click is the target
and is paired with the most similar item (Swing; item co-occurrence cosine breaks ties and
zeros) among the ``u2i_history`` positive clicks before it.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from .._config import ValidatedConfig, setting
from ..errors import InputError
from ..io import InteractionLog

__all__ = ["PairMiningConfig", "swing_similarity", "swing_reference", "swing_topk", "user_to_item_pairs", "mine_pairs", "cap_interactions"]

logger = logging.getLogger(__name__)


@dataclass
class PairMiningConfig(ValidatedConfig):
    label: ClassVar[str] = "pair-mining"
    error_type: ClassVar[type[InputError]] = InputError

    # renamed settings, accepted when reading an older config
    renamed: ClassVar[dict[str, str]] = {"u2i_targets_per_user": "u2i_targets", "topk": "swing_topk"}

    alpha: float = setting(1.0, help="Swing smoothing alpha: 1 / (alpha + |I_u & I_v|) per user pair.", bounds="(0, inf)")
    user_weight_power: float = setting(0.5, help="Swing user weight |I_u|^-p (0 disables).", bounds=(0, None))
    max_items_per_user: int = setting(200, help="Cap: latest items kept per user.", bounds=(1, None))
    max_users_per_item: int = setting(1000, help="Cap: latest users kept per item.", bounds=(1, None))
    swing_topk: int = setting(10, help="Swing neighbours kept per item (0: no Swing pairs).", bounds=(0, None))
    min_swing_score: float = setting(0.0, help="Drop Swing pairs scoring below this.")
    u2i_history: int = setting(10, help="User-to-item: latest positive clicks searched for the target's partner.", bounds=(1, None))
    u2i_targets: int = setting(
        40,
        help="User-to-item: targets per user (their latest clicks; 0 disables). The paper pairs one; "
        "40 gave the best held-out recall on Office (docs/benchmarks.md).",
        bounds=(0, None),
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cap_interactions(log: InteractionLog, *, max_items_per_user: int, max_users_per_item: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct positive (user, item) pairs after the caps, as ``(users, items)`` int64 arrays.

    A user's item keeps its latest time; each user keeps the latest ``max_items_per_user`` items
    and then each item the latest ``max_users_per_item`` users (ties: larger user code first).
    """
    m = log.positive
    u, i, t = log.users[m], log.items[m], log.timestamps[m]
    if len(u) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    n_items = max(int(i.max()) + 1, 1)
    key = u * n_items + i
    # latest time per distinct (u, i)
    order = np.lexsort((t, key))
    key, t = key[order], t[order]
    last = np.r_[key[1:] != key[:-1], True]
    key, t = key[last], t[last]
    u, i = key // n_items, key % n_items
    # latest items per user
    order = np.lexsort((-i, -t, u))
    u, i, t = u[order], i[order], t[order]
    rank = _rank_in_runs(u)
    keep = rank < max_items_per_user
    u, i, t = u[keep], i[keep], t[keep]
    # latest users per item
    order = np.lexsort((-u, -t, i))
    u, i, t = u[order], i[order], t[order]
    keep = _rank_in_runs(i) < max_users_per_item
    return u[keep].astype(np.int64), i[keep].astype(np.int64)


def _rank_in_runs(sorted_keys: np.ndarray) -> np.ndarray:
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, np.int64)
    start = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    idx = np.arange(n)
    first = np.maximum.accumulate(np.where(start, idx, 0))
    return idx - first


def _sort_by_key(key: np.ndarray, payload: np.ndarray, payload_bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort ``key`` (ascending) and carry ``payload`` (ties: payload ascending), both int64 >= 0.

    When key and payload fit one int64 together they are packed and sorted with ``np.sort``
    (NumPy's vectorised sort, several times faster than ``argsort`` on tens of millions of
    elements); otherwise a lexicographic argsort gives the same order.
    """
    if len(key) == 0:
        return key, payload
    shift = max(int(payload_bound - 1).bit_length(), 1)
    if int(key.max()) < (1 << (63 - shift)):
        packed = np.sort((key << shift) | payload)
        return packed >> shift, packed & ((1 << shift) - 1)
    order = np.lexsort((payload, key))
    return key[order], payload[order]


def _user_item_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int):
    import scipy.sparse as sp

    a = sp.csr_matrix((np.ones(len(users), np.float64), (users, items)), shape=(n_users, n_items))
    a.sum_duplicates()
    a.data[:] = 1.0
    return a


def _pairs_within_runs(starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (p, q), p < q, inside each run [start, start + size): two int64 arrays."""
    sizes = sizes.astype(np.int64)
    # element r of a run pairs with the size - 1 - r elements after it
    elem_start = np.repeat(starts.astype(np.int64), sizes)
    elem = elem_start + (np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    after = np.repeat(starts + sizes, sizes) - elem - 1
    first = np.repeat(elem, after)
    second = first + 1 + (np.arange(int(after.sum()), dtype=np.int64) - np.repeat(np.cumsum(after) - after, after))
    return first, second


def swing_similarity(log: InteractionLog, config: PairMiningConfig | None = None):
    """Swing similarity as a symmetric ``scipy.sparse.csr_matrix`` (n_items, n_items), float64,
    zero diagonal.

    Vectorised over "quadruples" (item pair i<j, user pair u<v, all four interactions present),
    the terms of the Swing sum, without ever forming the dense-ish user x user co-count matrix:
    (1) every user's item pairs (u, i, j); (2) grouped by (i, j), the groups of >= 2 users give
    the user pairs; (3) a user pair that shares c items appears in c(c-1)/2 quadruples, which
    gives |I_u ∩ I_v| = c from a count; (4) weights summed per item pair with ``bincount``.
    Memory is O(number of quadruples), bounded through ``max_users_per_item``.
    """
    import scipy.sparse as sp

    cfg = (config or PairMiningConfig()).validate()
    n_users, n_items = len(log.user_ids), len(log.item_ids)
    users, items = cap_interactions(log, max_items_per_user=cfg.max_items_per_user, max_users_per_item=cfg.max_users_per_item)
    a = _user_item_matrix(users, items, n_users, n_items)
    a.sort_indices()
    deg = np.diff(a.indptr).astype(np.int64)
    w = np.where(deg > 0, np.maximum(deg, 1).astype(np.float64) ** (-cfg.user_weight_power), 0.0)
    # (1) item pairs per user: triples (u, i, j), i < j
    f, g = _pairs_within_runs(a.indptr[:-1].astype(np.int64), deg)
    t_user = np.repeat(np.arange(n_users, dtype=np.int64), deg)[f]
    t_key = a.indices[f].astype(np.int64) * n_items + a.indices[g].astype(np.int64)
    del f, g
    # (2) group by item pair, users ascending inside a group
    t_key, t_user = _sort_by_key(t_key, t_user, n_users)
    new = np.r_[True, t_key[1:] != t_key[:-1]]
    starts = np.flatnonzero(new)
    sizes = np.diff(np.r_[starts, len(t_key)])
    keep = sizes >= 2
    starts, sizes = starts[keep], sizes[keep]
    group_key = t_key[starts]
    del t_key, new
    if len(starts) == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float64)
    p, q = _pairs_within_runs(starts, sizes)
    q_group = np.repeat(np.arange(len(starts), dtype=np.int64), sizes * (sizes - 1) // 2)
    pair = t_user[p] * n_users + t_user[q]  # user pair u < v
    del p, q, t_user
    # (3) |I_u ∩ I_v| from how often the user pair occurs: c(c-1)/2 times
    pair, q_group = _sort_by_key(pair, q_group, len(starts))
    run = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    n_uv = np.diff(np.r_[run, len(pair)])
    common = np.rint((1.0 + np.sqrt(1.0 + 8.0 * n_uv)) / 2.0)
    uu, vv = pair[run] // n_users, pair[run] % n_users
    weight = np.repeat(w[uu] * w[vv] / (cfg.alpha + common), n_uv)
    del pair
    # (4) sum per item pair
    val = np.bincount(q_group, weights=weight, minlength=len(starts))
    gi, gj = group_key // n_items, group_key % n_items
    sim = sp.csr_matrix((np.r_[val, val], (np.r_[gi, gj], np.r_[gj, gi])), shape=(n_items, n_items))
    sim.sum_duplicates()
    sim.eliminate_zeros()
    sim.sort_indices()
    return sim


def swing_reference(log: InteractionLog, config: PairMiningConfig | None = None) -> dict[tuple[int, int], float]:
    """Plain-Python Swing (the definition, loops over item pairs and user pairs):
    ``{(i, j): sim}`` for i < j with sim > 0. Slow; for tests and benchmarks."""
    cfg = (config or PairMiningConfig()).validate()
    users, items = cap_interactions(log, max_items_per_user=cfg.max_items_per_user, max_users_per_item=cfg.max_users_per_item)
    user_items: dict[int, set[int]] = {}
    item_users: dict[int, set[int]] = {}
    for u, i in zip(users.tolist(), items.tolist()):
        user_items.setdefault(u, set()).add(i)
        item_users.setdefault(i, set()).add(u)
    w = {u: len(s) ** (-cfg.user_weight_power) for u, s in user_items.items()}
    out: dict[tuple[int, int], float] = {}
    for i in sorted(item_users):
        neigh = set()
        for u in item_users[i]:
            neigh |= user_items[u]
        for j in sorted(neigh):
            if j <= i:
                continue
            common = sorted(item_users[i] & item_users[j])
            s = 0.0
            for u, v in itertools.combinations(common, 2):
                s += w[u] * w[v] / (cfg.alpha + len(user_items[u] & user_items[v]))
            if s > 0:
                out[(i, j)] = s
    return out


def swing_topk(sim, k: int, *, min_score: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` neighbours per row of a sparse similarity: ``(rows, cols, scores)``; ties go to
    the smaller column index."""
    sim = sim.tocsr()
    rows = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
    cols, vals = sim.indices.astype(np.int64), sim.data
    keep = vals > min_score
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    sel = _rank_in_runs(rows) < k
    return rows[sel].astype(np.int64), cols[sel], vals[sel]


def _lookup(mat, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    if len(r) == 0:
        return np.zeros(0)
    return np.asarray(mat[r, c]).ravel()


def user_to_item_pairs(log: InteractionLog, sim, config: PairMiningConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OneRec user-to-item pairs ``(targets, partners, scores)`` from a training log.

    For each user the latest ``u2i_targets`` positive clicks are targets; each is paired
    with the item of highest Swing similarity among the ``u2i_history`` positive clicks before it
    (co-occurrence cosine breaks ties and replaces zeros; a target with no similar item is skipped).
    """
    cfg = (config or PairMiningConfig()).validate()
    m = log.positive
    u, it = log.users[m], log.items[m]
    if len(u) == 0 or cfg.u2i_targets == 0:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0)
    n = len(u)
    start = np.r_[True, u[1:] != u[:-1]]
    idx = np.arange(n)
    first = np.maximum.accumulate(np.where(start, idx, 0))
    pos = idx - first
    run_len = np.bincount(np.cumsum(start) - 1)
    from_end = run_len[np.cumsum(start) - 1] - 1 - pos
    tsel = np.flatnonzero((from_end < cfg.u2i_targets) & (pos >= 1))
    # candidate (target row, history row) pairs: the h clicks before each target
    h = cfg.u2i_history
    offs = np.arange(1, h + 1)
    tr = np.repeat(tsel, h)
    hr = tr - np.tile(offs, len(tsel))
    valid = hr >= np.repeat(first[tsel], h)
    tr, hr = tr[valid], hr[valid]
    t_items, c_items = it[tr], it[hr]
    diff = t_items != c_items
    tr, hr, t_items, c_items = tr[diff], hr[diff], t_items[diff], c_items[diff]
    s = _lookup(sim, t_items, c_items)
    # tie-break / fallback: co-occurrence cosine over users
    n_users, n_items = len(log.user_ids), len(log.item_ids)
    a = _user_item_matrix(u, it, n_users, n_items)
    co = (a.T @ a).tocsr()
    cnt = np.asarray(a.sum(axis=0)).ravel()
    cos = _lookup(co, t_items, c_items) / np.sqrt(np.maximum(cnt[t_items] * cnt[c_items], 1.0))
    # best per target row: max swing, then max cosine, then the most recent click
    order = np.lexsort((-hr, -cos, -s, tr))
    tr, hr, s, cos = tr[order], hr[order], s[order], cos[order]
    best = np.r_[True, tr[1:] != tr[:-1]] if len(tr) else np.zeros(0, bool)
    tr, hr, s, cos = tr[best], hr[best], s[best], cos[best]
    ok = (s > 0) | (cos > 0)
    score = np.where(s > 0, s, 0.0)
    return it[tr[ok]], it[hr[ok]], score[ok]


def mine_pairs(log: InteractionLog, config: PairMiningConfig | None = None):
    """Swing top-k pairs (deduplicated, unordered) plus user-to-item pairs.

    Returns ``(table, stats)``: a pyarrow Table ``item_a, item_b, score, source`` and a dict of
    counts per source and item coverage.
    """
    import pyarrow as pa

    cfg = (config or PairMiningConfig()).validate()
    sim = swing_similarity(log, cfg)
    r, c, v = swing_topk(sim, cfg.swing_topk, min_score=cfg.min_swing_score)
    lo, hi = np.minimum(r, c), np.maximum(r, c)
    key = lo * len(log.item_ids) + hi
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)
    sa, sb, sv = lo[first], hi[first], v[first]
    ta, tb, tv = user_to_item_pairs(log, sim, cfg)
    if len(sa) + len(ta) == 0:
        n_users = len(np.unique(log.users[log.positive])) if len(log) else 0
        n_items = len(np.unique(log.items[log.positive])) if len(log) else 0
        raise InputError(
            f"no item pairs could be mined from {len(log)} interactions ({n_users} users, {n_items} items with positive clicks): "
            "pairs need users with at least two different items (and, with the split, enough history left for training); "
            "give more interactions"
        )
    ids = log.item_ids
    table = pa.table(
        {
            "item_a": pa.array(np.concatenate([ids[sa], ids[ta]]).astype(str).tolist(), pa.string()),
            "item_b": pa.array(np.concatenate([ids[sb], ids[tb]]).astype(str).tolist(), pa.string()),
            "score": pa.array(np.concatenate([sv, tv]).astype(np.float64)),
            "source": pa.array(["swing"] * len(sa) + ["u2i"] * len(ta), pa.string()),
        }
    )
    active = np.unique(log.items[log.positive])
    cov_sw = np.unique(np.r_[sa, sb])
    cov_all = np.unique(np.r_[sa, sb, ta, tb])
    stats = {
        "n_interactions": int(len(log)),
        "n_users": int(len(np.unique(log.users))),
        "n_items": int(len(active)),
        "pairs": {"swing": int(len(sa)), "u2i": int(len(ta)), "total": int(len(sa) + len(ta))},
        "swing_nonzero_entries": int(sim.nnz),
        "coverage": {
            "swing": float(len(cov_sw) / max(len(active), 1)),
            "all": float(len(cov_all) / max(len(active), 1)),
        },
        "config": cfg.to_dict(),
    }
    return table, stats
