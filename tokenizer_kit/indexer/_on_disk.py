"""The SID index of a tokenizer directory, built from files of items in bounded memory.

Two entry points share one build:

* ``index_on_disk(path)`` gives a freshly built tokenizer directory the index that
  ``SIDIndex.for_tokenizer(tok)`` followed by ``save`` gives it, from the directory's own
  ``sids.parquet``;
* ``index_from_parts(path, parts)`` installs as the directory's index the items of Parquet
  parts (``item_id, code_0..code_{L-1}`` and optionally ``emb_hash`` and a rank column such
  as ``err``), the rows numbered across the parts in order: what ``engines.index_shards``
  writes, installed without gathering every SID in one process (``SIDIndex.save`` of the
  index ``engines.load_sharded_index`` reads writes the same files).

The build, without holding the catalogue in memory:

1. **count** the items per first-level code (the ``code_0`` column, in batches);
2. **spill** every item's code key (and its rank) to bucket files that are ranges of the first
   level, about ``bucket_rows`` items each (``policies.GroupSpill``);
3. **resolve** the buckets in SID order, one in memory at a time: the policy numbers each
   group (``group_positions``: by rank, then input row, as ``SIDIndex.build`` and
   ``engines.index_shards`` number them); the extra level goes to a memory-mapped file by row,
   and the bucket's trie is appended to the trie's parts (``TrieParts``);
4. **write** the new directory: ``sids.parquet`` with the extra level, batch by batch,
   ``index.safetensors`` and ``trie.safetensors`` streamed from scratch files (item ids, raw
   codes and embedding fingerprints spilled as they are read; ``io.write_safetensors_parts``),
   the manifest last, committed atomically.

Memory: one batch, one bucket with its trie (and ``index_on_disk``'s caller's fingerprints, 8
bytes an item); the scratch files (about 70 bytes an item) live beside the directory.

``reassign`` moves items by their vectors, and the items that do not fit under their prefix go
under another one, so it is not resolved group by group: ``index_on_disk`` resolves it from the
same sorted buckets in two steps, with the SIDs ``reassign_sids`` gives (``_reassign_on_disk``),
and writes the trie from the final SIDs spilled again.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..build import SIDS_NAME, TOKENIZER, SemanticTokenizer
from ..errors import ArtifactError, InputError, TokenizerKitError
from ..io import SIDWriter, normalise_ids, write_artifact, write_safetensors_parts
from ._ids import ids_increase
from ._index import INDEX_FORMAT, IndexConfig, _now, index_section
from ._segments import SEGMENT_PREFIX
from ._trie import TrieParts
from ._reassign_on_disk import resolve_reassign
from .policies import GroupSpill, first_level_buckets, get_policy, key_codes, sid_keys

__all__ = ["index_on_disk", "index_from_parts", "reassign_on_disk_refusal", "DEFAULT_INDEX_BUCKET_ROWS"]

logger = logging.getLogger(__name__)

DEFAULT_INDEX_BUCKET_ROWS = 1 << 16  # items resolved at once: ~10 MB with the sort's copies and the bucket's trie
_BATCH_ROWS = 1 << 16
_CHUNK = 1 << 18  # rows per chunk of the streamed index arrays


@dataclass
class _Items:
    """The items an index is built from: Parquet ``files`` read in order (rows numbered across
    them) with ``item_id`` and ``code_0..``; ``rank`` the column that orders a group's items
    (None: input row); ``hashes`` (n,) the fingerprints by row, else each file's ``emb_hash``
    column (0 where a file has none); ``normalise``: ids checked and normalised as they are read
    (parts written by another run); ``fix``: how to fix a code outside its codebook."""

    files: list[Path]
    n: int
    int_ids: bool
    fix: str
    rank: str | None = None
    hashes: np.ndarray | None = None
    normalise: bool = False

    @classmethod
    def of(cls, files: Sequence[str | os.PathLike], **kw) -> "_Items":
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = [Path(f) for f in files]
        metas = [pq.ParquetFile(f).metadata for f in files]
        schemas = [m.schema.to_arrow_schema() for m in metas]
        for f, s in zip(files, schemas):
            if "item_id" not in s.names:
                raise InputError(f"{f} has no item_id column (it has {s.names}); expected item_id, code_0.. as `assign` writes them")
        n = sum(m.num_rows for m in metas)
        return cls(files=files, n=n, int_ids=all(pa.types.is_integer(s.field("item_id").type) for s in schemas), **kw)

    def read(self, sizes: Sequence[int], batch_rows: int, *, levels: int, columns: Sequence[str] = ()) -> Iterator[tuple[Path, Any, np.ndarray]]:
        """(file, record batch, codes (m, levels) int64) batch by batch, with ``columns`` where a
        file has them, each code checked inside its codebook."""
        import pyarrow.parquet as pq

        want = [f"code_{l}" for l in range(levels)]
        for f in self.files:
            pf = pq.ParquetFile(f)
            missing = [c for c in want if c not in pf.schema_arrow.names]
            if missing:
                raise InputError(f"{f} lacks {missing}: expected the {len(sizes)} code levels of this tokenizer (item_id, code_0..)")
            cols = want + [c for c in columns if c in pf.schema_arrow.names and c not in want]
            for rb in pf.iter_batches(batch_size=batch_rows, columns=cols, use_threads=False):
                codes = np.stack([rb.column(c).to_numpy().astype(np.int64) for c in want], 1).reshape(rb.num_rows, levels)
                if len(codes) and ((codes < 0).any() or (codes >= np.asarray(sizes[:levels])).any()):
                    raise ArtifactError(f"{f}: a code lies outside its codebook {list(sizes[:levels])}; {self.fix}")
                yield f, rb, codes

    def ids_of(self, rb, f: Path) -> np.ndarray:
        ids = rb.column("item_id").to_numpy(zero_copy_only=False)
        if self.normalise:
            ids = normalise_ids(ids, str(f))
        if not self.int_ids and ids.dtype.kind in "iu":  # string ids elsewhere: every id as a string (``concat_ids``)
            ids = np.asarray([str(i) for i in ids.tolist()], object)
        return ids

    def hashes_of(self, rb, start: int) -> np.ndarray:
        if self.hashes is not None:
            return np.asarray(self.hashes[start : start + rb.num_rows], np.uint64)
        if "emb_hash" in rb.schema.names:
            return rb.column("emb_hash").to_numpy().astype(np.uint64)
        return np.zeros(rb.num_rows, np.uint64)


def index_on_disk(path: str | os.PathLike, *, hashes: np.ndarray | None = None, config: IndexConfig | None = None,
                  embeddings=None, bucket_rows: int = DEFAULT_INDEX_BUCKET_ROWS, batch_rows: int = _BATCH_ROWS) -> dict[str, Any]:
    """Index the unindexed tokenizer directory ``path`` under ``config.policy`` (default
    ``suffix``) in bounded memory (see the module doc), with the items' embedding fingerprints
    ``hashes`` (n,) uint64 in the order of its items (default: unknown). Returns the manifest's
    ``sections.index``: the files and section ``SIDIndex.for_tokenizer`` + ``save`` give.

    ``suffix`` (and ``none``) index an unindexed directory. ``reassign`` needs ``embeddings``
    (an ``io.EmbeddingSource`` or path: the directory's items in its order, which give the
    fingerprints) and also re-indexes a directory whose index keeps the codes (``suffix``,
    ``none``) and has neither segments nor retired SIDs (``reassign_on_disk_refusal``)."""
    config = (config or IndexConfig()).validate()
    policy = get_policy(config.policy)
    reassign = policy.name == "reassign"
    if not reassign and (not policy.by_group or policy.extra_levels != 1):
        raise InputError(f"the {policy.name} policy is not resolved group by group with a suffix level; index it in memory "
                         "(SIDIndex.for_tokenizer, `tokenizer-kit index`)")
    if reassign and embeddings is None:
        raise InputError("the reassign policy needs the items' embeddings to rank free codes; pass them (`--embeddings`)")
    path = Path(path)
    with write_artifact(path, TOKENIZER, overwrite=True) as w:
        tok = SemanticTokenizer.from_pretrained(path, load_sids=False)
        version, history, old_length = _previous(path, tok, reassign)
        items = _tokenizer_items(path, tok, hashes)
        built = _build(tok, items, path, w.dir, policy, bucket_rows=bucket_rows, batch_rows=batch_rows, embeddings=embeddings)
        n, groups = items.n, built["groups"]
        suffix_size = max(groups["max_suffix"], int(config.suffix_reserve)) if policy.extra_levels else 0
        stats = _stats(policy, n, built)
        if old_length is not None:  # as SIDIndex.for_tokenizer counts it: every SID when the length changed
            stats["changed_sids_vs_previous"] = stats["moved_items"] if old_length == policy.sid_length(tok.levels) else n
        history = history + [{"version": version, "event": "index", "policy": policy.name, "at": _now(), "items": n}]
        section = index_section(policy=policy.name, version=version, sid_length=policy.sid_length(tok.levels),
                                codebook_sizes=list(tok.codebook_sizes), level_sizes=policy.level_sizes(tok.codebook_sizes, suffix_size),
                                suffix_size=suffix_size, n_items=n, base_items=n, n_retired=0, stats=stats, history=history,
                                segments=[], ids_increasing=built["ids_increasing"])
        _commit(w, tok, section, n)
    logger.info("indexed %d items of %s on disk (%s policy)", n, path, policy.name)
    return section


def reassign_on_disk_refusal(tok, embeddings=None) -> str | None:
    """Why ``index_on_disk`` cannot (re-)index the loaded tokenizer ``tok`` under ``reassign``
    (None: it can): a previous index that moved codes, or holds segments or retired SIDs, is
    re-indexed from its merged arrays in memory (``SIDIndex.for_tokenizer``); so are embeddings
    (``embeddings``, when given) that do not list the tokenizer's items in its order, whose rows
    the in-memory index looks up by id (their ids are read, in batches)."""
    sec = tok.sections.get("index")
    if embeddings is not None:
        try:
            why = _embeddings_refusal(tok, embeddings)
        except TokenizerKitError as e:  # the in-memory build reads them again and reports it as it always has
            why = f"the embeddings cannot be read in batches ({e})"
        if why is not None:
            return why
    if not sec:
        return None
    if not get_policy(sec["policy"]).keeps_codes:
        return f"its {sec['policy']} index moved items away from their codes"
    if sec.get("segments"):
        return "its index has cold-start segments"
    if _retired_count(tok):
        return "its index has retired SIDs"
    return None


def _embeddings_refusal(tok, embeddings) -> str | None:
    """Why the embeddings are not the tokenizer's items in its order (None: they are)."""
    from ..io import EmbeddingSource

    stream = EmbeddingSource.of(embeddings).open()
    if stream.dim != tok.dim:
        return f"the embeddings have dimension {stream.dim}, the tokenizer {tok.dim}"
    if tok.path is None or not (Path(tok.path) / SIDS_NAME).exists():
        return "the tokenizer holds no items file"
    items = _Items.of([Path(tok.path) / SIDS_NAME], fix=f"the SIDs are corrupt, {TOKENIZER.fix}")
    if stream.n != items.n:
        return f"the embeddings hold {stream.n} rows, the tokenizer {items.n} items"
    theirs = stream.batches(_BATCH_ROWS, vectors=False)
    buf, start = np.zeros(0, np.int64), 0
    for f, rb, _ in items.read(tok.codebook_sizes, _BATCH_ROWS, levels=1, columns=["item_id"]):
        ours = items.ids_of(rb, f)
        while len(buf) < len(ours):
            b = next(theirs).ids
            if b is None:
                return "the embeddings have no item ids"
            buf = np.concatenate([buf, b]) if len(buf) else b
        mine, buf = buf[: len(ours)], buf[len(ours) :]
        if (ours.dtype.kind in "iu") != (mine.dtype.kind in "iu") or ours.tolist() != mine.tolist():
            return f"the embeddings list the items in another order (from row {start})"
        start += len(ours)
    return None


