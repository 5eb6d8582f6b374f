"""The one leave-one-out split (``tokenizer_kit.io``) and its two consumers: alignment mines
its training pairs from the training rows; the companion scores the held-out rows."""

import numpy as np
import pyarrow as pa
import pytest

from tokenizer_kit.alignment import PairMiningConfig, mine_pairs
from tokenizer_kit.companion import sequence_split
from tokenizer_kit.errors import InputError
from tokenizer_kit.indexer import SIDIndex
from tokenizer_kit.io import TEST, TRAIN, VALID, interaction_log, leave_one_out_roles, leave_one_out_split


def _log_table(seed=0, n_users=60, n_items=30):
    """Users with 1 to 12 interactions, each at distinct times, rows shuffled; a few
    negative labels. Items ``i0`` .. ``i{n_items-1}``."""
    rng = np.random.default_rng(seed)
    users, items, ts, labels = [], [], [], []
    for u in range(n_users):
        k = int(rng.integers(1, 13))
        users += [f"u{u:02d}"] * k
        items += [f"i{int(i)}" for i in rng.integers(0, n_items, k)]
        ts += sorted(rng.choice(10_000, k, replace=False).tolist())
        labels += (rng.random(k) < 0.9).astype(np.int64).tolist()
    order = rng.permutation(len(users))
    pick = lambda v: [v[i] for i in order]  # noqa: E731
    return pa.table({"user_id": pick(users), "item_id": pick(items), "timestamp": pa.array(pick(ts), pa.int64()), "label": pick(labels)})


def _index(item_ids):
    ids = np.asarray(item_ids, dtype=object)
    sids = np.arange(len(ids))[:, None]
    return SIDIndex(item_ids=ids, sids=sids, raw_codes=sids, codebook_sizes=[len(ids)], policy="none")


def test_roles_follow_time_then_file_order_and_short_users_train():
    t = pa.table({
        "user_id": ["a", "a", "a", "a", "b", "b", "c", "c", "c"],
        "item_id": ["x", "y", "z", "w", "x", "y", "p", "q", "r"],
        "timestamp": [3, 1, 3, 0, 5, 6, 1, 1, 1],  # a: ties at 3 keep file order (x, z); c: all tied
    })
    log = interaction_log(t)
    role = leave_one_out_roles(log)
    got = {(log.user_ids[u], log.item_ids[i]): int(r) for u, i, r in zip(log.users, log.items, role)}
    assert got == {
        ("a", "w"): TRAIN, ("a", "y"): TRAIN, ("a", "x"): VALID, ("a", "z"): TEST,
        ("b", "x"): TRAIN, ("b", "y"): TRAIN,  # fewer than 3 interactions: all training
        ("c", "p"): TRAIN, ("c", "q"): VALID, ("c", "r"): TEST,
    }
    sp = leave_one_out_split(log)
    assert (len(sp.train), len(sp.valid), len(sp.test)) == (5, 2, 2)
    assert leave_one_out_roles(log, min_interactions=4).tolist().count(TEST) == 1  # only a
    with pytest.raises(InputError, match="min_interactions must be >= 3"):
        leave_one_out_roles(log, min_interactions=2)


def test_alignment_training_never_sees_the_companions_test_targets():
    table = _log_table()
    known = [f"i{k}" for k in range(25)]  # i25..i29 have no SID: the companion drops them
    log = interaction_log(table)
    sp = leave_one_out_split(log)
    cs = sequence_split(table, _index(known))

    # the companion's validation and test examples are exactly alignment's held-out rows
    def rows(part):
        return {(part.user_ids[u], part.item_ids[i]) for u, i in zip(part.users, part.items)}

    comp_test = {(u, known[t]) for u, t in zip(cs.test_users.tolist(), cs.test_target.tolist())}
    comp_valid = {(u, known[t]) for u, t in zip(cs.valid_users.tolist(), cs.valid_target.tolist())}
    assert len(comp_test) == len(cs.test_target) > 20
    assert comp_test <= rows(sp.test) and comp_valid <= rows(sp.valid)
    # the inclusions are strict only through items without an SID, and short users get no test
    assert {r for r in rows(sp.test) if r[1] in known} == comp_test
    short = {log.user_ids[u] for u in np.unique(log.users)} - {u for u, _ in rows(sp.test)}
    assert short and not short & {u for u, _ in comp_test}
    assert cs.stats["users_without_test"] == cs.stats["users"] - len(comp_test)

    # alignment's pairs do not depend on the held-out rows at all: give every held-out row
    # a brand-new item and mine again
    held = {(sp.valid.user_ids[u], int(t)) for part in (sp.valid, sp.test) for u, t in zip(part.users, part.timestamps)}
    users = table.column("user_id").to_pylist()
    ts = table.column("timestamp").to_pylist()
    items = [f"new{r}" if (u, t) in held else i for r, (u, t, i) in enumerate(zip(users, ts, table.column("item_id").to_pylist()))]
    rewritten = table.set_column(table.column_names.index("item_id"), "item_id", pa.array(items))
    cfg = PairMiningConfig(u2i_targets=3)
    before, _ = mine_pairs(sp.train, cfg)
    after, _ = mine_pairs(leave_one_out_split(rewritten).train, cfg)
    assert before.num_rows > 50
    assert before.select(["item_a", "item_b", "score"]).to_pylist() == after.select(["item_a", "item_b", "score"]).to_pylist()
    # ... while the companion's held-out targets are exactly those rewritten rows
    every = known + sorted(set(items) - set(known))
    cs2 = sequence_split(rewritten, _index(every))
    assert len(cs2.test_target) == len(rows(sp.test)) and len(cs2.valid_target) == len(rows(sp.valid))
    assert all(every[t].startswith("new") for t in np.r_[cs2.test_target, cs2.valid_target])
    assert not any(every[t].startswith("new") for t in cs2.train_target)
