"""``suffix`` (TIGER): append a level numbering the items of each colliding group.

SIDs have length L + 1; every item gets the extra token (0 when alone in its group). Within
a group, items are numbered best-quantised first when reconstruction errors are known.
The suffix level's vocabulary is at least ``suffix_reserve`` tokens, so cold start rarely
adds tokens to an LLM vocabulary. A cold-start item takes the next suffix after the largest
ever issued in its group (live or retired): no collision is possible and nothing moves.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from ._base import CollisionPolicy, Decode, IndexView, Placement, Resolution, register_policy

__all__ = ["SuffixPolicy", "suffix_sids"]


def _group_positions(codes: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row order sorting by codes then rank then row, each row's position in its code group)."""
    n, L = codes.shape
    order = np.lexsort([np.arange(n), rank] + [codes[:, l] for l in range(L - 1, -1, -1)])
    srt = codes[order]
    new = np.ones(n, bool)
    if n > 1:
        new[1:] = (srt[1:] != srt[:-1]).any(1)
    starts = np.flatnonzero(new)
    group_start = starts[np.cumsum(new) - 1]
    pos = np.empty(n, np.int64)
    pos[order] = np.arange(n) - group_start
    return order, pos


def _skip_retired(codes: np.ndarray, order: np.ndarray, suf: np.ndarray, retired: list[tuple]) -> None:
    """Renumber, in place, the groups that hold retired SIDs so no retired suffix is reissued."""
    L = codes.shape[1]
    taken: dict[tuple, set[int]] = {}
    for r in retired:
        taken.setdefault(r[:L], set()).add(r[L])
    row_of: dict[tuple, list[int]] = {t: [] for t in taken}
    for i in order.tolist():
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


def suffix_sids(codes: np.ndarray, *, rank: np.ndarray | None = None, retired: Iterable[Sequence[int]] = ()) -> np.ndarray:
    """SIDs (n, L + 1): codes plus the item's position in its colliding group.

    Within a group, items are numbered by ``rank`` (ascending; e.g. reconstruction error, so
    the best-quantised item gets 0), ties by row. Suffixes of ``retired`` SIDs are skipped.
    """
    codes = np.asarray(codes, np.int64)
    n = len(codes)
    rank = np.zeros(n) if rank is None else np.asarray(rank, np.float64)
    order, suf = _group_positions(codes, rank)
    retired = [tuple(int(c) for c in r) for r in retired]
    if retired:
        _skip_retired(codes, order, suf, retired)
    return np.concatenate([codes, suf[:, None]], 1)


@register_policy
class SuffixPolicy(CollisionPolicy):
    name = "suffix"
    extra_levels = 1
    by_group = True

    def group_positions(self, keys, rank):
        return _group_positions(np.asarray(keys)[:, None], rank)[1]

    def level_sizes(self, codebook_sizes, suffix_size):
        return [int(k) for k in codebook_sizes] + [max(1, int(suffix_size))]

    def key_sizes(self, codebook_sizes, sids, retired, suffix_size):
        top = int(sids[:, -1].max()) + 1 if len(sids) else 1
        if len(retired):
            top = max(top, int(retired[:, -1].max()) + 1)
        return [int(k) for k in codebook_sizes] + [max(top, int(suffix_size), 1)]

    def grown_suffix_size(self, suffix_size, placed):
        return max(suffix_size, int(placed[:, -1].max()) + 1) if len(placed) else suffix_size

    def build(self, codes, *, sizes, x, decode, err, retired, suffix_reserve) -> Resolution:
        n = len(codes)
        sids = suffix_sids(codes, rank=err, retired=[] if retired is None else retired)
        top_retired = int(retired[:, -1].max()) if retired is not None and len(retired) else 0
        top = int(max(sids[:, -1].max() if n else 0, top_retired)) + 1
        return Resolution(
            sids=sids,
            moved=np.zeros(n, bool),
            extra=np.zeros(n),
            suffix_size=max(top, suffix_reserve),
            stats={"max_suffix": int(sids[:, -1].max()) + 1 if n else 0},
        )

    def place_new(self, codes, *, view: IndexView, retired, sizes, x, decode: Decode | None) -> Placement:
        m, L = codes.shape
        retired_top: dict[tuple, int] = {}
        for r in retired.tolist():
            retired_top[tuple(r[:L])] = max(retired_top.get(tuple(r[:L]), -1), r[L])
        taken: dict[tuple, int] = {}  # largest suffix ever issued per code group (live or retired)
        sids = np.zeros((m, L + 1), np.int64)
        collided = np.zeros(m, bool)
        for i in range(m):
            t = tuple(codes[i].tolist())
            if t not in taken:
                kids = view.allowed_next(list(t))
                taken[t] = max(int(kids.max()) if len(kids) else -1, retired_top.get(t, -1))
            collided[i] = taken[t] >= 0
            taken[t] += 1
            sids[i] = list(t) + [taken[t]]
        return Placement(sids=sids, collided=collided, moved=np.zeros(m, bool))
