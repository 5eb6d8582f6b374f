"""SID tables: Parquet with item_id, one int column per level, and the SID string."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ._atomic import atomic_write

__all__ = ["sids_table", "write_sids_parquet", "sid_string_array", "SIDWriter"]


def _level_prefix(level: int) -> str:
    # the same spelling as tokenizer_kit.build._tokenizer.level_token
    return chr(ord("a") + level) if level < 26 else f"l{level}"


_TOKENS: dict[int, object] = {}  # level -> Arrow strings "<a_0>", "<a_1>", ... (the longest made so far)


def _level_tokens(level: int, n: int):
    """The tokens of codes 0..n-1 of ``level`` as an Arrow string array (at least n long): made
    once and grown on demand, not once per batch (a suffix level holds tens of thousands)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    have = _TOKENS.get(level)
    if have is None or len(have) < n:
        m = max(n, 2 * len(have) if have is not None else n)
        digits = pc.cast(pa.array(np.arange(m, dtype=np.int64)), pa.string())  # made in Arrow: no Python string per code
        have = pc.binary_join_element_wise(f"<{_level_prefix(level)}_", digits, ">", "")
        _TOKENS[level] = have
    return have


def sid_string_array(codes: np.ndarray):
    """SID strings ``<a_3><b_4><c_1>`` of ``codes`` (n, L) as an Arrow string array (vectorised)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    codes = np.asarray(codes, dtype=np.int64)
    n, levels = codes.shape
    if levels == 0:
        return pa.array([""] * n, pa.string())
    cols = []
    for level in range(levels):
        col = codes[:, level]
        hi = int(col.max()) + 1 if n else 1
        lo = int(col.min()) if n else 0
        if lo < 0:
            raise ValueError(f"negative code {lo} at level {level}")
        cols.append(_level_tokens(level, hi).take(pa.array(col)))
    return pc.binary_join_element_wise(*cols, "") if levels > 1 else cols[0]


def _id_array(ids: np.ndarray):
    import pyarrow as pa

    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return pa.array(ids.astype(np.int64), pa.int64())
    return pa.array([str(i) for i in ids.tolist()], pa.string())


def sids_table(ids: np.ndarray, codes: np.ndarray, sids: Sequence[str] | None = None):
    """Arrow table ``item_id, code_0..code_{L-1}, sid``; ``sids`` default to the codes' strings."""
    import pyarrow as pa

    codes = np.asarray(codes)
    cols = {"item_id": _id_array(ids)}
    for l in range(codes.shape[1]):
        cols[f"code_{l}"] = pa.array(np.asarray(codes[:, l], dtype=np.int32))
    cols["sid"] = sid_string_array(codes) if sids is None else pa.array(list(sids), pa.string())
    return pa.table(cols)


def write_sids_parquet(path: str | Path, ids: np.ndarray, codes: np.ndarray, sids: Sequence[str] | None = None) -> Path:
    """Write atomically: the previous file stays whole if anything fails."""
    import pyarrow.parquet as pq

    path = Path(path)
    with atomic_write(path) as tmp:
        pq.write_table(sids_table(ids, codes, sids), tmp)
    return path


class SIDWriter:
    """Append SID rows batch by batch to one Parquet file (the layout of ``sids_table``).

    >>> with SIDWriter(path) as w:
    ...     for ids, codes in batches:
    ...         w.write(ids, codes)
    """

    def __init__(self, path: str | Path, *, row_group_size: int = 1 << 20):
        self.path = Path(path)
        self.row_group_size = row_group_size
        self._writer = None
        self.rows = 0

    def write(self, ids: np.ndarray, codes: np.ndarray) -> None:
        import pyarrow.parquet as pq

        table = sids_table(ids, codes)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        elif table.schema != self._writer.schema:
            raise ValueError(f"SID batch schema {table.schema} differs from the file's {self._writer.schema} (mixed id types?)")
        self._writer.write_table(table, row_group_size=self.row_group_size)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "SIDWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
