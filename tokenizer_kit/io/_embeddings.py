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

__all__ = ["Embeddings", "load_embeddings", "validate_vectors", "validate_ids", "read_ids_file", "write_embeddings_parquet"]

logger = logging.getLogger(__name__)

_VECTOR_COLUMN_GUESSES = ("embedding", "embeddings", "vector", "vectors", "emb")


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


def read_ids_file(path: str | Path) -> np.ndarray:
    """Item ids from ``.npy``, ``.json`` (a list) or text (one id per line)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"ids file {path} does not exist; pass an existing .npy/.json/.txt file of item ids")
    if path.suffix == ".npy":
        ids = np.load(path, allow_pickle=False)
    elif path.suffix == ".json":
        ids = np.asarray(json.loads(path.read_text()))
    else:
        ids = np.asarray([line.rstrip("\n") for line in path.read_text().splitlines() if line.strip() != ""])
    return _normalise_ids(ids)


def _normalise_ids(ids) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    return ids.astype(str).astype(object)


def validate_ids(ids: np.ndarray, n: int, source: str = "input") -> None:
    if ids.ndim != 1:
        raise InputError(f"{source}: item ids must be one-dimensional, got shape {ids.shape}")
    if len(ids) != n:
        raise InputError(
            f"{source}: {len(ids)} item ids for {n} vectors; give exactly one id per row"
        )
    uniq, first, counts = np.unique(ids.astype(str), return_index=True, return_counts=True)
    if len(uniq) != len(ids):
        dup = int(np.argmax(counts > 1))
        raise InputError(
            f"{source}: duplicate item id {str(uniq[dup])!r} ({int(counts[dup])} times, first at row "
            f"{int(first[dup])}); item ids must be unique, deduplicate the input"
        )


def validate_vectors(x: np.ndarray, source: str = "input", chunk: int = 65536) -> None:
    """Check rank, dtype, emptiness and finiteness; errors name the first bad row."""
    if not isinstance(x, np.ndarray):
        raise InputError(f"{source}: expected a numpy array of shape (n, d), got {type(x).__name__}")
    if x.ndim != 2:
        raise InputError(
            f"{source}: expected a 2-D array of shape (n, d), got shape {x.shape}; "
            "reshape to one row per item"
        )
    if x.dtype.kind not in "fiu":
        raise InputError(f"{source}: expected numeric vectors (float32), got dtype {x.dtype}")
    n, d = x.shape
    if n == 0 or d == 0:
        raise InputError(f"{source}: empty input (shape {x.shape}); need at least one item with d >= 1")
    if x.dtype.kind == "f":
        for start in range(0, n, chunk):
            block = np.asarray(x[start : start + chunk])
            ok = np.isfinite(block).all(axis=1)
            if not ok.all():
                row = start + int(np.argmin(ok))
                bad = block[row - start]
                what = "NaN" if np.isnan(bad).any() else "inf"
                raise InputError(
                    f"{source}: row {row} contains {what}; every embedding must be finite, "
                    "drop or re-embed that item"
                )


def _as_float32(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.float32:
        return x
    return np.asarray(x, dtype=np.float32)


def _ids_file_beside(path: Path) -> Path | None:
    for cand in (path.with_suffix(".ids.npy"), path.with_suffix(".ids.txt"), path.with_suffix(".ids.json")):
        if cand.exists():
            return cand
    return None


def _load_npy(path: Path, ids_path: Path | None) -> Embeddings:
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise InputError(f"{path}: not a readable .npy array of numbers ({e})") from None
    if ids_path is None:
        ids_path = _ids_file_beside(path)
    if ids_path is not None:
        ids = read_ids_file(ids_path)
    else:
        logger.info("no ids file beside %s; using row numbers as item ids", path)
        ids = np.arange(x.shape[0] if x.ndim >= 1 else 0, dtype=np.int64)
    return Embeddings(ids=ids, vectors=x, source=str(path))


def _vectors_from_arrow_column(col, source: str, name: str) -> np.ndarray:
    import pyarrow as pa

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if col.null_count:
        row = int(np.argmax(np.asarray(col.is_null())))
        raise InputError(f"{source}: column {name!r} is null at row {row}; every item needs a vector")
    t = col.type
    if pa.types.is_fixed_size_list(t):
        d = t.list_size
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(col), d)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        offsets = np.asarray(col.offsets)
        lens = np.diff(offsets)
        if len(lens) and (lens != lens[0]).any():
            row = int(np.argmax(lens != lens[0]))
            raise InputError(
                f"{source}: vectors in column {name!r} differ in length (row 0 has {lens[0]}, "
                f"row {row} has {lens[row]}); all embeddings must have the same dimension"
            )
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(col), int(lens[0]) if len(lens) else 0)
    raise InputError(
        f"{source}: column {name!r} has type {t}; expected a list or fixed-size list of floats"
    )


def _pick_vector_column(names: list[str], types: dict, vector_column: str | None, source: str) -> str:
    import pyarrow as pa

    if vector_column is not None:
        if vector_column not in names:
            raise InputError(f"{source}: no column {vector_column!r}; columns are {names}")
        return vector_column
    for g in _VECTOR_COLUMN_GUESSES:
        if g in names:
            return g
    lists = [n for n in names if pa.types.is_list(types[n]) or pa.types.is_fixed_size_list(types[n]) or pa.types.is_large_list(types[n])]
    if len(lists) == 1:
        return lists[0]
    raise InputError(
        f"{source}: cannot tell which column holds the vectors (columns {names}); "
        "pass --vector-column NAME"
    )


def _from_table(table, source: str, id_column: str, vector_column: str | None) -> Embeddings:
    names = table.column_names
    types = {f.name: f.type for f in table.schema}
    vcol = _pick_vector_column(names, types, vector_column, source)
    if table.num_rows == 0:
        raise InputError(f"{source}: empty input (0 rows); need at least one item")
    x = _vectors_from_arrow_column(table.column(vcol), source, vcol)
    if id_column in names:
        ids = _normalise_ids(table.column(id_column).to_numpy(zero_copy_only=False))
    else:
        logger.info("%s has no %r column; using row numbers as item ids", source, id_column)
        ids = np.arange(table.num_rows, dtype=np.int64)
    return Embeddings(ids=ids, vectors=x, source=source)


def load_embeddings(
    path: str | Path,
    *,
    ids_path: str | Path | None = None,
    id_column: str = "item_id",
    vector_column: str | None = None,
    validate: bool = True,
) -> Embeddings:
    """Load item embeddings from a file or directory.

    Accepts ``.npy`` (n, d) with an optional ids file (``--ids``, or ``X.ids.{npy,txt,json}``
    beside ``X.npy``), Parquet (``item_id`` + list vector column), a directory of Parquet or
    ``.npy`` shards, or a directory saved by ``datasets.Dataset.save_to_disk``.
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise InputError(f"{source} does not exist; pass an embeddings .npy, .parquet or directory")
    ids_p = Path(ids_path) if ids_path is not None else None
    if path.is_file():
        if path.suffix == ".npy":
            emb = _load_npy(path, ids_p)
        elif path.suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(path)
            except Exception as e:  # pyarrow raises many types for corrupt files
                raise InputError(f"{source}: not a readable Parquet file ({type(e).__name__}: {e})") from None
            emb = _from_table(table, source, id_column, vector_column)
        else:
            raise InputError(
                f"{source}: unsupported embeddings file type {path.suffix!r}; use .npy or .parquet"
            )
    else:
        emb = _load_dir(path, ids_p, id_column, vector_column)
    if validate:
        validate_vectors(emb.vectors, source)
        validate_ids(emb.ids, emb.vectors.shape[0], source)
        emb.vectors = _as_float32(emb.vectors)
    return emb