def _previous(path: Path, tok: SemanticTokenizer, reassign: bool) -> tuple[int, list[dict[str, Any]], int | None]:
    """(version, history, SID length) of the index a new one replaces: (1, [], None) for none."""
    sec = tok.sections.get("index")
    if not sec:
        return 1, [], None
    if not reassign:
        raise InputError(f"{path} is already indexed; re-index it with SIDIndex.for_tokenizer (`tokenizer-kit index`)")
    why = reassign_on_disk_refusal(tok)
    if why is not None:
        raise InputError(f"{path} cannot be indexed on disk: {why}; re-index it with SIDIndex.for_tokenizer (`tokenizer-kit index`)")
    version, history = _replaced(path, tok)
    return version, history, int(sec["sid_length"])


def index_from_parts(path: str | os.PathLike, parts: Sequence[str | os.PathLike], *, policy: str = "suffix", suffix_size: int = 0,
                     rank: str | None = None, stats: dict[str, Any] | None = None, event: dict[str, Any] | None = None,
                     bucket_rows: int = DEFAULT_INDEX_BUCKET_ROWS, batch_rows: int = _BATCH_ROWS) -> dict[str, Any]:
    """Install as the index of the tokenizer directory ``path`` the items of the Parquet ``parts``
    (``item_id, code_0..code_{L-1}``, optionally ``emb_hash``; rows numbered across the parts in
    order) under ``policy``, in bounded memory (see the module doc). Each group is numbered by
    the column ``rank`` (e.g. ``err``), then input row; parts that also carry the extra level
    (``code_L``, as ``engines.index_shards`` writes it) must agree with it. ``suffix_size``: the
    suffix level's size (at least the largest group); ``stats``: the section's statistics
    (default: ``SIDIndex.build``'s); ``event``: fields of the history entry (default: the time).
    An index already there is replaced: its version + 1, its history carried over; one with
    retired SIDs is refused (this build does not skip them). Returns ``sections.index``."""
    pol = get_policy(policy)
    if not pol.by_group or pol.extra_levels > 1:
        raise InputError(f"the {pol.name} policy is not resolved group by group; index it in memory (`tokenizer-kit index`)")
    path = Path(path)
    with write_artifact(path, TOKENIZER, overwrite=True) as w:
        tok = SemanticTokenizer.from_pretrained(path, load_sids=False)
        version, history = _replaced(path, tok)
        items = _Items.of(parts, fix="the parts do not hold this tokenizer's codes; assign the items with it again", rank=rank,
                          normalise=True)
        built = _build(tok, items, path, w.dir, pol, bucket_rows=bucket_rows, batch_rows=batch_rows)
        n = items.n
        size = max(int(suffix_size), built["groups"]["max_suffix"]) if pol.extra_levels else int(suffix_size)
        entry = {"version": version, "event": "index", "policy": pol.name, **(event if event is not None else {"at": _now()}), "items": n}
        section = index_section(policy=pol.name, version=version, sid_length=pol.sid_length(tok.levels),
                                codebook_sizes=list(tok.codebook_sizes), level_sizes=pol.level_sizes(tok.codebook_sizes, size),
                                suffix_size=size, n_items=n, base_items=n, n_retired=0,
                                stats=dict(stats) if stats is not None else _stats(pol, n, built), history=history + [entry],
                                segments=[], ids_increasing=built["ids_increasing"])
        _commit(w, tok, section, n)
    logger.info("installed %d items of %d parts as the index of %s (%s policy, version %d)", n, len(items.files), path, pol.name,
                version)
    return section


