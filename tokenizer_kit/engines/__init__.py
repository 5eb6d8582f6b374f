"""Engines for the per-item maps (extract, embed-text, embed, assign): ``local`` or ``ray``.

Both run one per-shard function over the same shards (``_plan``), which write a directory
of Parquet parts with a manifest written last (``_output``): the same bytes on either
engine, resumable after a kill. ``ray`` runs the shards on a Ray Data actor pool (``_ray``).
"""

from ._assign import assign_sharded, tokenizer_fingerprint
from ._config import ENGINES, EngineConfig
from ._index import index_shards, load_sharded_index
from ._output import SHARDS, read_shard_manifest, shard_files
from ._plan import Shard, plan_files, plan_rows
from ._ray import ensure_ray, shutdown_ray
from ._run import ShardJob, map_shards, run_sharded

__all__ = [
    "ENGINES",
    "EngineConfig",
    "SHARDS",
    "Shard",
    "ShardJob",
    "assign_sharded",
    "ensure_ray",
    "index_shards",
    "load_sharded_index",
    "map_shards",
    "plan_files",
    "plan_rows",
    "read_shard_manifest",
    "run_sharded",
    "shard_files",
    "shutdown_ray",
    "tokenizer_fingerprint",
]
