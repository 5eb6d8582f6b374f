"""Embedding a feature store with a trained alignment model -> Parquet for ``build-codebook``.

Output: Parquet ``item_id`` (string, or int64 when the catalogue's ids were integers) + ``embedding`` (fixed-size list<float32>[D]), written
in batches (streaming) to a temporary file that replaces ``out`` at the end. Pooling:

- ``flatten`` (default): D = n_q * d_t, each query L2-normalised and scaled by 1/sqrt(n_q)
  (unit norm; cosine equals the InfoNCE training similarity);
- ``mean``: D = d_t, the mean of the n_q query vectors, L2-normalised;
- ``raw``: D = n_q * d_t, M~ exactly as the QFormer outputs it.

The choice, the model checksum and the shape are recorded in the Parquet schema metadata
(key ``tokenizer_kit``).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._progress import Progress, as_progress
from .._torch_utils import resolve_device
from .._version import __version__
from ..errors import ArtifactError, InputError
from ..io import Manifest, atomic_write, read_artifact
from ._artifact import ALIGNMENT
from ._config import POOLINGS, EmbedSettings, QFormerConfig
from ._losses import item_vectors
from ._qformer import QFormer

__all__ = ["load_alignment", "embed_store", "embed_rows", "embedding_record", "check_embed_settings", "POOLINGS", "pool_queries"]

logger = logging.getLogger(__name__)

def load_alignment(path: str | os.PathLike, *, device: str = "cpu") -> tuple[QFormer, dict[str, Any]]:
    """Load the QFormer of an alignment directory (strict, safetensors only).

    Read through ``io.read_artifact`` (kind ``ALIGNMENT``, ``alignment/_artifact.py``):
    checksums verified, newer formats refused, format-1 directories accepted.
    Returns the model and the manifest (``weights_sha256`` filled in from its files map).
    """
    return read_artifact(path, ALIGNMENT, lambda m: _load_alignment(m, device))


def _load_alignment(m: Manifest, device: str) -> tuple[QFormer, dict[str, Any]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    wpath = m.file("model.safetensors")
    meta = dict(m.data)
    try:
        qcfg = QFormerConfig.from_dict(meta["config"]["qformer"])
        model = QFormer(qcfg)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ArtifactError(f"{ALIGNMENT.manifest_path(m.path)}: the QFormer config is missing or ill-typed ({' '.join(str(e).split())[:160]}); {ALIGNMENT.fix}") from None
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError) as e:
        raise ArtifactError(f"{wpath} cannot be read ({' '.join(str(e).split())[:160]}); {ALIGNMENT.fix}") from None
    sd = {k[len("qformer.") :]: v for k, v in tensors.items() if k.startswith("qformer.")}
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        raise ArtifactError(f"{wpath}: QFormer weights do not match the manifest's config ({' '.join(str(e).split())[:160]})") from None
    if missing or unexpected:
        raise ArtifactError(f"{wpath}: QFormer weights do not match the manifest's config (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    meta["weights_sha256"] = m.files["model.safetensors"]["sha256"]
    return model.to(device).eval(), meta


def pool_queries(m: torch.Tensor, pooling: str) -> torch.Tensor:
    """(b, n_q, d) -> (b, D) by ``pooling`` (see the module docstring)."""
    if pooling == "flatten":
        return item_vectors(m)
    if pooling == "mean":
        return F.normalize(m.float().mean(1), dim=-1)
    if pooling == "raw":
        return m.float().reshape(m.shape[0], -1)
    # callers check their settings against EmbedSettings first; this names a direct caller's typo
    raise InputError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")


def embedding_record(model, meta: dict[str, Any], store, alignment, pooling: str) -> tuple[Any, dict[str, Any]]:
    """(Arrow schema, provenance record) of the embeddings ``model`` writes from ``store``."""
    import pyarrow as pa

    q = model.config
    dim = q.d_model if pooling == "mean" else q.n_queries * q.d_model
    record = {
        "pooling": pooling,
        "n_queries": q.n_queries,
        "d_model": q.d_model,
        "dim": dim,
        "alignment": str(alignment),
        "alignment_weights_sha256": meta.get("weights_sha256"),
        "feature_store": str(store.path),
        "package_version": __version__,
    }
    integer_ids = ((store.manifest.get("config") or {}).get("catalog") or {}).get("id_type") == "int64"
    schema = pa.schema([("item_id", pa.int64() if integer_ids else pa.string()), ("embedding", pa.list_(pa.float32(), dim))], metadata={"tokenizer_kit": json.dumps(record)})
    return schema, record


@torch.no_grad()
def embed_rows(model, store, start: int, stop: int, schema, *, pooling: str, batch_size: int, max_tokens: int | None, device):
    """Arrow tables of the embeddings of store items ``start .. stop``, ``batch_size`` items
    each counted from ``start`` (a batch's padding, hence its bytes, depends on its items alone)."""
    import pyarrow as pa

    dim = schema.field("embedding").type.list_size
    for s in range(start, stop, batch_size):
        idx = list(range(s, min(s + batch_size, stop)))
        tok, mask, _ = store.batch(idx, max_tokens)
        m = model(torch.from_numpy(tok).to(device), torch.from_numpy(mask).to(device))
        v = pool_queries(m, pooling).cpu().numpy().astype(np.float32)
        col = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim)
        ids = [store.item_ids[i] for i in idx]
        id_type = schema.field("item_id").type
        ids_col = pa.array([int(i) for i in ids] if pa.types.is_integer(id_type) else ids, id_type)
        yield pa.table({"item_id": ids_col, "embedding": col}, schema=schema)


def check_embed_settings(model, meta: dict[str, Any], store, pooling: str, batch_size: int, max_tokens: int | None) -> int | None:
    """One-line errors for settings that cannot work; returns the token cap to use."""
    EmbedSettings(pooling=pooling, batch_size=batch_size, max_tokens=max_tokens).validate()
    if model.config.feature_dim != store.dim:
        raise InputError(f"the alignment model expects features of dim {model.config.feature_dim}, the store has {store.dim}; embed the store it was trained on")
    return max_tokens if max_tokens is not None else (int(meta["config"].get("max_tokens", 0)) or None)


@torch.no_grad()
def embed_store(
    store,
    alignment: str | os.PathLike,
    out: str | os.PathLike,
    *,
    pooling: str = "flatten",
    batch_size: int = 256,
    max_tokens: int | None = None,
    device: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Embed every item of ``store`` and write ``out`` (Parquet); returns a summary dict.

    ``device``: auto (None) | cpu | cuda[:N]; ``progress`` gets one task advanced per batch.
    """
    import pyarrow.parquet as pq

    dev = resolve_device(device)
    model, meta = load_alignment(alignment, device=str(dev))
    max_tokens = check_embed_settings(model, meta, store, pooling, batch_size, max_tokens)
    schema, record = embedding_record(model, meta, store, alignment, pooling)
    n = 0
    with atomic_write(out) as tmp, as_progress(progress).task("embed", total=len(store), unit="item") as task:
        with pq.ParquetWriter(str(tmp), schema) as w:
            for table in embed_rows(model, store, 0, len(store), schema, pooling=pooling, batch_size=batch_size, max_tokens=max_tokens,
                                    device=dev):
                w.write_table(table)
                n += table.num_rows
                task.advance(table.num_rows)
    record["n_items"] = n
    record["out"] = str(out)
    return record