def _load_dir(path: Path, ids_p: Path | None, id_column: str, vector_column: str | None) -> Embeddings:
    source = str(path)
    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            split = "train" if "train" in ds else next(iter(ds))
            ds = ds[split]
        return _from_table(ds.data.table, source, id_column, vector_column)
    parquets = sorted(path.glob("*.parquet"))
    if parquets:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.concat_tables([pq.read_table(p) for p in parquets])
        return _from_table(table, source, id_column, vector_column)
    shards = sorted(p for p in path.glob("*.npy") if not p.name.endswith(".ids.npy"))
    if shards:
        x = np.concatenate([np.load(p, allow_pickle=False) for p in shards])
        if ids_p is not None:
            ids = read_ids_file(ids_p)
        elif all(_ids_file_beside(p) is not None for p in shards):
            ids = np.concatenate([read_ids_file(_ids_file_beside(p)) for p in shards])
        else:
            ids = np.arange(x.shape[0], dtype=np.int64)
        return Embeddings(ids=_normalise_ids(ids), vectors=x, source=source)
    raise InputError(
        f"{source}: directory holds no Parquet, .npy shards or saved HF dataset; "
        "pass an embeddings file or such a directory"
    )


def write_embeddings_parquet(path: str | Path, ids, vectors: np.ndarray, *, column: str = "embedding", metadata: dict | None = None) -> Path:
    """Write ``item_id`` + a fixed-size-list float32 ``column`` atomically (what ``load_embeddings`` reads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ._atomic import atomic_write

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    ids = np.asarray(ids)
    id_arr = pa.array(ids.tolist(), pa.int64()) if ids.dtype.kind in "iu" else pa.array([str(i) for i in ids.tolist()], pa.string())
    vec = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), d)
    table = pa.table({"item_id": id_arr, column: vec})
    if metadata:
        table = table.replace_schema_metadata({"tokenizer_kit": json.dumps(metadata)})
    path = Path(path)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp)
    return path
