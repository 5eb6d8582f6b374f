"""Cold start of a whole input into a file, in memory bounded by the batch and the new items.

``SIDIndex.assign`` keeps one lookup row per input item in memory (a dict each, about 1 KB),
so assigning a catalogue that is mostly known costs memory in proportion to the catalogue.
:func:`assign_to_file` gives the same rows, written to a Parquet file, in two passes:

1. each input batch goes through the cold start's per-batch function (``lookup_round``: its
   fingerprints, the index rows of its ids, the codes and nearest index rows of the items to
   place); the known items' SIDs are read from the stored index (the trie, memory-mapped, a
   few rows at a time) and the batch is written to a scratch file with the items to place
   marked. Only the items to place (new, replaced, and known ones whose fingerprint the
   index lacks) are kept: their ids, fingerprints, codes and neighbours.
2. those items are placed by one cold-start round (``cold_start_round`` with ``lookups``),
   the same placement, in the same input order, as a round over the whole input (known items
   never take part in it), then the scratch file is read back batch by batch, the placed
   items' SIDs filled in, and the output written with ``lookup_arrow``'s columns.

Memory: one batch, the index's memory-mapped arrays and the O(n) int64 row maps the lookups
build once (ids not sorted by row: their order; the trie's inverse order), plus O(items to
place). Nothing new is stored in the tokenizer directory, so every indexed tokenizer takes
this path as it is.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .._progress import Progress, as_progress
from ..errors import InputError
from ._cold_start import BatchLookup, cold_start_round, lookup_round
from ._ids import concat_ids

if TYPE_CHECKING:
    from ..io import EmbeddingStream
    from ._index import IndexConfig, SIDIndex

__all__ = ["assign_to_file"]

_STATUS = np.array(["known", "new", "replaced"], dtype=object)


class _Placed:
    """The items to place, gathered batch by batch: their input rows and what the placement
    reads (ids, fingerprints, codes), and, for the items placed (not only pinned), their
    nearest index rows as one flat array with offsets."""

    def __init__(self, levels: int):
        self.levels = levels
        self.ids: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.todo_rows: list[np.ndarray] = []  # input rows of the placed items, ascending
        self.near_vals: list[np.ndarray] = []
        self.near_lens: list[np.ndarray] = []

    def add(self, start: int, rnd, nearest: list[np.ndarray], sub: np.ndarray) -> None:
        self.ids.append(rnd.ids[sub])
        self.hashes.append(rnd.hashes[sub])
        self.codes.append(rnd.codes[sub])
        todo = np.flatnonzero(rnd.todo)
        self.todo_rows.append(start + todo)
        near = [nearest[i] for i in todo.tolist()]
        self.near_lens.append(np.asarray([len(r) for r in near], np.int64))
        self.near_vals.append(np.concatenate(near).astype(np.int64) if near else np.empty(0, np.int64))

    def lookups(self) -> BatchLookup:
        """What the placement reads; neighbours are left out (they are kept here, flat)."""
        if not self.ids:
            return BatchLookup.concat([], self.levels)
        ids = concat_ids(self.ids)
        no_rows = np.empty(0, np.int64)
        return BatchLookup(ids=ids, hashes=np.concatenate(self.hashes), codes=np.concatenate(self.codes), nearest=[no_rows] * len(ids))

    def finish(self) -> None:
        """Lists of batch parts -> flat arrays (rows of the placed items, neighbour offsets)."""
        cat = lambda parts: np.concatenate(parts) if parts else np.empty(0, np.int64)  # noqa: E731
        self.rows = cat(self.todo_rows)
        self.offsets = np.concatenate([[0], np.cumsum(cat(self.near_lens))]).astype(np.int64)
        self.values = cat(self.near_vals)
        self.ids = self.hashes = self.codes = self.todo_rows = self.near_vals = self.near_lens = []


def _first_pass(index: "SIDIndex", tok, stream: "EmbeddingStream", scratch: Path, config: "IndexConfig", bs: int,
                batch_size: int | None, progress: Progress | None, pin: bool) -> tuple[_Placed, dict[str, int]]:
    """Every batch looked up; known items' SIDs and the items to place written to ``scratch``;
    with ``pin`` also gathered: known items whose fingerprint the index lacks (counted in any case)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    S, placed, counts, writer = index.sid_length, _Placed(index.levels), {"known": 0, "fill": 0}, None
    has_hash = len(index) > 0
    try:
        with as_progress(progress).task("assign", total=stream.n, unit="item") as task:
            for b in stream.batches(bs):  # a wrong dimension fails on the first batch, after its row checks
                _check_dim(stream, b.vectors, tok)
                rnd, nearest = lookup_round(index, tok, b.ids, b.vectors, config, batch_size)
                keep = rnd.known & ~rnd.differs
                sids = np.zeros((len(rnd.ids), S), np.int64)
                if keep.any():
                    sids[keep] = index.sids[rnd.rows[keep]]
                fill = keep & (index.emb_hash[np.maximum(rnd.rows, 0)] == 0) if has_hash else np.zeros(len(keep), bool)
                sub = rnd.todo | (fill if pin else False)
                if sub.any():
                    placed.add(b.start, rnd, nearest, sub)
                counts["known"] += int(keep.sum())
                counts["fill"] += int(fill.sum())
                table = _scratch_table(rnd.ids, sids, pa)
                writer = writer or pq.ParquetWriter(str(scratch), table.schema)
                writer.write_table(table)
                task.advance(len(rnd.ids))
    finally:
        if writer is not None:
            writer.close()
    return placed, counts


