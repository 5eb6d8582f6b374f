"""``extract`` over shards: the feature store's shards computed by workers, committed in order.

The store's shards are the catalogue's rows cut every ``shard_size`` rows, as the local
engine cuts them. Each worker builds the backend once and runs ``features._extract._encode_shard``
on a shard's rows (the local engine's per-shard function: length-sorted batches within the
shard), then writes the shard's files (``features.shard_parts``) beside the store, in
``.<store>.incoming/`` (same filesystem), with a ``.done.json`` record written last. The
driver holds the store's writer lock for the whole run and commits finished shards in
catalogue order (``FeatureStoreWriter.adopt_shard``: the files are moved in, then the
manifest is replaced), so the store is the one the local engine writes, shard for shard.

Resume: shards the store lists are kept (as the local engine resumes); a finished shard
still waiting in the incoming directory is adopted without recomputing it when its record
matches this job (same config, same catalogue rows); everything else is recomputed.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._progress import Progress, as_progress
from ..errors import ArtifactError
from ._config import EngineConfig
from ._embed import set_threads
from ._plan import Shard, digest, plan_rows
from ._run import ShardJob, map_shards

__all__ = ["ExtractJob", "extract_sharded"]

logger = logging.getLogger(__name__)


def _store_name(index: int) -> str:
    return f"shard-{index:05d}"


def _rows_to_b64(table) -> str:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode()


def _rows_from_b64(s: str) -> list[dict[str, Any]]:
    import pyarrow as pa

    return pa.ipc.open_stream(base64.b64decode(s)).read_all().to_pylist()


class _Described:
    def __init__(self, info: dict[str, Any]):
        self.info = info

    def describe(self) -> dict[str, Any]:
        return self.info


@dataclass
class ExtractJob(ShardJob):
    config: Any  # ExtractConfig
    base: str | None
    segments: list[str]
    job_key: str
    name: str = "extract"

    def setup(self, threads: int | None) -> None:
        from ..features._backends import build_backend

        set_threads(threads)
        self._backend = build_backend(self.config)

    def run(self, shard: Shard, out_dir: str) -> dict[str, Any]:
        from .._progress import NullProgress
        from ..features._extract import _encode_shard
        from ..features._store import shard_parts
        from ..io import atomic_write

        cfg, backend = self.config, self._backend
        rows = _rows_from_b64(shard.payload["rows"])
        ids = shard.payload["ids"]
        seg_id = {f: i for i, f in enumerate(self.segments)}
        base = Path(self.base) if self.base is not None else None
        with NullProgress().task("extract") as task:
            out_ids, toks, segs, errors, skipped, embedded = _encode_shard(rows, ids, cfg, backend, seg_id, base, task)
        extra = {"n_rows": len(rows), "first_row": shard.first_row, "errors": errors, "skipped": skipped, "embedded_empty": embedded}
        parts, n_tokens = shard_parts(out_ids, toks, segs, backend.dim, extra)
        name = _store_name(shard.index)
        d = Path(out_dir)
        files = {}
        for part, write in parts.items():
            with atomic_write(d / f"{name}.{part}") as tmp:
                with open(tmp, "wb") as f:
                    write(f)
            files[part] = str(d / f"{name}.{part}")
        rec = {"key": shard.key(self.job_key), "index": shard.index, "name": name, "input_rows": shard.rows, "n_items": len(out_ids),
               "n_tokens": n_tokens, "files": files, "dim": int(backend.dim), "backend": backend.describe()}
        with atomic_write(d / f"{name}.done.json") as tmp:
            tmp.write_text(json.dumps(rec))
        return {"info": rec, "stats": None}


def _incoming(out: Path) -> Path:
    from ..io._atomic import _artifact_path

    real = _artifact_path(out)
    return real.parent / f".{real.name}.incoming"


def _ready(incoming: Path, sh: Shard, job_key: str) -> dict[str, Any] | None:
    """A finished shard record in the incoming directory for this job, with its files present."""
    p = incoming / f"{_store_name(sh.index)}.done.json"
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("key") != sh.key(job_key) or not all(Path(f).is_file() for f in rec.get("files", {}).values()):
        return None
    return rec


def _resume_point(out: Path, item_ids, shard_size: int, *, overwrite: bool) -> tuple[list, int, int, int | None]:
    """The shards of this input, how many of them (and rows) the store at ``out`` already
    committed, and its dimension (None for a new store)."""
    from ..features._store import FEATURE_STORE
    from ..io._manifest import read_manifest

    committed, dim, complete = 0, None, False
    if not overwrite and FEATURE_STORE.committed(out):
        m = read_manifest(out, FEATURE_STORE, verify="none")
        committed, dim, complete = len(m.get("shards", [])), m.get("dim"), bool(m.get("complete"))
    shards = plan_rows(len(item_ids), shard_size)
    for sh in shards:
        sh.input_id = digest(item_ids[sh.first_row : sh.first_row + sh.rows])
    if complete:  # finished: resuming it is a no-op, as with the local engine
        committed = len(shards)
    return shards, committed, sum(sh.rows for sh in shards[:committed]), dim


def extract_sharded(catalog, out: str | os.PathLike, config, *, engine: EngineConfig, overwrite: bool = False,
                    base_dir: str | os.PathLike | None = None, progress: Progress | None = None):
    """``features.extract_features`` with the shards computed on ``engine`` (see the module doc);
    returns the same :class:`~tokenizer_kit.features.ExtractResult`."""
    from ..features._extract import ExtractResult, _finish, empty_items_summary, prepare_store
    from ..features._store import FeatureStoreWriter
    from ..io._lock import writer_lock

    table, base, item_ids, store_cfg = prepare_store(catalog, out, config, base_dir=base_dir, overwrite=overwrite)
    n_rows = len(item_ids)
    segments = [*config.image_fields, *config.text_fields]
    job = ExtractJob(config=config, base=None if base is None else str(Path(base).resolve()), segments=segments,
                     job_key=digest({"job": "extract", "store_config": store_cfg}))
    out = Path(out)
    incoming = _incoming(out)
    t0 = time.perf_counter()
    with writer_lock(out):
        shards, committed, done_rows, dim = _resume_point(out, item_ids, config.shard_size, overwrite=overwrite)
        if done_rows:
            logger.info("resuming %s at row %d of %d (%d complete shards)", out, done_rows, n_rows, committed)
        incoming.mkdir(parents=True, exist_ok=True)
        todo_shards = shards[committed:]
        ready = {sh.index: rec for sh in todo_shards if (rec := _ready(incoming, sh, job.job_key)) is not None}
        run = [sh for sh in todo_shards if sh.index not in ready]
        for sh in run:
            sl = table.slice(sh.first_row, sh.rows).select(segments)
            sh.payload = {"rows": _rows_to_b64(sl), "ids": item_ids[sh.first_row : sh.first_row + sh.rows]}
        backend_info = next((r["backend"] for r in ready.values()), None)
        writer = None
        n_tokens_run = 0
        try:
            with as_progress(progress).task("extract", total=n_rows, unit="item", completed=done_rows) as task:
                pending = dict(ready)
                next_i = committed

                def commit_ready() -> None:
                    nonlocal writer, next_i
                    while next_i in pending:
                        rec = pending.pop(next_i)
                        if writer is None:
                            writer = FeatureStoreWriter(out, dim=rec["dim"], config=store_cfg, segments=segments, overwrite=overwrite)
                        if writer.manifest["shards"] and len(writer.manifest["shards"]) != next_i:
                            raise ArtifactError(f"{out} changed while the job ran; rerun it")
                        writer.adopt_shard({p: Path(f) for p, f in rec["files"].items()}, n_items=rec["n_items"], n_tokens=rec["n_tokens"])
                        Path(incoming / f"{rec['name']}.done.json").unlink(missing_ok=True)
                        next_i += 1

                for sh in shards[committed:]:
                    if sh.index in ready:
                        task.advance(sh.rows)
                commit_ready()
                for res in map_shards(job, run, str(incoming), engine):
                    rec = res["info"]
                    backend_info = rec["backend"]
                    pending[int(rec["index"])] = rec
                    n_tokens_run += int(rec["n_tokens"])
                    task.advance(int(rec["input_rows"]))
                    commit_ready()
            if writer is None:  # nothing was left to compute: finish the store as it is
                if dim is None:
                    raise ArtifactError(f"{out}: no shard to commit and no store to finish")
                writer = FeatureStoreWriter(out, dim=dim, config=store_cfg, segments=segments, overwrite=overwrite)
            if backend_info is None:
                from ..features._backends import build_backend

                backend_info = build_backend(config).describe()
            all_errors, n_skipped = _finish(writer, config, _Described(backend_info))
            m = writer.manifest
            dim = writer.dim
        finally:
            if writer is not None:
                writer.close()
        shutil.rmtree(incoming, ignore_errors=True)
    seconds = time.perf_counter() - t0
    return ExtractResult(
        **empty_items_summary(m), path=out, n_rows=n_rows, n_items=int(m["n_items"]), n_tokens=int(m["n_tokens"]), dim=int(dim),
        n_image_errors=len(all_errors), n_skipped_items=n_skipped, rows_resumed=done_rows, rows_this_run=n_rows - done_rows,
        seconds=seconds, items_per_s=(n_rows - done_rows) / seconds if seconds > 0 else 0.0,
        tokens_per_s=n_tokens_run / seconds if seconds > 0 else 0.0, random_init=bool(config.random_init), errors=all_errors,
    )
