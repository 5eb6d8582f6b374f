"""A feature store written shard by shard by workers, committed in catalogue order.

The store's per-shard operation, split in its two halves so that any engine can run the
first one anywhere:

* :class:`ShardEncoder` (a worker): builds the backend once, encodes one shard of catalogue
  rows (``_encode_shard``: length-sorted batches within the shard) and writes the shard's
  files (``shard_parts``) into an incoming directory beside the store, with a
  ``<shard>.done.json`` record written last;
* :class:`ShardCommitter` (the driver): holds the store's writer lock, says which shards
  are left to compute, adopts finished shards in catalogue order
  (``FeatureStoreWriter.adopt_shard``: the files are moved in, then the manifest is
  replaced), finishes the store (``_finish``) and returns the :class:`ExtractResult`.

The store is the one ``extract_features`` writes in process, shard for shard.

Resume: shards the store lists are kept; a finished shard still waiting in the incoming
directory is adopted without recomputing it when its record matches the job (same config,
same catalogue rows); everything else is recomputed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from .._progress import NullProgress
from ..errors import ArtifactError
from ._extract import ExtractConfig, ExtractResult, _compute, _encode_shard, _finish, empty_items_summary
from ._store import FeatureStoreWriter, shard_parts

__all__ = ["ShardCommitter", "ShardEncoder", "incoming_dir", "store_shard_name"]

logger = logging.getLogger(__name__)


def store_shard_name(index: int) -> str:
    """The name of the store's shard ``index`` (its files are ``<name>.<part>``)."""
    return f"shard-{index:05d}"


def incoming_dir(out: str | os.PathLike) -> Path:
    """Where workers write the finished shards of the store at ``out`` until they are committed
    (beside the store, on its filesystem)."""
    from ..io import artifact_path

    real = artifact_path(out)
    return real.parent / f".{real.name}.incoming"


class ShardEncoder:
    """Encodes shards of catalogue rows and writes each as files another process commits."""

    def __init__(self, config: ExtractConfig, segments: Sequence[str], base: str | os.PathLike | None):
        from ._backends import build_backend

        self.config = config
        self.seg_id = {f: i for i, f in enumerate(segments)}
        self.base = Path(base) if base is not None else None
        self.backend = build_backend(config)

    def write_shard(self, rows: list[dict[str, Any]], ids: list[str], out_dir: str | os.PathLike, *, index: int, first_row: int,
                    key: str) -> dict[str, Any]:
        """Encode ``rows`` (the catalogue's rows ``first_row..``, items ``ids``) as shard ``index``
        into ``out_dir``; returns its record (what :meth:`ShardCommitter.add` commits)."""
        from ..io import atomic_write

        cfg, backend = self.config, self.backend
        with NullProgress().task("extract") as task, _compute(cfg):
            out_ids, toks, segs, errors, skipped, embedded = _encode_shard(rows, ids, cfg, backend, self.seg_id, self.base, task)
        extra = {"n_rows": len(rows), "first_row": first_row, "errors": errors, "skipped": skipped, "embedded_empty": embedded}
        parts, n_tokens = shard_parts(out_ids, toks, segs, backend.dim, extra)
        name = store_shard_name(index)
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)  # made by the first shard written: a run that fails before leaves nothing
        files = {}
        for part, write in parts.items():
            with atomic_write(d / f"{name}.{part}") as tmp:
                with open(tmp, "wb") as f:
                    write(f)
            files[part] = str(d / f"{name}.{part}")
        rec = {"key": key, "index": index, "name": name, "input_rows": len(rows), "n_items": len(out_ids), "n_tokens": n_tokens,
               "files": files, "dim": int(backend.dim), "backend": backend.describe()}
        with atomic_write(d / f"{name}.done.json") as tmp:
            tmp.write_text(json.dumps(rec))
        return rec


class _Described:
    def __init__(self, info: dict[str, Any]):
        self.info = info

    def describe(self) -> dict[str, Any]:
        return self.info


