"""The one leave-one-out split of interaction logs (the usual protocol for sequential
recommendation: SASRec, TIGER, LC-Rec, P5), shared by alignment and the companion.

The rule, per user, with the user's interactions in time order (``timestamp``; ties keep
file order):

* the last interaction is the user's **test** item and the one before it the
  **validation** item; every earlier one is **training**;
* a user with fewer than ``min_interactions`` (default and minimum 3) interactions has no
  validation or test item: all of that user's interactions are training.

Both consumers take their roles from :func:`leave_one_out_roles`, so they cannot disagree:
alignment mines its training pairs from the training rows only (and evaluates on the
held-out validation/test rows), and the companion (``tokenizer_kit.companion``) predicts
each training, validation and test row from the rows before it. A short user therefore
gives the companion training examples but no validation or test example, and a held-out
row that alignment never trained on is exactly a row the companion scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["InteractionLog", "Split", "TRAIN", "VALID", "TEST", "interaction_log", "leave_one_out_roles", "leave_one_out_split"]

TRAIN, VALID, TEST = 0, 1, 2


@dataclass
class InteractionLog:
    """Interactions as parallel arrays, sorted by (user, time).

    ``users`` / ``items`` (n,) int64 codes into ``user_ids`` / ``item_ids``; ``timestamps``
    (n,) int64; ``positive`` (n,) bool (``label > 0`` where a label column exists, else True).
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    positive: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __len__(self) -> int:
        return int(len(self.users))

    def subset(self, keep: np.ndarray) -> "InteractionLog":
        return InteractionLog(self.users[keep], self.items[keep], self.timestamps[keep], self.positive[keep], self.user_ids, self.item_ids)

    def user_bounds(self) -> np.ndarray:
        """Start of each user's run in the sorted arrays, (n_runs+1,) int64."""
        if len(self.users) == 0:
            return np.zeros(1, np.int64)
        change = np.flatnonzero(np.diff(self.users)) + 1
        return np.concatenate([[0], change, [len(self.users)]]).astype(np.int64)


def _timestamps(col) -> np.ndarray:
    """(n,) int64 order keys of a ``timestamp`` column: integers as they are, dates and times
    as their integer value (units since the epoch), floats when whole, integer strings parsed;
    anything else (text, nulls, fractions) is an error naming the first bad row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    where = "interactions: column 'timestamp'"
    if col.null_count:
        row = int(np.flatnonzero(np.asarray(col.is_null().to_numpy(zero_copy_only=False)))[0])
        raise InputError(f"{where} has {col.null_count} nulls (first at row {row}); give every interaction a time")
    if pa.types.is_integer(t):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_duration(t):
        return np.asarray(pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_floating(t):
        v = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = ~np.isfinite(v) | (v != np.round(v)) | (np.abs(v) >= 2**63)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise InputError(f"{where} holds {float(v[k])!r} at row {k}; expected whole numbers (e.g. Unix seconds) or dates")
        return v.astype(np.int64)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        vals = col.to_pylist()
        out = np.empty(len(vals), np.int64)
        for k, v in enumerate(vals):
            s = v.strip()
            if not (s.lstrip("+-").isascii() and s.lstrip("+-").isdigit()) or abs(int(s)) >= 2**63:
                raise InputError(f"{where} holds text ({v[:40]!r} at row {k}); expected integers (e.g. Unix seconds) or dates: "
                                 "convert it, e.g. to Unix seconds")
            out[k] = int(s)
        return out
    raise InputError(f"{where} has type {t}; expected integers (e.g. Unix seconds) or dates")


def interaction_log(table, *, item_ids: np.ndarray | None = None) -> InteractionLog:
    """Convert an interactions Table (``read_interactions``) into a sorted :class:`InteractionLog`.

    ``item_ids`` fixes the item vocabulary (codes follow it; interactions with other items
    are dropped); by default it is the sorted set of items in the log.
    """
    for c in ("user_id", "item_id"):
        if c not in table.column_names:
            raise InputError(f"interactions lack a {c!r} column (columns: {table.column_names}); give user_id, item_id, timestamp")
    u = np.asarray(table.column("user_id").to_numpy(zero_copy_only=False)).astype(str)
    it = np.asarray(table.column("item_id").to_numpy(zero_copy_only=False)).astype(str)
    n = len(u)
    ts = _timestamps(table.column("timestamp")) if "timestamp" in table.column_names else np.arange(n, dtype=np.int64)
    if "label" in table.column_names:
        lab = np.asarray(table.column("label").to_numpy(zero_copy_only=False), dtype=np.float64)
        pos = np.nan_to_num(lab, nan=0.0) > 0
    else:
        pos = np.ones(n, dtype=bool)
    user_ids, ucode = np.unique(u, return_inverse=True)
    if item_ids is None:
        item_ids, icode = np.unique(it, return_inverse=True)
    else:
        item_ids = np.asarray(item_ids).astype(str)
        order = np.argsort(item_ids, kind="stable")
        pos_in = np.searchsorted(item_ids[order], it)
        pos_in = np.clip(pos_in, 0, len(item_ids) - 1)
        found = item_ids[order][pos_in] == it
        icode = np.where(found, order[pos_in], -1)
        if not found.all():
            keep = found
            ucode, icode, ts, pos = ucode[keep], icode[keep], ts[keep], pos[keep]
    # sort by user, then time; row order breaks ties (stable)
    order = np.lexsort((np.arange(len(ucode)), ts, ucode))
    return InteractionLog(
        users=ucode[order].astype(np.int64),
        items=np.asarray(icode)[order].astype(np.int64),
        timestamps=ts[order],
        positive=pos[order],
        user_ids=user_ids.astype(object),
        item_ids=np.asarray(item_ids).astype(object),
    )


@dataclass
class Split:
    """``train`` / ``valid`` / ``test`` logs; valid and test hold at most one row per user."""

    train: InteractionLog
    valid: InteractionLog
    test: InteractionLog


def leave_one_out_roles(log: InteractionLog, *, min_interactions: int = 3) -> np.ndarray:
    """Role of every row of ``log``: (n,) int8, ``TRAIN`` / ``VALID`` / ``TEST`` (the module's rule)."""
    if int(min_interactions) < 3:
        raise InputError(f"min_interactions must be >= 3 (one training, one validation, one test item), got {min_interactions}")
    b = log.user_bounds()
    starts, ends = b[:-1], b[1:]
    role = np.full(len(log), TRAIN, dtype=np.int8)
    big = (ends - starts) >= int(min_interactions)
    role[ends[big] - 1] = TEST
    role[ends[big] - 2] = VALID
    return role


def leave_one_out_split(log_or_table, *, min_interactions: int = 3) -> Split:
    """Leave-one-out split per user (last -> test, second to last -> valid, rest -> train;
    short users wholly train). ``log_or_table``: an :class:`InteractionLog` or an
    interactions Table (``read_interactions``)."""
    log = log_or_table if isinstance(log_or_table, InteractionLog) else interaction_log(log_or_table)
    role = leave_one_out_roles(log, min_interactions=min_interactions)
    return Split(log.subset(role == TRAIN), log.subset(role == VALID), log.subset(role == TEST))
