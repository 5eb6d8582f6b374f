"""Item ids of an index: normalised (int64, or strings) and looked up in bulk."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["as_ids", "concat_ids", "ids_increase", "IdLookup"]


def as_ids(ids) -> np.ndarray:
    """int64 for integer ids, else an object array of strings (an object array is taken as
    already normalised when its first and last ids are strings)."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64, copy=False)
    if ids.dtype == object and len(ids) and isinstance(ids[0], str) and isinstance(ids[-1], str) and len(ids) > 1024:
        return ids
    if ids.dtype.kind in "US":
        return ids.astype(str).astype(object)
    return np.asarray([str(i) for i in ids.tolist()], dtype=object)


def concat_ids(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Ids of several row blocks, in order: int64 when all are integers, else strings."""
    if all(p.dtype.kind in "iu" for p in parts):
        return np.concatenate(parts).astype(np.int64)
    if all(p.dtype == object for p in parts):
        return np.concatenate(parts)
    return np.asarray([str(i) for p in parts for i in p.tolist()], dtype=object)


def ids_increase(ids: np.ndarray) -> bool:
    """Integer ids strictly increasing with the row (one pass over them)."""
    ids = np.asarray(ids)
    return ids.dtype.kind in "iu" and (len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()))


class IdLookup:
    """Row of each id, in bulk: integer ids by binary search over a sorted copy (no sort
    when they are already sorted, as row numbers and time-ordered ids are), strings by a
    dict. Ids match as strings ("42" finds the integer id 42).

    ``increasing``: the caller knows the integer ids increase (an index's manifest records
    it), so they are searched as they are, memory-mapped, without a pass over them."""

    def __init__(self, ids: np.ndarray, *, increasing: bool = False):
        self.int = ids.dtype.kind in "iu"
        self.parts: list[tuple[IdLookup, int]] | None = None
        if self.int:
            ids = ids.astype(np.int64, copy=False)
            if increasing or ids_increase(ids):
                self.order = None
                self.sorted = ids
            else:
                self.order = np.argsort(ids, kind="stable")
                self.sorted = ids[self.order]
        else:
            self.map = {str(i): r for r, i in enumerate(ids.tolist())}

    @classmethod
    def stacked(cls, blocks: Sequence[np.ndarray], *, increasing: Sequence[bool]) -> "IdLookup":
        """A lookup over row blocks (a base and the rows appended after it) holding distinct
        ids: each block searched on its own, rows numbered across the blocks."""
        out = cls(np.zeros(0, np.int64))
        starts = np.concatenate([[0], np.cumsum([len(b) for b in blocks])]).tolist()
        out.parts = [(cls(b, increasing=inc), s) for b, inc, s in zip(blocks, increasing, starts)]
        return out

    def rows(self, query) -> np.ndarray:
        """(m,) int64 rows, -1 where an id is not indexed."""
        if self.parts is not None:
            out = np.full(len(query), -1, np.int64)
            for part, start in self.parts:
                r = part.rows(query)
                out = np.where((out < 0) & (r >= 0), r + start, out)
            return out
        q = np.asarray(query)
        if not self.int:
            return np.asarray([self.map.get(str(i), -1) for i in q.tolist()], np.int64)
        if q.dtype.kind not in "iu":
            q, ok = _int_like(q)
        else:
            q, ok = q.astype(np.int64), np.ones(len(q), bool)
        pos = np.searchsorted(self.sorted, q)
        posc = np.minimum(pos, max(len(self.sorted) - 1, 0))
        hit = ok & (pos < len(self.sorted))
        if len(self.sorted):
            hit &= self.sorted[posc] == q
        out = np.full(len(q), -1, np.int64)
        out[hit] = posc[hit] if self.order is None else self.order[posc[hit]]
        return out


def _int_like(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strings that spell an integer exactly as ``str(int)`` does, as int64, and which did."""
    out = np.zeros(len(q), np.int64)
    ok = np.zeros(len(q), bool)
    for k, v in enumerate(q.tolist()):
        s = str(v)
        try:
            i = int(s)
        except ValueError:
            continue
        if str(i) == s and -(2**63) <= i < 2**63:
            out[k], ok[k] = i, True
    return out, ok