class ShardCommitter:
    """The driver's side: a context manager holding the store's writer lock (see the module doc).

    ``out``: the store; ``store_cfg``: its config (``prepare_store``); ``n_shards``: how many
    shards the catalogue is cut into (every ``config.shard_size`` rows).
    """

    def __init__(self, out: str | os.PathLike, config: ExtractConfig, store_cfg: dict[str, Any], *, n_shards: int,
                 overwrite: bool = False):
        self.out, self.config, self.store_cfg, self.overwrite = Path(out), config, store_cfg, overwrite
        self.segments = [*config.image_fields, *config.text_fields]
        self.n_shards = n_shards
        self.incoming = incoming_dir(self.out)
        self._stack = contextlib.ExitStack()
        self._writer: FeatureStoreWriter | None = None
        self._pending: dict[int, dict[str, Any]] = {}
        self.backend_info: dict[str, Any] | None = None
        self.n_tokens_run = 0

    def __enter__(self) -> "ShardCommitter":
        from ..io import writer_lock

        self._stack.enter_context(writer_lock(self.out))
        try:
            self.committed, self.dim = self._resume_point()
            self.next = self.committed
        except BaseException:
            self._stack.close()
            raise
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
            if exc_type is None:  # a failed run keeps its finished shards for the next one
                shutil.rmtree(self.incoming, ignore_errors=True)
        finally:
            self._stack.close()

    def _resume_point(self) -> tuple[int, int | None]:
        """How many shards the store at ``out`` already committed, and its dimension (None: new)."""
        from ..io import read_manifest
        from ._store import FEATURE_STORE

        if self.overwrite or not FEATURE_STORE.committed(self.out):
            return 0, None
        m = read_manifest(self.out, FEATURE_STORE, verify="none")
        committed = self.n_shards if m.get("complete") else len(m.get("shards", []))  # finished: resuming is a no-op
        return committed, m.get("dim")

    def ready(self, index: int, key: str) -> dict[str, Any] | None:
        """A finished record of shard ``index`` in the incoming directory for the job ``key``, with its files present."""
        try:
            rec = json.loads((self.incoming / f"{store_shard_name(index)}.done.json").read_text())
        except (OSError, ValueError):
            return None
        if rec.get("key") != key or not all(Path(f).is_file() for f in rec.get("files", {}).values()):
            return None
        return rec

    def add(self, rec: dict[str, Any], *, computed: bool = True) -> None:
        """A finished shard's record; every shard up to the first one missing is committed."""
        self._pending[int(rec["index"])] = rec
        if computed:
            self.backend_info = rec["backend"]
            self.n_tokens_run += int(rec["n_tokens"])
        elif self.backend_info is None:
            self.backend_info = rec["backend"]
        while self.next in self._pending:
            rec = self._pending.pop(self.next)
            w = self._open_writer(rec["dim"])
            if w.manifest["shards"] and len(w.manifest["shards"]) != self.next:
                raise ArtifactError(f"{self.out} changed while the job ran; rerun it")
            w.adopt_shard({p: Path(f) for p, f in rec["files"].items()}, n_items=rec["n_items"], n_tokens=rec["n_tokens"])
            Path(self.incoming / f"{rec['name']}.done.json").unlink(missing_ok=True)
            self.next += 1

    def _open_writer(self, dim: int) -> FeatureStoreWriter:
        if self._writer is None:
            self._writer = FeatureStoreWriter(self.out, dim=dim, config=self.store_cfg, segments=self.segments, overwrite=self.overwrite)
        return self._writer

    def finish(self, *, n_rows: int, rows_resumed: int) -> ExtractResult:
        """Finish the store (every shard committed) and return the run's result."""
        if self._writer is None and self.dim is None:  # nothing was left to compute and no store to finish
            raise ArtifactError(f"{self.out}: no shard to commit and no store to finish")
        writer = self._open_writer(self._writer.dim if self._writer is not None else self.dim)
        info = self.backend_info
        if info is None:
            from ._backends import build_backend

            info = build_backend(self.config).describe()
        all_errors, n_skipped = _finish(writer, self.config, _Described(info))
        m = writer.manifest
        seconds = time.perf_counter() - self.t0
        done = n_rows - rows_resumed
        return ExtractResult(
            **empty_items_summary(m), path=self.out, n_rows=n_rows, n_items=int(m["n_items"]), n_tokens=int(m["n_tokens"]),
            dim=int(writer.dim), n_image_errors=len(all_errors), n_skipped_items=n_skipped, rows_resumed=rows_resumed,
            rows_this_run=done, seconds=seconds, items_per_s=done / seconds if seconds > 0 else 0.0,
            tokens_per_s=self.n_tokens_run / seconds if seconds > 0 else 0.0, random_init=bool(self.config.random_init),
            errors=all_errors,
        )
