"""The SID index from a sharded SID directory, group by prefix across shards.

A collision policy that resolves each group of items sharing codes from that group's rows
alone (``CollisionPolicy.by_group``) is resolved here across shards: the policy numbers a
group (``group_positions``: under ``suffix`` an item's position in its group, by
reconstruction error when the parts carry ``err`` (``assign`` with ``errors``), then by input
row, as ``SIDIndex.build`` numbers them); this module only brings each group's rows
together, so no process ever holds every item:

1. **partition** (driver, one batch in memory): every row's (prefix key, global row, rank)
   is appended to one of P bucket files by a hash of its key, so a group lands whole in
   one bucket (``indexer.policies.GroupSpill``, which the in-process index shares);
2. **resolve** (driver, one bucket in memory: ``bucket_rows`` rows of 24 bytes): the policy
   numbers each group of the bucket;
3. **write** (a sharded job, on either engine): per source part, its rows with their suffix
   looked up in the buckets' row-sorted results (memory-mapped), into a shard directory of
   the same part names with the manifest last (resumable like every sharded job).

A policy that adds no level (``none``: SIDs are the codes) needs no grouping; one that is not
``by_group`` (``reassign`` moves items to free codes chosen by their vectors across the whole
space) is refused here (index in memory).
:func:`install_sharded_index` installs such a directory as a tokenizer directory's index in
bounded memory (``indexer.index_from_parts``: the parts streamed, the trie built bucket by
bucket); :func:`load_sharded_index` reads it into a :class:`~tokenizer_kit.indexer.SIDIndex`
(and its trie) where the catalogue fits one process. Both give the SIDs of ``SIDIndex.build``
on the gathered rows, and saving the loaded index writes the files the install writes.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._progress import Progress
from ..errors import InputError
from ._config import EngineConfig
from ._output import part_writer, read_shard_manifest
from ._plan import InputFile, Shard, digest
from ._run import ShardJob, run_sharded

__all__ = ["index_shards", "install_sharded_index", "load_sharded_index", "DEFAULT_BUCKET_ROWS"]

logger = logging.getLogger(__name__)

DEFAULT_BUCKET_ROWS = 1 << 22  # rows resolved at once: ~100 MB with the sort's copies


def _codes_of(rb, levels: int) -> np.ndarray:
    return np.stack([rb.column(f"code_{l}").to_numpy() for l in range(levels)], 1).astype(np.int64)


def _partition(parts: Sequence[Path], levels: int, sizes: Sequence[int], spill, rank_column: str | None, batch_rows: int) -> None:
    """Pass 1: (key, row, rank) of every row into its bucket file (``GroupSpill``)."""
    import pyarrow.parquet as pq

    from ..indexer.policies import sid_keys

    cols = [f"code_{l}" for l in range(levels)] + ([rank_column] if rank_column else [])
    for p in parts:
        for rb in pq.ParquetFile(str(p)).iter_batches(batch_size=batch_rows, columns=cols):
            spill.add(sid_keys(_codes_of(rb, levels), sizes), rb.column(rank_column).to_numpy() if rank_column else None)


def _group_policy(name: str):
    """The collision policy ``name``, which must resolve each group alone (``by_group``)."""
    from ..indexer.policies import get_policy, group_policies

    policy = get_policy(name)
    if not policy.by_group:
        raise InputError(f"the {name} policy picks free codes by the items' vectors across the whole SID space, so it is not "
                         f"resolved shard by shard; index with one of {group_policies()}, or index in memory (`tokenizer-kit index`)")
    return policy


def _resolve(spill, policy) -> dict[str, int]:
    """Pass 2: per bucket, each row's extra SID level from the policy (rows sorted by row number)."""
    for k, _, rows, pos in spill.resolve(policy):
        np.save(spill.scratch / f"rows-{k:05d}.npy", rows)
        np.save(spill.scratch / f"suffix-{k:05d}.npy", pos.astype(np.int32))
    s = spill.stats
    return {"max_suffix": s["max_suffix"], "unique_codes": s["unique_codes"], "colliding_groups": s["colliding_groups"],
            "items_in_collisions": s["items_in_collisions"], "largest_group": s["largest_group"]}


