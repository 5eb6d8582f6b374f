"""Build and assign over catalogues of any size, in bounded memory.

``build_streaming(source, out)`` is :meth:`SemanticTokenizer.build` for inputs that do not fit
in memory (RQ-Kmeans): it gives the same codebooks and the same SIDs as the in-memory build on
the same input and seed, because both run one algorithm:

1. **Sample** (one pass, or direct reads from a memory-mapped ``.npy``): the rows
   ``RQKMeans.sample_rows(n)``, at most ``max_points_per_centroid x max(K)`` of them, drawn
   uniformly and deterministically in the seed.
2. **Train** every level on the sample (later levels on the sample's residuals).
3. **Encode** every item in batches, writing ``sids.parquet`` in the tokenizer directory as it
   goes, and accumulating the metrics (reconstruction, per-level counts and entropy, SID keys
   for collisions, the largest bucket and prefix fan-out; :class:`StreamingMetrics`).
4. Balanced mode with ``distinct_last_level``: the codes are kept in memory as small ints
   (n x L x 2 bytes for K <= 32768) instead of being written at once; the prefixes whose
   items share a last-level code are solved as in memory (one assignment problem per
   prefix), their items' last-level residuals being written to scratch files partitioned by
   prefix in one more pass over the input (n_grouped x (4 d + 8) bytes on disk) and read back
   a partition at a time; then one more pass reads only the ids and writes the SIDs.

Memory: one batch of the input, the sample (``max_points_per_centroid x max(K) x d x 4``
bytes: 64 MiB for 3 x 256 at d = 256, 2 GiB for 8192 codes), 8 bytes per item for SID keys
and 8 for id hashes up to a budget (then spilled to disk by partition), and, in balanced mode,
the codes. The tokenizer directory is written atomically (staging, then a swap).

``assign_streaming(tok, source, out)`` encodes any number of items with a frozen tokenizer
into a SID Parquet file, batch by batch. The per-batch work is :func:`encode_batch`, a pure
function of (tokenizer, vectors) that a distributed engine can map over shards.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .._progress import Progress, as_progress
from ..errors import ArtifactError, InputError
from ..io import DEFAULT_KEY_BUDGET, EmbeddingSource, EmbeddingStream, SIDWriter, SpilledKeys, atomic_write, write_artifact
from ..quantizers import BLOCK_ROWS, RQKMeans, RQKMeansConfig, warn_if_crowded
from ._artifact import TOKENIZER
from ._stream_metrics import StreamingMetrics, sid_keys_of
from ._tokenizer import SIDS_NAME, SemanticTokenizer, make_quantizer, resolve_method

__all__ = ["build_streaming", "assign_streaming", "encode_batch", "StreamingRun", "AssignSummary", "aligned_batch_size",
           "check_unique_ids", "DEFAULT_STREAM_BATCH", "STREAMING_METHODS"]

logger = logging.getLogger(__name__)

# rows per read: a whole number of encode blocks, so codes equal an in-memory encode
DEFAULT_STREAM_BATCH = 16 * BLOCK_ROWS  # 65,536 rows: 64 MiB at d = 256 fp32

# the methods that train on a sample and encode batch by batch; the others train on the whole input
STREAMING_METHODS = ("rq-kmeans",)


@dataclass(frozen=True)
class StreamingRun:
    """How a streaming pass runs in bounded memory (never what it computes): ``batch_size`` rows
    per read (rounded down to whole encode blocks, at least one, so the codes equal an in-memory
    encode), ``key_budget`` SID keys and id hashes held in memory before they spill to disk, and
    ``scratch_dir`` for the spilled and scratch files (default: beside the output)."""

    batch_size: int = DEFAULT_STREAM_BATCH
    key_budget: int = DEFAULT_KEY_BUDGET
    scratch_dir: str | os.PathLike | None = None


def encode_batch(tok: SemanticTokenizer, vectors, **encode_kw) -> np.ndarray:
    """Codes (b, L) int64 of one batch of raw embeddings (b, d): the tokenizer's preprocessing,
    then its quantizer's encode (``encode_kw``, e.g. ``threads``, never changes the codes).
    Pure in (tokenizer, batch): safe to map over shards."""
    return tok.encode(vectors, **encode_kw)


def _as_stream(source) -> EmbeddingStream:
    """``source`` opened: an :class:`EmbeddingStream` as is, an :class:`EmbeddingSource` read as it
    says, anything else a path (or list of paths) read with the default columns."""
    if isinstance(source, EmbeddingStream):
        return source
    return EmbeddingSource.of(source).open()


def aligned_batch_size(batch_size: int) -> int:
    """``batch_size`` rounded down to whole encode blocks (at least one): the batches then cut the
    rows where an in-memory encode cuts them, so the codes are the same."""
    return max(BLOCK_ROWS, (int(batch_size) // BLOCK_ROWS) * BLOCK_ROWS)


# ---- item ids: uniqueness in bounded memory -------------------------------------------------
def _id_hashes(ids: np.ndarray) -> np.ndarray:
    import pandas as pd

    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return pd.util.hash_array(ids.astype(np.int64), categorize=False).view(np.int64)
    return pd.util.hash_array(np.asarray(ids, dtype=object), categorize=False).view(np.int64)


class _UniqueIds:
    """64-bit hashes of every id, 8 bytes per item: up to ``budget`` of them in one array sorted
    in place, beyond it spilled to disk by partition (each partition sorted alone); a repeated
    hash is confirmed on the ids themselves in one ids-only pass before it is called a
    duplicate. Adjacent equal hashes are found a block at a time, so the check holds no more
    than the hashes and one block."""

    PARTS = 64
    BLOCK = 1 << 20

    def __init__(self, *, budget: int, spill_dir, n: int | None = None):
        part_of = lambda k: (k.view(np.uint64) >> np.uint64(58)).astype(np.int64)  # noqa: E731
        self.keys = SpilledKeys(self.PARTS, part_of, budget=budget, spill_dir=spill_dir)
        # a known input size within the budget: one array filled batch by batch, no concatenation
        self._all = np.empty(n, np.int64) if n is not None and n <= budget else None
        self._filled = 0

    def add(self, ids: np.ndarray) -> None:
        h = _id_hashes(ids)
        if self._all is not None and self._filled + len(h) <= len(self._all):
            self._all[self._filled : self._filled + len(h)] = h
            self._filled += len(h)
            return
        if self._all is not None:  # more rows than announced: the spilled keys take them all
            self.keys.add(self._all[: self._filled])
            self._all = None
        self.keys.add(h)

    def _repeated(self) -> np.ndarray:
        """Sorted hashes that occur more than once."""
        parts = [self._all[: self._filled]] if self._all is not None else self.keys.partitions()
        repeated = []
        for part in parts:
            part.sort()  # in place: a partition is a fresh array (a concatenation, a file read) or our own
            for a in range(0, max(len(part) - 1, 0), self.BLOCK):
                blk = part[a : a + self.BLOCK + 1]
                repeated.append(np.unique(blk[1:][blk[1:] == blk[:-1]]))
        rep = np.unique(np.concatenate(repeated)) if repeated else np.empty(0, np.int64)
        self._all = None
        return rep

    def check(self, stream: EmbeddingStream, batch_size: int) -> None:
        rep = self._repeated()
        if not len(rep):
            return
        seen: dict[Any, tuple[int, int]] = {}
        for b in stream.batches(batch_size, vectors=False):
            h = _id_hashes(b.ids)
            hit = np.flatnonzero(np.isin(h, rep))
            for i in hit.tolist():
                key = b.ids[i]
                key = key.item() if isinstance(key, np.generic) else key
                if key in seen:
                    first, count = seen[key]
                    seen[key] = (first, count + 1)
                else:
                    seen[key] = (b.start + i, 1)
        for key, (first, count) in seen.items():
            if count > 1:
                raise InputError(
                    f"{stream.source}: duplicate item id {str(key)!r} ({count} times, first at row {first}); "
                    "item ids must be unique, deduplicate the input"
                )

    def close(self) -> None:
        self.keys.close()


def check_unique_ids(stream: EmbeddingStream, batch_size: int = DEFAULT_STREAM_BATCH, *, key_budget: int = DEFAULT_KEY_BUDGET,
                      spill_dir=None) -> None:
    """Refuse a repeated item id, reading only the ids (bounded memory: hashes spill to disk)."""
    unique_ids = _UniqueIds(budget=key_budget, spill_dir=spill_dir, n=stream.n)
    try:
        for b in stream.batches(batch_size, vectors=False):
            unique_ids.add(b.ids)
        unique_ids.check(stream, batch_size)
    finally:
        unique_ids.close()


# ---- distinct last level at scale ---------------------------------------------------------
def _distinct_streaming(
    q: RQKMeans,
    tok: SemanticTokenizer,
    stream: EmbeddingStream,
    codes: np.ndarray,
    batch_size: int,
    scratch: Path,
    *,
    budget_bytes: int = 256 << 20,
    progress: Progress | None = None,
) -> tuple[int, float, int]:
    """``q.solve_distinct`` over the whole catalogue; returns (moved items, SSE change, items
    in groups). Residuals of grouped items go to scratch files by ranges of groups."""
    groups = q.distinct_groups(codes)
    if not groups:
        return 0, 0.0, 0
    d = stream.dim
    group_of = np.full(codes.shape[0], -1, dtype=np.int32 if len(groups) < 2**31 else np.int64)
    for gi, g in enumerate(groups):
        group_of[g] = gi
    members = int(sum(len(g) for g in groups))
    parts = max(1, -(-members * (4 * d + 8) // budget_bytes))
    n_groups = len(groups)
    part_of_group = lambda gi: gi.astype(np.int64) * parts // n_groups  # noqa: E731
    scratch.mkdir(parents=True, exist_ok=True)
    files = [(scratch / f"rows-{p}.bin", scratch / f"res-{p}.bin") for p in range(parts)]
    with as_progress(progress).task("distinct last level: residuals", total=stream.n, unit="item") as task:
        for b in stream.batches(batch_size, ids=False):
            m = len(b.vectors)
            gi = group_of[b.start : b.start + m]
            sel = np.flatnonzero(gi >= 0)
            if len(sel):
                xp = tok.preprocess(np.ascontiguousarray(b.vectors[sel]), what=stream.source)
                rows = sel.astype(np.int64) + b.start
                r = q.last_residuals(xp, codes[rows])
                pp = part_of_group(gi[sel])
                for p in np.unique(pp).tolist():
                    k = pp == p
                    with open(files[p][0], "ab") as f:
                        f.write(rows[k].tobytes())
                    with open(files[p][1], "ab") as f:
                        f.write(np.ascontiguousarray(r[k]).tobytes())
            task.advance(m)
    moved = 0
    dsse = 0.0
    c_last = q.codebooks[-1].astype(np.float64)
    part_groups = part_of_group(np.arange(n_groups))
    with as_progress(progress).task("distinct last level: assignment", total=n_groups, unit="prefix") as task:
        for p in range(parts):
            fr, fx = files[p]
            if not fr.exists():
                continue
            rows_p = np.fromfile(fr, dtype=np.int64)  # ascending: appended in stream order
            res_p = np.fromfile(fx, dtype=np.float32).reshape(len(rows_p), d)
            mine = [groups[gi] for gi in np.flatnonzero(part_groups == p).tolist()]
            for g in mine:
                pos = np.searchsorted(rows_p, g)
                rg = res_p[pos]
                old = codes[g, -1].astype(np.int64)
                moved += q.solve_distinct([g], lambda _g, rg=rg: rg, codes)
                new = codes[g, -1].astype(np.int64)
                ch = np.flatnonzero(new != old)
                if len(ch):
                    r64 = rg[ch].astype(np.float64)
                    dsse += float(((r64 - c_last[new[ch]]) ** 2).sum() - ((r64 - c_last[old[ch]]) ** 2).sum())
            task.advance(len(mine))
            fr.unlink()
            fx.unlink()
    return moved, dsse, members


# ---- build ----------------------------------------------------------------------------------
def build_streaming(
    source,
    out: str | os.PathLike,
    config: RQKMeansConfig | None = None,
    *,
    normalize: bool = False,
    categories: Mapping[str, str | None] | None = None,
    fingerprints: bool = False,
    overwrite: bool = False,
    warn_collisions: float = 0.5,
    run: StreamingRun = StreamingRun(),
    progress: Progress | None = None,
) -> SemanticTokenizer:
    """Build a tokenizer directory at ``out`` from embeddings of any size (see the module doc).

    ``source`` is a path / URI / list of Parquet files (read with the default columns), an
    :class:`~tokenizer_kit.io.EmbeddingSource` (a path and how to read it: ids file, columns,
    ``row_ids``) or an :class:`EmbeddingStream`; ``config`` the typed RQ-Kmeans config
    (default: ``RQKMeansConfig()``), validated whole before any work; ``run`` how the passes
    run in bounded memory (:class:`StreamingRun`).
    ``categories`` maps ``str(item_id)`` to a top category (level-1 NMI). Right after training,
    the collisions of the whole catalogue are predicted from the training sample's codes
    (:func:`~tokenizer_kit.quantizers.warn_if_crowded`) and a WARNING is logged when at
    least ``warn_collisions`` of the items are predicted to share a SID. Returns the
    tokenizer without its SIDs in memory (load them with ``from_pretrained(out)``).

    ``fingerprints``: also fingerprint every item's embedding in the encode pass
    (:func:`~tokenizer_kit.indexer.embedding_hash`, 8 bytes per item), returned as
    ``tok.emb_hash`` (n,) uint64 in the order of ``sids.parquet``: what an index needs to
    refuse a known item arriving with another embedding (``SIDIndex.assign``).
    """
    q = _streaming_quantizer(config)
    out, stream = _check_build(q, source, out, overwrite=overwrite)
    tok = SemanticTokenizer(q, normalize=normalize)
    bs = aligned_batch_size(run.batch_size)
    t0 = time.perf_counter()
    if stream.has_ids:  # an ids-only pass before any training: a repeated id fails in seconds
        spill = run.scratch_dir if run.scratch_dir is not None else (out.parent if out.parent.is_dir() else None)
        check_unique_ids(stream, bs, key_budget=run.key_budget, spill_dir=spill)
    times, predicted = _train_on_sample(tok, stream, warn_collisions=warn_collisions, progress=progress)
    scratch_base = Path(run.scratch_dir) if run.scratch_dir is not None else out.parent
    scratch_base.mkdir(parents=True, exist_ok=True)
    scratch = None
    try:
        with write_artifact(out, TOKENIZER, overwrite=overwrite) as w:
            scratch = _fresh_scratch(scratch_base, out.name)  # under the writer lock
            hashes = np.zeros(stream.n, np.uint64) if fingerprints else None
            times.update(_encode_pass(tok, stream, w.dir, scratch, bs, categories=categories, key_budget=run.key_budget, progress=progress,
                                      hashes=hashes))
            tok.info = _build_info(stream, bs, times, predicted, total_seconds=time.perf_counter() - t0)
            tok.write_files(w.dir)  # weights and attachments; the SIDs are written by the encode pass
            w.fields.update(tok.manifest_fields())
            w.fields["n_items"] = int(stream.n)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    tok.path = out
    if hashes is not None:
        tok.emb_hash = hashes
    logger.info("streaming build of %d x %d -> %s in %.1fs", stream.n, stream.dim, out, tok.info["total_seconds"])
    return tok


def _streaming_quantizer(config: RQKMeansConfig | None) -> RQKMeans:
    """The unfitted quantizer of a streaming build, its whole config validated before any work."""
    method = resolve_method(None, config)
    if method not in STREAMING_METHODS:
        raise InputError(f"streaming builds support rq-kmeans; method {method!r} trains on the whole input in memory (use SemanticTokenizer.build)")
    return make_quantizer(method, config)


def _check_build(q: RQKMeans, source, out, *, overwrite: bool):
    """The output path and the input stream, each checked before any work."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ArtifactError(f"output directory {out} already exists; set `overwrite` to replace it, or choose another path")
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"output path {out} exists and is not a directory; remove it or choose another path")
    stream = _as_stream(source)
    n, d = stream.n, stream.dim
    if n == 0 or d == 0:
        raise InputError(f"{stream.source}: empty input ({n} rows of dimension {d}); need at least one item with d >= 1")
    if n < max(q.codebook_sizes):
        q._check_fit_input(np.empty((n, d), np.float32))
    return out, stream


