"""Streaming embedding inputs: read item embeddings in bounded batches, never the whole matrix.

``open_embeddings(path)`` returns an :class:`EmbeddingStream` over

* a ``.npy`` file (memory-mapped) or a directory of ``.npy`` shards, ids from an ids file
  (``ids_path`` or ``X.ids.{npy,txt,json}`` beside ``X.npy``);
* a Parquet dataset: one file, a directory (searched recursively), or a list of files, on
  the local disk or any filesystem pyarrow opens by URI (``s3://``, ``gs://``, ``hdfs://``,
  ``file://``); an ``item_id`` column and a list / fixed-size-list vector column;
* a directory written by ``datasets.Dataset.save_to_disk`` (its Arrow files are
  memory-mapped; a ``DatasetDict`` picks ``split``, by default ``train`` or the first).

Dtypes: float32 is read as is; float16, float64 and bfloat16 are upcast to float32 batch by
batch (bfloat16 comes as a numpy ``bfloat16`` (ml_dtypes) array, a torch tensor, or a
``.npy`` of 2-byte ``V2`` records, the way numpy saves bfloat16). Integer, boolean, string
and object embeddings are refused: they are not embeddings (cast them to float first if
they really are). Item ids are integers or strings, kept as they come (int64 or str); a
null, NaN or floating-point id is refused. An input without ids (no id column, no ids file)
is an error unless ``row_ids=True``, which numbers the rows 0..n-1: silently made-up ids
would not join with the catalogue.

Every batch is ``(start, ids, vectors)`` with ``vectors`` (b, d) float32, C-contiguous and
finite (a NaN / inf names its row). Memory is one batch plus what the reader buffers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import InputError

__all__ = [
    "Batch",
    "EmbeddingSource",
    "EmbeddingStream",
    "open_embeddings",
    "as_float32_vectors",
    "check_vector_dtype",
    "normalise_ids",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 65536
_VECTOR_COLUMN_GUESSES = ("embedding", "embeddings", "vector", "vectors", "emb")


# ---- dtype and id rules (shared with the in-memory loader) --------------------------------
def _is_bfloat16(dtype: np.dtype) -> bool:
    return dtype.name == "bfloat16" or (dtype.kind == "V" and dtype.itemsize == 2 and dtype.names is None)


def check_vector_dtype(dtype, source: str) -> None:
    """Float16/32/64 and bfloat16 pass; anything else is a one-line error."""
    dtype = np.dtype(dtype) if not hasattr(dtype, "is_floating_point") else dtype
    if hasattr(dtype, "is_floating_point"):  # a torch dtype
        if dtype.is_floating_point:
            return
        raise InputError(f"{source}: expected float embeddings (float16/32/64 or bfloat16), got {dtype}; cast them to float32")
    if dtype.kind == "f" or _is_bfloat16(dtype):
        return
    what = {"i": "integer", "u": "integer", "b": "boolean", "O": "object", "U": "string", "S": "bytes"}.get(dtype.kind, str(dtype))
    raise InputError(
        f"{source}: expected numeric vectors (float32; float16, float64 and bfloat16 are upcast), got {what} "
        f"dtype {dtype}; integer codes or strings are not embeddings, cast real vectors to float32"
    )


def as_float32_vectors(x, source: str = "input") -> np.ndarray:
    """``x`` (n, d) as float32 (a view when it already is float32): float16/float64 and
    bfloat16 (numpy ml_dtypes, a ``V2`` record array, or a torch tensor) are upcast."""
    torch_like = hasattr(x, "detach") and hasattr(x, "dtype") and hasattr(x.dtype, "is_floating_point")
    if torch_like:
        check_vector_dtype(x.dtype, source)
        return x.detach().to("cpu").float().numpy()
    if not isinstance(x, np.ndarray):
        raise InputError(f"{source}: expected a numpy array of shape (n, d), got {type(x).__name__}")
    check_vector_dtype(x.dtype, source)
    if x.dtype == np.float32:
        return x
    if x.dtype.kind == "V":  # bfloat16 bits: the high half of a float32
        bits = np.ascontiguousarray(x).view(np.uint16).astype(np.uint32) << 16
        return bits.view(np.float32).reshape(x.shape)
    return x.astype(np.float32)


def normalise_ids(ids, source: str = "input") -> np.ndarray:
    """Integer ids -> int64, string ids -> object array of str; null / NaN / float ids are errors."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    if ids.dtype.kind == "b":
        raise InputError(f"{source}: item ids are booleans; give integer or string ids")
    if ids.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(ids))
        if len(bad):
            raise InputError(f"{source}: item id at row {int(bad[0])} is null; every item needs an id")
        raise InputError(
            f"{source}: item ids are floating-point (e.g. {ids.flat[0]!r}); give integer or string ids "
            "(cast the id column to int64 or string)"
        )
    if ids.dtype.kind == "O":
        for row, v in enumerate(ids.tolist()):
            if v is None or (isinstance(v, float) and not np.isfinite(v)):
                raise InputError(f"{source}: item id at row {row} is null; every item needs an id")
    return ids.astype(str).astype(object)


