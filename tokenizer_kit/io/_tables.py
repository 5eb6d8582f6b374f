"""Catalogues and interactions as ``pyarrow.Table``.

Catalogue: ``item_id`` (string) plus text / image columns; read from Parquet, JSONL, an
LC-Rec ``*.item.json`` (item id -> fields) or a saved HF dataset.
Interactions: ``user_id``, ``item_id`` (strings), ``timestamp`` (int64) and optional
``label`` / ``weight``; read from Parquet or an LC-Rec ``*.inter.json`` (user -> items in
time order; the position becomes the timestamp).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = [
    "read_catalog",
    "read_interactions",
    "read_lcrec_items",
    "read_lcrec_interactions",
    "top_category",
    "item_categories",
]

logger = logging.getLogger(__name__)


def _load_json(path: Path):
    from ._paths import read_json

    return read_json(path, "file")


def read_lcrec_items(path: str | Path):
    """LC-Rec ``*.item.json``: ``{item_id: {field: value}}`` -> Table with ``item_id`` first."""
    import pyarrow as pa

    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a non-empty JSON object of item id -> fields")
    fields: list[str] = []
    for rec in data.values():
        if not isinstance(rec, dict):
            raise InputError(f"{path}: each item must map to an object of fields, got {type(rec).__name__}")
        for k in rec:
            if k not in fields:
                fields.append(k)
    cols = {"item_id": [str(k) for k in data]}
    for f in fields:
        vals = []
        for rec in data.values():
            v = rec.get(f)
            if isinstance(v, list):
                v = ", ".join(map(str, v))
            vals.append(None if v is None else str(v))
        cols[f] = vals
    return pa.table(cols)


def read_lcrec_interactions(path: str | Path):
    """LC-Rec ``*.inter.json``: ``{user_id: [item_id, ...]}`` in time order."""
    import pyarrow as pa

    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: expected a non-empty JSON object of user id -> item list")
    users, items, ts = [], [], []
    for u, seq in data.items():
        if not isinstance(seq, list):
            raise InputError(f"{path}: user {u!r} maps to {type(seq).__name__}; expected a list of item ids")
        users.extend([str(u)] * len(seq))
        items.extend(str(i) for i in seq)
        ts.extend(range(len(seq)))
    return pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "item_id": pa.array(items, pa.string()),
            "timestamp": pa.array(ts, pa.int64()),
        }
    )


def _read_any(path: Path, kind: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise InputError(f"{path} does not exist; pass an existing {kind} file")
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            import datasets

            try:
                ds = datasets.load_from_disk(str(path))
            except Exception as e:  # datasets raises many types for a damaged folder
                raise InputError(f"{path}: not a readable saved HF dataset ({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
            if isinstance(ds, datasets.DatasetDict):
                ds = ds["train" if "train" in ds else next(iter(ds))]
            return ds.data.table
        parts = sorted(path.glob("*.parquet"))
        if not parts:
            raise InputError(f"{path}: directory holds no Parquet files or saved HF dataset")
        try:
            return pa.concat_tables([pq.read_table(p) for p in parts])
        except Exception as e:  # pyarrow raises several types for damaged or mismatched parts
            raise InputError(f"{path}: the Parquet files cannot be read as one table ({type(e).__name__}: {' '.join(str(e).split())[:160]})") from None
    name = path.name
    if name.endswith((".parquet", ".pq")):
        try:
            return pq.read_table(path)
        except Exception as e:
            raise InputError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    if name.endswith((".jsonl", ".ndjson")):
        import pyarrow.json as pj

        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file; expected one JSON object per line")
        try:
            return pj.read_json(path)
        except Exception as e:  # ArrowInvalid and friends
            raise InputError(f"{path}: not valid JSON lines ({' '.join(str(e).split())[:160]}); one JSON object per line, UTF-8") from None
    return None


def read_catalog(path: str | Path, *, keep_id_type: bool = False):
    """Read a catalogue as a Table with a string ``item_id`` column (``keep_id_type``: an
    integer ``item_id`` column stays int64, so outputs join with the catalogue as it is)."""
    import pyarrow as pa

    path = Path(path)
    if path.name.endswith(".item.json"):
        table = read_lcrec_items(path)
    else:
        table = _read_any(path, "catalogue")
        if table is None:
            if path.suffix == ".json":
                table = read_lcrec_items(path)
            else:
                raise InputError(
                    f"{path}: unsupported catalogue format; use Parquet, JSONL, an LC-Rec .item.json "
                    "or a saved HF dataset"
                )
    if "item_id" not in table.column_names:
        raise InputError(f"{path}: catalogue has no 'item_id' column (columns: {table.column_names})")
    if table.num_rows == 0:
        raise InputError(f"{path}: catalogue is empty")
    if table.column("item_id").null_count:
        raise InputError(f"{path}: {table.column('item_id').null_count} catalogue rows have a null item_id; every item needs an id")
    integer = pa.types.is_integer(table.column("item_id").type)
    ids = table.column("item_id").cast(pa.int64() if keep_id_type and integer else pa.string())
    table = table.set_column(table.column_names.index("item_id"), "item_id", ids)
    _check_unique(np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object), str(path))
    return table


def _check_unique(ids: np.ndarray, source: str) -> None:
    uniq, first, counts = np.unique(ids.astype(str), return_index=True, return_counts=True)
    if len(uniq) != len(ids):
        j = int(np.argmax(counts > 1))
        raise InputError(
            f"{source}: duplicate item id {str(uniq[j])!r} (first at row {int(first[j])}); item ids must be unique"
        )


def read_interactions(path: str | Path):
    """Read interactions as a Table (``user_id``, ``item_id`` strings; ``timestamp`` int64)."""
    import pyarrow as pa

    path = Path(path)
    if path.name.endswith(".inter.json"):
        return read_lcrec_interactions(path)
    table = _read_any(path, "interactions")
    if table is None:
        if path.suffix == ".json":
            return read_lcrec_interactions(path)
        raise InputError(f"{path}: unsupported interactions format; use Parquet or an LC-Rec .inter.json")
    missing = [c for c in ("user_id", "item_id") if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: interactions lack column(s) {missing} (columns: {table.column_names})")
    if table.num_rows == 0:
        raise InputError(f"{path}: no interactions")
    for c in ("user_id", "item_id"):
        if table.column(c).null_count:
            raise InputError(f"{path}: {table.column(c).null_count} interactions have a null {c}; drop them or fill them in")
    for c in ("user_id", "item_id"):
        table = table.set_column(table.column_names.index(c), c, table.column(c).cast(pa.string()))
    if "timestamp" not in table.column_names:
        logger.info("%s has no timestamp column; using row order as time", path)
        table = table.append_column("timestamp", pa.array(np.arange(table.num_rows), pa.int64()))
    return table


def top_category(value) -> str | None:
    """First entry of a category path (``"A, B, C"`` or a list) or None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
        return None if value is None else str(value).strip() or None
    s = str(value).strip()
    if not s:
        return None
    for sep in (">", "|", ","):
        if sep in s:
            return s.split(sep)[0].strip() or None
    return s


def item_categories(table, column: str = "categories") -> dict[str, str]:
    """``item_id -> top category`` for items that have one."""
    if column not in table.column_names:
        raise InputError(f"catalogue has no {column!r} column (columns: {table.column_names})")
    ids = table.column("item_id").to_pylist()
    vals = table.column(column).to_pylist()
    out = {}
    for i, v in zip(ids, vals):
        t = top_category(v)
        if t is not None:
            out[str(i)] = t
    return out
