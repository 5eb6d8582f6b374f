"""Groups of equal codes resolved one bucket at a time, from rows spilled to disk.

A policy that numbers each group of items sharing codes from that group's rows alone
(``CollisionPolicy.by_group``) never needs the whole catalogue in memory: every row's
(code key, row number, rank) is appended to one of P bucket files, chosen so that a group
lands whole in one bucket, and the buckets are then read back and numbered one at a time.
Memory is one batch while spilling and one bucket (24 bytes a row, plus the sort's copies)
while resolving.

Two ways to pick a row's bucket: by a hash of its key (groups spread evenly whatever the
codes; the sharded index, ``engines.index_shards``), or by ranges of the first code level
(:func:`first_level_buckets`): buckets then follow one another in SID order, so what is
built from them bucket by bucket (the trie, in ``SIDIndex.build_on_disk``) comes out sorted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

__all__ = ["GroupSpill", "hash_buckets", "first_level_buckets"]

BucketOf = Callable[[np.ndarray], np.ndarray]  # code keys (m,) -> bucket numbers (m,) int64

_REC = np.dtype([("key", "<i8"), ("row", "<i8"), ("rank", "<f8")])


def hash_buckets(n_buckets: int) -> BucketOf:
    """Bucket of a key by Fibonacci hashing: neighbouring prefixes spread over the buckets."""
    n_buckets = int(n_buckets)

    def bucket_of(keys: np.ndarray) -> np.ndarray:
        h = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        return ((h >> np.uint64(32)) % np.uint64(n_buckets)).astype(np.int64)

    return bucket_of


def first_level_buckets(first_counts: np.ndarray, sizes: Sequence[int], bucket_rows: int) -> tuple[int, BucketOf]:
    """(number of buckets, bucket of a key) for buckets that are ranges of the first code level,
    each holding about ``bucket_rows`` rows (more when one first-level code alone holds more):
    ``first_counts`` (K_0,) the items per first-level code, ``sizes`` the codebook sizes the
    keys are mixed radix over (``sid_keys``)."""
    counts = np.asarray(first_counts, np.int64)
    radix = math.prod(int(k) for k in sizes[1:])
    bucket = np.zeros(len(counts), np.int64)
    b = held = 0
    for c in np.flatnonzero(counts).tolist():
        if held and held + int(counts[c]) > bucket_rows:
            b, held = b + 1, 0
        bucket[c] = b
        held += int(counts[c])
    return b + 1, lambda keys: bucket[keys // radix]


class GroupSpill:
    """(key, row, rank) of every row in bucket files under ``scratch``; see the module doc.

    >>> spill = GroupSpill(scratch, n_buckets, hash_buckets(n_buckets))
    >>> for keys in batches: spill.add(keys)          # rows numbered in arrival order
    >>> for k, keys, rows, pos in spill.resolve(policy): ...   # one bucket at a time
    >>> spill.stats                                    # collisions, largest group, suffixes used
    """

    def __init__(self, scratch: str | Path, n_buckets: int, bucket_of: BucketOf):
        self.scratch = Path(scratch)
        self.n_buckets = int(n_buckets)
        self.bucket_of = bucket_of
        self.rows = 0
        self.stats = {"max_suffix": 0, "unique_codes": 0, "colliding_groups": 0, "items_in_collisions": 0, "largest_group": 0}

    def _file(self, k: int) -> Path:
        return self.scratch / f"bucket-{k:05d}.bin"

    def add(self, keys: np.ndarray, rank: np.ndarray | None = None) -> None:
        """Append rows with code keys ``keys`` (m,) and in-group order ``rank`` (m,) (default 0)."""
        rec = np.empty(len(keys), _REC)
        rec["key"], rec["row"] = keys, np.arange(self.rows, self.rows + len(keys))
        rec["rank"] = 0.0 if rank is None else rank
        self.rows += len(keys)
        b = self.bucket_of(np.asarray(keys, np.int64))
        order = np.argsort(b, kind="stable")
        bounds = np.searchsorted(b[order], np.arange(self.n_buckets + 1))
        for k in np.flatnonzero(np.diff(bounds)).tolist():
            with open(self._file(k), "ab") as f:
                f.write(rec[order[bounds[k]:bounds[k + 1]]].tobytes())

    def resolve(self, policy, *, keep: bool = False) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """Per bucket in order (empty ones too): (bucket, keys, rows, positions), the rows
        ascending and ``positions`` the policy's extra level for each (``group_positions``:
        rank, then input row, within a group). Each bucket file is removed once read, unless
        ``keep`` (the buckets are read again)."""
        for k in range(self.n_buckets):
            f = self._file(k)
            rec = np.fromfile(f, _REC) if f.exists() else np.empty(0, _REC)
            rec = rec[np.argsort(rec["row"], kind="stable")]  # ties in rank go by input row, as in memory
            pos = policy.group_positions(rec["key"], rec["rank"])
            if f.exists() and not keep:
                f.unlink()
            if len(rec) and pos is not None:  # a policy that adds no level (``none``) numbers nothing
                self._count(rec["key"], pos)
            yield k, rec["key"], rec["row"], pos

    def _count(self, keys: np.ndarray, pos: np.ndarray) -> None:
        _, counts = np.unique(keys, return_counts=True)
        s = self.stats
        s["max_suffix"] = max(s["max_suffix"], int(pos.max()) + 1)
        s["unique_codes"] += len(counts)
        s["colliding_groups"] += int((counts > 1).sum())
        s["items_in_collisions"] += int(counts[counts > 1].sum())
        s["largest_group"] = max(s["largest_group"], int(counts.max()))
