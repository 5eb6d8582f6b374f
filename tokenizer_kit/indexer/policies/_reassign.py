"""``reassign``: keep length L and move colliding items to free codes.

Per prefix with collisions, a min-cost assignment (Hungarian, scipy) of the colliding items
to the prefix's free last-level codes plus the contested ones, cost = reconstruction error
||x - decode(prefix, k)||^2; items that do not fit go to the nearest free SID under the next
best prefix (second-to-last level varied, then higher). A cold-start item whose SID is taken
goes to the nearest free SID the same way; no existing SID moves.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ...errors import InputError
from ._base import CollisionPolicy, Decode, IndexView, Placement, Resolution, register_policy
from ._keys import OccupiedSet, key_codes, sid_keys, sq_err

__all__ = ["ReassignPolicy", "place_overflow", "reassign_prefixes", "reassign_sids"]

logger = logging.getLogger(__name__)

_MAX_CANDIDATES = 1 << 20


def _digits(key: int, sizes: Sequence[int]) -> np.ndarray:
    """The codes (L,) of one key (``key_codes`` of a single key)."""
    return key_codes(np.array([key], np.int64), sizes)[0]


class ViewOccupied:
    """``OccupiedSet``'s interface over an index view (live SIDs) plus retired SIDs: cold start
    reads only the prefixes it probes, never every SID of the catalogue."""

    def __init__(self, view: IndexView, retired: np.ndarray, sizes: Sequence[int]):
        self.view = view
        self.sizes = [int(k) for k in sizes]
        self.retired = np.unique(sid_keys(retired, self.sizes)) if len(retired) else np.zeros(0, np.int64)
        self.added: set[int] = set()

    def __contains__(self, key: int) -> bool:
        key = int(key)
        i = np.searchsorted(self.retired, key)
        if (i < len(self.retired) and self.retired[i] == key) or key in self.added:
            return True
        return self.view.contains(_digits(key, self.sizes).tolist())

    def add(self, key: int) -> None:
        self.added.add(int(key))

    def used_in_range(self, lo: int, hi: int) -> np.ndarray:
        t, span = len(self.sizes), 1  # [lo, hi) holds the SIDs under lo's first t digits
        while t > 0 and span < hi - lo:
            t -= 1
            span *= self.sizes[t]
        prefix = _digits(lo, self.sizes)[:t].tolist()
        live = sid_keys(self.view.sids_under(prefix).reshape(-1, len(self.sizes)), self.sizes)
        a, b = np.searchsorted(self.retired, [lo, hi])
        extra = [k for k in self.added if lo <= k < hi]
        return np.concatenate([live, self.retired[a:b], np.asarray(extra, np.int64)])


def _best_free_under(x, codes, sizes, decode: Decode, t: int, free: np.ndarray, base: int) -> tuple[int, float]:
    """The free key (of ``free``, offsets from ``base``) under ``codes[:t]`` whose decoding is nearest ``x``."""
    L = len(sizes)
    best, best_err = -1, np.inf
    for s0 in range(0, len(free), 65536):
        f = free[s0 : s0 + 65536]
        cand = np.empty((len(f), L), np.int64)  # decode the suffix digits of each free key
        cand[:, :t] = codes[:t]
        rem = f.copy()
        for l in range(L - 1, t - 1, -1):
            cand[:, l] = rem % int(sizes[l])
            rem //= int(sizes[l])
        err = sq_err(x[None, :], decode(cand))[0]
        i = int(np.argmin(err))
        if err[i] < best_err:
            best, best_err = base + int(f[i]), float(err[i])
    return best, best_err


def _nearest_free(x: np.ndarray, codes: np.ndarray, sizes: Sequence[int], decode: Decode, blocked) -> tuple[np.ndarray, float]:
    """Best free SID by reconstruction error: under the same prefix (levels < L-1) if one is
    free, else under the shorter prefix levels < L-2 (the next best prefixes), and so on up."""
    L = len(sizes)
    codes = np.asarray(codes, np.int64)
    for t in range(L - 1, -1, -1):
        span = int(np.prod([int(k) for k in sizes[t:]]))
        if span > _MAX_CANDIDATES:
            break
        base = int(sid_keys(np.concatenate([codes[:t], np.zeros(L - t, np.int64)])[None, :], sizes)[0])
        free = np.setdiff1d(np.arange(span, dtype=np.int64), blocked.used_in_range(base, base + span) - base)
        if len(free):
            best, best_err = _best_free_under(x, codes, sizes, decode, t, free, base)
            return _digits(best, sizes), best_err
    raise InputError(
        f"no free SID near codes {codes.tolist()} (codebooks {list(sizes)} are nearly full); use the suffix policy or larger codebooks"
    )


def _check_fits(n: int, x: np.ndarray, sizes: Sequence[int], retired: np.ndarray | None) -> None:
    if x.shape[0] != n:
        raise InputError(f"reassign: {n} codes but {x.shape[0]} vectors; pass the embeddings the codes were made from")
    cap = float(np.prod([float(k) for k in sizes]))
    if n + (0 if retired is None else len(retired)) > cap:
        raise InputError(f"{n} items do not fit in {int(cap)} SIDs of codebooks {list(sizes)}; use the suffix policy or larger codebooks")


def _assign_prefix(out, rows, codes, xr, decode: Decode, blocked, p: int, K: int) -> np.ndarray:
    """Hungarian assignment of a prefix's colliding ``rows`` (vectors ``xr``) to its free and
    contested last codes; returns the rows left over (more colliding items than codes)."""
    from scipy.optimize import linear_sum_assignment

    contested = np.unique(codes[rows, -1])
    used = blocked.used_in_range(p * K, (p + 1) * K) - p * K
    avail = np.union1d(np.setdiff1d(np.arange(K), used), contested)
    prefix = codes[rows[0], :-1]
    block = np.empty((K, len(prefix) + 1), np.int64)
    block[:, :-1] = prefix[None, :]
    block[:, -1] = np.arange(K)
    err = sq_err(xr, decode(block)[avail])  # [m, |avail|]
    r, c = linear_sum_assignment(err)
    out[rows[r], -1] = avail[c]
    for k in avail[c].tolist():
        blocked.add(p * K + int(k))
    return rows[np.setdiff1d(np.arange(len(rows)), r)]


def _resolve_prefixes(out, codes, keys, colliding, vectors, decode: Decode, blocked, K: int) -> np.ndarray:
    """Every prefix holding a collision, in key order, assigned alone (``_assign_prefix``, its
    colliding rows ascending, ``vectors(rows)`` their vectors); returns the left-over rows ascending."""
    rows = np.flatnonzero(colliding)
    pkey = keys[rows] // K
    order = np.argsort(pkey, kind="stable")  # by prefix, rows ascending within one
    rows, pkey = rows[order], pkey[order]
    starts = np.flatnonzero(np.r_[True, pkey[1:] != pkey[:-1]]) if len(rows) else np.zeros(0, np.int64)
    overflow = []
    for a, b in zip(starts.tolist(), starts[1:].tolist() + [len(rows)]):
        r = rows[a:b]
        overflow.append(_assign_prefix(out, r, codes, vectors(r), decode, blocked, int(pkey[a]), K))
    return np.sort(np.concatenate(overflow)) if overflow else np.zeros(0, np.int64)


def reassign_prefixes(keys: np.ndarray, sizes: Sequence[int], decode: Decode, vectors) -> tuple[np.ndarray, np.ndarray]:
    """The first step of ``reassign_sids`` over items that fill whole prefixes (no other item
    shares their first L-1 codes), e.g. a range of the first level: ``keys`` (m,) their code keys
    (``sid_keys``) in row order, ``vectors(idx)`` the (preprocessed) vectors of the items ``idx``
    (ascending). Returns (codes (m, L) after each prefix's assignment, the items left over
    ascending: they go to another prefix, ``place_overflow``, in row order across all items)."""
    keys = np.asarray(keys, np.int64)
    uniq, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    codes = key_codes(keys, sizes)
    out = codes.copy()
    colliding = counts[inv] > 1
    if not colliding.any():
        return out, np.zeros(0, np.int64)
    blocked = OccupiedSet(uniq[counts == 1])
    return out, _resolve_prefixes(out, codes, keys, colliding, vectors, decode, blocked, int(sizes[-1]))


def place_overflow(codes: np.ndarray, x: np.ndarray, sizes: Sequence[int], decode: Decode, blocked) -> np.ndarray:
    """The second step of ``reassign_sids``: SIDs (m, L) for the left-over items ``codes`` (m, L)
    with vectors ``x`` (m, d), placed in order, each at the nearest SID free in ``blocked`` (an
    ``OccupiedSet``-like set of keys, to which each placed SID is added)."""
    out = np.asarray(codes, np.int64).copy()
    for i in range(len(out)):
        out[i], _ = _nearest_free(np.asarray(x[i], np.float64), out[i], sizes, decode, blocked)
        blocked.add(int(sid_keys(out[i][None, :], sizes)[0]))
    return out


def reassign_sids(
    codes: np.ndarray, x: np.ndarray, sizes: Sequence[int], decode: Decode, *, retired: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Collision-free SIDs of length L: (sids (n, L), moved (n,) bool, extra error (n,) float64).

    ``x`` (n, d) are the (preprocessed) vectors the codes quantise; ``extra`` is the
    squared-error increase of each moved item (0 for others).
    """
    codes = np.asarray(codes, np.int64)
    n, L = codes.shape
    _check_fits(n, x, sizes, retired)
    K = int(sizes[-1])
    keys = sid_keys(codes, sizes)
    uniq, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    colliding = counts[inv] > 1
    out = codes.copy()
    extra = np.zeros(n)
    if not colliding.any():
        return out, np.zeros(n, bool), extra
    retired_keys = np.zeros(0, np.int64) if retired is None or not len(retired) else sid_keys(retired, sizes)
    orig_err = ((x.astype(np.float64) - decode(codes)) ** 2).sum(1)
    blocked = OccupiedSet(np.concatenate([uniq[counts == 1], retired_keys]))
    overflow = _resolve_prefixes(out, codes, keys, colliding, lambda r: x[r], decode, blocked, K)
    out[overflow] = place_overflow(codes[overflow], x[overflow], sizes, decode, blocked)
    moved = (out != codes).any(1)
    if moved.any():
        extra[moved] = ((x[moved].astype(np.float64) - decode(out[moved])) ** 2).sum(1) - orig_err[moved]
    logger.info("reassign: %d colliding items, %d moved, %d to another prefix", int(colliding.sum()), int(moved.sum()), len(overflow))
    return out, moved, extra


