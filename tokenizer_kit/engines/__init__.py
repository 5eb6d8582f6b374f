"""Engines for the per-item maps (extract, embed-text, embed, assign): ``local`` or ``ray``.

Both run one per-shard function over the same shards (``_plan``), which write a directory
of Parquet parts with a manifest written last (``_output``): the same bytes on either
engine, resumable after a kill. ``ray`` runs the shards on a Ray Data actor pool (``_ray``).
"""

from .._exports import lazy_exports
from ._config import ENGINES, EngineConfig

# the rest loads on first use (PEP 562): the settings above are what the CLI needs to start
_LAZY = {
    "assign_sharded": "._assign", "tokenizer_fingerprint": "._assign",
    "index_shards": "._index", "load_sharded_index": "._index",
    "SHARDS": "._output", "read_shard_manifest": "._output", "shard_files": "._output",
    "Shard": "._plan", "plan_files": "._plan", "plan_rows": "._plan",
    "ensure_ray": "._ray", "shutdown_ray": "._ray",
    "ShardJob": "._run", "map_shards": "._run", "run_sharded": "._run",
}
__getattr__ = lazy_exports(__name__, _LAZY)


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
