"""Inputs of the downstream check: item SIDs, user sequences and the leave-one-out split.

SIDs come from a tokenizer directory (its ``SIDIndex``) or an LC-Rec ``*.index.json``, so
another tool's SIDs get the same test. Interactions are anything
``tokenizer_kit.io.read_interactions`` reads (Parquet, LC-Rec ``*.inter.json``).

Leave-one-out, as in TIGER / LC-Rec / P5: per user (items in time order) the last item is
the test target, the second to last the validation target, and every earlier position is
a training target (sliding window); each history is the last ``max_history`` items before
its target.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, TokenizerKitError

__all__ = ["SequenceSplit", "leave_one_out_split", "load_sid_index", "random_sid_index", "user_sequences"]

logger = logging.getLogger(__name__)


def load_sid_index(source: "str | os.PathLike | object"):
    """A ``SIDIndex`` from a tokenizer directory, an LC-Rec ``*.index.json``, or an index object as is.

    A tokenizer directory that was never indexed gets an in-memory index under the default
    ``suffix`` policy (one item per SID), as ``tokenizer-kit index DIR`` would build.
    """
    from .._tokenizer import SemanticTokenizer
    from ..indexer import SIDIndex

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
    idx = SIDIndex.from_tokenizer(tok)
    if idx is None:
        if tok.codes is None:
            raise TokenizerKitError(f"{path} holds no items; build it with build-codebook first")
        logger.warning("%s has no SID index; indexing it in memory with the suffix policy (run `tokenizer-kit index %s` to store one)", path, path)
        idx = SIDIndex.for_tokenizer(tok)
    return idx


def random_sid_index(item_ids, level_sizes, *, seed: int = 0):
    """A floor: every item gets a uniformly random SID with the given level sizes, all distinct.

    ``level_sizes`` is usually ``other_index.level_sizes`` so the random SIDs have the same
    shape (length and tokens per level) as the SIDs they are compared with.
    """
    from ..indexer import SIDIndex

    sizes = [int(k) for k in level_sizes]
    n = len(item_ids)
    space = float(np.prod(np.asarray(sizes, np.float64)))
    if space < n:
        raise InputError(f"level sizes {sizes} give {int(space)} SIDs, fewer than the {n} items; use larger levels")
    rng = np.random.default_rng(seed)
    sids = np.stack([rng.integers(0, k, n) for k in sizes], 1).astype(np.int64)  # [n, S]
    for _ in range(1000):
        _, first = np.unique(sids, axis=0, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        if not len(dup):
            break
        sids[dup] = np.stack([rng.integers(0, k, len(dup)) for k in sizes], 1)
    else:  # pragma: no cover - only for a nearly full SID space
        raise InputError(f"could not draw {n} distinct random SIDs from level sizes {sizes}; use larger levels")
    idx = SIDIndex(item_ids=np.asarray(item_ids), sids=sids, raw_codes=sids, codebook_sizes=sizes, policy="none")
    idx.stats = {"policy": "random", "seed": int(seed), "n_items": n, "level_sizes": sizes}
    return idx


def user_sequences(interactions, index=None) -> tuple[list[str], list[np.ndarray], dict]:
    """Per-user item rows of ``index`` in time order.

    ``interactions`` is a path or a ``pyarrow.Table`` (``user_id``, ``item_id``, ``timestamp``).
    Items the index does not know are dropped (counted in the returned stats); with
    ``index=None`` rows are positions in the sorted unique item ids.
    Returns (user ids, sequences of int64 rows, stats).
    """
    from ..io import read_interactions

    table = interactions if hasattr(interactions, "column_names") else read_interactions(interactions)
    users = np.asarray(table.column("user_id").to_numpy(zero_copy_only=False), dtype=object).astype(str)
    items = np.asarray(table.column("item_id").to_numpy(zero_copy_only=False), dtype=object).astype(str)
    ts = np.asarray(table.column("timestamp").to_numpy(zero_copy_only=False), dtype=np.int64)
    if index is None:
        known = np.unique(items)
        pos = {k: r for r, k in enumerate(known.tolist())}
    else:
        pos = {str(i): r for r, i in enumerate(index.item_ids.tolist())}
    rows = np.fromiter((pos.get(i, -1) for i in items.tolist()), np.int64, len(items))
    unknown = int((rows < 0).sum())
    if unknown == len(rows):
        raise InputError(
            f"none of the {len(rows)} interactions name an item of the SID index (first item {items[0]!r}); "
            "pass the interactions of the catalogue the tokenizer was built on"
        )
    if unknown:
        logger.warning("dropping %d of %d interactions whose items have no SID", unknown, len(rows))
    keep = rows >= 0
    users, rows, ts = users[keep], rows[keep], ts[keep]
    order = np.lexsort((np.arange(len(ts)), ts, users))  # by user, then time, then file order
    users, rows = users[order], rows[order]
    cut = np.flatnonzero(users[1:] != users[:-1]) + 1
    seqs = np.split(rows, cut)
    uids = users[np.concatenate([[0], cut])].tolist() if len(users) else []
    return uids, seqs, {"interactions": int(len(keep)), "unknown_item_interactions": unknown, "users": len(uids)}


@dataclass
class SequenceSplit:
    """Examples as (history rows, target row); histories are lists of int64 arrays (<= max_history items)."""

    train_hist: list[np.ndarray]
    train_target: np.ndarray
    valid_hist: list[np.ndarray]
    valid_target: np.ndarray
    test_hist: list[np.ndarray]
    test_target: np.ndarray
    stats: dict

    def subset(self, part: str, max_examples: int | None) -> tuple[list[np.ndarray], np.ndarray]:
        hist, tgt = getattr(self, f"{part}_hist"), getattr(self, f"{part}_target")
        if max_examples is None or max_examples >= len(tgt):
            return hist, tgt
        return hist[:max_examples], tgt[:max_examples]


def leave_one_out_split(sequences: list[np.ndarray], *, max_history: int = 20, min_length: int = 3) -> SequenceSplit:
    """Leave-one-out split of per-user sequences (see the module docstring).

    Users with fewer than ``min_length`` (>= 3) items are skipped: they cannot give a
    training, a validation and a test target.
    """
    if max_history < 1:
        raise InputError(f"max_history must be >= 1, got {max_history}")
    if min_length < 3:
        raise InputError(f"min_length must be >= 3 (one train, one validation, one test item), got {min_length}")
    th, tt, vh, vt, sh, st = [], [], [], [], [], []
    skipped = 0
    for seq in sequences:
        seq = np.asarray(seq, np.int64)
        n = len(seq)
        if n < min_length:
            skipped += 1
            continue
        for t in range(1, n - 2):
            th.append(seq[max(0, t - max_history) : t])
            tt.append(seq[t])
        vh.append(seq[max(0, n - 2 - max_history) : n - 2])
        vt.append(seq[n - 2])
        sh.append(seq[max(0, n - 1 - max_history) : n - 1])
        st.append(seq[n - 1])
    if not st:
        raise InputError(f"no user has at least {min_length} items; leave-one-out needs a train, a validation and a test item per user")
    stats = {
        "users": len(st),
        "users_skipped_short": skipped,
        "train_examples": len(tt),
        "valid_examples": len(vt),
        "test_examples": len(st),
        "max_history": max_history,
    }
    as_arr = lambda v: np.asarray(v, np.int64)  # noqa: E731
    return SequenceSplit(th, as_arr(tt), vh, as_arr(vt), sh, as_arr(st), stats)