@register_policy
class ReassignPolicy(CollisionPolicy):
    name = "reassign"
    needs_vectors = True
    keeps_codes = False

    def build(self, codes, *, sizes, x, decode, err, retired, suffix_reserve) -> Resolution:
        sids, moved, extra = reassign_sids(codes, np.asarray(x), sizes, decode, retired=retired)
        return Resolution(
            sids=sids, moved=moved, extra=extra, stats={"moved_other_prefix": int(((sids[:, :-1] != codes[:, :-1]).any(1)).sum())}
        )

    def place_new(self, codes, *, view: IndexView, retired, sizes, x, decode: Decode | None) -> Placement:
        """Items whose SID is live, retired or placed earlier in this round go to the nearest free SID."""
        codes = np.asarray(codes, np.int64)
        blocked = ViewOccupied(view, retired, sizes)
        out = codes.copy()
        collided = np.zeros(len(codes), bool)
        for i in range(len(codes)):
            key = int(sid_keys(codes[i][None, :], sizes)[0])
            if key in blocked:
                collided[i] = True
                if x is None or decode is None:
                    raise InputError("cold start under the reassign policy needs the items' vectors to find a free SID")
                out[i], _ = _nearest_free(np.asarray(x[i], np.float64), codes[i], sizes, decode, blocked)
                key = int(sid_keys(out[i][None, :], sizes)[0])
            blocked.add(key)
        return Placement(sids=out, collided=collided, moved=(out != codes).any(1))