def _train_on_sample(tok: SemanticTokenizer, stream: EmbeddingStream, *, warn_collisions: float, progress) -> tuple[dict, dict | None]:
    """Draw the training sample in one pass, fit every level on it, and predict the catalogue's
    collisions from the sample's codes (a WARNING when crowded). Returns the timings and the prediction."""
    q, n = tok.quantizer, stream.n
    t0 = time.perf_counter()
    rows = q.sample_rows(n)
    with as_progress(progress).task("sample", total=len(rows), unit="item") as task:
        sample = tok.preprocess(stream.take(rows), what=stream.source)
        task.advance(len(rows))
    t_sample = time.perf_counter() - t0
    sample_codes = q.fit_sample(sample, n_total=n, progress=progress)
    del sample
    t_train = time.perf_counter() - t0 - t_sample
    predicted = None
    t1 = time.perf_counter()
    if not q._joint_last_level:  # the distinct step removes within-prefix collisions itself
        predicted = warn_if_crowded(sample_codes, n, q.codebook_sizes, threshold=warn_collisions, seed=q.config.seed)
    return {"sample_seconds": t_sample, "fit_seconds": t_train, "predict_seconds": time.perf_counter() - t1}, predicted


def _fresh_scratch(scratch_base: Path, name: str) -> Path:
    """A new scratch directory for the build of ``name``; scratch left by a killed earlier build
    of the same output is stale (the caller holds the writer lock) and is removed first."""
    pat = re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}\.scratch$")
    for stale in scratch_base.iterdir():
        if pat.match(stale.name) and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".scratch", dir=scratch_base))


