"""Collision policies: how quantizer codes (n, L) become SIDs with one item per SID.

* ``suffix``   -- TIGER: append a level 0..m-1 numbering the items of each colliding
                  group (length L + 1; every item gets the extra token, 0 when alone).
* ``reassign`` -- keep length L: per prefix with collisions, a min-cost assignment
                  (Hungarian, scipy) of the colliding items to the prefix's free last-level
                  codes plus the contested ones, cost = reconstruction error
                  ||x - decode(prefix, k)||^2; items that do not fit go to the nearest free
                  SID under the next best prefix (second-to-last level varied, then higher).
* ``none``     -- SIDs are the codes; collisions are only reported.

``place_new`` resolves cold-start items against a fixed set of occupied and retired SIDs
and never moves an occupied one.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["POLICIES", "suffix_sids", "reassign_sids", "place_new", "sid_keys", "OccupiedSet"]

logger = logging.getLogger(__name__)

POLICIES = ("suffix", "reassign", "none")

Decode = Callable[[np.ndarray], np.ndarray]  # codes (m, L) -> reconstructions (m, d)


def sid_keys(sids: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """One int64 per row (mixed radix over ``sizes``); rows (n, S) with code < size."""
    sids = np.asarray(sids, dtype=np.int64)
    total = 1.0
    for s in sizes:
        total *= float(s)
    if total >= 2.0**62:
        raise InputError(f"SID space {list(sizes)} is too large for int64 keys (product >= 2^62)")
    key = np.zeros(sids.shape[0], np.int64)
    for l, s in enumerate(sizes):
        key = key * int(s) + sids[:, l]
    return key


class OccupiedSet:
    """SID keys in use (a sorted array plus a set of additions): membership and free codes per prefix."""

    def __init__(self, keys: np.ndarray):
        self.base = np.unique(np.asarray(keys, np.int64))
        self.added: set[int] = set()

    def __contains__(self, key: int) -> bool:
        i = np.searchsorted(self.base, key)
        return (i < len(self.base) and self.base[i] == key) or int(key) in self.added

    def add(self, key: int) -> None:
        self.added.add(int(key))

    def used_in_range(self, lo: int, hi: int) -> np.ndarray:
        a, b = np.searchsorted(self.base, [lo, hi])
        extra = [k for k in self.added if lo <= k < hi] if self.added else []
        return np.concatenate([self.base[a:b], np.asarray(extra, np.int64)])


def _sq_err(x: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """||x_i - recon_j||^2 for x (m, d), recon (k, d) -> (m, k) float64."""
    x = np.asarray(x, np.float64)
    r = np.asarray(recon, np.float64)
    d = (x * x).sum(1)[:, None] - 2.0 * x @ r.T + (r * r).sum(1)[None, :]
    return np.maximum(d, 0.0)


def suffix_sids(codes: np.ndarray, *, rank: np.ndarray | None = None, retired: Iterable[Sequence[int]] = ()) -> np.ndarray:
    """SIDs (n, L + 1): codes plus the item's position in its colliding group.

    Within a group, items are numbered by ``rank`` (ascending; e.g. reconstruction error, so
    the best-quantised item gets 0), ties by row. Suffixes of ``retired`` SIDs are skipped.
    """
    codes = np.asarray(codes, np.int64)
    n, L = codes.shape
    rank = np.zeros(n) if rank is None else np.asarray(rank, np.float64)
    order = np.lexsort([np.arange(n), rank] + [codes[:, l] for l in range(L - 1, -1, -1)])
    srt = codes[order]
    new = np.ones(n, bool)
    if n > 1:
        new[1:] = (srt[1:] != srt[:-1]).any(1)
    starts = np.flatnonzero(new)
    group_start = starts[np.cumsum(new) - 1]
    suf = np.empty(n, np.int64)
    suf[order] = np.arange(n) - group_start
    retired = [tuple(int(c) for c in r) for r in retired]
    if retired:
        taken: dict[tuple, set[int]] = {}
        for r in retired:
            taken.setdefault(r[:L], set()).add(r[L])
        row_of: dict[tuple, list[int]] = {t: [] for t in taken}
        for pos in range(n):
            i = order[pos]
            t = tuple(codes[i].tolist())
            if t in row_of:
                row_of[t].append(i)
        for t, rows in row_of.items():
            k = 0
            for i in rows:
                while k in taken[t]:
                    k += 1
                suf[i] = k
                k += 1
    return np.concatenate([codes, suf[:, None]], 1)


def _decode_prefix_block(decode: Decode, prefix: Sequence[int], k_last: int) -> np.ndarray:
    cand = np.empty((k_last, len(prefix) + 1), np.int64)
    cand[:, :-1] = np.asarray(prefix, np.int64)[None, :]
    cand[:, -1] = np.arange(k_last)
    return decode(cand)  # [K, d]


_MAX_CANDIDATES = 1 << 20


def _nearest_free(
    x: np.ndarray, codes: np.ndarray, sizes: Sequence[int], decode: Decode, blocked: OccupiedSet
) -> tuple[np.ndarray, float]:
    """Best free SID by reconstruction error: under the same prefix (levels < L-1) if one is
    free, else under the shorter prefix levels < L-2 (the next best prefixes), and so on up.

    SID keys are mixed radix, so the SIDs under a prefix are one contiguous key range.
    """
    L = len(sizes)
    codes = np.asarray(codes, np.int64)
    for t in range(L - 1, -1, -1):
        span = int(np.prod([int(k) for k in sizes[t:]]))
        if span > _MAX_CANDIDATES:
            break
        base = int(sid_keys(np.concatenate([codes[:t], np.zeros(L - t, np.int64)])[None, :], sizes)[0])
        free = np.setdiff1d(np.arange(span, dtype=np.int64), blocked.used_in_range(base, base + span) - base)
        if not len(free):
            continue
        best, best_err = -1, np.inf
        for s0 in range(0, len(free), 65536):
            f = free[s0 : s0 + 65536]
            cand = np.empty((len(f), L), np.int64)  # decode the suffix digits of each free key
            cand[:, :t] = codes[:t]
            rem = f.copy()
            for l in range(L - 1, t - 1, -1):
                cand[:, l] = rem % int(sizes[l])
                rem //= int(sizes[l])
            err = _sq_err(x[None, :], decode(cand))[0]
            i = int(np.argmin(err))
            if err[i] < best_err:
                best, best_err = base + int(f[i]), float(err[i])
        out = np.empty(L, np.int64)
        rem = best
        for l in range(L - 1, -1, -1):
            out[l] = rem % int(sizes[l])
            rem //= int(sizes[l])
        return out, best_err
    raise InputError(
        f"no free SID near codes {codes.tolist()} (codebooks {list(sizes)} are nearly full); use the suffix policy or larger codebooks"
    )


def reassign_sids(
    codes: np.ndarray, x: np.ndarray, sizes: Sequence[int], decode: Decode, *, retired: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Collision-free SIDs of length L: (sids (n, L), moved (n,) bool, extra error (n,) float64).

    ``x`` (n, d) are the (preprocessed) vectors the codes quantise; ``extra`` is the
    squared-error increase of each moved item (0 for others).
    """
    from scipy.optimize import linear_sum_assignment

    codes = np.asarray(codes, np.int64)
    n, L = codes.shape
    if x.shape[0] != n:
        raise InputError(f"reassign: {n} codes but {x.shape[0]} vectors; pass the embeddings the codes were made from")
    K = int(sizes[-1])
    cap = float(np.prod([float(k) for k in sizes]))
    if n + (0 if retired is None else len(retired)) > cap:
        raise InputError(f"{n} items do not fit in {int(cap)} SIDs of codebooks {list(sizes)}; use the suffix policy or larger codebooks")
    keys = sid_keys(codes, sizes)
    uniq, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    colliding = counts[inv] > 1
    out = codes.copy()
    extra = np.zeros(n)
    if not colliding.any():
        return out, np.zeros(n, bool), extra
    retired_keys = np.zeros(0, np.int64) if retired is None or not len(retired) else sid_keys(retired, sizes)
    orig_err = ((x.astype(np.float64) - decode(codes)) ** 2).sum(1)
    # items under prefixes that hold a collision, grouped by prefix
    pkey = keys // K
    coll_prefixes = np.unique(pkey[colliding])
    blocked = OccupiedSet(np.concatenate([uniq[counts == 1], retired_keys]))
    overflow = []
    for p in coll_prefixes.tolist():
        rows = np.flatnonzero((pkey == p) & colliding)
        contested = np.unique(codes[rows, -1])
        used = blocked.used_in_range(p * K, (p + 1) * K) - p * K
        avail = np.union1d(np.setdiff1d(np.arange(K), used), contested)
        err = _sq_err(x[rows], _decode_prefix_block(decode, codes[rows[0], :-1], K)[avail])  # [m, |avail|]
        r, c = linear_sum_assignment(err)
        out[rows[r], -1] = avail[c]
        for k in avail[c].tolist():
            blocked.add(p * K + int(k))
        left = np.setdiff1d(np.arange(len(rows)), r)
        overflow.extend(rows[left].tolist())
    for i in sorted(overflow):
        sid, _ = _nearest_free(x[i].astype(np.float64), codes[i], sizes, decode, blocked)
        out[i] = sid
        blocked.add(int(sid_keys(sid[None, :], sizes)[0]))
    moved = (out != codes).any(1)
    if moved.any():
        new_err = ((x[moved].astype(np.float64) - decode(out[moved])) ** 2).sum(1)
        extra[moved] = new_err - orig_err[moved]
    logger.info("reassign: %d colliding items, %d moved, %d to another prefix", int(colliding.sum()), int(moved.sum()), len(overflow))
    return out, moved, extra


def place_new(
    codes: np.ndarray,
    x: np.ndarray | None,
    sizes: Sequence[int],
    decode: Decode | None,
    blocked: OccupiedSet,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cold start under ``reassign``: (sids (m, L), collided (m,), moved (m,)).

    ``blocked`` holds every occupied and retired SID key; it is updated as items are placed,
    in row order, so new items never collide with each other either.
    """
    codes = np.asarray(codes, np.int64)
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
    return out, collided, (out != codes).any(1)
