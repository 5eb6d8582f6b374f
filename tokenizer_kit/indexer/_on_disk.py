"""The SID index of a tokenizer directory, built from its files in bounded memory.

``index_on_disk(path)`` gives a freshly built tokenizer directory the index that
``SIDIndex.for_tokenizer(tok)`` followed by ``save`` gives it (the same SIDs, trie, index
arrays and manifest section), without holding the catalogue in memory:

1. **count** the items per first-level code (``sids.parquet``'s ``code_0``, in batches);
2. **spill** every item's code key to bucket files that are ranges of the first level, about
   ``bucket_rows`` items each (``policies.GroupSpill``);
3. **resolve** the buckets in SID order, one in memory at a time: the policy numbers each
   group (``group_positions``: by input row, as ``SIDIndex.build`` numbers them without
   vectors); the extra level goes to a memory-mapped file by row, and the bucket's trie is
   appended to the trie's parts (``TrieParts``);
4. **write** the new directory: ``sids.parquet`` with the extra level, batch by batch,
   ``index.safetensors`` and ``trie.safetensors`` streamed from scratch files
   (``io.write_safetensors_parts``), the manifest last, committed atomically.

Memory: one batch, one bucket with its trie, and the caller's embedding fingerprints (8 bytes
an item); the scratch files (about 60 bytes an item) live beside the directory. Policies that
rank items by their vectors across the whole SID space (``reassign``) are indexed in memory.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..build import SIDS_NAME, TOKENIZER, SemanticTokenizer
from ..errors import ArtifactError, InputError
from ..io import SIDWriter, write_artifact, write_safetensors_parts
from ._index import IndexConfig, _now, index_section
from ._trie import TrieParts
from .policies import GroupSpill, first_level_buckets, get_policy, sid_keys

__all__ = ["index_on_disk", "DEFAULT_INDEX_BUCKET_ROWS"]

logger = logging.getLogger(__name__)

DEFAULT_INDEX_BUCKET_ROWS = 1 << 16  # items resolved at once: ~10 MB with the sort's copies and the bucket's trie
_BATCH_ROWS = 1 << 16


def index_on_disk(path: str | os.PathLike, *, hashes: np.ndarray | None = None, config: IndexConfig | None = None,
                  bucket_rows: int = DEFAULT_INDEX_BUCKET_ROWS, batch_rows: int = _BATCH_ROWS) -> dict[str, Any]:
    """Index the unindexed tokenizer directory ``path`` under ``config.policy`` (default
    ``suffix``) in bounded memory (see the module doc), with the items' embedding fingerprints
    ``hashes`` (n,) uint64 in the order of its items (default: unknown). Returns the manifest's
    ``sections.index``. Only policies that resolve a group from its own rows and add one level
    (``suffix``); an already indexed directory is re-indexed by ``SIDIndex.for_tokenizer``."""
    config = (config or IndexConfig()).validate()
    policy = get_policy(config.policy)
    if not policy.by_group or policy.extra_levels != 1:
        raise InputError(f"the {policy.name} policy is not resolved group by group with a suffix level; index it in memory "
                         "(SIDIndex.for_tokenizer, `tokenizer-kit index`)")
    path = Path(path)
    with write_artifact(path, TOKENIZER, overwrite=True) as w:
        tok = SemanticTokenizer.from_pretrained(path, load_sids=False)
        if tok.sections.get("index"):
            raise InputError(f"{path} is already indexed; re-index it with SIDIndex.for_tokenizer (`tokenizer-kit index`)")
        n = _checked_rows(path, tok, hashes)
        scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".index-scratch", dir=path.parent))
        try:
            section = _index_files(tok, path / SIDS_NAME, w.dir, scratch, n, policy, config, hashes,
                                   bucket_rows=max(1, int(bucket_rows)), batch_rows=max(1, int(batch_rows)))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        tok.sections["index"] = section
        tok.write_files(w.dir)  # the quantizer's weights (the SIDs and the index files are written above)
        w.fields.update(tok.manifest_fields())
        w.fields["n_items"] = n
    logger.info("indexed %d items of %s on disk (%s policy)", n, path, policy.name)
    return section


def _checked_rows(path: Path, tok: SemanticTokenizer, hashes) -> int:
    import pyarrow.parquet as pq

    if not (path / SIDS_NAME).exists():
        raise InputError(f"{path} holds no items to index; build it with `tokenizer-kit build-codebook` or SemanticTokenizer.build")
    n = pq.ParquetFile(path / SIDS_NAME).metadata.num_rows
    listed = SemanticTokenizer.read_manifest(path).get("n_items", n)
    if listed != n:
        raise ArtifactError(f"{path / SIDS_NAME} has {n} rows, the manifest counts {listed} items; {TOKENIZER.fix}")
    if hashes is not None and len(hashes) != n:
        raise ArtifactError(f"{path}: {len(hashes)} embedding fingerprints for {n} items; build it again")
    return n


def _code_batches(sids_path: Path, tok: SemanticTokenizer, batch_rows: int, *, ids: bool = False, levels: int | None = None):
    """(ids or None, codes (m, levels) int64) of ``sids_path`` batch by batch, each code checked
    inside its codebook."""
    import pyarrow.parquet as pq

    L = tok.levels if levels is None else levels
    sizes = tok.codebook_sizes
    cols = (["item_id"] if ids else []) + [f"code_{l}" for l in range(L)]
    for rb in pq.ParquetFile(sids_path).iter_batches(batch_size=batch_rows, columns=cols):
        codes = np.stack([rb.column(f"code_{l}").to_numpy().astype(np.int64) for l in range(L)], 1)
        if len(codes) and ((codes < 0).any() or (codes >= np.asarray(sizes[:L])).any()):
            raise ArtifactError(f"{sids_path}: a code lies outside its codebook {sizes[:L]}; the SIDs are corrupt, {TOKENIZER.fix}")
        yield (rb.column("item_id").to_numpy(zero_copy_only=False) if ids else None), codes


def _keys_codes(keys: np.ndarray, sizes) -> np.ndarray:
    """Codes (m, L) of mixed-radix keys (``sid_keys`` inverted)."""
    out = np.empty((len(keys), len(sizes)), np.int64)
    rest = keys.copy()
    for l in range(len(sizes) - 1, -1, -1):
        rest, out[:, l] = np.divmod(rest, int(sizes[l]))
    return out


def _resolve_buckets(tok, sids_path: Path, scratch: Path, n: int, policy, bucket_rows: int, batch_rows: int):
    """Passes 1-3: the extra level of every row (memory-mapped (n,) int32), the trie's parts and
    the group counts."""
    sizes = tok.codebook_sizes
    first = np.zeros(sizes[0], np.int64)
    for _, codes in _code_batches(sids_path, tok, batch_rows, levels=1):
        first += np.bincount(codes[:, 0], minlength=sizes[0])
    n_buckets, bucket_of = first_level_buckets(first, sizes, bucket_rows)
    (scratch / "buckets").mkdir()
    spill = GroupSpill(scratch / "buckets", n_buckets, bucket_of)
    for _, codes in _code_batches(sids_path, tok, batch_rows):
        spill.add(sid_keys(codes, sizes))
    suffix = np.lib.format.open_memmap(scratch / "suffix.npy", mode="w+", dtype=np.int32, shape=(n,))
    trie = TrieParts(scratch / "trie", tok.levels + 1)
    t_trie = 0.0
    for _, keys, rows, pos in spill.resolve(policy):
        if not len(keys):
            continue
        suffix[rows] = pos
        sids = np.concatenate([_keys_codes(keys, sizes), pos[:, None]], 1)
        t0 = time.perf_counter()
        trie.add(sids, rows)
        t_trie += time.perf_counter() - t0
    suffix.flush()
    return suffix, trie, spill.stats, t_trie


def _write_sids(tok, sids_path: Path, out: Path, scratch: Path, suffix: np.ndarray, batch_rows: int) -> bool:
    """``sids.parquet`` with the extra level into ``out``; the raw codes (int32) and, when they
    are integers, the item ids (int64) into scratch files for ``index.safetensors``. Returns
    whether the ids are integers."""
    int_ids = None
    pos = 0
    with SIDWriter(out / SIDS_NAME) as writer, open(scratch / "raw_codes.bin", "wb") as fc, open(scratch / "item_ids.bin", "wb") as fi:
        for ids, codes in _code_batches(sids_path, tok, batch_rows, ids=True):
            m = len(codes)
            writer.write(ids, np.concatenate([codes, suffix[pos : pos + m, None].astype(np.int64)], 1))
            fc.write(codes.astype(np.int32).tobytes())
            int_ids = ids.dtype.kind in "iu" if int_ids is None else int_ids
            if int_ids:
                fi.write(ids.astype(np.int64).tobytes())
            pos += m
    return bool(int_ids)


def _chunks(path: Path, dtype, shape=(-1,), rows: int = 1 << 20):
    data = np.memmap(path, dtype=dtype, mode="r").reshape(shape) if path.stat().st_size else np.zeros((0,) + tuple(shape[1:]), dtype)
    for s in range(0, len(data), rows):
        yield np.asarray(data[s : s + rows])


def _ids_increase(path: Path) -> bool:
    """The int64 ids of the scratch file ``path`` increase strictly (read in chunks)."""
    last = None
    for c in _chunks(path, np.int64):
        if (last is not None and len(c) and c[0] <= last) or (len(c) > 1 and not bool((c[1:] > c[:-1]).all())):
            return False
        last = c[-1] if len(c) else last
    return True


def _index_files(tok, sids_path: Path, out: Path, scratch: Path, n: int, policy, config: IndexConfig, hashes, *, bucket_rows: int,
                 batch_rows: int) -> dict[str, Any]:
    """Every index file of the new directory into ``out``; returns its ``sections.index``."""
    L, S, sizes = tok.levels, tok.levels + 1, tok.codebook_sizes
    t0 = time.perf_counter()
    suffix, trie, groups, t_trie = _resolve_buckets(tok, sids_path, scratch, n, policy, bucket_rows, batch_rows)
    resolve_s = time.perf_counter() - t0 - t_trie
    int_ids = _write_sids(tok, sids_path, out, scratch, suffix, batch_rows)
    zeros = (np.zeros(min(n - s, 1 << 20), np.uint8) for s in range(0, n, 1 << 20))
    emb = (np.asarray(hashes[s : s + (1 << 20)], np.uint64) for s in range(0, n, 1 << 20)) if hashes is not None else (
        np.zeros(min(n - s, 1 << 20), np.uint64) for s in range(0, n, 1 << 20))
    arrays = {
        **({"item_ids": (np.int64, (n,), _chunks(scratch / "item_ids.bin", np.int64))} if int_ids else {}),
        "raw_codes": (np.int32, (n, L), _chunks(scratch / "raw_codes.bin", np.int32, (-1, L))),
        "moved": (np.uint8, (n,), zeros),
        "emb_hash": (np.uint64, (n,), emb),
        "retired": (np.int64, (0, S), []),
    }
    write_safetensors_parts(out / "index.safetensors", arrays)
    t1 = time.perf_counter()
    write_safetensors_parts(out / "trie.safetensors", trie.tensors())
    t_trie += time.perf_counter() - t1
    top = groups["max_suffix"]
    suffix_size = max(top, int(config.suffix_reserve))
    stats = _stats(policy, n, groups, trie, resolve_s, t_trie)
    history = [{"version": 1, "event": "index", "policy": policy.name, "at": _now(), "items": n}]
    return index_section(policy=policy.name, version=1, sid_length=S, codebook_sizes=list(sizes),
                         level_sizes=policy.level_sizes(sizes, suffix_size), suffix_size=suffix_size, n_items=n, base_items=n,
                         n_retired=0, stats=stats, history=history, segments=[],
                         ids_increasing=int_ids and _ids_increase(scratch / "item_ids.bin"))


def _stats(policy, n: int, groups: dict[str, int], trie: TrieParts, resolve_s: float, trie_s: float) -> dict[str, Any]:
    """``SIDIndex.build``'s statistics (``_build_stats`` and the trie's), from the groups'
    counts and the trie's leaves."""
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
        "resolve_seconds": resolve_s,
        "trie_build_seconds": trie_s,
        "trie_nodes": trie.n_nodes,
        "trie_bytes": trie.nbytes,
    }