@dataclass
class IndexJob(ShardJob):
    """Pass 3: a source part's rows with their SIDs (codes plus the suffix looked up by row)."""

    scratch: str
    n_buckets: int
    levels: int
    policy: str
    source_key: str
    name: str = "index"

    def setup(self, threads: int | None) -> None:
        self._extra = _group_policy(self.policy).extra_levels > 0
        if self._extra:
            d = Path(self.scratch)
            self._rows = [np.load(d / f"rows-{k:05d}.npy", mmap_mode="r") for k in range(self.n_buckets)]
            self._suf = [np.load(d / f"suffix-{k:05d}.npy", mmap_mode="r") for k in range(self.n_buckets)]

    def run(self, shard: Shard, out_dir: str) -> dict[str, Any]:
        import pyarrow.parquet as pq

        from ..io import normalise_ids, sids_table

        t = pq.read_table(shard.file.path)
        codes = _codes_of(t, self.levels)
        sids = codes
        if self._extra:
            r0, r1 = shard.first_row, shard.first_row + shard.rows
            suffix = np.full(shard.rows, -1, np.int64)
            for rows, suf in zip(self._rows, self._suf):
                lo, hi = np.searchsorted(rows, [r0, r1])
                suffix[np.asarray(rows[lo:hi]) - r0] = suf[lo:hi]
            if (suffix < 0).any():  # the scratch does not match the source (changed since pass 1)
                raise InputError(f"{shard.file.path}: rows changed since the index was partitioned; run the index again")
            sids = np.concatenate([codes, suffix[:, None]], 1)
        table = sids_table(normalise_ids(t.column("item_id").to_numpy(zero_copy_only=False), shard.file.path), sids)
        for extra in ("emb_hash", "err"):
            if extra in t.column_names:
                table = table.append_column(extra, t.column(extra))
        with part_writer(out_dir, shard, self.key) as w:
            w.write(table.replace_schema_metadata(None) if table.schema.metadata else table)
        return {"info": w.info, "stats": None}

    @property
    def key(self) -> str:
        return digest({"job": self.name, "source": self.source_key, "policy": self.policy, "levels": self.levels})


def _source_shards(src: Path) -> tuple[list[Shard], dict[str, Any]]:
    m = read_shard_manifest(src, verify="size")
    shards, row = [], 0
    for i, e in enumerate(m.shards):
        p = src / e["file"]
        shards.append(Shard(index=i, first_row=row, rows=int(e["rows"]),
                            file=InputFile(path=str(p), kind="parquet", rows=int(e["rows"]), size=int(e["size"]))))
        row += int(e["rows"])
    return shards, m.data