def _replaced(path: Path, tok: SemanticTokenizer) -> tuple[int, list[dict[str, Any]]]:
    """(version, history) of a new index replacing ``tok``'s (1 and none when it has none);
    refuses one with retired SIDs, which a new index built from parts would reissue."""
    sec = tok.sections.get("index")
    if not sec:
        return 1, []
    if int(sec.get("format", 1)) > INDEX_FORMAT:
        raise ArtifactError(f"the index was written in format {sec.get('format')}, newer than this tokenizer-kit reads ({INDEX_FORMAT}); upgrade")
    retired = _retired_count(tok)
    if retired:
        raise InputError(f"{path}'s index has {retired} retired SIDs that a new index must not reissue; "
                         "index in memory (`tokenizer-kit index` without --from-shards)")
    return int(sec["version"]) + 1, list(sec.get("history", []))


def _retired_count(tok: SemanticTokenizer) -> int:
    """SIDs retired by ``tok``'s stored index (base and segments), from its manifest (the
    index's arrays' shapes where an older manifest does not count them); 0 without an index."""
    sec = tok.sections.get("index") or {}
    if not sec:
        return 0
    if "n_retired" in sec:
        return int(sec["n_retired"])
    arr = tok.attachments.get("index") or {}
    base = int(np.asarray(arr["retired"]).size) // max(1, get_policy(sec["policy"]).sid_length(tok.levels)) if "retired" in arr else 0
    return base + sum(int(g.get("retired", 0)) for g in sec.get("segments", []))


