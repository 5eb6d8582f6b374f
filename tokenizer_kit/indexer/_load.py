"""``load_sids``: the SIDs of a tokenizer directory, an ``assign --out`` file or an LC-Rec
index as one table (pandas, ``datasets`` or Arrow), item ids in their own type."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import InputError, TokenizerKitError

__all__ = ["load_sid_index", "load_sids"]

logger = logging.getLogger(__name__)

_FORMATS = ("pandas", "datasets", "arrow")


def _index_table(index) -> Any:
    from ..io import sids_table

    return sids_table(index.item_ids, index.sids, index.sid_strings())


def _tokenizer_table(path: Path) -> Any:
    from ..build import SemanticTokenizer
    from ..io import sids_table
    from ._index import SIDIndex

    tok = SemanticTokenizer.from_pretrained(path)
    index = SIDIndex.stored(tok)
    if index is not None:
        return _index_table(index)
    if tok.codes is None or tok.item_ids is None:
        raise InputError(f"{path} holds no SIDs (a tokenizer saved without items); assign them with `tokenizer-kit assign`")
    return sids_table(tok.item_ids, tok.codes)


def load_sids(source: str | os.PathLike, *, format: str = "pandas") -> Any:
    """The SIDs of ``source`` as one table: ``item_id`` (int64 or string, as the input had
    them), ``code_0..code_{L-1}`` and ``sid`` (``<a_3><b_4><c_1>``).

    ``source``: a tokenizer directory (its SID index when it has one, so one SID per item,
    suffix level included; else the codes of the build), a Parquet file written by
    ``assign --out`` or ``write_sids_parquet`` (read as is), or an LC-Rec ``*.index.json``.
    ``format``: ``"pandas"`` (a DataFrame), ``"datasets"`` (a ``datasets.Dataset``) or
    ``"arrow"`` (a ``pyarrow.Table``).

    >>> sids = load_sids("tok/")                         # DataFrame
    >>> items.merge(sids, on="item_id")                  # joins with the catalogue's ids
    """
    import pyarrow.parquet as pq

    if format not in _FORMATS:
        raise InputError(f"format must be one of {list(_FORMATS)}, got {format!r}")
    p = Path(source)
    if not p.exists():
        raise InputError(f"{p} does not exist; pass a tokenizer directory, a SIDs .parquet or an LC-Rec .index.json")
    if p.is_dir():
        table = _tokenizer_table(p)
    elif p.name.endswith(".parquet"):
        table = pq.read_table(p)
        if "item_id" not in table.column_names or "sid" not in table.column_names:
            raise InputError(f"{p}: not a SIDs table (columns {table.column_names}); expected item_id, code_0.., sid")
    elif p.name.endswith(".json"):
        from ._index import SIDIndex

        table = _index_table(SIDIndex.from_lcrec(p))
    else:
        raise InputError(f"{p}: expected a tokenizer directory, a .parquet SIDs table or an LC-Rec .index.json")
    if format == "arrow":
        return table
    if format == "datasets":
        import datasets

        return datasets.Dataset(table)
    return table.to_pandas()


def load_sid_index(source: "str | os.PathLike | object"):
    """A ``SIDIndex`` from a tokenizer directory, an LC-Rec ``*.index.json``, or an index object as is.

    A tokenizer directory that was never indexed gets an in-memory index under the default
    ``suffix`` policy (one item per SID), as ``tokenizer-kit index DIR`` would build.
    """
    from ..build import SemanticTokenizer
    from ._index import SIDIndex

    if isinstance(source, SIDIndex):
        return source
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path} does not exist; pass a tokenizer directory or an LC-Rec *.index.json")
    if path.is_file():
        if path.suffix != ".json":
            raise InputError(f"{path}: expected a tokenizer directory or an LC-Rec *.index.json, got a {path.suffix or 'suffix-less'} file")
        return SIDIndex.from_lcrec(path)
    tok = SemanticTokenizer.from_pretrained(path)
    idx = SIDIndex.stored(tok)
    if idx is None:
        if tok.codes is None:
            raise TokenizerKitError(f"{path} holds no items; build it with build-codebook first")
        logger.warning("%s has no SID index; indexing it in memory with the suffix policy (run `tokenizer-kit index %s` to store one)", path, path)
        idx = SIDIndex.for_tokenizer(tok)
    return idx
