"""Reading item embeddings: ``.npy`` (+ ids), Parquet, sharded ``.npy`` and HF ``datasets``.

Everything comes back as :class:`Embeddings`: ``ids`` (n,) and ``vectors`` (n, d) float32,
memory-mapped where the source allows (a float32 ``.npy``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._stream import NpyStream, as_float32_vectors, check_vector_dtype, normalise_ids, open_embeddings, read_ids_file

__all__ = ["Embeddings", "load_embeddings", "validate_vectors", "validate_ids", "read_ids_file", "write_embeddings_parquet"]

logger = logging.getLogger(__name__)


@dataclass
class Embeddings:
    """Item ids ``(n,)`` and vectors ``(n, d)``; ``source`` names where they came from."""

    ids: np.ndarray
    vectors: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def validate_ids(ids: np.ndarray, n: int, source: str = "input") -> None:
    if ids.ndim != 1:
        raise InputError(f"{source}: item ids must be one-dimensional, got shape {ids.shape}")
    if len(ids) != n:
        raise InputError(
            f"{source}: {len(ids)} item ids for {n} vectors; give exactly one id per row"
        )
    if ids.dtype.kind == "O":
        normalise_ids(ids, source)  # a None / NaN among object ids is an error
    uniq, first, counts = np.unique(ids.astype(str), return_index=True, return_counts=True)
    if len(uniq) != len(ids):
        dup = int(np.argmax(counts > 1))
        raise InputError(
            f"{source}: duplicate item id {str(uniq[dup])!r} ({int(counts[dup])} times, first at row "
            f"{int(first[dup])}); item ids must be unique, deduplicate the input"
        )


def validate_vectors(x, source: str = "input", chunk: int = 65536) -> None:
    """Check rank, dtype, emptiness and finiteness; errors name the first bad row.

    Float16, float32, float64 and bfloat16 pass (they are upcast to float32 where used);
    integer, boolean, string and object arrays are refused.
    """
    if hasattr(x, "detach") and hasattr(x, "dtype"):  # a torch tensor
        x = as_float32_vectors(x, source)
    if not isinstance(x, np.ndarray):
        raise InputError(f"{source}: expected a numpy array of shape (n, d), got {type(x).__name__}")
    if x.ndim != 2:
        raise InputError(
            f"{source}: expected a 2-D array of shape (n, d), got shape {x.shape}; "
            "reshape to one row per item"
        )
    check_vector_dtype(x.dtype, source)
    n, d = x.shape
    if n == 0 or d == 0:
        raise InputError(f"{source}: empty input (shape {x.shape}); need at least one item with d >= 1")
    for start in range(0, n, chunk):
        block = as_float32_vectors(np.asarray(x[start : start + chunk]), source)
        ok = np.isfinite(block).all(axis=1)
        if not ok.all():
            row = start + int(np.argmin(ok))
            bad = block[row - start]
            what = "NaN" if np.isnan(bad).any() else "inf"
            raise InputError(
                f"{source}: row {row} contains {what}; every embedding must be finite, "
                "drop or re-embed that item"
            )


def load_embeddings(
    path: str | Path,
    *,
    ids_path: str | Path | None = None,
    id_column: str = "item_id",
    vector_column: str | None = None,
    validate: bool = True,
    split: str | None = None,
    row_ids: bool = False,
) -> Embeddings:
    """Load item embeddings from a file or directory into memory (small inputs).

    Accepts ``.npy`` (n, d) with an optional ids file (``ids_path``, or ``X.ids.{npy,txt,json}``
    beside ``X.npy``), Parquet (``item_id`` + list vector column; a file, a directory, a list
    of files or a pyarrow filesystem URI), a directory of ``.npy`` shards, or a directory saved
    by ``datasets`` ``save_to_disk``. A float32 ``.npy`` stays memory-mapped; float16, float64
    and bfloat16 are upcast to float32; integer, object and null-id inputs are refused. Ids
    keep their type (int64 or str). ``split``: the split of a saved ``DatasetDict``. An
    input without ids is an error unless ``row_ids`` (rows numbered 0..n-1). For
    catalogues too large for memory use :func:`open_embeddings`, which reads in batches.
    """
    stream = open_embeddings(path, ids_path=ids_path, id_column=id_column, vector_column=vector_column, split=split, row_ids=row_ids)
    source = stream.source
    if stream.n == 0 or stream.dim == 0:
        raise InputError(f"{source}: empty input ({stream.n} rows of dimension {stream.dim}); need at least one item with d >= 1")
    if isinstance(stream, NpyStream) and len(stream.arrays) == 1:
        x = stream.arrays[0]
        emb = Embeddings(ids=stream.ids(), vectors=x, source=source)
        if validate:
            validate_vectors(x, source)
            emb.vectors = as_float32_vectors(x, source)
    else:
        emb = stream.read_all()
    if validate:
        validate_ids(emb.ids, emb.vectors.shape[0], source)
    return emb


def embeddings_table(ids, vectors: np.ndarray, *, column: str = "embedding", metadata: dict | None = None):
    """Arrow table ``item_id`` + a fixed-size-list float32 ``column`` (the embeddings Parquet layout)."""
    import pyarrow as pa

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    ids = np.asarray(ids)
    id_arr = pa.array(ids.tolist(), pa.int64()) if ids.dtype.kind in "iu" else pa.array([str(i) for i in ids.tolist()], pa.string())
    vec = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), d)
    table = pa.table({"item_id": id_arr, column: vec})
    if metadata:
        table = table.replace_schema_metadata({"tokenizer_kit": json.dumps(metadata)})
    return table


def write_embeddings_parquet(path: str | Path, ids, vectors: np.ndarray, *, column: str = "embedding", metadata: dict | None = None) -> Path:
    """Write ``item_id`` + a fixed-size-list float32 ``column`` atomically (what ``load_embeddings`` reads)."""
    import pyarrow.parquet as pq

    from ._atomic import atomic_write

    table = embeddings_table(ids, vectors, column=column, metadata=metadata)
    path = Path(path)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp)
    return path
