"""Cold start of a whole input into a file, in memory bounded by the batch and the new items.

``SIDIndex.assign`` keeps one lookup row per input item in memory (a dict each, about 1 KB),
so assigning a catalogue that is mostly known costs memory in proportion to the catalogue.
:func:`assign_to_file` gives the same rows, written to a Parquet file, in two passes:

1. each input batch goes through :func:`lookup_part` (the cold start's per-batch function
   ``lookup_round``: fingerprints, the index rows of the ids, the codes of the items to
   place; the known items' SIDs read from the stored index, its trie memory-mapped, a few
   rows at a time), written to a scratch file (the ray engine maps the same function on its
   workers, one part per shard).
2. the items to place (new, replaced, and with ``update`` known ones whose fingerprint the
   index lacks) are gathered from the parts (their vectors to a scratch file) and placed by
   one cold-start round (``cold_start_round`` with ``lookups``): the same placement, in the
   same input order, as a round over the whole input (known items never take part in it).
   Their nearest indexed items are then searched once per code prefix over all batches
   (per item the same result as a search per batch), and the parts are read back batch by
   batch, the placed items' SIDs filled in, and written with ``lookup_arrow``'s columns.

Memory: one batch, the index's memory-mapped arrays and the row maps the lookups build once
(the trie's inverse order, 4 bytes per indexed item; integer ids not ascending: their order
and a sorted copy, 16; string ids: a dict), the input ids' 8-byte hashes for the uniqueness
check before the first pass, plus O(items to place) (their ids, codes, fingerprints,
neighbours; not their vectors). Nothing new is stored in the tokenizer directory, so every
indexed tokenizer takes this path as it is.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._progress import Progress, as_progress
from ..errors import InputError
from ._cold_start import BatchLookup, cold_start_round, lookup_round
from ._ids import concat_ids

if TYPE_CHECKING:
    from ..io import EmbeddingStream
    from ._index import IndexConfig, SIDIndex

__all__ = ["assign_to_file", "lookup_part", "gather", "place_lookups", "write_lookup_rows", "LOOKUP_ROW_GROUP"]

_STATUS = np.array(["known", "new", "replaced"], dtype=object)
# rows per row group of a lookup part: the placement reads one row group at a time, the
# vectors of its items to place included
LOOKUP_ROW_GROUP = 8192
# the placed items' preprocessed vectors in a scratch directory (float32 rows, input order)
PLACED_VECTORS = "placed_xp.f32"
# placed items per neighbour search (whole prefixes): bounds its per-item arrays
_NEAR_CHUNK = 1 << 14


class _Placed:
    """The items to place, gathered from the lookup parts: what the placement reads (ids,
    fingerprints, codes), the input rows of the items placed (not only pinned), ascending,
    and their nearest index rows as one flat array with offsets."""

    def __init__(self, levels: int, spill: Path, dim: int = 0):
        self.levels = levels
        self.spill = spill  # the preprocessed vectors of the placed items, float32 rows in input order
        # ``dim``: the first pass already wrote them there (the parts hold no vectors)
        self._xp = None if dim else open(spill, "wb")
        self.dim = dim
        self.ids: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.todo_rows: list[np.ndarray] = []
        self.counts = {"known": 0, "fill": 0}

    def add(self, rb, start: int, pin: bool) -> None:
        """Rows ``start..`` of the input: one record batch of lookup parts."""
        import pyarrow.compute as pc

        from ..io import normalise_ids

        place = rb.column("place").to_numpy()
        self.counts["known"] += int((place != 1).sum())
        self.counts["fill"] += int((place == 2).sum())
        sub = (place == 1) | ((place == 2) & pin)
        if not sub.any():
            return
        mask = _pa_bool(sub)
        self.ids.append(normalise_ids(pc.filter(rb.column("item_id"), mask).to_numpy(zero_copy_only=False)))
        self.hashes.append(pc.filter(rb.column("emb_hash"), mask).to_numpy().astype(np.uint64))
        self.codes.append(np.stack([pc.filter(rb.column(f"raw_{lv}"), mask).to_numpy() for lv in range(self.levels)], 1).astype(np.int64))
        todo = place == 1
        self.todo_rows.append(start + np.flatnonzero(todo))
        if "xp" in rb.schema.names:
            self._spill_vectors(rb.column("xp"), todo)

    def _spill_vectors(self, col, todo: np.ndarray) -> None:
        import pyarrow.compute as pc

        xp = pc.filter(col, _pa_bool(todo))
        offs = np.asarray(xp.offsets.to_numpy(), np.int64)
        if todo.any():
            self.dim = int((offs[-1] - offs[0]) // int(todo.sum()))
            # from Arrow's buffer, without a temporary copy
            self._xp.write(memoryview(np.ascontiguousarray(xp.values.to_numpy()[offs[0] : offs[-1]], np.float32)))

    def close(self) -> None:
        """Done writing the vectors (if this gathering writes them)."""
        if self._xp is not None:
            self._xp.close()

    def lookups(self) -> BatchLookup:
        """What the placement reads; neighbours are left out (they are kept here, flat)."""
        if not self.ids:
            return BatchLookup.concat([], self.levels)
        ids = concat_ids(self.ids)
        no_rows = np.empty(0, np.int64)
        return BatchLookup(ids=ids, hashes=np.concatenate(self.hashes), codes=np.concatenate(self.codes), nearest=[no_rows] * len(ids))

    def finish(self, index: "SIDIndex", tok, rnd, config: "IndexConfig") -> None:
        """After the placement: the input rows of the placed items, and their neighbours,
        searched under their code prefix over all batches at once (one search per prefix,
        not one per prefix and batch), as one flat array of index rows with offsets."""
        from ._cold_start import Round

        self.close()
        self.rows = np.concatenate(self.todo_rows) if self.todo_rows else np.empty(0, np.int64)
        self.ids = self.hashes = self.codes = self.todo_rows = []
        t = rnd.todo_idx
        xp = np.memmap(self.spill, np.float32, mode="r", shape=(len(t), self.dim)) if len(t) and self.dim else None
        rows = rnd.rows[t]
        own = Round(ids=rnd.ids[t], hashes=rnd.hashes[t], rows=rows, known=rows >= 0, differs=rows >= 0, xp=xp, codes=rnd.codes[t])
        self.offsets, self.values = _nearest_flat(index, tok, own, config)


def _prefix_chunks(codes: np.ndarray, levels: int, size: int):
    """Index arrays (ascending) into the rows of ``codes`` (m, L), about ``size`` rows each, that
    never split the items of one prefix (the first L-1 levels)."""
    m, P = len(codes), max(levels - 1, 0)
    if not P:
        yield np.arange(m)
        return
    order = np.lexsort(codes[:, :P].T[::-1])
    sp = codes[order, :P]
    starts = np.concatenate([[0], np.flatnonzero((sp[1:] != sp[:-1]).any(1)) + 1])
    a = 0
    while a < m:
        k = int(np.searchsorted(starts, a + size))
        b = int(starts[k]) if k < len(starts) else m
        yield np.sort(order[a:b])
        a = b


def _nearest_flat(index: "SIDIndex", tok, own, config: "IndexConfig") -> tuple[np.ndarray, np.ndarray]:
    """``nearest_of(own)`` as offsets (m+1,) and one flat array of index rows, searched a chunk
    of whole prefixes at a time: an item's neighbours depend only on its prefix's candidates
    and its own vector, so the rows are the same, each prefix is still searched once, and the
    per-item arrays (about 400 bytes an item) live for one chunk, not for every placed item."""
    from ._cold_start import Round, nearest_of

    m = len(own.ids)
    lens = np.zeros(m, np.int64)
    parts = []
    for idx in _prefix_chunks(own.codes, index.levels, _NEAR_CHUNK) if m else ():
        sub = Round(ids=own.ids[idx], hashes=own.hashes[idx], rows=own.rows[idx], known=own.known[idx], differs=own.differs[idx],
                    xp=None if own.xp is None else np.asarray(own.xp[idx]), codes=own.codes[idx])
        near = nearest_of(index, tok, sub, config)
        lens[idx] = [len(r) for r in near]
        parts.append((idx, np.concatenate(near).astype(np.int64) if near else np.empty(0, np.int64)))
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    values = np.empty(int(offsets[-1]), np.int64)
    for idx, v in parts:
        n_i = lens[idx]
        # item idx[j]'s rows go to offsets[idx[j]] onwards, in the order nearest_of gave them
        values[np.repeat(offsets[idx] - (np.cumsum(n_i) - n_i), n_i) + np.arange(len(v))] = v
    return offsets, values


def _pa_bool(a: np.ndarray):
    import pyarrow as pa

    return pa.array(np.asarray(a, bool))


def lookup_part(index: "SIDIndex", tok, ids: np.ndarray, x: np.ndarray, *, config: "IndexConfig", batch_size: int | None = None):
    """Pass 1 of one batch (what an engine maps; pure in index, tokenizer and batch): an Arrow
    table of item_id, code_0.. (the known items' indexed SIDs, 0 for the others), place (0
    known; 1 to place: new, or known with another embedding; 2 known, the index lacking its
    fingerprint, pinned by an update), raw_0.. (the quantizer codes of the items to place),
    emb_hash (every item's fingerprint) and xp (the preprocessed vector of an item to place,
    empty for the others: the neighbour search reads it after the placement)."""
    import pyarrow as pa

    table, xp = _lookup_columns(index, tok, ids, x, config=config, batch_size=batch_size)
    todo = table.column("place").to_numpy() == 1
    offs = np.concatenate([[0], np.cumsum(todo * x.shape[1])]).astype(np.int32)
    return table.append_column("xp", pa.ListArray.from_arrays(pa.array(offs), pa.array(xp.reshape(-1), pa.float32())))


def _lookup_columns(index: "SIDIndex", tok, ids: np.ndarray, x: np.ndarray, *, config: "IndexConfig", batch_size: int | None):
    """:func:`lookup_part`'s table without its xp column, and the vectors of the items to place
    (k, d) float32 in input order."""
    import pyarrow as pa

    if x.shape[1] != tok.dim:
        raise InputError(f"vectors have dimension {x.shape[1]} but this tokenizer expects {tok.dim}; "
                         "embed with the model the tokenizer was built on")
    rnd, _ = lookup_round(index, tok, ids, x, config, batch_size, nearest=False)
    keep = rnd.known & ~rnd.differs
    sids = np.zeros((len(rnd.ids), index.sid_length), np.int64)
    if keep.any():
        sids[keep] = index.sids[rnd.rows[keep]]
    fill = keep & (index.emb_hash[np.maximum(rnd.rows, 0)] == 0) if len(index) else np.zeros(len(keep), bool)
    cols = {"item_id": pa.array(rnd.ids.astype(np.int64)) if rnd.ids.dtype.kind in "iu" else pa.array(rnd.ids.tolist(), pa.string())}
    for lv in range(sids.shape[1]):
        cols[f"code_{lv}"] = pa.array(sids[:, lv].astype(np.int32))
    cols["place"] = pa.array(np.where(rnd.todo, 1, np.where(fill, 2, 0)).astype(np.int8))
    for lv in range(rnd.codes.shape[1]):
        cols[f"raw_{lv}"] = pa.array(rnd.codes[:, lv].astype(np.int32))
    cols["emb_hash"] = pa.array(rnd.hashes, pa.uint64())
    todo = rnd.todo
    xp = np.asarray(rnd.xp[todo], np.float32) if todo.any() else np.empty((0, x.shape[1]), np.float32)
    return pa.table(cols), xp


def gather(parts: list, levels: int, spill: Path, *, pin: bool, dim: int = 0) -> _Placed:
    """The items to place from the lookup ``parts`` (Parquet files, in input order), reading
    them row group by row group, their vectors to ``spill``; with ``pin`` also the known items
    whose fingerprint the index lacks. ``dim``: the parts hold no vectors column, their
    vectors (``dim`` floats each) are in ``spill`` already."""
    import pyarrow.parquet as pq

    placed, start = _Placed(levels, spill, dim), 0
    cols = ["item_id", "place", "emb_hash"] + ([] if dim else ["xp"]) + [f"raw_{lv}" for lv in range(levels)]
    for p in parts:
        pf = pq.ParquetFile(str(p))
        # one row group at a time: iter_batches over the list column "xp" keeps what it decoded
        # (pyarrow 26: the process grows by the vectors read), read_row_group does not
        for g in range(pf.metadata.num_row_groups):
            for rb in pf.read_row_group(g, columns=cols, use_threads=False).to_batches():
                placed.add(rb, start, pin)
                start += rb.num_rows
    return placed


def _first_pass(index: "SIDIndex", tok, stream: "EmbeddingStream", scratch: Path, spill: Path, config: "IndexConfig", bs: int,
                batch_size: int | None, progress: Progress | None) -> None:
    """Every batch through :func:`lookup_part`, into one scratch file, the vectors of the items
    to place into ``spill`` (float32 rows, input order: what the placement reads, written once)."""
    import pyarrow.parquet as pq

    writer = None
    try:
        with as_progress(progress).task("assign", total=stream.n, unit="item") as task, open(spill, "wb") as xp:
            for b in stream.batches(bs):  # a wrong dimension fails on the first batch, after its row checks
                _check_dim(stream, b.vectors, tok)
                table, vectors = _lookup_columns(index, tok, b.ids, b.vectors, config=config, batch_size=batch_size)
                xp.write(memoryview(np.ascontiguousarray(vectors)))
                # read once, soon: no compression, and no dictionaries (ids and fingerprints are unique:
                # building a dictionary only to drop it made the writes five times slower)
                writer = writer or pq.ParquetWriter(str(scratch), table.schema, compression="none", use_dictionary=False)
                writer.write_table(table, row_group_size=LOOKUP_ROW_GROUP)
                task.advance(table.num_rows)
    finally:
        if writer is not None:
            writer.close()


def _out_batch(rb, start: int, placed: _Placed, rnd, item_ids, S: int):
    """One scratch batch (rows ``start..``) with the placed items filled in, as ``lookup_arrow``'s columns."""
    import pyarrow as pa

    from ..io import sid_string_array

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


