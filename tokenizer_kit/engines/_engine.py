"""The engine object: where a job's per-shard function runs, chosen once from the execution config.

A stage builds one engine with :func:`engine_for` and hands it to its domain's driver, which
calls ``engine.map(job, shards, out_dir)`` and collects the results; the driver's code is the
same for both engines. :class:`LocalEngine` runs the shards one after another in this
process; :class:`RayEngine` runs them on a Ray Data actor pool (``engines._ray``). Both call
``job.setup`` once per worker and ``job.run`` per shard (``engines._run.run_one``), so they
compute the same parts.

``sharded_output`` says which output layout a per-item map writes where the layout is the
engine's to choose (embed, embed-text, assign): the local engine writes the single Parquet
file users of one machine read, Ray a directory of Parquet shards with a manifest.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from ._config import EngineConfig
from ._plan import Shard

__all__ = ["Engine", "LocalEngine", "RayEngine", "engine_for"]


class Engine:
    """Runs a :class:`~tokenizer_kit.engines.ShardJob` over shards; results as they finish."""

    sharded_output: bool = False

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig()

    @property
    def name(self) -> str:
        return self.config.engine

    @property
    def workers(self) -> int:
        """Workers the shards are spread over (1 in process)."""
        return 1

    def map(self, job, shards: Sequence[Shard], out_dir: str) -> Iterator[dict[str, Any]]:
        raise NotImplementedError


class LocalEngine(Engine):
    """The shards one after another in this process (one ``setup``)."""

    def map(self, job, shards: Sequence[Shard], out_dir: str) -> Iterator[dict[str, Any]]:
        from ._run import run_one

        if not shards:
            return
        job.setup(None)
        for sh in shards:
            yield run_one(job, sh, out_dir)


class RayEngine(Engine):
    """The shards on a Ray Data actor pool of ``config.workers`` actors (any order)."""

    sharded_output = True

    @property
    def workers(self) -> int:
        return int(self.config.workers)

    def map(self, job, shards: Sequence[Shard], out_dir: str) -> Iterator[dict[str, Any]]:
        if not shards:
            return
        from ._ray import ray_map

        yield from ray_map(job, shards, out_dir, self.config)


def engine_for(config: EngineConfig | Engine | None) -> Engine:
    """The engine an execution config names (an engine is returned as it is; None: local)."""
    if isinstance(config, Engine):
        return config
    config = config or EngineConfig()
    return RayEngine(config) if config.engine == "ray" else LocalEngine(config)
