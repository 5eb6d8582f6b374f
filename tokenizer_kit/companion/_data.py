"""Inputs of the downstream check: item SIDs, user sequences and the leave-one-out split.

SIDs come from a tokenizer directory (its ``SIDIndex``) or an LC-Rec ``*.index.json``, so
another tool's SIDs get the same test. Interactions are anything
``tokenizer_kit.io.read_interactions`` reads (Parquet, LC-Rec ``*.inter.json``).

Leave-one-out, as in TIGER / LC-Rec / P5, with the roles of the one split in
``tokenizer_kit.io`` (the split alignment mines its pairs from): per user (items in time
order) the last item is the test target, the second to last the validation target, and
every earlier position after the first is a training target (sliding window); each history
is the last ``max_history`` items before its target. Users with fewer than 3 items give
training examples only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..indexer import load_sid_index  # noqa: F401  (re-exported: the companion reads SIDs with it)
from ..io import TEST, TRAIN, VALID, InteractionLog, interaction_log, leave_one_out_roles

__all__ = ["SequenceSplit", "load_sid_index", "random_sid_index", "sequence_split"]

logger = logging.getLogger(__name__)


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


@dataclass(kw_only=True)
class SequenceSplit:
    """Next-item examples of the leave-one-out split: (history rows, target row) each.

    Histories are lists of (<= ``max_history``,) int64 arrays of index rows, oldest first;
    targets are (n,) int64 index rows. ``valid_users`` / ``test_users`` (n,) hold the user id
    of each validation / test example (one per user at most), so per-user results of
    several runs can be paired.
    """

    train_hist: list[np.ndarray]
    train_target: np.ndarray
    valid_hist: list[np.ndarray]
    valid_target: np.ndarray
    test_hist: list[np.ndarray]
    test_target: np.ndarray
    stats: dict
    valid_users: np.ndarray
    test_users: np.ndarray

    def subset(self, part: str, max_examples: int | None) -> tuple[list[np.ndarray], np.ndarray]:
        hist, tgt = getattr(self, f"{part}_hist"), getattr(self, f"{part}_target")
        if max_examples is None or max_examples >= len(tgt):
            return hist, tgt
        return hist[:max_examples], tgt[:max_examples]


def _index_rows(log: InteractionLog, index) -> np.ndarray:
    """Index row of every interaction of ``log`` (n,) int64, -1 for items the index lacks;
    without an index, positions in the log's sorted item ids."""
    if index is None:
        return np.asarray(log.items, np.int64)
    pos = {str(i): r for r, i in enumerate(index.item_ids.tolist())}
    vocab_rows = np.fromiter((pos.get(str(i), -1) for i in log.item_ids.tolist()), np.int64, len(log.item_ids))
    return vocab_rows[log.items] if len(log) else np.zeros(0, np.int64)


def sequence_split(interactions, index=None, *, max_history: int = 20, max_users: int | None = None) -> SequenceSplit:
    """Next-item examples of ``interactions`` under the one leave-one-out split.

    ``interactions``: a path (Parquet, LC-Rec ``*.inter.json``), a ``pyarrow.Table``
    (``user_id``, ``item_id``, ``timestamp``) or an :class:`~tokenizer_kit.io.InteractionLog`.
    Roles come from :func:`tokenizer_kit.io.leave_one_out_roles` on the whole log, the rule
    alignment uses: every interaction that has an earlier one of the same user becomes an
    example of its role (training, validation, test), predicted from the ``max_history``
    interactions before it. A user with fewer than 3 interactions gives training examples
    only. Items the index lacks are dropped from histories and targets afterwards (counted
    in ``stats``), so they never move another interaction to a different role.
    ``max_users`` keeps the first that many users (sorted by id), for quick runs.
    """
    from ..io import read_interactions

    if max_history < 1:
        raise InputError(f"max_history must be >= 1, got {max_history}")
    if isinstance(interactions, InteractionLog):
        log = interactions
    else:
        log = interaction_log(interactions if hasattr(interactions, "column_names") else read_interactions(interactions))
    role = leave_one_out_roles(log)
    if max_users is not None:
        keep = log.users < int(max_users)
        log, role = log.subset(keep), role[keep]
    rows = _index_rows(log, index)
    unknown = int((rows < 0).sum())
    if len(rows) and unknown == len(rows):
        raise InputError(
            f"none of the {len(rows)} interactions name an item of the SID index (first item {log.item_ids[log.items[0]]!r}); "
            "pass the interactions of the catalogue the tokenizer was built on"
        )
    if unknown:
        logger.warning("dropping %d of %d interactions whose items have no SID", unknown, len(rows))
    parts: dict[int, tuple[list, list, list]] = {r: ([], [], []) for r in (TRAIN, VALID, TEST)}
    bounds = log.user_bounds()
    for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        known = rows[s:e] >= 0
        seq, rl = rows[s:e][known], role[s:e][known]
        user = log.user_ids[log.users[s]]
        for t in range(1, len(seq)):
            hist, tgt, users = parts[int(rl[t])]
            hist.append(seq[max(0, t - max_history) : t])
            tgt.append(seq[t])
            users.append(user)
    n_users = len(bounds) - 1
    if not parts[TEST][1]:
        raise InputError("no user has a test item with an SID after an earlier one; leave-one-out needs users with at least 3 interactions")
    as_arr = lambda v: np.asarray(v, np.int64)  # noqa: E731
    stats = {
        "interactions": int(len(rows)),
        "unknown_item_interactions": unknown,
        "users": n_users,
        "users_without_test": n_users - len(parts[TEST][1]),
        "train_examples": len(parts[TRAIN][1]),
        "valid_examples": len(parts[VALID][1]),
        "test_examples": len(parts[TEST][1]),
        "max_history": max_history,
    }
    (th, tt, _), (vh, vt, vu), (sh, st, su) = parts[TRAIN], parts[VALID], parts[TEST]
    return SequenceSplit(
        train_hist=th, train_target=as_arr(tt), valid_hist=vh, valid_target=as_arr(vt), test_hist=sh, test_target=as_arr(st),
        stats=stats, valid_users=np.asarray(vu, dtype=object), test_users=np.asarray(su, dtype=object),
    )