def check_finite(x: np.ndarray, start: int, source: str) -> None:
    """Refuse a NaN or inf in ``x`` (b, d), naming its row (``start`` is the batch's first row)."""
    ok = np.isfinite(x).all(axis=1)
    if not ok.all():
        row = int(np.argmin(ok))
        what = "NaN" if np.isnan(x[row]).any() else "inf"
        raise InputError(
            f"{source}: row {start + row} contains {what}; every embedding must be finite, drop or re-embed that item"
        )


@dataclass
class Batch:
    """Rows ``start .. start + len(vectors)`` of the input."""

    start: int
    ids: np.ndarray | None  # (b,) int64 or str objects; None when not asked for
    vectors: np.ndarray | None  # (b, d) float32


class EmbeddingStream:
    """Item embeddings read in bounded batches. ``n`` rows of dimension ``dim``."""

    source: str = ""
    n: int = 0
    dim: int = 0
    dtype: np.dtype = np.dtype(np.float32)
    random_access: bool = False  # rows can be read without a pass (memory-mapped .npy)
    has_ids: bool = True  # False: the ids are row numbers (unique by construction)

    def __len__(self) -> int:
        return self.n

    # subclasses: _raw_batches(batch_size, ids, vectors) yields (start, ids, raw vectors)
    def _raw_batches(self, batch_size: int, want_ids: bool, want_vectors: bool) -> Iterator[tuple[int, np.ndarray | None, np.ndarray | None]]:
        raise NotImplementedError

    def batches(self, batch_size: int = DEFAULT_BATCH, *, ids: bool = True, vectors: bool = True) -> Iterator[Batch]:
        """Consecutive batches of at most ``batch_size`` rows, float32 and checked finite."""
        if batch_size < 1:
            raise InputError(f"batch size must be >= 1, got {batch_size}")
        for start, bid, raw in self._raw_batches(batch_size, ids, vectors):
            x = None
            if raw is not None:
                x = np.ascontiguousarray(as_float32_vectors(raw, self.source))
                check_finite(x, start, self.source)
            yield Batch(start, None if bid is None else normalise_ids(bid, self.source), x)

    def take(self, rows: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Vectors of ``rows`` (sorted, unique) as (m, d) float32, read in one pass."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), self.dim), np.float32)
        pos = 0
        for b in self.batches(batch_size, ids=False):
            end = b.start + len(b.vectors)
            hi = int(np.searchsorted(rows, end))
            if hi > pos:
                out[pos:hi] = b.vectors[rows[pos:hi] - b.start]
                pos = hi
            if pos == len(rows):
                break
        return out

    def ids(self) -> np.ndarray:
        """All item ids (n,) in row order (int64 or str objects): n x 8 bytes for integer ids."""
        parts = [b.ids for b in self.batches(DEFAULT_BATCH * 4, vectors=False)]
        if not parts:
            return np.empty(0, np.int64)
        kinds = {p.dtype.kind for p in parts}
        if len(kinds) > 1:
            parts = [p.astype(str).astype(object) for p in parts]
        return np.concatenate(parts)

    def read_all(self):
        """The whole input as an in-memory :class:`~tokenizer_kit.io.Embeddings` (small inputs)."""
        from ._embeddings import Embeddings

        if self.n == 0:
            return Embeddings(ids=np.empty(0, np.int64), vectors=np.empty((0, self.dim), np.float32), source=self.source)
        x = np.empty((self.n, self.dim), np.float32)
        ids = []
        for b in self.batches():
            x[b.start : b.start + len(b.vectors)] = b.vectors
            ids.append(b.ids)
        kinds = {p.dtype.kind for p in ids}
        if len(kinds) > 1:
            ids = [p.astype(str).astype(object) for p in ids]
        return Embeddings(ids=np.concatenate(ids), vectors=x, source=self.source)


# ---- .npy ---------------------------------------------------------------------------------
def _open_npy(path: Path) -> np.ndarray:
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy array of numbers ({e or 'empty file'})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None
    if x.ndim != 2:
        raise InputError(f"{path}: expected a 2-D array of shape (n, d), got shape {x.shape}; reshape to one row per item")
    check_vector_dtype(x.dtype, str(path))
    return x


def ids_file_beside(path: Path) -> Path | None:
    for cand in (path.with_suffix(".ids.npy"), path.with_suffix(".ids.txt"), path.with_suffix(".ids.json")):
        if cand.exists():
            return cand
    return None


def read_ids_file(path: str | Path, *, mmap: bool = False) -> np.ndarray:
    """Item ids from ``.npy``, ``.json`` (a list) or text (one id per line).

    ``mmap``: integer ids of a ``.npy`` file come back memory-mapped, as stored (a reader of a
    few rows at a time normalises its slice with :func:`normalise_ids`: the same int64 values,
    without a copy of the whole file); any other file is read and normalised whole."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"ids file {path} does not exist; pass an existing .npy/.json/.txt file of item ids")
    if path.is_dir():
        raise InputError(f"ids file {path} is a directory; pass a .npy/.json/.txt file of item ids")
    try:
        if path.suffix == ".npy":
            ids = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
            if mmap and ids.dtype.kind in "iu" and ids.ndim == 1:
                return ids
        elif path.suffix == ".json":
            from ._paths import read_json

            data = read_json(path, "ids file")
            if not isinstance(data, list):
                raise InputError(f"ids file {path}: expected a JSON list of item ids, got a {type(data).__name__}")
            ids = np.asarray(data)
        else:
            ids = np.asarray([line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip() != ""])
    except InputError:
        raise
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as e:
        raise InputError(f"ids file {path}: cannot be read ({type(e).__name__}); expected a .npy array, a JSON list or UTF-8 text, one id per line") from None
    if ids.ndim != 1:
        raise InputError(f"ids file {path}: item ids must be one-dimensional, got shape {ids.shape}")
    return normalise_ids(ids, f"ids file {path}")


class NpyStream(EmbeddingStream):
    """One or more memory-mapped ``.npy`` arrays read as consecutive rows."""

    random_access = True

    def __init__(self, arrays: Sequence[np.ndarray], ids: np.ndarray | None, source: str):
        self.arrays = list(arrays)
        self.source = source
        dims = {a.shape[1] for a in self.arrays}
        if len(dims) > 1:
            raise InputError(f"{source}: shards have different dimensions {sorted(dims)}; all embeddings must have the same d")
        self.dim = int(dims.pop()) if dims else 0
        self.dtype = self.arrays[0].dtype if self.arrays else np.dtype(np.float32)
        self.offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a in self.arrays])]).astype(np.int64)
        self.n = int(self.offsets[-1])
        if ids is not None and len(ids) != self.n:
            raise InputError(f"{source}: {len(ids)} item ids for {self.n} vectors; give exactly one id per row")
        self._ids = ids
        self.has_ids = ids is not None

    def _ids_slice(self, a: int, b: int) -> np.ndarray:
        if self._ids is None:
            return np.arange(a, b, dtype=np.int64)
        return self._ids[a:b]

    def _raw_batches(self, batch_size, want_ids, want_vectors):
        for arr, off in zip(self.arrays, self.offsets[:-1]):
            off = int(off)
            for s in range(0, arr.shape[0], batch_size):
                e = min(s + batch_size, arr.shape[0])
                yield off + s, self._ids_slice(off + s, off + e) if want_ids else None, np.asarray(arr[s:e]) if want_vectors else None

    def take(self, rows: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Sampled rows straight from the memory maps (no read-around: only their pages)."""
        import mmap

        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), self.dim), np.float32)
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        for j, arr in enumerate(self.arrays):
            sel = np.flatnonzero(shard == j)
            if not len(sel):
                continue
            mm = getattr(arr, "_mmap", None)
            if mm is not None and hasattr(mm, "madvise"):
                mm.madvise(mmap.MADV_RANDOM)
            local = rows[sel] - self.offsets[j]
            for s in range(0, len(sel), batch_size):
                blk = as_float32_vectors(np.asarray(arr[local[s : s + batch_size]]), self.source)
                if not np.isfinite(blk).all():
                    self._finite_error(blk, rows[sel[s : s + batch_size]])
                out[sel[s : s + batch_size]] = blk
            if mm is not None and hasattr(mm, "madvise"):
                mm.madvise(mmap.MADV_NORMAL)
        return out

    def _finite_error(self, blk: np.ndarray, rows: np.ndarray) -> None:
        bad = int(np.argmin(np.isfinite(blk).all(1)))
        what = "NaN" if np.isnan(blk[bad]).any() else "inf"
        raise InputError(f"{self.source}: row {int(rows[bad])} contains {what}; every embedding must be finite, drop or re-embed that item")

    def ids(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64) if self._ids is None else self._ids


