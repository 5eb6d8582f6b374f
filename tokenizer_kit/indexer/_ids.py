"""Item ids of an index: normalised (int64, or strings) and looked up in bulk."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["as_ids", "concat_ids", "IdLookup"]


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


class IdLookup:
    """Row of each id, in bulk: integer ids by binary search over a sorted copy (no sort
    when they are already sorted, as row numbers and time-ordered ids are), strings by a
    dict. Ids match as strings ("42" finds the integer id 42)."""

    def __init__(self, ids: np.ndarray):
        self.int = ids.dtype.kind in "iu"
        if self.int:
            ids = ids.astype(np.int64, copy=False)
            if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()):
                self.order = None
                self.sorted = ids
            else:
                self.order = np.argsort(ids, kind="stable")
                self.sorted = ids[self.order]
        else:
            self.map = {str(i): r for r, i in enumerate(ids.tolist())}

    def rows(self, query) -> np.ndarray:
        """(m,) int64 rows, -1 where an id is not indexed."""
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