def _scratch_table(ids: np.ndarray, sids: np.ndarray, pa):
    cols = {"item_id": pa.array(ids.tolist(), pa.int64()) if ids.dtype.kind in "iu" else pa.array(ids.tolist(), pa.string())}
    for lv in range(sids.shape[1]):
        cols[f"code_{lv}"] = pa.array(sids[:, lv].astype(np.int32))
    return pa.table(cols)


def _out_batch(rb, start: int, placed: _Placed, rnd, item_ids, S: int):
    """One scratch batch (rows ``start..``) with the placed items filled in, as ``lookup_arrow``'s columns."""
    import pyarrow as pa

    from ..io._sids import sid_string_array

    m = rb.num_rows
    codes = np.stack([rb.column(f"code_{lv}").to_numpy() for lv in range(S)], 1).astype(np.int64)
    status = np.zeros(m, np.int64)
    collided, moved = np.zeros(m, bool), np.zeros(m, bool)
    lens = np.zeros(m, np.int64)
    j0, j1 = np.searchsorted(placed.rows, [start, start + m])
    vals = placed.values[placed.offsets[j0] : placed.offsets[j1]]
    if j1 > j0:
        at, t = placed.rows[j0:j1] - start, rnd.todo_idx[j0:j1]
        codes[at] = rnd.sids[t]
        status[at] = np.where(rnd.known[t], 2, 1)
        collided[at], moved[at] = rnd.collided[t], rnd.moved[t]
        lens[at] = np.diff(placed.offsets[j0 : j1 + 1])
    near_ids = item_ids[vals] if len(vals) else np.empty(0, np.int64)
    near = pa.array(near_ids.tolist(), pa.string()) if near_ids.dtype == object else pa.array(near_ids.tolist(), pa.int64()).cast(pa.string())
    cols = {"item_id": rb.column("item_id")}
    for lv in range(S):
        cols[f"code_{lv}"] = pa.array(codes[:, lv].astype(np.int32))
    cols["sid"] = sid_string_array(codes)
    cols["status"] = pa.array(_STATUS[status].tolist(), pa.string())
    cols["collided"], cols["moved"] = pa.array(collided), pa.array(moved)
    cols["nearest"] = pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)), near)
    return pa.table(cols)


def _second_pass(scratch: Path, out: Path, placed: _Placed, rnd, item_ids, S: int, bs: int) -> None:
    import pyarrow.parquet as pq

    writer, start = None, 0
    try:
        for rb in pq.ParquetFile(str(scratch)).iter_batches(batch_size=bs):
            table = _out_batch(rb, start, placed, rnd, item_ids, S)
            writer = writer or pq.ParquetWriter(str(out), table.schema)
            writer.write_table(table)
            start += rb.num_rows
    finally:
        if writer is not None:
            writer.close()


def assign_to_file(index: "SIDIndex", tok, stream: "EmbeddingStream", out, *, replace: bool = False,
                   config: "IndexConfig | None" = None, batch_size: int | None = None, progress: Progress | None = None,
                   before_commit: Callable[["SIDIndex"], None] | None = None, update: bool = True) -> tuple["SIDIndex", dict[str, Any]]:
    """Cold start of every item of ``stream`` against ``index``, the lookup rows written to
    ``out`` (Parquet, the columns of ``lookup_arrow``, input order) atomically; returns the new
    index and the summary of ``SIDIndex.assign``. ``before_commit(new)`` runs after the rows
    are written and before ``out`` appears (to save the index first, as the in-memory assign).

    ``update=False``: the new index is not wanted, so known items whose embedding fingerprint
    the index lacks (an index built without embeddings: every item) are not gathered to have
    their fingerprint recorded; the summary still counts the version that would record them,
    and the returned index is then ``index`` plus the placed items only."""
    from .._streaming import DEFAULT_STREAM_BATCH, _aligned, _check_unique_ids
    from ..io import atomic_write
    from ..io._spill import DEFAULT_KEY_BUDGET
    from ._index import IndexConfig

    config = (config or IndexConfig(policy=index.policy)).validate()
    _check_stream(index, tok, stream)
    bs = _aligned(batch_size or DEFAULT_STREAM_BATCH)
    out = Path(out)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".scratch", dir=out.parent))
    try:
        _check_unique_ids(stream, bs, key_budget=DEFAULT_KEY_BUDGET, spill_dir=scratch)
        placed, counts = _first_pass(index, tok, stream, scratch / "known.parquet", config, bs, batch_size, progress, update)
        new, rnd, _, summary = cold_start_round(index, tok, None, None, lookups=placed.lookups(), replace=replace, config=config,
                                                batch_size=batch_size)
        placed.finish()
        rnd.todo_idx = np.flatnonzero(rnd.todo)
        with atomic_write(out) as tmp:
            _second_pass(scratch / "known.parquet", Path(tmp), placed, rnd, index.item_ids, index.sid_length, bs)
            if before_commit is not None:
                before_commit(new)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = {**summary, "items": int(stream.n), "known": counts["known"]}
    if not update and counts["fill"] and summary["version_after"] == index.version:
        summary["version_after"] = index.version + 1  # the version that records the fingerprints, as the in-memory round
    return new, summary


def _check_stream(index: "SIDIndex", tok, stream: "EmbeddingStream") -> None:
    if index.policy_obj.needs_vectors:
        raise InputError(f"cold start under the {index.policy} policy places items by their vectors; assign without an output file "
                         "streamed (the in-memory cold start)")
    if stream.n == 0:
        raise InputError(f"{stream.source}: empty input (0 rows); nothing to assign")


def _check_dim(stream: "EmbeddingStream", x: np.ndarray, tok) -> None:
    if x.shape[1] != tok.dim:
        raise InputError(f"{stream.source}: vectors have dimension {x.shape[1]} but this tokenizer expects {tok.dim}; "
                         "embed with the model the tokenizer was built on")
