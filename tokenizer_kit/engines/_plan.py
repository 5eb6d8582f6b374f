"""Shards: the unit of work, of output and of resume, fixed by the input and the shard size alone.

A shard is a run of consecutive input rows. Its name (``part-00042``) and its rows depend only
on the input's files and row counts and on ``shard_size``, never on the engine, the number
of workers or the order they finish in, so a rerun plans the same shards and can tell which
are already written. Shards never straddle two input files, and inside a file they start at
multiples of ``shard_size`` from the file's first row: the rows a batch holds are then the
ones the local engine's batches hold (see :func:`embedding_batches`), which is what keeps the
answers bit-identical (the encode's blocks, the models' length-sorted batches).

Inputs:

* embeddings (``assign``): a Parquet dataset (a file, a directory, a list of files, any URI
  pyarrow opens) or ``.npy`` files; each worker reads its own rows from the files;
* rows the driver already holds (a catalogue for ``extract`` / ``embed-text``, a feature
  store for ``embed``): the shard is a row range and carries what the worker needs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["Shard", "InputFile", "embedding_files", "plan_files", "plan_rows", "embedding_batches", "digest"]


def digest(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (the fingerprint of a job or a shard)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class InputFile:
    """One input file: where it is (a path or URI), its kind (parquet / npy), rows and bytes."""

    path: str
    kind: str
    rows: int
    size: int
    ids: str | None = None  # .npy: the ids file, and where this file's rows start in it
    ids_offset: int = 0


@dataclass
class Shard:
    """Rows ``first_row .. first_row + rows`` of the input (global row numbers)."""

    index: int
    first_row: int
    rows: int
    file: InputFile | None = None  # the file the rows are read from (embeddings)
    file_row: int = 0  # first row inside that file
    payload: dict[str, Any] = field(default_factory=dict)  # what the driver hands the worker (catalogue rows, ...)
    input_id: str | None = None  # a digest of the input rows when they are not a file (catalogue rows, a store)

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"

    @property
    def last_row(self) -> int:
        return self.first_row + self.rows - 1

    def identity(self) -> dict[str, Any]:
        """What fixes the shard's input: its rows and, for a file, the file's path, rows and size."""
        out = {"index": self.index, "first_row": self.first_row, "rows": self.rows}
        if self.file is not None:
            out.update(file=asdict(self.file), file_row=self.file_row)
        if self.input_id is not None:
            out["input"] = self.input_id
        return out

    def key(self, job_key: str) -> str:
        return digest({"job": job_key, "shard": self.identity()})


# ---- planning ---------------------------------------------------------------------------------
def embedding_files(source, stream, ids_path=None) -> list[InputFile]:
    """The files behind embeddings ``source`` (opened as ``stream`` by ``io.open_embeddings``),
    in row order: Parquet datasets (any URI pyarrow opens) and ``.npy`` files are split across
    workers; a saved HF dataset is one Arrow table and is refused with the fix."""
    import pyarrow.parquet as pq

    from ..io import ArrowStream, NpyStream, ids_file_beside, parquet_files

    if isinstance(stream, NpyStream):
        files, offset = [], 0
        for arr in stream.arrays:
            p = Path(getattr(arr, "filename", "") or "")
            if not p.is_file():
                raise InputError(f"{stream.source}: in-memory arrays cannot be sharded; save them as .npy or Parquet")
            ids = None if not stream.has_ids else ids_path if ids_path is not None else ids_file_beside(p)
            files.append(InputFile(str(p), "npy", int(arr.shape[0]), p.stat().st_size,
                                   ids=None if ids is None else str(ids), ids_offset=offset if ids_path is not None else 0))
            offset += int(arr.shape[0])
        return files
    is_hf = isinstance(source, (str, os.PathLike)) and Path(local_path(os.fspath(source))).is_dir() and any(
        (Path(local_path(os.fspath(source))) / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))
    if not isinstance(stream, ArrowStream) or is_hf:
        raise InputError(f"{stream.source}: the ray engine reads Parquet datasets and .npy files; "
                         "save this input as Parquet (for example with datasets' to_parquet)")
    paths = [str(p) for p in source] if isinstance(source, (list, tuple)) else [os.fspath(source)]
    out = []
    for fs, f in parquet_files(paths):
        with fs.open_input_file(f) as fh:
            rows = pq.ParquetFile(fh).metadata.num_rows
        uri = f if isinstance(fs, type(_local_fs())) else f"{fs.type_name}://{f}"
        out.append(InputFile(uri, "parquet", int(rows), int(fs.get_file_info(f).size or 0)))
    return out


def _local_fs():
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem()


def plan_files(files: Sequence[InputFile], shard_size: int) -> list[Shard]:
    """Shards of at most ``shard_size`` rows, never across files, starting at multiples of
    ``shard_size`` inside each file."""
    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    shards: list[Shard] = []
    first = 0
    for f in files:
        for s in range(0, f.rows, shard_size):
            m = min(shard_size, f.rows - s)
            shards.append(Shard(index=len(shards), first_row=first + s, rows=m, file=f, file_row=s))
        first += f.rows
    return shards


def plan_rows(n: int, shard_size: int) -> list[Shard]:
    """Shards of ``shard_size`` rows over ``n`` rows the driver holds (catalogue, feature store)."""
    if shard_size < 1:
        raise InputError(f"shard_size must be >= 1, got {shard_size}")
    return [Shard(index=i, first_row=s, rows=min(shard_size, n - s)) for i, s in enumerate(range(0, n, shard_size))]


# ---- reading (worker side) ----------------------------------------------------------------------
def _parquet_range(f: InputFile, start: int, stop: int, columns: list[str], batch_size: int) -> Iterator[Any]:
    """Record batches of exactly ``batch_size`` rows (the last one shorter) over rows
    ``start .. stop`` of one Parquet file; only the row groups that hold them are read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..io import filesystem_and_path

    fs, path = filesystem_and_path(f.path)
    try:
        with fs.open_input_file(path) as fh:
            pf = pq.ParquetFile(fh, buffer_size=1 << 22, pre_buffer=False)
            md = pf.metadata
            groups, rg_first, pos = [], None, 0
            for g in range(md.num_row_groups):
                n = md.row_group(g).num_rows
                if pos + n > start and pos < stop:
                    groups.append(g)
                    rg_first = pos if rg_first is None else rg_first
                pos += n
            if not groups:
                return
            skip, left = start - rg_first, stop - start
            pending: list = []
            have = 0
            for rb in pf.iter_batches(batch_size=batch_size, row_groups=groups, columns=columns, use_threads=False):
                if skip:
                    cut = min(skip, rb.num_rows)
                    rb, skip = rb.slice(cut), skip - cut
                rb = rb.slice(0, min(rb.num_rows, left - have))
                if rb.num_rows == 0:
                    if have >= left:
                        break
                    continue
                pending.append(rb)
                have += rb.num_rows
                while sum(b.num_rows for b in pending) >= batch_size:
                    t = pa.Table.from_batches(pending).combine_chunks()
                    yield t.slice(0, batch_size)
                    rest = t.slice(batch_size)
                    pending = rest.to_batches() if rest.num_rows else []
                if have >= left:
                    break
            if pending:
                t = pa.Table.from_batches(pending).combine_chunks()
                if t.num_rows:
                    yield t
    except InputError:
        raise
    except (OSError, ValueError) as e:
        raise InputError(f"{f.path}: reading failed ({type(e).__name__}: {e})") from None