def _commit(w, tok: SemanticTokenizer, section: dict[str, Any], n: int) -> None:
    """The quantizer's weights and the manifest fields into the artifact being written (the
    SIDs and the index files are written by ``_build``); a previous index's files are not
    carried over."""
    for name in [k for k in tok.attachments if k in ("index", "trie") or k.startswith(SEGMENT_PREFIX)]:
        del tok.attachments[name]
    tok.sections["index"] = section
    tok.write_files(w.dir)
    w.fields.update(tok.manifest_fields())
    w.fields["n_items"] = n


def _tokenizer_items(path: Path, tok: SemanticTokenizer, hashes) -> _Items:
    """The items of the unindexed tokenizer directory ``path`` (its ``sids.parquet``)."""
    if not (path / SIDS_NAME).exists():
        raise InputError(f"{path} holds no items to index; build it with `tokenizer-kit build-codebook` or SemanticTokenizer.build")
    items = _Items.of([path / SIDS_NAME], fix=f"the SIDs are corrupt, {TOKENIZER.fix}", hashes=hashes)
    listed = SemanticTokenizer.read_manifest(path).get("n_items", items.n)
    if listed != items.n:
        raise ArtifactError(f"{path / SIDS_NAME} has {items.n} rows, the manifest counts {listed} items; {TOKENIZER.fix}")
    if hashes is not None and len(hashes) != items.n:
        raise ArtifactError(f"{path}: {len(hashes)} embedding fingerprints for {items.n} items; build it again")
    return items


