"""The ``reassign`` policy resolved from files in bounded memory, with ``reassign_sids``' SIDs.

``reassign_sids`` resolves a catalogue in two steps, and each can be done from files:

1. every prefix (first L-1 codes) holding a collision assigns its colliding items to its free
   and contested last codes (Hungarian, on reconstruction error), seeing only its own items:
   the items are spilled to bucket files that are ranges of the first level (whole prefixes,
   ``policies.GroupSpill``) and resolved one bucket at a time (``policies.reassign_prefixes``);
   the vectors of the colliding items are spilled beforehand (preprocessed float32, by row);
2. the items left over go, in row order, to the nearest free SID under a shorter prefix
   (``policies.place_overflow``): what they see as taken is every SID of step 1 (a sorted file
   of int64 keys, memory-mapped, ``policies.SortedOccupied``) plus the left-over items already
   placed.

The trie is then built from the final SIDs spilled again by first level (``TrieParts``).
Scratch files per item: 24 bytes per bucket record (twice), the final key, the reconstruction
error and its increase (8 bytes each), the fingerprint, the moved flag, and the vectors of the
colliding items. Memory: one bucket, one batch of vectors, and 8 bytes per left-over item once
placed (``SortedOccupied``'s additions).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputError
from ._trie import TrieParts
from .policies import GroupSpill, SortedOccupied, first_level_buckets, get_policy, key_codes, place_overflow, reassign_prefixes, sid_keys

__all__ = ["ReassignResolved", "resolve_reassign"]

logger = logging.getLogger(__name__)

_OVERFLOW_ROWS = 4096  # left-over items placed per read of their vectors
_MOVED_ROWS = 4096  # moved items whose squared-error increase is computed at once


@dataclass
class ReassignResolved:
    """What the on-disk build writes from: ``final`` (n,) int64 SID keys by row, ``moved`` (n,)
    uint8, ``hashes`` (n,) uint64 fingerprints (memory maps of scratch files), the trie's
    parts, the groups' counts and the ``reassign`` statistics (``SIDIndex.build``'s)."""

    final: np.ndarray
    moved: np.ndarray
    hashes: np.ndarray
    trie: TrieParts
    groups: dict[str, int]
    stats: dict[str, Any] = field(default_factory=dict)
    trie_s: float = 0.0


def _memmap(path: Path, dtype, n: int) -> np.ndarray:
    """A zero-filled (n,) memory map of a new scratch file (a placeholder when n is 0)."""
    if n == 0:
        return np.zeros(0, dtype)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n,))


def _readback(path: Path, dtype) -> np.ndarray:
    return np.memmap(path, dtype=dtype, mode="r") if path.exists() and path.stat().st_size else np.zeros(0, dtype)


def _spill(keys_batches: Iterator[np.ndarray], first: np.ndarray, sizes, scratch: Path, bucket_rows: int) -> GroupSpill:
    """Every row's key into bucket files that are ranges of the first level (``first``: items per first code)."""
    n_buckets, bucket_of = first_level_buckets(first, sizes, bucket_rows)
    scratch.mkdir()
    spill = GroupSpill(scratch, n_buckets, bucket_of)
    for keys in keys_batches:
        spill.add(keys)
    return spill


def _flag_colliding(spill: GroupSpill, n: int, scratch: Path) -> tuple[np.ndarray, dict[str, int]]:
    """(colliding (n,) uint8 by row, the groups' counts), reading the buckets (kept for step 1)."""
    flag = _memmap(scratch / "colliding.npy", np.uint8, n)
    g = {"max_suffix": 0, "unique_codes": 0, "colliding_groups": 0, "items_in_collisions": 0, "largest_group": 0}
    for _, keys, rows, _ in spill.resolve(get_policy("none"), keep=True):
        if not len(keys):
            continue
        _, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
        flag[rows[counts[inv] > 1]] = 1
        g["unique_codes"] += len(counts)
        g["colliding_groups"] += int((counts > 1).sum())
        g["items_in_collisions"] += int(counts[counts > 1].sum())
        g["largest_group"] = max(g["largest_group"], int(counts.max()))
    return flag, g


