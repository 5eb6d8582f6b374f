"""``embed-text`` and ``embed`` over shards: one model load per worker, one part per shard.

``embed-text``: the driver reads the catalogue (as the local engine does) and hands each
shard its items' ids and texts; the worker runs ``features.TextEncoder`` over them with the
shard as one length-sorting window (the local engine sorts within windows of the same
size, so the batches, and the bytes, are the same). ``embed``: each worker opens the feature
store (memory-mapped) and the alignment model once and embeds its rows in batches counted
from the shard's first row (``alignment.embed_rows``, what the local ``embed_store`` runs).
Parts have the embeddings Parquet layout (``item_id``, ``embedding``) and its metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .._progress import Progress
from ._config import EngineConfig
from ._engine import Engine, LocalEngine, engine_for
from ._output import part_writer
from ._plan import Shard, digest, plan_rows
from ._run import ShardJob, run_sharded

__all__ = ["TextEmbedJob", "EmbedJob", "embed_text_sharded", "embed_sharded", "set_threads"]


def set_threads(threads: int | None) -> None:
    """Torch's intra-op threads in a worker (its share of the host's CPUs)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@dataclass
class TextEmbedJob(ShardJob):
    model: str | None
    batch_size: int
    max_length: int
    normalize: bool
    device: str | None
    meta: dict[str, Any]
    name: str = "embed-text"

    def setup(self, threads: int | None) -> None:
        from ..features import TextEncoder

        set_threads(threads)
        self._enc = TextEncoder(model_path=self.model, max_length=self.max_length, normalize=self.normalize, device=self.device)

    def run(self, shard: Shard, out_dir: str) -> dict[str, Any]:
        from ..io import embeddings_table

        ids, texts = shard.payload["ids"], shard.payload["texts"]
        x = self._enc.encode(texts, batch_size=self.batch_size, sort_window=None)
        with part_writer(out_dir, shard, self.key) as w:
            w.write(embeddings_table(ids, x, metadata=self.meta))
        return {"info": w.info, "stats": {"dim": int(x.shape[1])}}

    @property
    def key(self) -> str:
        return digest({"job": self.name, "model": self.model, "max_length": self.max_length, "normalize": self.normalize,
                       "batch_size": self.batch_size, "meta": self.meta})


def embed_text_sharded(ids: Sequence[Any], texts: Sequence[str], out, *, engine: EngineConfig | Engine, model: str | None, batch_size: int,
                       max_length: int, normalize: bool, device: str | None, shard_size: int, meta: dict[str, Any],
                       source: dict[str, Any], overwrite: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Text embeddings of a catalogue's items (``ids``, ``texts``) into the shard directory ``out``."""
    engine = engine_for(engine)
    model_id = model
    if model is None:
        from ..features import default_text_model_path

        model = default_text_model_path()
    job = TextEmbedJob(model=model, batch_size=batch_size, max_length=max_length, normalize=normalize, device=device, meta=meta)
    shards = plan_rows(len(ids), shard_size)
    for sh in shards:
        sl = slice(sh.first_row, sh.first_row + sh.rows)
        sh.payload = {"ids": list(ids[sl]), "texts": list(texts[sl])}  # ids keep their type (int64 or string)
        sh.input_id = digest([sh.payload["ids"], sh.payload["texts"]])  # a catalogue edit redoes the shards it touches
    fields = {"config": {"model": model_id, "batch_size": batch_size, "max_length": max_length, "normalize": normalize,
                         "shard_size": shard_size, "engine": engine.name}, "source": source, "metadata": meta}
    return run_sharded(job, shards, out, engine=engine, job_key=job.key, fields=fields, overwrite=overwrite, progress=progress)


@dataclass
class EmbedJob(ShardJob):
    store: str
    alignment: str
    pooling: str
    batch_size: int
    max_tokens: int | None
    device: str | None
    weights_sha256: str
    name: str = "embed"

    def setup(self, threads: int | None) -> None:
        from .._torch_utils import resolve_device
        from ..alignment import embedding_record, load_alignment
        from ..features import FeatureStore

        set_threads(threads)
        self._dev = resolve_device(self.device)
        self._model, meta = load_alignment(self.alignment, device=str(self._dev))
        if meta.get("weights_sha256") != self.weights_sha256:
            from ..errors import ArtifactError

            raise ArtifactError(f"{self.alignment}: the model changed since the job was planned (checksum differs); rerun the job")
        self._store = FeatureStore.open(self.store)
        self._schema, _ = embedding_record(self._model, meta, self._store, self.alignment, self.pooling)

    def run(self, shard: Shard, out_dir: str) -> dict[str, Any]:
        from ..alignment import embed_rows

        with part_writer(out_dir, shard, self.key) as w:
            for table in embed_rows(self._model, self._store, shard.first_row, shard.first_row + shard.rows, self._schema,
                                    pooling=self.pooling, batch_size=self.batch_size, max_tokens=self.max_tokens, device=self._dev):
                w.write(table)
        return {"info": w.info, "stats": None}

    @property
    def key(self) -> str:
        return digest({"job": self.name, "store": self.store, "weights": self.weights_sha256, "pooling": self.pooling,
                       "batch_size": self.batch_size, "max_tokens": self.max_tokens})


def embed_sharded(store, alignment: str | os.PathLike, out, *, engine: EngineConfig | Engine, pooling: str, batch_size: int,
                  max_tokens: int | None, device: str | None, shard_size: int, overwrite: bool = False,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Aligned embeddings of every item of ``store`` into the shard directory ``out``; the
    shard size is rounded to whole batches so the batches are the local engine's."""
    from .._torch_utils import resolve_device
    from ..alignment import check_embed_settings, embedding_record, load_alignment

    engine = engine_for(engine)
    model, meta = load_alignment(alignment, device="cpu")  # checks the model and its checksum once, on the driver
    max_tokens = check_embed_settings(model, meta, store, pooling, batch_size, max_tokens)
    _, record = embedding_record(model, meta, store, alignment, pooling)
    del model
    job = EmbedJob(store=str(Path(store.path).resolve()), alignment=str(Path(alignment).resolve()), pooling=pooling, batch_size=batch_size,
                   max_tokens=max_tokens, device=str(resolve_device(device)) if isinstance(engine, LocalEngine) else device,
                   weights_sha256=str(meta["weights_sha256"]))
    rows = max(batch_size, -(-int(shard_size) // batch_size) * batch_size)
    shards = plan_rows(len(store), rows)
    store_id = digest({"manifest_sha256": store.manifest.get("manifest_sha256"), "n_items": len(store)})
    for sh in shards:
        sh.input_id = store_id
    fields = {"config": {"pooling": pooling, "batch_size": batch_size, "max_tokens": max_tokens, "shard_size": rows,
                         "engine": engine.name}, "metadata": record}
    res = run_sharded(job, shards, out, engine=engine, job_key=job.key, fields=fields, overwrite=overwrite, progress=progress)
    return {**record, "n_items": len(store), **res}

