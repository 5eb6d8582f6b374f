"""``SIDTrie``: the trie of valid SIDs as flat arrays (CSR in breadth-first order).

Nodes are numbered breadth-first, and the children of a node are contiguous and sorted
by token, so one node's children are ``child_ptr[v] : child_ptr[v + 1]`` and no per-edge
node id is stored. Leaves (depth ``S``) are the last block of nodes and have no
``child_ptr`` entry. Every node covers a contiguous range of the items sorted by SID:
``order[item_start[v] : item_start[v] + item_count[v]]``.

Arrays (``N`` nodes, ``I`` internal nodes, ``n`` items, ``S`` SID length)::

    child_ptr   (I + 1,) int32   children of internal node v: nodes child_ptr[v]..child_ptr[v+1]-1
    node_token  (N,)     int32   code of the edge into v (-1 for the root)
    item_start  (N,)     int32   first position in ``order`` of the items under v
    item_count  (N,)     int32   items under v (a leaf with count > 1 is a collision)
    order       (n,)     int32   item rows sorted by SID
    depth_start (S + 2,) int64   nodes of depth d are depth_start[d]..depth_start[d+1]-1

(position arrays are int64 from 2^31 nodes or items on.) About 8 bytes per node plus 4 per
item and per internal node: 10M items with 4-level SIDs take ~250 MB.

Build is a lexsort plus linear passes: O(n log n) time, O(n S) memory. Lookups walk
the trie with one binary search per level.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ArtifactError, InputError

__all__ = ["SIDTrie", "TrieParts"]

_ARRAYS = ("child_ptr", "node_token", "item_start", "item_count", "order", "depth_start")


def _sid_order(sids: np.ndarray) -> np.ndarray:
    """Row order sorting ``sids`` (n, S) lexicographically (stable).

    One int64 mixed-radix key and a radix-friendly stable argsort when the SID space fits
    in 62 bits (several times faster than lexsort at 10M rows); lexsort otherwise.
    """
    n = len(sids)
    if n == 0:
        return np.zeros(0, np.int64)
    radix = sids.max(0).astype(np.float64) + 1
    if float(np.prod(radix)) < 2.0**62:
        key = np.zeros(n, np.int64)
        for l in range(sids.shape[1]):
            key *= int(radix[l])
            key += sids[:, l]
        return np.argsort(key, kind="stable")
    return np.lexsort(sids.T[::-1])


class SIDTrie:
    """Trie of the SIDs ``sids`` (n, S); item ``r`` is row ``r`` of ``sids``.

    >>> trie = SIDTrie.build(sids)              # sids (n, S) int
    >>> trie.allowed_next([3, 4])               # codes allowed after <a_3><b_4>
    >>> trie.items_under([3])                   # item rows whose SID starts with <a_3>
    >>> trie.item_of([3, 4, 1])                 # row of that SID, or -1
    """

    def __init__(self, *, child_ptr, node_token, item_start, item_count, order, depth_start):
        # positions fit int32 below 2^31 nodes / items: half the memory at 10M items
        big = max(len(node_token), len(order)) >= 2**31 - 1
        idt = np.int64 if big else np.int32
        self.child_ptr = np.asarray(child_ptr, dtype=idt)
        self.node_token = np.asarray(node_token, dtype=np.int32)
        self.item_start = np.asarray(item_start, dtype=idt)
        self.item_count = np.asarray(item_count, dtype=idt)
        self.order = np.asarray(order, dtype=idt)
        self.depth_start = np.asarray(depth_start, dtype=np.int64)
        self._check()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def build(cls, sids: np.ndarray) -> "SIDTrie":
        """Trie of ``sids`` (n, S) non-negative ints; duplicate rows share a leaf."""
        sids = np.asarray(sids)
        if sids.ndim != 2 or sids.shape[1] == 0:
            raise InputError(f"SIDs: expected an int array of shape (n, S) with S >= 1, got shape {sids.shape}")
        if sids.dtype.kind not in "iu":
            raise InputError(f"SIDs: expected integer codes, got dtype {sids.dtype}")
        n, S = sids.shape
        if n and sids.min() < 0:
            raise InputError(f"SIDs: codes must be >= 0, found {int(sids.min())}; drop or fix the rows with negative codes")
        order = _sid_order(sids)
        srt = sids[order]  # [n, S] sorted lexicographically
        new = np.zeros(n, dtype=bool)  # a row starts a new depth-d node
        if n:
            new[0] = True
        prev_starts = np.zeros(1, dtype=np.int64)  # root covers every row
        depth_start = [0, 1]
        tokens = [np.full(1, -1, np.int32)]
        starts_all = [np.zeros(1, np.int64)]
        counts_all = [np.full(1, n, np.int64)]
        child_ptr_parts = []
        next_id = 1
        prev_flag = new.copy()
        for d in range(S):
            if n > 1:
                new[1:] |= srt[1:, d] != srt[:-1, d]
            starts = np.flatnonzero(new)
            counts = np.diff(np.append(starts, n))
            # parent (depth d) of each new node = the depth-d node holding its first row
            parent_rank = np.cumsum(prev_flag)[starts] - 1
            first_child = np.searchsorted(parent_rank, np.arange(len(prev_starts)), side="left")
            child_ptr_parts.append(next_id + first_child)
            tokens.append(srt[starts, d].astype(np.int32))
            starts_all.append(starts.astype(np.int64))
            counts_all.append(counts.astype(np.int64))
            next_id += len(starts)
            depth_start.append(next_id)
            prev_flag = new.copy()
            prev_starts = starts
        child_ptr = np.concatenate(child_ptr_parts + [np.array([next_id], np.int64)]).astype(np.int64)
        return cls(
            child_ptr=child_ptr,
            node_token=np.concatenate(tokens),
            item_start=np.concatenate(starts_all),
            item_count=np.concatenate(counts_all),
            order=order.astype(np.int64),
            depth_start=np.asarray(depth_start, np.int64),
        )

    def _check(self) -> None:
        N = len(self.node_token)
        S = len(self.depth_start) - 2
        ok = (
            S >= 1
            and self.depth_start[-1] == N
            and len(self.child_ptr) == self.depth_start[S] + 1
            and len(self.item_start) == N
            and len(self.item_count) == N
            and self.child_ptr[-1] == N
        )
        if not ok:
            raise ArtifactError(
                f"trie arrays are inconsistent (nodes {N}, child_ptr {len(self.child_ptr)}, depth_start {self.depth_start.tolist()[:8]}); "
                "rebuild the index with `tokenizer-kit index`"
            )

    # ---- persistence --------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in _ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "SIDTrie":
        missing = [k for k in _ARRAYS if k not in arrays]
        if missing:
            raise ArtifactError(f"trie arrays lack {missing}; rebuild the index with `tokenizer-kit index`")
        return cls(**{k: arrays[k] for k in _ARRAYS})

    # ---- sizes ----------------------------------------------------------------------------
    @property
    def sid_length(self) -> int:
        return len(self.depth_start) - 2

    @property
    def n_nodes(self) -> int:
        return len(self.node_token)

    @property
    def n_items(self) -> int:
        return len(self.order)

    @property
    def n_leaves(self) -> int:
        return int(self.depth_start[-1] - self.depth_start[-2])

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.state_arrays().values()))

    # ---- walking --------------------------------------------------------------------------
    def children(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, node ids) of ``node``'s children; empty for a leaf."""
        if node >= len(self.child_ptr) - 1:
            e = np.zeros(0, np.int64)
            return e.astype(np.int32), e
        lo, hi = int(self.child_ptr[node]), int(self.child_ptr[node + 1])
        return self.node_token[lo:hi], np.arange(lo, hi, dtype=np.int64)

    def child(self, node: int, token: int) -> int:
        """Node reached from ``node`` by ``token``, or -1."""
        if node < 0 or node >= len(self.child_ptr) - 1:
            return -1
        lo, hi = int(self.child_ptr[node]), int(self.child_ptr[node + 1])
        j = lo + int(np.searchsorted(self.node_token[lo:hi], token))
        return j if j < hi and self.node_token[j] == token else -1

    def node_of(self, prefix: Sequence[int]) -> int:
        """Node of ``prefix`` (a sequence of codes, possibly empty), or -1 if no SID has it."""
        prefix = list(prefix)
        if len(prefix) > self.sid_length:
            return -1
        node = 0
        for tok in prefix:
            node = self.child(node, int(tok))
            if node < 0:
                return -1
        return node

    def allowed_next(self, prefix: Sequence[int]) -> np.ndarray:
        """Codes that may follow ``prefix`` (sorted); empty for a full SID or an unknown prefix."""
        node = self.node_of(prefix)
        if node < 0:
            return np.zeros(0, np.int32)
        return self.children(node)[0].copy()

    def count_under(self, prefix: Sequence[int]) -> int:
        node = self.node_of(prefix)
        return 0 if node < 0 else int(self.item_count[node])

    def items_under(self, prefix: Sequence[int]) -> np.ndarray:
        """Item rows whose SID starts with ``prefix``, in SID order."""
        node = self.node_of(prefix)
        if node < 0:
            return np.zeros(0, np.int64)
        s = int(self.item_start[node])
        return self.order[s : s + int(self.item_count[node])].astype(np.int64)

    def positions_under(self, prefix: Sequence[int]) -> np.ndarray:
        """Positions in ``order`` of the items under ``prefix`` (``order[positions]`` are their rows)."""
        node = self.node_of(prefix)
        if node < 0:
            return np.zeros(0, np.int64)
        s = int(self.item_start[node])
        return np.arange(s, s + int(self.item_count[node]), dtype=np.int64)

    def sids_at(self, positions: np.ndarray) -> np.ndarray:
        """The SIDs (m, S) of the items at ``positions`` of ``order``: the depth-d node whose item
        range holds a position gives its level-d code (one binary search per level)."""
        # positions in item_start's dtype: searchsorted would otherwise cast the whole level to
        # the positions' dtype (O(n) per call); a position below n_items fits it
        p = np.asarray(positions, np.int64).astype(self.item_start.dtype, copy=False)
        S = self.sid_length
        # searched in ascending order (three times faster on a large trie: each search starts
        # near the previous one's pages), the rows put back in the callers' order
        order = np.argsort(p, kind="stable")
        p = p[order]
        out = np.empty((len(p), S), np.int64)
        for d in range(1, S + 1):
            lo, hi = int(self.depth_start[d]), int(self.depth_start[d + 1])
            k = np.searchsorted(self.item_start[lo:hi], p, side="right") - 1
            out[order, d - 1] = self.node_token[lo + k]
        return out

    def sids_under_at(self, prefix: Sequence[int], positions: np.ndarray) -> np.ndarray:
        """:meth:`sids_at` for ``positions`` under ``prefix`` (of :meth:`positions_under`): each
        level searched only among the prefix's descendants, so the read stays near them."""
        prefix = [int(c) for c in prefix]
        p = np.asarray(positions, np.int64)
        out = np.empty((len(p), self.sid_length), np.int64)
        out[:, : len(prefix)] = prefix
        lo = self.node_of(prefix)
        if lo < 0 or not len(p):
            return out[: 0 if lo < 0 else len(p)]
        hi = lo + 1
        for d in range(len(prefix) + 1, self.sid_length + 1):  # the descendants at depth d: nodes lo..hi-1
            lo, hi = int(self.child_ptr[lo]), int(self.child_ptr[hi])
            k = np.searchsorted(self.item_start[lo:hi], p, side="right") - 1
            out[:, d - 1] = self.node_token[lo + k]
        return out

    def item_of(self, sid: Sequence[int]) -> int:
        """Row of the item with this full SID; -1 if none. Under a collision, the first such row."""
        sid = list(sid)
        if len(sid) != self.sid_length:
            return -1
        node = self.node_of(sid)
        return -1 if node < 0 else int(self.order[self.item_start[node]])

    def contains(self, sid: Sequence[int]) -> bool:
        return len(list(sid)) == self.sid_length and self.node_of(sid) >= 0

    def leaf_sids(self) -> np.ndarray:
        """Every distinct full SID (n_leaves, S), in sorted order, read back from the arrays."""
        S = self.sid_length
        out = np.zeros((self.n_leaves, S), np.int64)
        nodes = np.arange(self.depth_start[S], self.depth_start[S + 1])
        # parent of node u: the internal node whose child range holds u
        for d in range(S, 0, -1):
            out[:, d - 1] = self.node_token[nodes]
            nodes = np.searchsorted(self.child_ptr, nodes, side="right") - 1
        return out