def _resolve_buckets(tok, items: _Items, scratch: Path, policy, bucket_rows: int, batch_rows: int):
    """Passes 1-3: the extra level of every row (memory-mapped (n,) int32; None when the policy
    adds none), the trie's parts, the group counts and the trie's seconds."""
    sizes, L = tok.codebook_sizes, tok.levels
    first = np.zeros(sizes[0], np.int64)
    for _, _, codes in items.read(sizes, batch_rows, levels=1):
        first += np.bincount(codes[:, 0], minlength=sizes[0])
    n_buckets, bucket_of = first_level_buckets(first, sizes, bucket_rows)
    (scratch / "buckets").mkdir()
    spill = GroupSpill(scratch / "buckets", n_buckets, bucket_of)
    rank = [items.rank] if items.rank else []
    for f, rb, codes in items.read(sizes, batch_rows, levels=L, columns=rank):
        if rank and rank[0] not in rb.schema.names:
            raise InputError(f"{f} has no {rank[0]} column to number its groups by, unlike the other parts; assign them again")
        spill.add(sid_keys(codes, sizes), rb.column(rank[0]).to_numpy() if rank else None)
    extra = policy.extra_levels > 0
    suffix = np.lib.format.open_memmap(scratch / "suffix.npy", mode="w+", dtype=np.int32, shape=(items.n,)) if extra else None
    trie = TrieParts(scratch / "trie", policy.sid_length(L))
    t_trie = 0.0
    for _, keys, rows, pos in spill.resolve(policy):
        if not len(keys):
            continue
        sids = key_codes(keys, sizes)
        if extra:
            suffix[rows] = pos
            sids = np.concatenate([sids, pos[:, None]], 1)
        t0 = time.perf_counter()
        trie.add(sids, rows)
        t_trie += time.perf_counter() - t0
    if extra:
        suffix.flush()
    return suffix, trie, spill.stats, t_trie


