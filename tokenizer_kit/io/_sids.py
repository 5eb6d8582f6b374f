"""SID tables: Parquet with item_id, one int column per level, and the SID string."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ._atomic import atomic_write

__all__ = ["sids_table", "write_sids_parquet"]


def sids_table(ids: np.ndarray, codes: np.ndarray, sids: Sequence[str]):
    import pyarrow as pa

    ids = np.asarray(ids)
    id_arr = pa.array(ids.tolist(), pa.int64()) if ids.dtype.kind in "iu" else pa.array([str(i) for i in ids.tolist()], pa.string())
    cols = {"item_id": id_arr}
    for l in range(codes.shape[1]):
        cols[f"code_{l}"] = pa.array(np.asarray(codes[:, l], dtype=np.int32))
    cols["sid"] = pa.array(list(sids), pa.string())
    return pa.table(cols)


def write_sids_parquet(path: str | Path, ids: np.ndarray, codes: np.ndarray, sids: Sequence[str]) -> Path:
    """Write atomically: the previous file stays whole if anything fails."""
    import pyarrow.parquet as pq

    path = Path(path)
    with atomic_write(path) as tmp:
        pq.write_table(sids_table(ids, codes, sids), tmp)
    return path