def _encode_pass(tok: SemanticTokenizer, stream: EmbeddingStream, staging: Path, scratch: Path, bs: int, *, categories, key_budget: int, progress,
                 hashes: np.ndarray | None = None) -> dict:
    """One streaming pass that encodes every item and writes ``sids.parquet`` into ``staging``
    with the metrics of the same pass (``tok.metrics``); with the distinct-last-level step the
    codes are held (int16) until it has run, then written. ``hashes`` (n,) uint64, if given, is
    filled with each raw embedding's fingerprint in the same pass. Returns the timings."""
    from ..io import embedding_hash

    q, n = tok.quantizer, stream.n
    prog = as_progress(progress)
    joint = q._joint_last_level and q.config.beam_size == 1
    cats = (lambda ids: [categories.get(str(i)) for i in ids.tolist()]) if categories is not None else (lambda ids: None)
    moved = members = 0
    spent = {"codes": 0.0, "metrics": 0.0, "write": 0.0}  # the encode pass's parts, for the build record
    metrics = StreamingMetrics(q.codebook_sizes, key_budget=key_budget, spill_dir=scratch)
    try:
        small = np.int16 if max(q.codebook_sizes) <= 32767 else np.int32
        codes_all = np.empty((n, q.levels), dtype=small) if joint else None
        t1 = time.perf_counter()
        with SIDWriter(staging / SIDS_NAME) as writer, prog.task("encode", total=n, unit="item") as task:
            for b in stream.batches(bs):
                ta = time.perf_counter()
                if hashes is not None:
                    hashes[b.start : b.start + len(b.vectors)] = embedding_hash(b.vectors)
                xp = tok.preprocess(b.vectors, what=stream.source)
                sq = np.empty((len(xp), 2), np.float64)
                codes = q.encode(xp, sq_norms=sq)  # the reconstruction error comes out of the encode's blocks
                tb = time.perf_counter()
                metrics.add_sq_norms(sq, xp.shape[1])
                if joint:
                    codes_all[b.start : b.start + len(codes)] = codes
                else:
                    metrics.add_codes(codes, cats(b.ids))
                tc = time.perf_counter()
                if not joint:
                    writer.write(b.ids, codes)
                spent["codes"] += tb - ta
                spent["metrics"] += tc - tb
                spent["write"] += time.perf_counter() - tc
                task.advance(len(codes))
            t_encode = time.perf_counter() - t1
            t_distinct = 0.0
            if joint:
                t2 = time.perf_counter()
                moved, dsse, members = _distinct_streaming(q, tok, stream, codes_all, bs, scratch, progress=progress)
                t_distinct = time.perf_counter() - t2
                metrics.add_sse_delta(dsse)
                with prog.task("write SIDs", total=n, unit="item") as wtask:
                    for b in stream.batches(bs, vectors=False):
                        codes = codes_all[b.start : b.start + len(b.ids)]
                        metrics.add_codes(codes, cats(b.ids))
                        writer.write(b.ids, codes)
                        wtask.advance(len(b.ids))
        tok.metrics = metrics.result()
        if q.config.balanced:
            tok.metrics["balance_misses"] = q.warn_balance(metrics.counts)
    finally:
        metrics.close()
    q._summary.update({"distinct_last_level_moved": int(moved), "distinct_last_level_items": int(members)})
    return {"encode_seconds": t_encode, **{f"encode_{k}_seconds": v for k, v in spent.items()},
            "distinct_last_level_seconds": t_distinct}