def _write_items(tok, items: _Items, out: Path, scratch: Path, suffix: np.ndarray | None, batch_rows: int,
                 final: np.ndarray | None = None) -> None:
    """``sids.parquet`` (with the extra level; the SIDs of the keys ``final`` (n,) by row where
    given, else the codes) into ``out``; the raw codes (int32), the item ids (int64, when they
    are integers) and the fingerprints (uint64) into scratch files for ``index.safetensors``.
    Parts that carry the extra level must agree with ``suffix``."""
    L, pos = tok.levels, 0
    stored = [f"code_{L}"] if suffix is not None else []
    with SIDWriter(out / SIDS_NAME) as writer, open(scratch / "raw_codes.bin", "wb") as fc, \
            open(scratch / "item_ids.bin", "wb") as fi, open(scratch / "emb_hash.bin", "wb") as fh:
        for f, rb, codes in items.read(tok.codebook_sizes, batch_rows, levels=L, columns=["item_id", "emb_hash"] + stored):
            m = len(codes)
            ids = items.ids_of(rb, f)
            sids = codes if final is None else key_codes(np.asarray(final[pos : pos + m]), tok.codebook_sizes)
            if suffix is not None:
                ext = np.asarray(suffix[pos : pos + m], np.int64)
                if stored and stored[0] in rb.schema.names and not np.array_equal(rb.column(stored[0]).to_numpy(), ext):
                    raise InputError(f"{f}: its suffix level differs from the groups its codes make; the parts changed since "
                                     "they were indexed, index them again")
                sids = np.concatenate([codes, ext[:, None]], 1)
            writer.write(ids, sids)
            fc.write(codes.astype(np.int32).tobytes())
            if items.int_ids:
                fi.write(ids.astype(np.int64).tobytes())
            fh.write(items.hashes_of(rb, pos).tobytes())
            pos += m


def _chunks(path: Path, dtype, shape=(-1,), rows: int = _CHUNK):
    data = np.memmap(path, dtype=dtype, mode="r").reshape(shape) if path.stat().st_size else np.zeros((0,) + tuple(shape[1:]), dtype)
    for s in range(0, len(data), rows):
        yield np.asarray(data[s : s + rows])


def _ids_increase(path: Path) -> bool:
    """The int64 ids of the scratch file ``path`` increase strictly (read in chunks)."""
    last = None
    for c in _chunks(path, np.int64):
        if (last is not None and len(c) and c[0] <= last) or not ids_increase(c):
            return False
        last = c[-1] if len(c) else last
    return True