def embedding_batches(shard: Shard, *, source: str, batch_size: int, id_column: str | None, vector_column: str | None,
                      dim: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(global first row, ids (b,), vectors (b, d) float32)`` over one shard, in batches that
    start at the shard's first row, checked with the same rules and the same one-line errors
    (naming ``source`` and the global row) as the local engine's ``io.open_embeddings``."""
    from ..io import as_float32_vectors, check_finite, ids_from_arrow, normalise_ids, vectors_from_arrow

    f = shard.file
    if f is None:
        raise InputError(f"shard {shard.name} has no input file")
    if f.kind == "npy":
        from ..io import read_ids_file

        arr = np.load(f.path, mmap_mode="r", allow_pickle=False)
        # memory-mapped: a worker holds one batch of ids, not the whole file, per shard
        ids_all = read_ids_file(f.ids, mmap=True) if f.ids is not None else None
        for s in range(shard.file_row, shard.file_row + shard.rows, batch_size):
            e = min(s + batch_size, shard.file_row + shard.rows)
            g = shard.first_row + (s - shard.file_row)
            x = np.ascontiguousarray(as_float32_vectors(np.asarray(arr[s:e]), source))
            check_finite(x, g, source)
            o = f.ids_offset
            ids = ids_all[o + s : o + e] if ids_all is not None else np.arange(g, g + (e - s), dtype=np.int64)
            yield g, normalise_ids(ids, source), x
        return
    cols = ([id_column] if id_column else []) + [vector_column]
    g = shard.first_row
    for t in _parquet_range(f, shard.file_row, shard.file_row + shard.rows, cols, batch_size):
        m = t.num_rows
        ids = ids_from_arrow(t.column(id_column), source, id_column, g) if id_column else np.arange(g, g + m, dtype=np.int64)
        v = vectors_from_arrow(t.column(vector_column), source, vector_column, g)
        if v.shape[1] != dim:
            raise InputError(f"{source}: vectors in column {vector_column!r} differ in length (row 0 has {dim}, "
                             f"row {g} has {v.shape[1]}); all embeddings must have the same dimension")
        x = np.ascontiguousarray(as_float32_vectors(v, source))
        check_finite(x, g, source)
        yield g, normalise_ids(ids, source), x
        g += m


def local_path(path: str) -> str:
    """``file://`` stripped; other URIs unchanged."""
    return path[len("file://"):] if path.startswith("file://") else os.fspath(path)
