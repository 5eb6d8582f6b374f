"""``extract`` over shards: the feature store's shards computed on an engine, committed in order.

The store's shards are the catalogue's rows cut every ``shard_size`` rows. The feature store
owns the per-shard work (``features.ShardEncoder``: encode a shard, write its files beside
the store) and the commit (``features.ShardCommitter``: the writer lock, resume, shards
adopted in catalogue order, the finished manifest); this module only plans the shards and
maps the encoder over them on the engine (in process or on Ray), handing each finished
shard to the committer. Both engines give the same store, shard for shard.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._progress import Progress, as_progress
from ._config import EngineConfig
from ._embed import set_threads
from ._engine import Engine, engine_for
from ._plan import Shard, digest, plan_rows
from ._run import ShardJob

__all__ = ["ExtractJob", "extract_sharded"]

logger = logging.getLogger(__name__)


def _rows_to_b64(table) -> str:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode()


def _rows_from_b64(s: str) -> list[dict[str, Any]]:
    import pyarrow as pa

    return pa.ipc.open_stream(base64.b64decode(s)).read_all().to_pylist()


@dataclass
class ExtractJob(ShardJob):
    config: Any  # ExtractConfig
    base: str | None
    segments: list[str]
    job_key: str
    name: str = "extract"

    def setup(self, threads: int | None) -> None:
        from ..features import ShardEncoder

        set_threads(threads)
        self._encoder = ShardEncoder(self.config, self.segments, self.base)

    def run(self, shard: Shard, out_dir: str) -> dict[str, Any]:
        rec = self._encoder.write_shard(_rows_from_b64(shard.payload["rows"]), shard.payload["ids"], out_dir, index=shard.index,
                                        first_row=shard.first_row, key=shard.key(self.job_key))
        return {"info": rec, "stats": None}


def _plan(item_ids, shard_size: int) -> list[Shard]:
    shards = plan_rows(len(item_ids), shard_size)
    for sh in shards:
        sh.input_id = digest(item_ids[sh.first_row : sh.first_row + sh.rows])
    return shards


def extract_sharded(catalog, out: str | os.PathLike, config, *, engine: EngineConfig | Engine | None = None, overwrite: bool = False,
                    base_dir: str | os.PathLike | None = None, progress: Progress | None = None):
    """``features.extract_features`` with the shards computed on ``engine`` (see the module doc);
    returns the same :class:`~tokenizer_kit.features.ExtractResult`."""
    from ..features import ShardCommitter, prepare_store

    engine = engine_for(engine)
    table, base, item_ids, store_cfg = prepare_store(catalog, out, config, base_dir=base_dir, overwrite=overwrite)
    n_rows = len(item_ids)
    segments = [*config.image_fields, *config.text_fields]
    job = ExtractJob(config=config, base=None if base is None else str(Path(base).resolve()), segments=segments,
                     job_key=digest({"job": "extract", "store_config": store_cfg}))
    shards = _plan(item_ids, config.shard_size)
    with ShardCommitter(out, config, store_cfg, n_shards=len(shards), overwrite=overwrite) as commit:
        done_rows = sum(sh.rows for sh in shards[: commit.committed])
        if done_rows:
            logger.info("resuming %s at row %d of %d (%d complete shards)", out, done_rows, n_rows, commit.committed)
        todo = shards[commit.committed :]
        ready = {sh.index: rec for sh in todo if (rec := commit.ready(sh.index, sh.key(job.job_key))) is not None}
        run = [sh for sh in todo if sh.index not in ready]
        for sh in run:
            sh.payload = {"rows": _rows_to_b64(table.slice(sh.first_row, sh.rows).select(segments)),
                          "ids": item_ids[sh.first_row : sh.first_row + sh.rows]}
        with as_progress(progress).task("extract", total=n_rows, unit="item", completed=done_rows) as task:
            for sh in todo:
                if sh.index in ready:
                    commit.add(ready[sh.index], computed=False)
                    task.advance(sh.rows)
            for res in engine.map(job, run, str(commit.incoming)):
                commit.add(res["info"])
                task.advance(int(res["info"]["input_rows"]))
        return commit.finish(n_rows=n_rows, rows_resumed=done_rows)
