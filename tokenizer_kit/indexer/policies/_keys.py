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
    memory map, never copied) plus additions kept sorted, so a range is two binary searches
    whatever the number of additions."""

    def __init__(self, sorted_keys: np.ndarray):
        self.base = sorted_keys
        self.added: list[int] = []

    def __contains__(self, key: int) -> bool:
        key = int(key)
        i = int(np.searchsorted(self.base, key))
        j = bisect.bisect_left(self.added, key)
        return (i < len(self.base) and int(self.base[i]) == key) or (j < len(self.added) and self.added[j] == key)

    def add(self, key: int) -> None:
        bisect.insort(self.added, int(key))

    def used_in_range(self, lo: int, hi: int) -> np.ndarray:
        a, b = np.searchsorted(self.base, [lo, hi])
        c, d = bisect.bisect_left(self.added, lo), bisect.bisect_left(self.added, hi)
        return np.concatenate([np.asarray(self.base[a:b], np.int64), np.asarray(self.added[c:d], np.int64)])


def sq_err(x: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """||x_i - recon_j||^2 for x (m, d), recon (k, d) -> (m, k) float64, in a fixed order with
    no BLAS (``quantizers.exact_sqdist``), so the policy's choices are the same on every
    machine and kernel."""
    return exact_sqdist(x, recon)
