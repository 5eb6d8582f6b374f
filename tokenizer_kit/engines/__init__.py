"""Engines for the per-item maps (extract, embed-text, embed, assign): ``local`` or ``ray``.

An engine (``engine_for(config)``: one object per run, ``_engine``) only decides where a
job's per-shard function runs (``engine.map``: in process, or on a Ray Data actor pool,
``_ray``) and collects the parts; the work per shard or batch belongs to its domain (the
feature store writes and commits a shard, the tokenizer encodes a batch, the cold start
looks a batch up, a collision policy resolves a group). Both engines run the same function
over the same shards (``_plan``) into a directory of Parquet parts with a manifest written
last (``_output``): the same bytes on either engine, resumable after a kill.
"""

from .._exports import lazy_exports
from ._config import ENGINES, EngineConfig

# the rest loads on first use (PEP 562): the settings above are what the CLI needs to start
_LAZY = {
    "AssignParts": "._assign", "Sharding": "._assign", "assign_sharded": "._assign", "tokenizer_fingerprint": "._assign",
    "Engine": "._engine", "LocalEngine": "._engine", "RayEngine": "._engine", "engine_for": "._engine",
    "extract_sharded": "._extract",
    "assign_codes": "._routes", "check_output": "._routes", "cold_start": "._routes", "embed_store_items": "._routes",
    "embed_text_items": "._routes",
    "index_shards": "._index", "install_sharded_index": "._index", "load_sharded_index": "._index",
    "SHARDS": "._output", "read_shard_manifest": "._output", "shard_files": "._output",
    "Shard": "._plan", "plan_files": "._plan", "plan_rows": "._plan",
    "ensure_ray": "._ray", "shutdown_ray": "._ray",
    "ShardJob": "._run", "map_shards": "._run", "run_sharded": "._run",
}
__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "AssignParts",
    "ENGINES",
    "Engine",
    "EngineConfig",
    "LocalEngine",
    "RayEngine",
    "SHARDS",
    "Shard",
    "ShardJob",
    "Sharding",
    "assign_codes",
    "assign_sharded",
    "check_output",
    "cold_start",
    "embed_store_items",
    "embed_text_items",
    "engine_for",
    "ensure_ray",
    "extract_sharded",
    "index_shards",
    "install_sharded_index",
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