def index_shards(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    codebook_sizes: Sequence[int],
    policy: str = "suffix",
    suffix_reserve: int = 8,
    engine: EngineConfig | None = None,
    bucket_rows: int = DEFAULT_BUCKET_ROWS,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """SIDs under ``policy`` for every item of the sharded assign output ``source``, written
    as the shard directory ``out`` (``item_id, code_0..code_{S-1}, sid`` and the source's
    ``emb_hash``/``err``); see the module doc. Returns the run summary plus the index's
    ``suffix_size`` and collision counts (also in the manifest)."""
    extra = _group_policy(policy).extra_levels > 0
    src, out = Path(source), Path(out)
    shards, man = _source_shards(src)
    levels = len(codebook_sizes)
    cols = man.get("columns") or []
    if cols and any(f"code_{l}" not in cols for l in range(levels)):
        raise InputError(f"{src}: the shards have columns {cols}, not the {levels} code levels of this tokenizer")
    rank = "err" if "err" in cols else None
    n = sum(sh.rows for sh in shards)
    n_buckets = max(1, math.ceil(n / max(1, int(bucket_rows))))
    scratch = out.parent / f".{out.name}.index-scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    stats: dict[str, Any] = {}
    try:
        if extra:
            from ..indexer.policies import GroupSpill, hash_buckets

            scratch.mkdir(parents=True)
            spill = GroupSpill(scratch, n_buckets, hash_buckets(n_buckets))
            _partition([sh.file.path for sh in shards], levels, codebook_sizes, spill, rank, 1 << 20)
            stats = _resolve(spill, _group_policy(policy))
            stats["suffix_size"] = max(stats["max_suffix"], int(suffix_reserve))
            stats["numbered_by"] = "err, then input row" if rank else "input row"
        job = IndexJob(scratch=str(scratch), n_buckets=n_buckets, levels=levels, policy=policy,
                       source_key=str(man.get("plan_key")))
        fields = {"config": {"source": str(src), "policy": policy, "suffix_reserve": int(suffix_reserve), "buckets": n_buckets},
                  "index": {"policy": policy, "codebook_sizes": [int(k) for k in codebook_sizes], **stats},
                  "tokenizer": man.get("tokenizer"),
                  "columns": ["item_id"] + [f"code_{l}" for l in range(levels + extra)] + ["sid"]
                  + [c for c in ("emb_hash", "err") if c in cols]}
        res = run_sharded(job, shards, out, engine=engine, job_key=job.key + digest(stats), fields=fields, overwrite=overwrite,
                          progress=progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**res, "policy": policy, **stats, "buckets": n_buckets}


def _index_info(path: str | os.PathLike):
    """(manifest, its index section) of a directory written by :func:`index_shards`."""
    from ..indexer.policies import group_policies

    m = read_shard_manifest(path, verify="size")
    info = m.data.get("index") or {}
    if not isinstance(info.get("codebook_sizes"), list) or info.get("policy") not in group_policies():
        raise InputError(f"{path} is not a sharded SID index (its manifest has no index section); write one with index_shards")
    return m, info


def install_sharded_index(path: str | os.PathLike, tokenizer: str | os.PathLike, *, bucket_rows: int | None = None) -> dict[str, Any]:
    """Install the directory ``path`` written by :func:`index_shards` as the index of the
    tokenizer directory ``tokenizer`` (the one whose codes it holds), in bounded memory
    (``indexer.index_from_parts``); the same files as ``load_sharded_index(path).save(tok,
    tokenizer)``. An index already there is replaced (its version + 1, its history kept).
    Returns the manifest's ``sections.index``."""
    from ..build import SemanticTokenizer
    from ..indexer import index_from_parts

    m, info = _index_info(path)
    sizes = SemanticTokenizer.read_manifest(tokenizer).get("codebook_sizes")
    if [int(k) for k in info["codebook_sizes"]] != sizes:
        raise InputError(f"{path} holds SIDs of codebooks {info['codebook_sizes']}, {tokenizer} has {sizes}; "
                         f"index the codes {tokenizer} assigned")
    rank = "err" if "err" in (m.data.get("columns") or []) else None  # as index_shards numbered the groups
    kw = {} if bucket_rows is None else {"bucket_rows": bucket_rows}
    return index_from_parts(tokenizer, m.files(), policy=info["policy"], suffix_size=int(info.get("suffix_size", 0)), rank=rank,
                            stats={k: v for k, v in info.items() if k not in ("policy", "codebook_sizes")},
                            event={"from": "shards"}, **kw)


def load_sharded_index(path: str | os.PathLike):
    """The :class:`~tokenizer_kit.indexer.SIDIndex` of a directory written by :func:`index_shards`
    (all its rows in this process: where the catalogue fits one machine; ``save`` it into a
    tokenizer directory to use it for lookups, decoding and cold start)."""
    import pyarrow.parquet as pq

    from ..indexer import SIDIndex
    from ..indexer import concat_ids
    from ..indexer.policies import POLICIES
    from ..io import normalise_ids

    m, info = _index_info(path)
    sizes = info["codebook_sizes"]
    L = len(sizes)
    S = L + POLICIES[info["policy"]].extra_levels
    ids, sids, hashes = [], [], []
    for p in m.files():
        t = pq.read_table(str(p))
        ids.append(normalise_ids(t.column("item_id").to_numpy(zero_copy_only=False), str(p)))
        sids.append(_codes_of(t, S))
        hashes.append(t.column("emb_hash").to_numpy().astype(np.uint64) if "emb_hash" in t.column_names else np.zeros(t.num_rows, np.uint64))
    sid = np.concatenate(sids) if sids else np.zeros((0, S), np.int64)
    idx = SIDIndex(item_ids=concat_ids(ids) if ids else np.empty(0, object), sids=sid, raw_codes=sid[:, :L], codebook_sizes=sizes,
                   policy=info["policy"], suffix_size=int(info.get("suffix_size", 0)), emb_hash=np.concatenate(hashes) if hashes else None,
                   stats={k: v for k, v in info.items() if k not in ("policy", "codebook_sizes")})
    idx.history = [{"version": 1, "event": "index", "policy": idx.policy, "from": "shards", "items": len(idx)}]
    return idx
