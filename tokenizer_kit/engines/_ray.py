"""The Ray engine: a Ray Data actor pool over the shards of a job.

The shards are a Ray Dataset of one row each (``ray.data.from_items``, one block per shard);
``map_batches`` runs them on a fixed pool of ``workers`` actors (``ActorPoolStrategy``),
each reserving ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs. The actor class is
made per job with the job inside it, so every actor calls ``job.setup`` once (one model or
tokenizer load per worker) and then ``job.run`` per shard. Each actor reads its shard's
rows itself (Parquet on any filesystem the workers reach) and writes its part to the output
directory, so only small summaries travel back to the driver.

Why not ``read_parquet`` -> ``map_batches`` -> ``write_parquet``: Ray Data cuts blocks as
its parallelism and the files' row groups dictate and names written files by a write id,
so a rerun could neither tell which outputs are already done nor reproduce the local
engine's batches. Shards fixed by the input alone (``engines._plan``) give both.

A project error raised in a worker (``TokenizerKitError``) comes back as a result record
and is raised again on the driver as the same class with the same one-line message.

The actors start with glibc's mmap threshold fixed (``WORKER_ENV``, through their runtime
environment, merged by Ray with the job's): a worker frees its batch's arrays (tens of MiB each)
after every batch, and glibc raises its threshold after the first such free, so later arrays
of up to 32 MiB come from its heaps, whose freed pages stay resident. An indexed assign
worker (1M-row shards of 256-d vectors, 10% new items) peaked at about 550 MiB of RssAnon while
its traced arrays never exceeded about 105 MiB; with the threshold fixed every such array is
mapped and returned to the system when freed: about 255 MiB, at the same wall time. A variable
already set in the driver's environment is left as it is.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from typing import Any, Iterator, Sequence

from ._config import EngineConfig
from ._plan import Shard

__all__ = ["ray_map", "ensure_ray", "shutdown_ray"]

logger = logging.getLogger(__name__)

_STARTED = False  # whether this process started the local Ray it uses

# glibc's mmap threshold in the workers (see the module doc): 128 KiB, its initial value, made fixed
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def ensure_ray(engine: EngineConfig) -> None:
    """Join the cluster at ``engine.ray_address``, or start a local Ray (once per process)."""
    global _STARTED
    from ..errors import InputError

    try:
        import ray
    except ImportError:  # pragma: no cover - ray[data] is in requirements.txt
        raise InputError("the ray engine needs Ray Data: pip install 'ray[data]==2.60.0' (make install does)") from None
    if ray.is_initialized():
        return
    quiet = logging.getLogger("tokenizer_kit").getEffectiveLevel() > logging.DEBUG
    kw: dict[str, Any] = {"logging_level": logging.ERROR if quiet else logging.INFO, "log_to_driver": not quiet}
    if engine.ray_address:
        try:
            ray.init(address=engine.ray_address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError(f"cannot join the Ray cluster at {engine.ray_address!r} ({' '.join(str(e).split())[:160]}); "
                             "start it with `ray start --head`, or leave ray_address unset for a local Ray") from None
        return
    need = math.ceil(engine.workers * engine.cpus_per_worker)
    ray.init(num_cpus=max(os.cpu_count() or 1, need), include_dashboard=False, object_store_memory=512 << 20, **kw)
    _STARTED = True


def shutdown_ray() -> None:
    """Stop the local Ray this process started (a joined cluster keeps running)."""
    global _STARTED
    if _STARTED:
        import ray

        ray.shutdown()
        _STARTED = False


def worker_env() -> dict[str, str]:
    """The environment variables the actors start with (``WORKER_ENV``), less those the
    driver's environment sets (a local Ray's workers inherit them)."""
    return {k: v for k, v in WORKER_ENV.items() if k not in os.environ}


def _gpus(engine: EngineConfig) -> float:
    if engine.gpus_per_worker is not None:
        return float(engine.gpus_per_worker)
    import ray

    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _actor_class(job, threads: int):
    """A callable class holding ``job`` (pickled by value with the class: no constructor args)."""
    from ..errors import TokenizerKitError
    from ._run import error_record, run_one

    class ShardWorker:
        def __init__(self):
            self.job = job
            self.setup_error = None
            try:
                self.job.setup(threads)
            except TokenizerKitError as e:  # reported with the first shard, as the local engine raises it
                self.setup_error = error_record(e)

        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            out = []
            for spec in batch["spec"]:
                shard, out_dir = _shard_from_json(str(spec))
                if self.setup_error is not None:
                    out.append(json.dumps(self.setup_error))
                    continue
                try:
                    out.append(json.dumps(run_one(self.job, shard, out_dir)))
                except TokenizerKitError as e:
                    out.append(json.dumps(error_record(e)))
            return {"result": out}

    ShardWorker.__name__ = ShardWorker.__qualname__ = f"{type(job).__name__}Worker"
    return ShardWorker


def _shard_to_json(sh: Shard, out_dir: str) -> str:
    from dataclasses import asdict

    return json.dumps({"shard": asdict(sh), "out_dir": out_dir})


def _shard_from_json(s: str) -> tuple[Shard, str]:
    from ._plan import InputFile

    d = json.loads(s)
    sh = d["shard"]
    f = sh.pop("file")
    return Shard(**sh, file=InputFile(**f) if f is not None else None), d["out_dir"]


def ray_map(job, shards: Sequence[Shard], out_dir: str, engine: EngineConfig) -> Iterator[dict[str, Any]]:
    """``job`` over ``shards`` on a Ray Data actor pool; results as they finish."""
    import ray.data

    ensure_ray(engine)
    with warnings.catch_warnings():  # Ray Data's own deprecation notices about its settings
        warnings.simplefilter("ignore", DeprecationWarning)
        yield from _map(job, shards, out_dir, engine)


def _map(job, shards: Sequence[Shard], out_dir: str, engine: EngineConfig) -> Iterator[dict[str, Any]]:
    import ray.data

    from ._run import error_from_record

    ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.print_on_execution_start)
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    quiet = logging.getLogger("tokenizer_kit").getEffectiveLevel() > logging.DEBUG
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if quiet:  # Ray Data's execution notices (and its note that bars are off)
        data_log.setLevel(logging.ERROR)
    try:
        items = [{"spec": _shard_to_json(sh, out_dir)} for sh in shards]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        threads = max(1, int(engine.cpus_per_worker))
        mapped = ds.map_batches(
            _actor_class(job, threads),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(engine.workers, len(shards))),
            num_cpus=engine.cpus_per_worker,
            num_gpus=_gpus(engine),
            batch_format="numpy",
            # no actor restarts: Ray cannot restart an actor whose constructor arguments sit in its
            # object store (ray-project/ray#53727) and says so on stderr for every pool; a failed
            # worker fails the job with its error
            max_restarts=0,
            **({"runtime_env": {"env_vars": env}} if (env := worker_env()) else {}),
        )
        for row in mapped.iter_rows():
            rec = json.loads(row["result"])
            if "error" in rec:
                raise error_from_record(rec)
            yield rec
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved
        data_log.setLevel(level)
