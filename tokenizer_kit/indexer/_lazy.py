"""The base SIDs of a stored index, read from its trie on demand (cold start without sids.parquet).

A cold start into a 10M-item index needs the live SIDs only through the trie (which SIDs
exist under a prefix, the next free suffix) and the SIDs of the few rows it touches (known
or replaced items, rows the segments appended or updated). ``LazySIDs`` stands for the
(n, S) SID array of such an index: rows are computed from the stored base trie when asked
(``sids[rows]``: one binary search per level and row, after one O(n) inversion of the
trie's row order the first time a base row is read), rows after the base come from the
segments, and rows a segment updated from that segment. Anything that needs the whole array
(``np.asarray``, ``np.concatenate``) gets it built once from the trie (about 1.5 s at 10M
items), so every consumer of a plain array keeps working.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._trie import SIDTrie

__all__ = ["LazySIDs", "advise_random", "as_bool"]


def _advise(arrays, how: str) -> None:
    import mmap

    flag = getattr(mmap, how, None)
    for a in arrays:
        m = None
        while a is not None and m is None:  # a np.memmap, or an array viewing one
            m = getattr(a, "_mmap", None) if not isinstance(a, mmap.mmap) else a
            a = getattr(a, "base", None)
        if isinstance(m, mmap.mmap) and flag is not None and hasattr(m, "madvise"):
            try:
                m.madvise(flag)
            except (OSError, ValueError):  # closed, or not supported here: only a hint
                pass


def advise_random(arrays) -> None:
    """Tell the kernel the memory-mapped ``arrays`` are read a few rows at a time: a page
    fault then reads that page, not the disk's read-ahead window around it (up to several MB,
    so one row of a large index file would read megabytes)."""
    _advise(arrays, "MADV_RANDOM")


def advise_whole(arrays) -> None:
    """Undo :func:`advise_random` before reading the ``arrays`` whole (read-ahead again)."""
    _advise(arrays, "MADV_SEQUENTIAL")


def as_bool(a) -> np.ndarray:
    """A stored 0/1 uint8 flag array as booleans without a copy (a memory map stays one)."""
    a = np.asarray(a) if not isinstance(a, np.ndarray) else a
    return a.view(bool) if a.dtype == np.uint8 else a.astype(bool, copy=False)


_BLOCK = 1 << 20  # rows of the trie's order filled at once


class LazySIDs:
    """(n, S) int64 SIDs: base rows [0, n_base) from ``trie``, rows after it from ``tail``,
    rows in ``set`` overrides (``sids[rows] = values``) on top."""

    ndim = 2
    dtype = np.dtype(np.int64)
    __array_priority__ = 20.0

    def __init__(self, trie: SIDTrie, tail: np.ndarray | None = None):
        self.trie = trie
        self.n_base = trie.n_items
        S = trie.sid_length
        self.tail = np.zeros((0, S), np.int64) if tail is None else np.asarray(tail, np.int64).reshape(-1, S)
        self._over: dict[int, np.ndarray] = {}  # row -> SID set after the base/tail
        self._pos: np.ndarray | None = None  # row -> position in the trie's sorted order
        self._full: np.ndarray | None = None

    # ---- array protocol ------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_base + len(self.tail), self.trie.sid_length)

    @property
    def materialized(self) -> bool:
        return self._full is not None

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        a = self._materialize()
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)

    def __getitem__(self, key: Any):
        if self._full is not None:
            return self._full[key]
        cols: Any = slice(None)
        if isinstance(key, tuple):
            if len(key) != 2:
                return self._materialize()[key]
            key, cols = key
        if isinstance(key, (int, np.integer)):
            return self.take(np.asarray([key], np.int64))[0][cols]
        if isinstance(key, slice):
            if key == slice(None):
                return self._materialize()[:, cols]
            rows = np.arange(len(self))[key]
        else:
            arr = np.asarray(key)
            if arr.dtype == bool:
                rows = np.flatnonzero(arr)
            elif arr.dtype.kind in "iu" and arr.ndim <= 1:
                rows = arr.astype(np.int64).reshape(-1)
            else:
                return self._materialize()[key][:, cols] if arr.ndim == 1 else self._materialize()[key]
        return self.take(rows)[:, cols]

    def __setitem__(self, key: Any, value) -> None:
        if self._full is not None:
            self._full[key] = value
            return
        rows = np.asarray(key)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64).reshape(-1)
        vals = np.broadcast_to(np.asarray(value, np.int64), (len(rows), self.shape[1]))
        for r, v in zip(self._wrap(rows).tolist(), vals):
            self._over[r] = v.copy()

    def __getattr__(self, name: str):  # any other ndarray attribute or method (tolist, max, nbytes...): on the whole array
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._materialize(), name)

    def copy(self) -> np.ndarray:
        return self._materialize().copy()

    def astype(self, dtype, copy: bool = True) -> np.ndarray:
        return self._materialize().astype(dtype, copy=copy)

    # ---- rows ------------------------------------------------------------------------------
    def _wrap(self, rows: np.ndarray) -> np.ndarray:
        n = len(self)
        rows = np.where(rows < 0, rows + n, rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise IndexError(f"row {int(rows.max()) if rows.max() >= n else int(rows.min())} is out of bounds for {n} SIDs")
        return rows

    def _base_rows(self, rows: np.ndarray) -> np.ndarray:
        if self._pos is None:  # row -> position in the trie's order (one O(n) pass, the first time)
            # 4 bytes a row below 2**32 rows, filled a block of the order at a time (no O(n) temporaries)
            pos = np.empty(self.n_base, np.uint32 if self.n_base < 2**32 else np.int64)
            order = self.trie.order
            for a in range(0, self.n_base, _BLOCK):
                b = min(a + _BLOCK, self.n_base)
                pos[np.asarray(order[a:b])] = np.arange(a, b, dtype=pos.dtype)
            self._pos = pos
        return self.trie.sids_at(self._pos[rows])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """SIDs (m, S) of ``rows`` (m,), reading only those rows."""
        if self._full is not None:
            return self._full[rows]
        rows = self._wrap(np.asarray(rows, np.int64).reshape(-1))
        out = np.empty((len(rows), self.shape[1]), np.int64)
        b = rows < self.n_base
        t = ~b
        if self._over:  # base rows set since are not read from the trie
            b &= ~np.isin(rows, np.fromiter(self._over, np.int64, len(self._over)))
        if b.any():
            out[b] = self._base_rows(rows[b])
        if t.any():
            out[t] = self.tail[rows[t] - self.n_base]
        if self._over:
            for i, r in enumerate(rows.tolist()):
                v = self._over.get(r)
                if v is not None:
                    out[i] = v
        return out

    def _materialize(self) -> np.ndarray:
        if self._full is None:
            t = self.trie
            advise_whole(t.state_arrays().values())
            S = t.sid_length
            full = np.empty(self.shape, np.int64)
            order = np.asarray(t.order)
            ds = np.asarray(t.depth_start)
            for d in range(1, S + 1):
                lo, hi = int(ds[d]), int(ds[d + 1])
                full[order, d - 1] = np.repeat(t.node_token[lo:hi], t.item_count[lo:hi])
            full[self.n_base :] = self.tail
            for r, v in self._over.items():
                full[r] = v
            self._full = full
        return self._full

    def extended(self, parts: list[np.ndarray]) -> "LazySIDs":
        """These SIDs with ``parts`` appended (segments' new rows); overrides carried over."""
        S = self.shape[1]
        new = LazySIDs(self.trie, np.concatenate([self.tail] + [np.asarray(p, np.int64).reshape(-1, S) for p in parts]))
        new._over = dict(self._over)
        new._pos = self._pos
        return new
