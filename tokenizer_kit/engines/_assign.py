"""``assign`` over shards: codes of every item of an embeddings dataset, one part per shard.

Each worker loads the tokenizer's quantizer once (its checksum checked against the job's),
reads its shard's rows in batches that start where the local engine's start, and calls
``build.encode_batch`` on each: the local engine's per-batch function, so the codes are
the same bit for bit. Parts have the columns of ``assign``'s single-file output (``item_id,
code_0.., sid``); with ``hashes`` also ``emb_hash`` (the index's embedding fingerprint),
which a cold start from the shards needs. The driver folds each finished part into the same
streaming metrics the local engine reports (collisions, unique SIDs, largest bucket).

With ``lookup`` the worker also loads the tokenizer's SID index (memory-mapped) and calls
the cold start's per-batch function (``indexer.lookup_part``: the known
items' indexed SIDs, which items are to be placed, their codes and vectors),
the one the local engine maps in process; the driver then gathers only the items to place,
places them and searches their neighbours (``indexer.place``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Progress
from ..errors import ArtifactError, InputError
from ._config import EngineConfig
from ._engine import Engine, engine_for
from ._output import part_writer, shard_files
from ._plan import Shard, digest, embedding_batches, embedding_files, plan_files
from ._run import ShardJob, run_sharded

__all__ = ["AssignJob", "AssignParts", "Sharding", "assign_sharded", "tokenizer_fingerprint", "DEFAULT_ASSIGN_SHARD"]

logger = logging.getLogger(__name__)

DEFAULT_ASSIGN_SHARD = 1 << 20  # rows per shard: 16 encode batches of 65,536


@dataclass(frozen=True)
class Sharding:
    """How a sharded pass cuts its input: ``batch_size`` rows per read (None: the streaming
    default; rounded to whole encode blocks) and ``shard_size`` rows per shard (rounded to whole
    batches; the unit a killed run resumes by)."""

    batch_size: int | None = None
    shard_size: int = DEFAULT_ASSIGN_SHARD


@dataclass(frozen=True)
class AssignParts:
    """What each part of a sharded assign holds. By default ``item_id, code_0.., sid``;
    ``hashes`` adds ``emb_hash`` (the index's embedding fingerprint, which a cold start from
    the shards needs), ``errors`` adds ``err`` (the squared reconstruction error a suffix group
    is ranked by). ``lookup``: the cold start's lookup part against the tokenizer's SID index
    instead (``indexer.lookup_part``)."""

    hashes: bool = False
    errors: bool = False
    lookup: bool = False


def tokenizer_fingerprint(path: str | os.PathLike, *, index: bool = False) -> dict[str, Any]:
    """What fixes a tokenizer's codes: its quantizer file's checksum, method and preprocessing;
    with ``index`` also what fixes a cold-start lookup (every file's checksum, the index version)."""
    from ..build import TOKENIZER, WEIGHTS_NAME
    from ..io import read_manifest

    m = read_manifest(path, TOKENIZER, verify="none")
    entry = m.files.get(WEIGHTS_NAME) or {}
    fp = {"quantizer_sha256": entry.get("sha256"), "method": m.get("method"), "codebook_sizes": m.get("codebook_sizes"),
          "preprocessing": m.get("preprocessing")}
    if index:
        fp["files_sha256"] = {k: (v or {}).get("sha256") for k, v in sorted(m.files.items())}
        fp["index_version"] = ((m.get("sections") or {}).get("index") or {}).get("version")
    return fp


@dataclass
class AssignJob(ShardJob):
    tokenizer: str
    fingerprint: dict[str, Any]
    source: str
    id_column: str | None
    vector_column: str | None
    dim: int
    batch_size: int
    hashes: bool = False
    errors: bool = False
    lookup: bool = False  # the cold start's per-batch part against the tokenizer's SID index
    name: str = "assign"

    def setup(self, threads: int | None) -> None:
        from ..build import WEIGHTS_NAME, SemanticTokenizer
        from ..io import sha256_file

        path = Path(self.tokenizer)
        if sha256_file(path / WEIGHTS_NAME) != self.fingerprint["quantizer_sha256"]:
            raise ArtifactError(f"{path / WEIGHTS_NAME} changed since the job was planned (checksum differs); rerun the job")
        if self.lookup and tokenizer_fingerprint(path, index=True) != self.fingerprint:
            raise ArtifactError(f"{path} changed since the job was planned (its index was updated); rerun the job")
        # the driver verified the checksums
        self._tok = SemanticTokenizer.from_pretrained(path, verify=False, load_sids="ids" if self.lookup else False)
        self._threads = threads
        if self.lookup:
            from ..indexer import SIDIndex

            self._index = SIDIndex.stored(self._tok)

    def run(self, shard: Shard, out_dir: str) -> dict[str, Any]:
        from ..build import encode_batch
        from ..io import sids_table

        tok = self._tok
        kw = {} if self._threads is None else {"threads": self._threads}
        if self.lookup:
            return self._run_lookup(shard, out_dir)
        with part_writer(out_dir, shard, self.key) as w:
            for _, ids, x in embedding_batches(shard, source=self.source, batch_size=self.batch_size, id_column=self.id_column,
                                               vector_column=self.vector_column, dim=self.dim):
                codes = encode_batch(tok, x, **kw)
                table = sids_table(ids, codes)
                if self.hashes:
                    import pyarrow as pa

                    from ..indexer import embedding_hash

                    table = table.append_column("emb_hash", pa.array(embedding_hash(x), pa.uint64()))
                if self.errors:  # squared reconstruction error, as SIDIndex.build ranks a suffix group
                    import pyarrow as pa

                    xp = np.asarray(tok.preprocess(x), np.float64)
                    table = table.append_column("err", pa.array(((xp - tok.decode(codes)) ** 2).sum(1), pa.float64()))
                w.write(table)
        return {"info": w.info, "stats": None}

    def _run_lookup(self, shard: Shard, out_dir: str) -> dict[str, Any]:
        """Each batch through the cold start's per-batch function (``indexer.lookup_part``,
        which the local engine maps too): the part holds the known items' SIDs
        and what the driver's placement reads back (``indexer.place``)."""
        from ..indexer import LOOKUP_ROW_GROUP, IndexConfig, lookup_part

        config = IndexConfig(policy=self._index.policy)
        with part_writer(out_dir, shard, self.key) as w:
            for _, ids, x in embedding_batches(shard, source=self.source, batch_size=self.batch_size, id_column=self.id_column,
                                               vector_column=self.vector_column, dim=self.dim):
                w.write(lookup_part(self._index, self._tok, ids, x, config=config), row_group_size=LOOKUP_ROW_GROUP)
        return {"info": w.info, "stats": None}

    @property
    def key(self) -> str:
        return digest({"job": self.name, "tokenizer": self.fingerprint, "source": self.source, "id_column": self.id_column,
                       "vector_column": self.vector_column, "batch_size": self.batch_size, "hashes": self.hashes,
                       **({"errors": True} if self.errors else {}), **({"lookup": 3} if self.lookup else {})})  # 3: the parts of lookup_part (vectors, no neighbours)


class _PartSummary:
    """The local engine's assign summary (``build.AssignSummary``), folded part by part on the driver."""

    def __init__(self, tok, scratch: Path):
        from ..build import AssignSummary

        self.tok = tok
        self.summary = AssignSummary(tok, spill_dir=scratch)

    def add_part(self, path: Path) -> None:
        import pyarrow.parquet as pq

        L = self.tok.levels
        pf = pq.ParquetFile(str(path))
        cols = [f"code_{l}" for l in range(L)] + (["item_id"] if self.summary.needs_ids else [])
        for rb in pf.iter_batches(batch_size=1 << 20, columns=cols):
            codes = np.stack([rb.column(f"code_{l}").to_numpy() for l in range(L)], 1).astype(np.int64)
            ids = np.asarray(rb.column("item_id").to_numpy(zero_copy_only=False)) if self.summary.needs_ids else None
            self.summary.add(ids, codes)

    def result(self) -> dict[str, Any]:
        return self.summary.result()

    def close(self) -> None:
        self.summary.close()


def assign_sharded(
    tok,
    source,
    out: str | os.PathLike,
    *,
    engine: EngineConfig | Engine,
    sharding: Sharding = Sharding(),
    parts: AssignParts = AssignParts(),
    overwrite: bool = False,
    progress: Progress | None = None,
    summary: bool = True,
) -> dict[str, Any]:
    """Codes of every item of ``source`` into the shard directory ``out`` (see the module doc).

    ``tok`` is a tokenizer loaded from its directory (the workers load the same directory).
    ``source``: a path (or list of Parquet files) read with the default columns, or an
    :class:`~tokenizer_kit.io.EmbeddingSource` (ids file, columns, ``row_ids``). The batch
    size is rounded to whole encode blocks and the shard size to whole batches
    (:class:`Sharding`), so the codes equal the local single-file ``assign`` bit for bit;
    ``parts`` says what each part holds (:class:`AssignParts`). Returns the summary of the
    local ``assign`` (unless ``summary`` is false) plus the run's (shards run, shards kept
    from an earlier run).
    """
    from dataclasses import replace

    from ..build import DEFAULT_STREAM_BATCH, aligned_batch_size
    from ..io import EmbeddingSource

    engine = engine_for(engine)
    if tok.path is None:
        raise InputError("the sharded assign loads the tokenizer in every worker: save it first (save_pretrained) and load it from there")
    src = replace(EmbeddingSource.of(source), split=None)  # the shards are planned over the input's files: no split
    stream = src.open()
    if stream.n == 0:
        raise InputError(f"{stream.source}: empty input (0 rows); nothing to assign")
    if stream.dim != tok.dim:
        raise InputError(f"{stream.source}: vectors have dimension {stream.dim} but this tokenizer expects {tok.dim}; "
                         "embed with the model the tokenizer was built on")
    bs = aligned_batch_size(sharding.batch_size or DEFAULT_STREAM_BATCH)
    shard_rows = max(bs, -(-int(sharding.shard_size) // bs) * bs)
    files = embedding_files(src.path, stream, src.ids_path)
    shards = plan_files(files, shard_rows)
    hashes, errors, lookup = parts.hashes, parts.errors, parts.lookup
    job = AssignJob(tokenizer=str(tok.path), fingerprint=tokenizer_fingerprint(tok.path, index=lookup), source=stream.source,
                    id_column=getattr(stream, "id_column", None), vector_column=getattr(stream, "vcol", None), dim=stream.dim,
                    batch_size=bs, hashes=hashes, errors=errors, lookup=lookup)
    if lookup:  # the SID's levels (the suffix too), then what the placement reads
        S = int((tok.sections.get("index") or {}).get("sid_length") or tok.levels)
        columns = ["item_id"] + [f"code_{l}" for l in range(S)] + ["place"] + [f"raw_{l}" for l in range(tok.levels)] + ["emb_hash", "nearest"]
    else:
        columns = (["item_id"] + [f"code_{l}" for l in range(tok.levels)] + ["sid"] + (["emb_hash"] if hashes else [])
                   + (["err"] if errors else []))
    fields = {"config": {"tokenizer": str(tok.path), "source": stream.source, "batch_size": bs, "shard_size": shard_rows,
                         "engine": engine.name, "hashes": hashes, "errors": errors, **({"lookup": True} if lookup else {})},
              "tokenizer": job.fingerprint, "columns": columns}
    out = Path(out)
    res = run_sharded(job, shards, out, engine=engine, job_key=job.key, fields=fields, overwrite=overwrite, progress=progress)
    if summary and not lookup:
        scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".scratch", dir=out.parent))
        try:
            s = _PartSummary(tok, scratch)
            try:
                for p in shard_files(out):
                    s.add_part(p)
                res.update(s.result())
            finally:
                s.close()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return {"n_items": int(stream.n), **res, "engine": engine.name, "workers": engine.workers}
