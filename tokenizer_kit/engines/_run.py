"""Run a sharded job on the local engine or on Ray, and commit its shard directory.

A job (:class:`ShardJob`) is a small picklable object holding paths and settings. Each
worker calls ``setup(threads)`` once (loads the model or the tokenizer) and ``run(shard)``
per shard (reads the shard's rows, computes, writes its part atomically, returns a small
JSON-able summary). The local engine is that same loop in this process; the Ray engine is
a Ray Data actor pool (``engines._ray``). Errors a user can cause (``TokenizerKitError``)
come back from either engine as the same one-line error, with the shard named.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .. import errors as _errors
from .._progress import Progress, as_progress
from ..errors import ArtifactError, TokenizerKitError
from ..io import LockTimeout, read_manifest, update_artifact, write_artifact, writer_lock
from ._config import EngineConfig
from ._engine import Engine, engine_for
from ._output import SHARDS, part_key, stray_parts
from ._plan import Shard, digest

__all__ = ["ShardJob", "map_shards", "run_sharded", "shard_error", "error_from_record"]

logger = logging.getLogger(__name__)


class ShardJob:
    """What a worker runs. Subclasses are dataclasses of paths and settings (pickled to Ray)."""

    name: str = "job"

    def setup(self, threads: int | None) -> None:
        """Load what every shard needs (once per worker); ``threads``: compute threads (None: all)."""

    def run(self, shard: Shard, out_dir: str) -> dict[str, Any]:
        """Compute one shard, write its part into ``out_dir``; returns ``{"info": ..., "stats": ...}``."""
        raise NotImplementedError


def shard_error(e: TokenizerKitError, shard: Shard) -> TokenizerKitError:
    """The same error, with the shard and its input rows named (both engines)."""
    new = type(e)(f"{e} (shard {shard.name}, input rows {shard.first_row}-{shard.last_row})")
    new.settings = getattr(e, "settings", ())  # type: ignore[attr-defined]
    return new


def error_record(e: TokenizerKitError) -> dict[str, Any]:
    return {"error": str(e), "error_type": type(e).__name__, "settings": list(getattr(e, "settings", ()))}


def error_from_record(rec: Mapping[str, Any]) -> TokenizerKitError:
    """The error a worker reported, as the class it raised (project errors only)."""
    cls = getattr(_errors, str(rec.get("error_type")), None)
    if cls is None:  # the io's own error type, raised by a worker that waited for a writer lock
        cls = {"LockTimeout": LockTimeout}.get(str(rec.get("error_type")))
    if not (isinstance(cls, type) and issubclass(cls, TokenizerKitError)):
        cls = TokenizerKitError
    e = cls(str(rec["error"]))
    e.settings = tuple(rec.get("settings", ()))  # type: ignore[attr-defined]
    return e


def run_one(job: ShardJob, shard: Shard, out_dir: str) -> dict[str, Any]:
    """One shard; a project error names the shard (what both engines raise). The result
    carries the seconds the worker spent on it (``shard_seconds``: per-worker rates)."""
    t0 = time.perf_counter()
    try:
        res = job.run(shard, out_dir)
    except TokenizerKitError as e:
        raise shard_error(e, shard) from None
    return {**res, "shard_seconds": time.perf_counter() - t0}


def map_shards(job: ShardJob, shards: Sequence[Shard], out_dir: str, engine: EngineConfig | Engine) -> Iterator[dict[str, Any]]:
    """Results of ``job`` over ``shards``, as they finish (any order on Ray): ``engine.map``."""
    return engine_for(engine).map(job, shards, out_dir)


def _done(directory: Path, shards: Sequence[Shard], job_key: str) -> set[int]:
    """Shards whose part is already written for this job (same input rows, same fingerprint)."""
    done = set()
    for sh in shards:
        p = directory / f"{sh.name}.parquet"
        if p.is_file() and part_key(p) == sh.key(job_key):
            done.add(sh.index)
    return done


def _entry_of(directory: Path, sh: Shard) -> dict[str, Any]:
    from ..io import sha256_file

    p = directory / f"{sh.name}.parquet"
    import pyarrow.parquet as pq

    return {"index": sh.index, "name": sh.name, "file": p.name, "rows": int(pq.read_metadata(str(p)).num_rows), "first_row": sh.first_row,
            "input_rows": sh.rows, "sha256": sha256_file(p), "size": p.stat().st_size}


def _fill(job: ShardJob, shards: Sequence[Shard], directory: Path, engine: Engine, job_key: str,
          progress: Progress | None, on_result: Callable[[dict[str, Any]], None] | None) -> tuple[list[dict[str, Any]], int, float]:
    """Write every shard not yet written; returns (entries in shard order, shards skipped, the
    workers' seconds on the shards run)."""
    done = _done(directory, shards, job_key)
    todo = [sh for sh in shards if sh.index not in done]
    if done:
        logger.info("%s: %d of %d shards already written for this job; running the other %d", directory, len(done), len(shards), len(todo))
    entries: dict[int, dict[str, Any]] = {}
    worker_s = 0.0
    total = sum(sh.rows for sh in shards)
    with as_progress(progress).task(job.name, total=total, unit="item", completed=sum(sh.rows for sh in shards if sh.index in done)) as task:
        for res in engine.map(job, todo, str(directory)):
            info = res["info"]
            entries[int(info["index"])] = info
            worker_s += float(res.get("shard_seconds", 0.0))
            if on_result is not None:
                on_result(res)
            task.advance(int(info["input_rows"]))
    for sh in shards:
        if sh.index in done:
            entries[sh.index] = _entry_of(directory, sh)
            if on_result is not None:
                on_result({"info": entries[sh.index], "stats": None, "skipped": True})
    return [entries[sh.index] for sh in shards], len(done), worker_s


def run_sharded(
    job: ShardJob,
    shards: Sequence[Shard],
    out: str | os.PathLike,
    *,
    engine: EngineConfig | Engine,
    job_key: str,
    fields: Mapping[str, Any],
    overwrite: bool = False,
    progress: Progress | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run ``job`` over ``shards`` into the shard directory ``out`` (see ``engines._output``).

    A finished directory of the same job (same fingerprint) is left as it is (``skipped``);
    one of another job is an error unless ``overwrite`` (then the new one is built beside it
    and switched in at the end). An unfinished one resumes: parts of this job are kept. The
    manifest (``fields`` plus the shard list) is written last. Returns a summary.
    """
    engine = engine_for(engine)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"output {out} exists and is not a directory; the sharded output is a directory, choose another path")
    t0 = time.perf_counter()
    names = [sh.name for sh in shards]
    plan_key = digest({"job": job_key, "shards": [sh.identity() for sh in shards]})
    with writer_lock(out):
        prev = read_manifest(out, SHARDS, verify="none") if (out / SHARDS.manifest_name).exists() else None
        if prev is not None and not overwrite:
            if prev.get("plan_key") == plan_key:
                logger.info("%s is already complete for this job; nothing to do", out)
                return {"out": str(out), "shards": len(shards), "shards_run": 0, "shards_skipped": len(shards), "complete_before": True,
                        "n_rows": int(prev.get("n_rows", 0)), "seconds": time.perf_counter() - t0}
            raise ArtifactError(f"{out} holds the finished output of another {prev.get('job', 'job')} (other input or settings); "
                                "set `overwrite` to replace it, or choose another `out`")
        manifest_fields = {**fields, "job": job.name, "job_key": job_key, "plan_key": plan_key,
                           "n_rows": int(sum(sh.rows for sh in shards))}
        if prev is not None:  # overwrite a finished directory: build beside it, switch in at the end
            with write_artifact(out, SHARDS, overwrite=True) as w:
                entries, skipped, worker_s = _fill(job, shards, w.dir, engine, job_key, progress, on_result)
                w.fields.update(manifest_fields, shards=entries)
        else:
            out.mkdir(parents=True, exist_ok=True)
            entries, skipped, worker_s = _fill(job, shards, out, engine, job_key, progress, on_result)
            for p in stray_parts(out, [f"{n}.parquet" for n in names]):
                p.unlink()
            with update_artifact(out, SHARDS, create=True, verify="none") as u:
                u.fields.update(manifest_fields, shards=entries)
                for e in entries:
                    u.files[e["file"]] = {"sha256": e["sha256"], "size": e["size"]}
    return {"out": str(out), "shards": len(shards), "shards_run": len(shards) - skipped, "shards_skipped": skipped,
            "complete_before": False, "n_rows": manifest_fields["n_rows"], "seconds": time.perf_counter() - t0,
            "shard_seconds": worker_s}