def _row_batches(part, columns: list[str], batch_size: int):
    """Record batches of ``batch_size`` rows (the last one shorter) of the Parquet file ``part``,
    read one row group at a time on one thread: ``iter_batches`` keeps every row group's
    dictionary pages while it runs (pyarrow 26: 13 bytes per row of a part with dictionary-encoded
    columns; the lookup parts are now written without dictionaries, but the reader does not rely
    on it), and its decoder threads made the peak vary by 20 MiB from run to run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(str(part))
    held: list = []
    rows = 0
    for g in range(pf.metadata.num_row_groups):
        held.append(pf.read_row_group(g, columns=columns, use_threads=False))
        rows += held[-1].num_rows
        if rows < batch_size and g + 1 < pf.metadata.num_row_groups:
            continue
        table = pa.concat_tables(held).combine_chunks()
        full = rows if g + 1 == pf.metadata.num_row_groups else rows - rows % batch_size
        for a in range(0, full, batch_size):
            yield table.slice(a, min(batch_size, full - a)).to_batches()[0]
        held, rows = ([table.slice(full)], rows - full) if rows > full else ([], 0)


def write_lookup_rows(part, out, placed: _Placed, rnd, item_ids, S: int, *, start: int = 0, batch_size: int = 1 << 16) -> int:
    """The lookup rows of the input rows ``start..`` that the lookup ``part`` holds, the placed
    items' SIDs filled in, written to ``out`` (Parquet, ``lookup_arrow``'s columns); returns
    the rows written."""
    import pyarrow.parquet as pq

    writer, n = None, 0
    cols = ["item_id"] + [f"code_{lv}" for lv in range(S)]
    try:
        for rb in _row_batches(part, cols, batch_size):
            table = _out_batch(rb, start + n, placed, rnd, item_ids, S)
            writer = writer or pq.ParquetWriter(str(out), table.schema)
            writer.write_table(table)
            n += rb.num_rows
    finally:
        if writer is not None:
            writer.close()
    return n


def place_lookups(index: "SIDIndex", tok, parts: list, scratch: Path, *, replace: bool, config: "IndexConfig",
          update: bool, dim: int = 0) -> tuple["SIDIndex", Any, _Placed, dict]:
    """Pass 2's placement: the items to place gathered from the lookup ``parts`` and placed by
    one cold-start round, then their neighbours searched (a vectors file in the directory
    ``scratch``: written here from the parts' vectors, or with ``dim`` by the first pass, the
    parts then holding none); returns the new index, the round, what was gathered and the summary."""
    placed = gather(parts, index.levels, Path(scratch) / PLACED_VECTORS, pin=update, dim=dim)
    try:
        new, rnd, _, summary = cold_start_round(index, tok, None, None, lookups=placed.lookups(), replace=replace, config=config,
                                                batch_size=None)
    finally:
        placed.close()
    rnd.todo_idx = np.flatnonzero(rnd.todo)
    placed.finish(index, tok, rnd, config)
    summary = {**summary, "items": int(placed.counts["known"] + len(placed.rows)), "known": placed.counts["known"]}
    if not update and placed.counts["fill"] and summary["version_after"] == index.version:
        summary["version_after"] = index.version + 1  # the version that records the fingerprints, as the in-memory round
    return new, rnd, placed, summary


def assign_to_file(index: "SIDIndex", tok, stream: "EmbeddingStream", out, *, replace: bool = False,
                   config: "IndexConfig | None" = None, batch_size: int | None = None, progress: Progress | None = None,
                   save_to=None, update: bool = True) -> tuple["SIDIndex", dict[str, Any]]:
    """Cold start of every item of ``stream`` against ``index``, the lookup rows written to
    ``out`` (Parquet, the columns of ``lookup_arrow``, input order) atomically; returns the new
    index and the summary of ``SIDIndex.assign``.
    ``save_to``: the tokenizer directory whose index is updated, when ``update`` and the index
    changed; saved after the rows are written and before ``out`` appears, as the in-memory assign.

    ``update=False``: the new index is not wanted, so known items whose embedding fingerprint
    the index lacks (an index built without embeddings: every item) are not gathered to have
    their fingerprint recorded; the summary still counts the version that would record them,
    and the returned index is then ``index`` plus the placed items only."""
    from ..build import DEFAULT_STREAM_BATCH, aligned_batch_size, check_unique_ids
    from ..io import atomic_write
    from ._index import IndexConfig

    config = (config or IndexConfig(policy=index.policy)).validate()
    _check_stream(index, tok, stream)
    bs = aligned_batch_size(batch_size or DEFAULT_STREAM_BATCH)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".scratch", dir=out.parent))
    try:
        check_unique_ids(stream, bs, spill_dir=scratch)
        part = scratch / "lookup.parquet"
        _first_pass(index, tok, stream, part, scratch / PLACED_VECTORS, config, bs, batch_size, progress)
        new, rnd, placed, summary = place_lookups(index, tok, [part], scratch, replace=replace, config=config, update=update,
                                                  dim=tok.dim)
        with atomic_write(out) as tmp:
            write_lookup_rows(part, Path(tmp), placed, rnd, index.item_ids, index.sid_length, batch_size=bs)
            if save_to is not None and update and new.version != index.version:
                new.save(tok, save_to)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
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