def _aligned(items, source, tok, batch_rows: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first row, codes (m, L), raw vectors (m, d)) of the tokenizer's items and the embeddings
    read side by side, their ids checked equal row by row."""
    sizes, L = tok.codebook_sizes, tok.levels
    a = ((f, rb, c) for f, rb, c in items.read(sizes, batch_rows, levels=L, columns=["item_id"]))
    b = source.open().batches(batch_rows)
    pos, left, right = 0, None, None  # left: (ids, codes) not yet matched; right: (ids, vectors)
    while True:
        if left is None or not len(left[0]):
            nxt = next(a, None)
            left = None if nxt is None else (items.ids_of(nxt[1], nxt[0]), nxt[2])
        if right is None or not len(right[0]):
            nxt = next(b, None)
            right = None if nxt is None else (nxt.ids, nxt.vectors)
        if left is None or right is None:
            if left is not None or right is not None:
                raise InputError(f"{source.path} holds another number of items than the tokenizer ({items.n}); pass the embeddings it was built on")
            return
        m = min(len(left[0]), len(right[0]))
        if not _same_ids(left[0][:m], right[0][:m]):
            raise InputError(f"{source.path} lists the items in another order than the tokenizer (from row {pos}); "
                             "pass the embeddings the tokenizer was built on, in its order")
        yield pos, left[1][:m], right[1][:m]
        pos += m
        left, right = (left[0][m:], left[1][m:]), (right[0][m:], right[1][m:])


def _same_ids(a: np.ndarray, b: np.ndarray | None) -> bool:
    if b is None:
        return False
    if (a.dtype.kind in "iu") != (b.dtype.kind in "iu"):
        return False
    return bool(np.array_equal(a, b)) if a.dtype.kind in "iu" else a.tolist() == b.tolist()


def _spill_vectors(items, source, tok, flag: np.ndarray, scratch: Path, batch_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the embeddings beside the items: each row's fingerprint and reconstruction
    error (as ``SIDIndex.for_tokenizer`` and ``build`` compute them) into scratch files, and the
    preprocessed vectors of the colliding rows with their rows. Returns (errors, fingerprints),
    memory-mapped."""
    err = _memmap(scratch / "err.npy", np.float64, items.n)
    hashes = _memmap(scratch / "emb_hash.npy", np.uint64, items.n)
    from ..io import embedding_hash

    with open(scratch / "cx.bin", "wb") as fx, open(scratch / "crows.bin", "wb") as fr:
        for s, codes, x in _aligned(items, source, tok, batch_rows):
            hashes[s : s + len(x)] = embedding_hash(x)
            xp = tok.preprocess(x, what="index embeddings")
            err[s : s + len(x)] = ((np.asarray(xp, np.float64) - tok.decode(codes)) ** 2).sum(1)
            sel = np.flatnonzero(flag[s : s + len(x)])
            fx.write(np.ascontiguousarray(xp[sel], np.float32).tobytes())
            fr.write((sel + s).astype(np.int64).tobytes())
    return err, hashes


class _Colliding:
    """The preprocessed vectors of the colliding rows (scratch files), by row."""

    def __init__(self, scratch: Path, d: int):
        self.rows = _readback(scratch / "crows.bin", np.int64)
        self.x = _readback(scratch / "cx.bin", np.float32).reshape(-1, d)

    def of(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.x[np.searchsorted(self.rows, rows)])


def _record_moved(res: ReassignResolved, extra: np.ndarray, err: np.ndarray, rows, codes, new, x, decode) -> None:
    """Rows whose SID differs from their codes: moved, and their squared-error increase
    (``reassign_sids``' ``extra``), computed per row."""
    m = (new != codes).any(1)
    if m.any():
        r = rows[m]
        res.moved[r] = 1
        extra[r] = ((np.asarray(x[m], np.float64) - decode(new[m])) ** 2).sum(1) - err[r]


def _step_prefixes(spill, res, extra, err, flag: np.ndarray, vec: _Colliding, tok, scratch: Path) -> int:
    """Step 1, bucket by bucket: final keys of the items that stay under their prefix, the
    taken keys appended (sorted) to ``occupied.bin``; the left-over items keep their codes'
    key and are flagged 2 in ``flag`` (by row). Returns how many are left over."""
    sizes = tok.codebook_sizes
    n_left = 0
    with open(scratch / "occupied.bin", "wb") as occ:
        for _, keys, rows, _ in spill.resolve(get_policy("none")):
            if not len(keys):
                continue
            new, left = reassign_prefixes(keys, sizes, tok.decode, lambda idx: vec.of(rows[idx]))
            stay = np.ones(len(keys), bool)
            stay[left] = False
            res.final[rows] = sid_keys(new, sizes)
            moved = np.flatnonzero(stay & (new[:, -1] != keys % int(sizes[-1])))
            for s in range(0, len(moved), _MOVED_ROWS):  # a chunk's float64 copies at a time, not the bucket's
                mv = moved[s : s + _MOVED_ROWS]
                _record_moved(res, extra, err, rows[mv], key_codes(keys[mv], sizes), new[mv], vec.of(rows[mv]), tok.decode)
            occ.write(np.sort(np.asarray(res.final[rows[stay]], np.int64)).tobytes())
            flag[rows[left]] = 2
            n_left += len(left)
    return n_left


def _step_overflow(res, extra, err, flag: np.ndarray, vec: _Colliding, tok, scratch: Path) -> int:
    """Step 2: the left-over items (flagged 2) in row order, each to the nearest SID still
    free; returns how many landed under another prefix."""
    sizes = tok.codebook_sizes
    blocked = SortedOccupied(_readback(scratch / "occupied.bin", np.int64))
    other = 0
    for s0 in range(0, len(flag), 1 << 18):
        left = np.flatnonzero(np.asarray(flag[s0 : s0 + (1 << 18)]) == 2) + s0
        for s in range(0, len(left), _OVERFLOW_ROWS):
            r = left[s : s + _OVERFLOW_ROWS]
            codes, x = key_codes(np.asarray(res.final[r]), sizes), vec.of(r)
            new = place_overflow(codes, x, sizes, tok.decode, blocked)
            res.final[r] = sid_keys(new, sizes)
            _record_moved(res, extra, err, r, codes, new, x, tok.decode)
            other += int((new[:, :-1] != codes[:, :-1]).any(1).sum())
    return other