def _build(tok, items: _Items, path: Path, out: Path, policy, *, bucket_rows: int, batch_rows: int, embeddings=None) -> dict[str, Any]:
    """Every index file of the new directory into ``out`` (scratch files beside the tokenizer
    directory ``path``); returns the group counts, the trie and the timings (and ``reassign``'s
    statistics). ``embeddings``: the items' vectors, for ``reassign``."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".index-scratch", dir=path.parent))
    try:
        n, L, S = items.n, tok.levels, policy.sid_length(tok.levels)
        bucket_rows, batch_rows = max(1, int(bucket_rows)), max(1, int(batch_rows))
        t0 = time.perf_counter()
        final, moved, extra_stats = None, None, {}
        if policy.name == "reassign":
            from ..io import EmbeddingSource

            res = resolve_reassign(tok, items, EmbeddingSource.of(embeddings), scratch, bucket_rows=bucket_rows, batch_rows=batch_rows)
            suffix, trie, groups, t_trie, final, moved, extra_stats = None, res.trie, res.groups, res.trie_s, res.final, res.moved, res.stats
            items.hashes = res.hashes
        else:
            suffix, trie, groups, t_trie = _resolve_buckets(tok, items, scratch, policy, bucket_rows, batch_rows)
        resolve_s = time.perf_counter() - t0 - t_trie
        _write_items(tok, items, out, scratch, suffix, batch_rows, final)
        arrays = {
            **({"item_ids": (np.int64, (n,), _chunks(scratch / "item_ids.bin", np.int64))} if items.int_ids else {}),
            "raw_codes": (np.int32, (n, L), _chunks(scratch / "raw_codes.bin", np.int32, (-1, L))),
            "moved": (np.uint8, (n,), (np.zeros(min(n - s, _CHUNK), np.uint8) if moved is None else np.asarray(moved[s : s + _CHUNK])
                                       for s in range(0, n, _CHUNK))),
            "emb_hash": (np.uint64, (n,), _chunks(scratch / "emb_hash.bin", np.uint64)),
            "retired": (np.int64, (0, S), []),
        }
        write_safetensors_parts(out / "index.safetensors", arrays)
        ids_increasing = bool(items.int_ids) and _ids_increase(scratch / "item_ids.bin")
        t1 = time.perf_counter()
        write_safetensors_parts(out / "trie.safetensors", trie.tensors())
        t_trie += time.perf_counter() - t1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"groups": groups, "trie": trie, "resolve_s": resolve_s, "trie_s": t_trie, "ids_increasing": ids_increasing,
            "policy_stats": extra_stats}


def _stats(policy, n: int, built: dict[str, Any]) -> dict[str, Any]:
    """``SIDIndex.build``'s statistics (``_build_stats`` and the trie's), in its order, from the
    groups' counts, the trie's leaves and the policy's own (``reassign``: moves and costs)."""
    groups, trie, own = built["groups"], built["trie"], dict(built.get("policy_stats") or {})
    moved = {k: own.pop(k) for k in ("moved_items", "moved_rate", "moved_other_prefix") if k in own}
    return {
        "policy": policy.name,
        "n_items": int(n),
        "collision_rate_codes": float(groups["items_in_collisions"] / n) if n else 0.0,
        "colliding_items_codes": int(groups["items_in_collisions"]),
        "largest_bucket_codes": int(groups["largest_group"]),
        "collision_rate_sids": float(trie.shared_items / n) if n else 0.0,
        "duplicate_sids": int(n - trie.n_leaves),
        "max_suffix": int(groups["max_suffix"]),
        "moved_items": 0,
        "moved_rate": 0.0,
        "moved_other_prefix": 0,
        **moved,
        "resolve_seconds": built["resolve_s"],
        **own,
        "trie_build_seconds": built["trie_s"],
        "trie_nodes": trie.n_nodes,
        "trie_bytes": trie.nbytes,
    }