def _build_info(stream: EmbeddingStream, bs: int, times: dict, predicted: dict | None, *, total_seconds: float) -> dict:
    info = {
        "source": str(stream.source),
        "n_items": int(stream.n),
        "streaming": True,
        "batch_size": int(bs),
        **times,  # sample, fit, predict, encode (with its codes, metrics and write parts), distinct-last-level seconds
        "total_seconds": total_seconds,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if predicted is not None:
        info["predicted_collision_rate"] = predicted["collision_rate"]
        info["predicted_largest_bucket"] = predicted["largest_bucket"]
    return info


# ---- assign ---------------------------------------------------------------------------------
def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values of ``a`` (sorted in place: no copy beyond the result)."""
    a = np.asarray(a, np.int64)
    a.sort()
    if len(a) < 2:
        return a
    keep = np.empty(len(a), bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _index_keys_from_disk(tok: SemanticTokenizer, batch_size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted SID keys, sorted id hashes) of the items in ``tok``'s sids.parquet, read in
    batches (16 bytes per indexed item) when the tokenizer was loaded without its SIDs."""
    import pyarrow.parquet as pq

    if tok.path is None or not (Path(tok.path) / SIDS_NAME).exists():
        return None
    pf = pq.ParquetFile(Path(tok.path) / SIDS_NAME)
    n = pf.metadata.num_rows
    keys = np.empty(n, np.int64)
    hashes = np.empty(n, np.int64)
    cols = ["item_id"] + [f"code_{l}" for l in range(tok.levels)]
    pos = 0
    for rb in pf.iter_batches(batch_size=batch_size, columns=cols):
        m = rb.num_rows
        codes = np.stack([rb.column(f"code_{l}").to_numpy().astype(np.int64) for l in range(tok.levels)], 1)
        keys[pos : pos + m] = sid_keys_of(codes, tok.codebook_sizes)
        hashes[pos : pos + m] = _id_hashes(rb.column("item_id").to_numpy(zero_copy_only=False))
        pos += m
    return _sorted_unique(keys[:pos]), _sorted_unique(hashes[:pos])


def _member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(len(keys), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


class AssignSummary:
    """What ``assign`` reports of the new items, folded batch by batch in bounded memory: the
    collisions among their codes and, when ``tok`` holds indexed items, how many of their ids
    are already indexed and how many of their codes equal an indexed SID (8 bytes per indexed
    item for each). The local assign folds its batches, the sharded one its written parts."""

    def __init__(self, tok: SemanticTokenizer, *, spill_dir, key_budget: int = DEFAULT_KEY_BUDGET,
                 batch_size: int = DEFAULT_STREAM_BATCH):
        self.tok = tok
        self.index_keys = self.index_ids = None
        if tok.codes is not None and tok.item_ids is not None:
            self.index_keys = _sorted_unique(sid_keys_of(tok.codes, tok.codebook_sizes))
            self.index_ids = _sorted_unique(_id_hashes(tok.item_ids))
        else:  # loaded without its SIDs: the indexed SIDs are read from disk in batches
            found = _index_keys_from_disk(tok, batch_size)
            if found is not None:
                self.index_keys, self.index_ids = found
        self.metrics = StreamingMetrics(tok.codebook_sizes, key_budget=key_budget, spill_dir=spill_dir)
        self.known = self.shared = 0

    @property
    def needs_ids(self) -> bool:
        """Whether :meth:`add` reads the items' ids (only against an index)."""
        return self.index_ids is not None

    def add(self, ids: np.ndarray | None, codes: np.ndarray) -> None:
        """Fold one batch: ``codes`` (b, L) and the items' ``ids`` (b,) (None when not :attr:`needs_ids`)."""
        self.metrics.add_codes(codes)
        if self.index_keys is not None:
            self.shared += int(_member(self.index_keys, sid_keys_of(codes, self.tok.codebook_sizes)).sum())
            self.known += int(_member(self.index_ids, _id_hashes(ids)).sum())

    def result(self) -> dict[str, Any]:
        res = self.metrics.result()
        return {"already_indexed_items": int(self.known), "sids_shared_with_index": int(self.shared),
                "collision_rate": res["collision_rate"], "unique_sids": res["unique_sids"], "largest_bucket": res["largest_bucket"]}

    def close(self) -> None:
        self.metrics.close()


def assign_streaming(
    tok: SemanticTokenizer,
    source,
    out: str | os.PathLike,
    *,
    run: StreamingRun = StreamingRun(),
    progress: Progress | None = None,
    encode: Callable[[SemanticTokenizer, np.ndarray], np.ndarray] = encode_batch,
) -> dict[str, Any]:
    """Encode every item of ``source`` with ``tok`` into ``out`` (Parquet: item_id, code_0..,
    sid), batch by batch and atomically; returns a summary: items, collisions among them, and,
    when ``tok`` holds indexed items, how many ids are already indexed and how many new codes
    equal an indexed SID (8 bytes per indexed item for each). ``source`` as for
    :func:`build_streaming`; ``run`` how the pass runs in bounded memory; ``encode`` the
    per-batch function (:func:`encode_batch`)."""
    stream = _as_stream(source)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise ArtifactError(f"{out} is a directory; `out` must be a .parquet file path")
    if stream.n == 0:
        raise InputError(f"{stream.source}: empty input (0 rows); nothing to assign")
    bs = aligned_batch_size(run.batch_size)  # a wrong dimension fails on the first batch, after its row checks
    scratch_base = Path(run.scratch_dir) if run.scratch_dir is not None else out.parent
    scratch_base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".scratch", dir=scratch_base))
    t0 = time.perf_counter()
    try:
        summary = AssignSummary(tok, spill_dir=scratch, key_budget=run.key_budget, batch_size=bs)
        try:
            with atomic_write(out) as tmp, SIDWriter(tmp) as writer, as_progress(progress).task("assign", total=stream.n, unit="item") as task:
                for b in stream.batches(bs):
                    codes = encode(tok, b.vectors)
                    writer.write(b.ids, codes)
                    summary.add(b.ids, codes)
                    task.advance(len(codes))
            res = summary.result()
        finally:
            summary.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"n_items": int(stream.n), "out": str(out), **res, "seconds": time.perf_counter() - t0}