def _chunked(a: np.ndarray, rows: int = 1 << 18) -> Iterator[np.ndarray]:
    for s in range(0, len(a), rows):
        yield np.asarray(a[s : s + rows])


def _trie(res: ReassignResolved, sizes, scratch: Path, bucket_rows: int) -> float:
    """The trie of the final SIDs, from their keys spilled again by first level; returns its seconds."""
    radix = math.prod(int(k) for k in sizes[1:])
    first = np.zeros(sizes[0], np.int64)
    for keys in _chunked(res.final):
        first += np.bincount(keys // radix, minlength=sizes[0])
    spill = _spill(_chunked(res.final), first, sizes, scratch / "final-buckets", bucket_rows)
    t = 0.0
    for _, keys, rows, _ in spill.resolve(get_policy("none")):
        if len(keys):
            t0 = time.perf_counter()
            res.trie.add(key_codes(keys, sizes), rows)
            t += time.perf_counter() - t0
    return t


def _cost_stats(res: ReassignResolved, extra: np.ndarray, err: np.ndarray, n: int, d: int, scratch: Path) -> dict[str, Any]:
    """``SIDIndex.build``'s reconstruction statistics, each sum taken over the whole (n,)
    array (memory-mapped) as the in-memory build takes it, so the floats are the same."""
    n_moved = sum(int(c.sum()) for c in _chunked(res.moved))
    with open(scratch / "moved_extra.bin", "wb") as f:
        for s in range(0, n, 1 << 18):
            f.write(np.asarray(extra[s : s + (1 << 18)][np.asarray(res.moved[s : s + (1 << 18)]) > 0], np.float64).tobytes())
    sse0 = float(err.sum()) if n else 0.0
    sse1 = sse0 + (float(extra.sum()) if n else 0.0)
    return {
        "moved_items": n_moved,
        "moved_rate": float(n_moved / n) if n else 0.0,
        "reconstruction_mse_codes": sse0 / (n * d),
        "reconstruction_mse_sids": sse1 / (n * d),
        "reconstruction_cost_relative": (sse1 / sse0 - 1.0) if sse0 > 0 else 0.0,
        "extra_sq_error_per_moved_item": float(_readback(scratch / "moved_extra.bin", np.float64).mean()) if n_moved else 0.0,
    }


def resolve_reassign(tok, items, source, scratch: Path, *, bucket_rows: int, batch_rows: int) -> ReassignResolved:
    """The ``reassign`` SIDs of ``items`` (the tokenizer ``tok``'s, in its order) with the
    embeddings ``source`` (``io.EmbeddingSource``, the same items in the same order), from
    scratch files under ``scratch`` (see the module doc)."""
    sizes, n, L = tok.codebook_sizes, items.n, tok.levels
    cap = float(np.prod([float(k) for k in sizes]))
    if n > cap:
        raise InputError(f"{n} items do not fit in {int(cap)} SIDs of codebooks {list(sizes)}; use the suffix policy or larger codebooks")
    first = np.zeros(sizes[0], np.int64)
    for _, _, codes in items.read(sizes, batch_rows, levels=1):
        first += np.bincount(codes[:, 0], minlength=sizes[0])
    spill = _spill((sid_keys(c, sizes) for _, _, c in items.read(sizes, batch_rows, levels=L)), first, sizes, scratch / "buckets",
                   bucket_rows)
    flag, groups = _flag_colliding(spill, n, scratch)
    vec_rows = max(1, min(batch_rows, (1 << 24) // (8 * max(1, tok.dim))))  # a batch's float64 copies ~16 MB
    err, hashes = _spill_vectors(items, source, tok, flag, scratch, vec_rows)
    res = ReassignResolved(final=_memmap(scratch / "final.npy", np.int64, n), moved=_memmap(scratch / "moved.npy", np.uint8, n),
                           hashes=hashes, trie=TrieParts(scratch / "trie", L), groups=groups)
    extra = _memmap(scratch / "extra.npy", np.float64, n)
    vec = _Colliding(scratch, tok.dim)
    n_left = _step_prefixes(spill, res, extra, err, flag, vec, tok, scratch)
    other = _step_overflow(res, extra, err, flag, vec, tok, scratch)
    res.stats = {**_cost_stats(res, extra, err, n, tok.dim, scratch), "moved_other_prefix": other}
    if groups["items_in_collisions"]:
        logger.info("reassign: %d colliding items, %d moved, %d to another prefix", groups["items_in_collisions"],
                    res.stats["moved_items"], n_left)
    res.trie_s = _trie(res, sizes, scratch, bucket_rows)
    return res