def _npy_stream(path: Path, ids_path: Path | None) -> NpyStream:
    x = _open_npy(path)
    if ids_path is None:
        ids_path = ids_file_beside(path)
    ids = read_ids_file(ids_path) if ids_path is not None else None
    return NpyStream([x], ids, str(path))


def _npy_dir_stream(path: Path, shards: list[Path], ids_path: Path | None) -> NpyStream:
    arrays = [_open_npy(p) for p in shards]
    if ids_path is not None:
        ids = read_ids_file(ids_path)
    elif all(ids_file_beside(p) is not None for p in shards):
        parts = [read_ids_file(ids_file_beside(p)) for p in shards]
        if len({p.dtype.kind for p in parts}) > 1:
            parts = [p.astype(str).astype(object) for p in parts]
        ids = np.concatenate(parts)
    else:
        ids = None
    return NpyStream(arrays, ids, str(path))


# ---- Arrow: Parquet datasets and saved HF datasets ----------------------------------------
def _pick_vector_column(schema, vector_column: str | None, source: str) -> str:
    import pyarrow as pa

    names = list(schema.names)
    if vector_column is not None:
        if vector_column not in names:
            raise InputError(f"{source}: no column {vector_column!r}; columns are {names}")
        return vector_column
    for g in _VECTOR_COLUMN_GUESSES:
        if g in names:
            return g
    lists = [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type) or pa.types.is_large_list(f.type)]
    if len(lists) == 1:
        return lists[0]
    raise InputError(f"{source}: cannot tell which column holds the vectors (columns {names}); set `vector_column` to its name")


