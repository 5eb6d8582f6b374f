"""Where the per-item maps run: in this process (``local``) or on a Ray cluster (``ray``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .._config import ValidatedConfig, setting
from ..errors import InputError

__all__ = ["ENGINES", "EngineConfig"]

ENGINES = ("local", "ray")


@dataclass
class EngineConfig(ValidatedConfig):
    """Engine settings shared by extract, embed-text, embed and assign (flattened into their tables).

    Both engines run the same per-shard function on the same shards, so they write the same
    bytes; ``ray`` runs the shards on a Ray Data actor pool (one model / tokenizer load per
    worker), ``local`` runs them one after another here.
    """

    label: ClassVar[str] = "engine"
    error_type: ClassVar[type[InputError]] = InputError

    engine: str = setting("local", help="local (this process) or ray (a Ray Data actor pool; the output is a directory of shards).",
                          choices=ENGINES)
    ray_address: str | None = setting(None, help="Ray cluster to join (auto, or ray://HOST:10001); default: start a local Ray on this machine.")
    workers: int = setting(1, help="Ray workers (actors); each loads the model or tokenizer once.", bounds=(1, None))
    cpus_per_worker: float = setting(1.0, help="CPUs each Ray worker reserves (and its compute threads).", bounds=(0.0, None))
    gpus_per_worker: float | None = setting(None, help="GPUs each Ray worker reserves (default: 1 when the cluster has GPUs, else 0).",
                                            bounds=(0.0, None))

    def errors(self) -> list[str]:
        e = []
        if self.engine == "local" and self.ray_address is not None:
            e.append("ray_address applies to the ray engine; set engine to ray, or drop ray_address")
        return e

    @property
    def is_ray(self) -> bool:
        return self.engine == "ray"
