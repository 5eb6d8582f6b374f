"""SID keys: one int64 per SID (mixed radix over the level sizes), and sets of occupied keys."""

from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np

from ...errors import InputError
from ...quantizers import exact_sqdist

__all__ = ["sid_keys", "key_codes", "OccupiedSet", "SortedOccupied", "sq_err"]


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


def key_codes(keys: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Codes (m, L) of mixed-radix keys (m,) (``sid_keys`` inverted)."""
    keys = np.asarray(keys, np.int64)
    out = np.empty((len(keys), len(sizes)), np.int64)
    rest = keys.copy()
    for l in range(len(sizes) - 1, -1, -1):
        rest, out[:, l] = np.divmod(rest, int(sizes[l]))
    return out


class OccupiedSet:
    """SID keys in use (a sorted array plus a set of additions): membership and the keys of a range.

    SID keys are mixed radix, so the SIDs under a prefix are one contiguous key range.
    """

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


class SortedOccupied:
    """``OccupiedSet``'s interface over keys already sorted and unique (an array or a read-only
    memory map, never copied) plus additions kept sorted: the latest few in a list, the others
    in sorted int64 runs of decreasing size (merged as a binary counter merges), so a range is
    a few binary searches and an addition costs 8 bytes."""

    _RECENT = 1024

    def __init__(self, sorted_keys: np.ndarray):
        self.base = sorted_keys
        self.runs: list[np.ndarray] = []
        self.recent: list[int] = []

    def __contains__(self, key: int) -> bool:
        key = int(key)
        for a in [self.base, *self.runs]:
            i = int(np.searchsorted(a, key))
            if i < len(a) and int(a[i]) == key:
                return True
        j = bisect.bisect_left(self.recent, key)
        return j < len(self.recent) and self.recent[j] == key

    def add(self, key: int) -> None:
        bisect.insort(self.recent, int(key))
        if len(self.recent) >= self._RECENT:
            self.runs.append(np.asarray(self.recent, np.int64))
            self.recent = []
            while len(self.runs) > 1 and len(self.runs[-1]) * 2 > len(self.runs[-2]):
                last = self.runs.pop()
                self.runs[-1] = np.sort(np.concatenate([self.runs[-1], last]))

    def used_in_range(self, lo: int, hi: int) -> np.ndarray:
        parts = []
        for a in [self.base, *self.runs]:
            i, j = np.searchsorted(a, [lo, hi])
            parts.append(np.asarray(a[i:j], np.int64))
        c, d = bisect.bisect_left(self.recent, lo), bisect.bisect_left(self.recent, hi)
        return np.concatenate(parts + [np.asarray(self.recent[c:d], np.int64)])


def sq_err(x: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """||x_i - recon_j||^2 for x (m, d), recon (k, d) -> (m, k) float64, in a fixed order with
    no BLAS (``quantizers.exact_sqdist``), so the policy's choices are the same on every
    machine and kernel."""
    return exact_sqdist(x, recon)