def _file_chunks(path, dtype, rows: int = 1 << 20, add: int = 0):
    """The values of a raw ``dtype`` file, ``rows`` at a time (plus ``add``)."""
    data = np.memmap(path, dtype=dtype, mode="r") if path.exists() and path.stat().st_size else np.zeros(0, dtype)
    for s in range(0, len(data), rows):
        yield np.asarray(data[s : s + rows]) + add


class TrieParts:
    """A :class:`SIDTrie` written part by part into files under ``scratch``, in bounded memory.

    Each part (``add``) is a block of items whose SIDs all sort after the earlier parts' and
    whose first codes no earlier part holds (buckets by ranges of the first level): every node
    but the root then lies in one part, and depth by depth the parts' nodes follow one another
    in breadth-first order. ``tensors()`` gives the trie's arrays, as ``SIDTrie.build`` makes
    them for all the items at once, as chunks read back from the files
    (``io.write_safetensors_parts``). Memory is one part's trie.
    """

    def __init__(self, scratch, sid_length: int):
        from pathlib import Path

        self.dir = Path(scratch)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.S = int(sid_length)
        self.n_items = 0
        self.nodes = [1] + [0] * self.S  # nodes so far at each depth
        self.shared_items = 0  # items whose full SID another item has
        self._last_first = -1

    def _append(self, name: str, a: np.ndarray) -> None:
        with open(self.dir / f"{name}.bin", "ab") as f:
            f.write(np.ascontiguousarray(a).tobytes())

    def add(self, sids: np.ndarray, rows: np.ndarray) -> None:
        """The next part: ``sids`` (m, S) of the items whose rows are ``rows`` (m,) ascending."""
        if not len(sids):
            return
        t = SIDTrie.build(sids)
        ld = t.depth_start
        first = t.node_token[ld[1] : ld[2]]
        if int(first[0]) <= self._last_first:
            raise ValueError(f"trie part starts at first-level code {int(first[0])}, not after the previous part's {self._last_first}")
        self._last_first = int(first[-1])
        for d in range(1, self.S + 1):
            lo, hi = int(ld[d]), int(ld[d + 1])
            self._append(f"token-{d}", t.node_token[lo:hi].astype(np.int32))
            self._append(f"start-{d}", t.item_start[lo:hi].astype(np.int64) + self.n_items)
            self._append(f"count-{d}", t.item_count[lo:hi].astype(np.int64))
            if d < self.S:  # first child as its rank among all the nodes of depth d + 1 (ids are known at the end)
                self._append(f"child-{d}", t.child_ptr[lo:hi].astype(np.int64) - int(ld[d + 1]) + self.nodes[d + 1])
            self.nodes[d] += hi - lo
        leaf = t.item_count[int(ld[self.S]) :]
        self.shared_items += int(leaf[leaf > 1].sum())
        self._append("order", np.asarray(rows, np.int64)[t.order])
        self.n_items += len(sids)

    @property
    def depth_start(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.nodes)]).astype(np.int64)

    @property
    def n_nodes(self) -> int:
        return int(sum(self.nodes))

    @property
    def n_leaves(self) -> int:
        return int(self.nodes[self.S])

    def _idt(self):
        return np.int64 if max(self.n_nodes, self.n_items) >= 2**31 - 1 else np.int32

    @property
    def nbytes(self) -> int:
        """Bytes of the trie's arrays, as ``SIDTrie.nbytes``."""
        ds = self.depth_start
        w = np.dtype(self._idt()).itemsize
        return int((int(ds[self.S]) + 1) * w + self.n_nodes * (4 + 2 * w) + self.n_items * w + len(ds) * 8)

    def tensors(self) -> dict[str, tuple]:
        """name -> (dtype, shape, chunks) of the trie's arrays (``SIDTrie.state_arrays``)."""
        S, ds, N, n, idt = self.S, self.depth_start, self.n_nodes, self.n_items, self._idt()
        f = lambda name: self.dir / f"{name}.bin"  # noqa: E731

        def levels(name, dtype, head, tail=(), add=lambda d: 0, depths=range(1, S + 1)):
            yield np.asarray(head)
            for d in depths:
                yield from _file_chunks(f(f"{name}-{d}"), dtype, add=add(d))
            yield np.asarray(tail, np.int64)

        return {
            "child_ptr": (idt, (int(ds[S]) + 1,), levels("child", np.int64, [1], [N], add=lambda d: int(ds[d + 1]), depths=range(1, S))),
            "node_token": (np.int32, (N,), levels("token", np.int32, [-1])),
            "item_start": (idt, (N,), levels("start", np.int64, [0])),
            "item_count": (idt, (N,), levels("count", np.int64, [n])),
            "order": (idt, (n,), _file_chunks(f("order"), np.int64)),
            "depth_start": (np.int64, (S + 2,), [ds]),
        }