def _arrow_value_dtype(t, source: str, name: str) -> np.dtype:
    import pyarrow as pa

    if not (pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)):
        raise InputError(f"{source}: column {name!r} has type {t}; expected a list or fixed-size list of floats")
    vt = t.value_type
    if pa.types.is_floating(vt):
        return np.dtype(vt.to_pandas_dtype())
    try:
        dt = np.dtype(vt.to_pandas_dtype())
    except (NotImplementedError, TypeError):
        dt = np.dtype(object)
    check_vector_dtype(dt, f"{source}: column {name!r}")
    return dt  # pragma: no cover - check_vector_dtype raised


def vectors_from_arrow(col, source: str, name: str, start: int = 0) -> np.ndarray:
    """A list / fixed-size-list Arrow column -> (b, d) numpy (its value dtype)."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        row = int(np.argmax(np.asarray(col.is_null())))
        raise InputError(f"{source}: column {name!r} is null at row {start + row}; every item needs a vector")
    _arrow_value_dtype(col.type, source, name)
    if pa.types.is_fixed_size_list(col.type):
        d = col.type.list_size
        values = col.flatten()
    else:
        offsets = np.asarray(col.offsets)
        lens = np.diff(offsets)
        if len(lens) and (lens != lens[0]).any():
            row = int(np.argmax(lens != lens[0]))
            raise InputError(
                f"{source}: vectors in column {name!r} differ in length (row {start} has {lens[0]}, "
                f"row {start + row} has {lens[row]}); all embeddings must have the same dimension"
            )
        d = int(lens[0]) if len(lens) else 0
        values = col.flatten()
    if values.null_count:
        row = int(np.argmax(np.asarray(values.is_null()))) // max(d, 1)
        raise InputError(f"{source}: column {name!r} holds a null value in row {start + row}; every vector must be complete")
    return values.to_numpy(zero_copy_only=False).reshape(len(col), d)


def ids_from_arrow(col, source: str, name: str, start: int = 0) -> np.ndarray:
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        row = int(np.argmax(np.asarray(col.is_null())))
        raise InputError(f"{source}: item id ({name!r}) is null at row {start + row}; every item needs an id")
    return normalise_ids(col.to_numpy(zero_copy_only=False), source)


class ArrowStream(EmbeddingStream):
    """Record batches from Parquet files (any pyarrow filesystem) or memory-mapped Arrow tables."""

    def __init__(self, source: str, pieces: list, schema, n: int, id_column: str, vector_column: str | None):
        """``pieces``: per file, a callable ``(batch_size, columns) -> iterator of RecordBatch``."""
        self.source = source
        self.pieces = pieces
        self.vcol = _pick_vector_column(schema, vector_column, source)
        vtype = schema.field(self.vcol).type
        self.dtype = _arrow_value_dtype(vtype, source, self.vcol)
        if id_column not in schema.names and id_column != "item_id":
            raise InputError(f"{source}: no id column {id_column!r} (columns: {schema.names}); name the column that holds the item ids")
        self.id_column = id_column if id_column in schema.names else None
        self.has_ids = self.id_column is not None
        self.n = int(n)
        self.dim = self._probe_dim(vtype)

    def _probe_dim(self, vtype) -> int:
        import pyarrow as pa

        if pa.types.is_fixed_size_list(vtype):
            return int(vtype.list_size)
        for _, _, v in self._raw_batches(1, False, True):
            return int(v.shape[1])
        return 0

    def _raw_batches(self, batch_size, want_ids, want_vectors):
        cols = []
        if want_ids and self.id_column is not None:
            cols.append(self.id_column)
        if want_vectors or not cols:
            cols.append(self.vcol)
        start = 0
        for piece in self.pieces:
            for rb in piece(batch_size, cols):
                m = rb.num_rows
                if m == 0:
                    continue
                bid = None
                if want_ids:
                    bid = ids_from_arrow(rb.column(self.id_column), self.source, self.id_column, start) if self.id_column else np.arange(start, start + m, dtype=np.int64)
                v = None
                if want_vectors:
                    v = vectors_from_arrow(rb.column(self.vcol), self.source, self.vcol, start)
                    if getattr(self, "dim", None) and v.shape[1] != self.dim:
                        raise InputError(
                            f"{self.source}: vectors in column {self.vcol!r} differ in length (row 0 has {self.dim}, "
                            f"row {start} has {v.shape[1]}); all embeddings must have the same dimension"
                        )
                yield start, bid, v
                start += m


def filesystem_and_path(p: str):
    """``(pyarrow filesystem, path in it)`` for a local path or any URI pyarrow opens."""
    import pyarrow.fs as pafs

    if "://" in p:
        try:
            return pafs.FileSystem.from_uri(p)
        except Exception as e:  # pyarrow raises several types for bad URIs / missing drivers
            raise InputError(f"{p}: cannot open this URI ({type(e).__name__}: {e})") from None
    return pafs.LocalFileSystem(), os.path.abspath(p)


def parquet_files(paths: Sequence[str]) -> list[tuple[object, str]]:
    """``(filesystem, path)`` of every Parquet file ``paths`` name (files, or directories
    searched recursively, hidden files skipped), in sorted order per directory."""
    import pyarrow.fs as pafs

    files = []
    for p in paths:
        fs, path = filesystem_and_path(str(p))
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"{p} does not exist; pass an embeddings .npy, .parquet or directory")
        if info.type == pafs.FileType.Directory:
            sel = fs.get_file_info(pafs.FileSelector(path, recursive=True))
            found = sorted(i.path for i in sel if i.type == pafs.FileType.File and i.path.endswith((".parquet", ".pq")) and not os.path.basename(i.path).startswith((".", "_")))
            if not found:
                raise InputError(f"{p}: directory holds no Parquet files")
            files += [(fs, f) for f in found]
        else:
            files.append((fs, path))
    return files


def _parquet_stream(paths: Sequence[str], source: str, id_column: str, vector_column: str | None) -> ArrowStream:
    import pyarrow.parquet as pq

    files = parquet_files(paths)
    metas = []
    for fs, f in files:
        try:
            with fs.open_input_file(f) as fh:
                pf = pq.ParquetFile(fh)
                metas.append((pf.schema_arrow, pf.metadata.num_rows))
        except InputError:
            raise
        except Exception as e:  # pyarrow raises many types for corrupt files
            raise InputError(f"{f}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    schema = metas[0][0]
    for (s, _), (fs, f) in zip(metas[1:], files[1:]):
        if s.names != schema.names:
            raise InputError(f"{source}: Parquet file {f} has columns {s.names}, the first file has {schema.names}; all files must share one schema")
    n = sum(m for _, m in metas)

    def piece(fs, f):
        def read(batch_size, columns):
            try:
                with fs.open_input_file(f) as fh:
                    pf = pq.ParquetFile(fh, buffer_size=1 << 22, pre_buffer=False)
                    yield from pf.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)
            except InputError:
                raise
            except (OSError, ValueError) as e:
                raise InputError(f"{f}: reading failed ({type(e).__name__}: {e})") from None

        return read

    return ArrowStream(source, [piece(fs, f) for fs, f in files], schema, n, id_column, vector_column)


def _hf_stream(path: Path, id_column: str, vector_column: str | None, split: str | None) -> ArrowStream:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as e:
        raise InputError(f"{path}: not a readable saved HF dataset ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            split = "train" if "train" in ds else next(iter(ds))
        if split not in ds:
            raise InputError(f"{path}: no split {split!r}; splits are {sorted(ds)}")
        ds = ds[split]
    if ds._indices is not None:  # a selection not yet flattened: read rows through it
        ds = ds.flatten_indices()
    table = ds.data.table  # memory-mapped Arrow

    def read(batch_size, columns):
        yield from table.select(columns).to_batches(max_chunksize=batch_size)

    return ArrowStream(str(path), [read], table.schema, table.num_rows, id_column, vector_column)


def _is_hf_dir(path: Path) -> bool:
    return any((path / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))


def open_embeddings(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    ids_path: str | os.PathLike | None = None,
    id_column: str = "item_id",
    vector_column: str | None = None,
    split: str | None = None,
    row_ids: bool = False,
) -> EmbeddingStream:
    """Open embeddings for streaming (nothing is read but metadata). See the module doc.
    ``split``: the split of a saved ``DatasetDict``; ``row_ids``: an input without ids gets
    row numbers (else that is an error)."""
    stream = _open(path, Path(ids_path) if ids_path is not None else None, id_column, vector_column, split)
    if not stream.has_ids and stream.n > 0 and stream.dim > 0:  # an empty input is refused for that
        if not row_ids:
            raise InputError(_no_ids_message(stream, id_column))
        logger.info("%s has no item ids; numbering the rows 0..%d (row_ids)", stream.source, stream.n - 1)
    return stream


@dataclass(frozen=True)
class EmbeddingSource:
    """Where embeddings are and how to read them: the arguments of :func:`open_embeddings`
    (and :func:`~tokenizer_kit.io.load_embeddings`) as one value, so a stage hands its input
    down the layers without spelling each reading option at every step."""

    path: str | os.PathLike | Sequence[str | os.PathLike]
    ids_path: str | os.PathLike | None = None
    id_column: str = "item_id"
    vector_column: str | None = None
    split: str | None = None
    row_ids: bool = False

    @classmethod
    def of(cls, source) -> "EmbeddingSource":
        """``source`` itself when it is an ``EmbeddingSource``, else its path read with the defaults."""
        return source if isinstance(source, EmbeddingSource) else cls(source)

    def open(self) -> EmbeddingStream:
        """The input as an :class:`EmbeddingStream` (nothing is read but metadata)."""
        return open_embeddings(self.path, ids_path=self.ids_path, id_column=self.id_column, vector_column=self.vector_column,
                               split=self.split, row_ids=self.row_ids)

    def load(self):
        """The whole input in memory (:class:`~tokenizer_kit.io.Embeddings`; small inputs)."""
        from ._embeddings import load_embeddings

        return load_embeddings(self.path, ids_path=self.ids_path, id_column=self.id_column, vector_column=self.vector_column,
                               split=self.split, row_ids=self.row_ids)


def _no_ids_message(stream: EmbeddingStream, id_column: str) -> str:
    if isinstance(stream, ArrowStream):
        return (f"{stream.source} has no {id_column!r} column; name the id column (id_column) "
                "or set row_ids to number the rows 0..n-1")
    stem = Path(str(stream.source)).with_suffix("").name
    return (f"{stream.source} has no ids file; put one beside it ({stem}.ids.txt, one id per line, or "
            f"{stem}.ids.npy / {stem}.ids.json), pass it (ids_path), or set row_ids to number the rows 0..n-1")


def _open(path, ids_p: Path | None, id_column: str, vector_column: str | None, split: str | None) -> EmbeddingStream:
    if isinstance(path, (list, tuple)):
        if not path:
            raise InputError("no embeddings files given")
        return _parquet_stream([str(p) for p in path], str(path[0]) + (f" (+{len(path) - 1} files)" if len(path) > 1 else ""), id_column, vector_column)
    spath = os.fspath(path)
    if "://" in spath and not spath.startswith("file://"):
        return _parquet_stream([spath], spath, id_column, vector_column)
    if spath.startswith("file://"):
        spath = spath[len("file://") :]
    p = Path(spath)
    if not p.exists():
        raise InputError(f"{p} does not exist; pass an embeddings .npy, .parquet or directory")
    if p.is_file():
        if p.suffix == ".npy":
            return _npy_stream(p, ids_p)
        if p.suffix in (".parquet", ".pq"):
            return _parquet_stream([str(p)], str(p), id_column, vector_column)
        raise InputError(f"{p}: unsupported embeddings file type {p.suffix!r}; use .npy or .parquet")
    if _is_hf_dir(p):
        return _hf_stream(p, id_column, vector_column, split)
    if any(p.rglob("*.parquet")) or any(p.rglob("*.pq")):
        return _parquet_stream([str(p)], str(p), id_column, vector_column)
    shards = sorted(q for q in p.glob("*.npy") if not q.name.endswith(".ids.npy"))
    if shards:
        return _npy_dir_stream(p, shards, ids_p)
    raise InputError(f"{p}: directory holds no Parquet, .npy shards or saved HF dataset; pass an embeddings file or such a directory")
