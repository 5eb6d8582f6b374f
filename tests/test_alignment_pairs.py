import numpy as np
import pyarrow as pa
import pytest

from _align_helpers import random_log
from tokenizer_kit.alignment import (
    PairMiningConfig,
    interaction_log,
    leave_one_out_split,
    mine_pairs,
    swing_reference,
    swing_similarity,
    swing_topk,
    user_to_item_pairs,
)
from tokenizer_kit.errors import InputError


@pytest.mark.parametrize(
    "seed,cfg",
    [
        (0, PairMiningConfig()),
        (1, PairMiningConfig(alpha=0.5, user_weight_power=0.0)),
        (2, PairMiningConfig(max_items_per_user=6, max_users_per_item=9)),
    ],
)
def test_swing_equals_brute_force(seed, cfg):
    log = interaction_log(random_log(seed, labels=seed == 2))
    fast = swing_similarity(log, cfg).toarray()
    ref = swing_reference(log, cfg)
    dense = np.zeros_like(fast)
    for (i, j), v in ref.items():
        dense[i, j] = dense[j, i] = v
    assert len(ref) > 20
    np.testing.assert_allclose(fast, dense, rtol=1e-12, atol=1e-15)
    assert np.all(np.diag(fast) == 0)


def test_swing_wide_keys_take_the_argsort_path(monkeypatch):
    """Keys too wide to pack with their payload into one int64 fall back to a lexsort; both
    paths give the same Swing matrix."""
    from tokenizer_kit.alignment import _pairs

    log = interaction_log(random_log(3))
    packed = swing_similarity(log).toarray()
    k = np.array([5, 1, 5, 1, 3], np.int64)
    v = np.array([9, 7, 2, 8, 0], np.int64)
    np.testing.assert_array_equal(np.stack(_pairs._sort_by_key(k, v, 10)), [[1, 1, 3, 5, 5], [7, 8, 0, 2, 9]])
    wide = _pairs._sort_by_key(k << 40, v, 1 << 30)  # 40 + 30 bits > 63: lexsort
    np.testing.assert_array_equal(np.stack(wide), [k[[1, 3, 4, 2, 0]] << 40, [7, 8, 0, 2, 9]])
    real = _pairs._sort_by_key
    monkeypatch.setattr(_pairs, "_sort_by_key", lambda key, payload, bound: real(key, payload, 1 << 62))
    np.testing.assert_allclose(swing_similarity(log).toarray(), packed, rtol=1e-12, atol=1e-15)


def test_swing_definition_by_hand():
    # users 0,1 share items {a, b}; user 2 has {a, b, c}; weights off, alpha 1
    t = pa.table({"user_id": ["0", "0", "1", "1", "2", "2", "2"], "item_id": ["a", "b", "a", "b", "a", "b", "c"], "timestamp": [0, 1, 0, 1, 0, 1, 2]})
    log = interaction_log(t)
    s = swing_similarity(log, PairMiningConfig(user_weight_power=0.0)).toarray()
    # sim(a, b): pairs {0,1}: 1/(1+2); {0,2}: 1/(1+2); {1,2}: 1/(1+2)
    assert s[0, 1] == pytest.approx(1.0)
    assert s[0, 2] == 0 and s[1, 2] == 0  # c has one user: no user pair


def test_topk_order_and_ties():
    import scipy.sparse as sp

    m = sp.csr_matrix(np.array([[0, 2, 2, 1], [2, 0, 0, 3], [2, 0, 0, 0], [1, 3, 0, 0]], dtype=float))
    r, c, v = swing_topk(m, 2)
    assert r.tolist() == [0, 0, 1, 1, 2, 3, 3]
    assert c.tolist() == [1, 2, 3, 0, 0, 1, 0]  # row 0: tie 2/2 goes to the smaller column


def test_leave_one_out_split():
    log = interaction_log(random_log(3))
    sp = leave_one_out_split(log)
    assert len(sp.train) + len(sp.valid) + len(sp.test) == len(log)
    for split_part in (sp.valid, sp.test):
        assert len(np.unique(split_part.users)) == len(split_part.users)
    # the test item is each user's latest, validation the one before
    for u in np.unique(sp.test.users)[:10]:
        ts = log.timestamps[log.users == u]
        assert sp.test.timestamps[sp.test.users == u][0] == ts.max()
        assert sp.train.timestamps[sp.train.users == u].max() <= sp.valid.timestamps[sp.valid.users == u][0]


def _u2i_brute_best_scores(log, sim, h):
    """Per user: (target, best swing score among the h positive clicks before it)."""
    out = []
    for u in np.unique(log.users):
        items = log.items[(log.users == u) & log.positive].tolist()
        if len(items) < 2:
            continue
        tgt = items[-1]
        scores = [sim[tgt, c] for c in items[-1 - h : -1] if c != tgt]
        if scores and max(scores) > 0:
            out.append((tgt, max(scores)))
    return sorted(out)


def test_user_to_item_pairs_pick_most_similar_history_item():
    log = interaction_log(random_log(4, n_users=20, n_items=15, n=300, labels=True))
    cfg = PairMiningConfig(u2i_history=5, u2i_targets=1)
    sim = swing_similarity(log, cfg)
    t, p, s = user_to_item_pairs(log, sim, cfg)
    dense = sim.toarray()
    ref = _u2i_brute_best_scores(log, dense, 5)
    got = sorted((int(a), float(v)) for a, v in zip(t, s) if v > 0)
    assert len(ref) >= 10
    assert [r[0] for r in ref] == [g[0] for g in got]
    np.testing.assert_allclose([r[1] for r in ref], [g[1] for g in got], rtol=1e-12)
    np.testing.assert_allclose(s, dense[t, p])
    assert np.all(t != p)


def test_mine_pairs_counts_and_coverage():
    log = interaction_log(random_log(5, labels=True))
    table, stats = mine_pairs(log, PairMiningConfig(swing_topk=3))
    src = table.column("source").to_pylist()
    assert stats["pairs"]["swing"] == src.count("swing") > 0
    assert stats["pairs"]["u2i"] == src.count("u2i") > 0
    assert 0 < stats["coverage"]["swing"] <= stats["coverage"]["all"] <= 1
    a, b = table.column("item_a").to_pylist(), table.column("item_b").to_pylist()
    assert all(x != y for x, y in zip(a, b))
    sw = [(x, y) for x, y, s in zip(a, b, src) if s == "swing"]
    assert len(set(map(frozenset, sw))) == len(sw)  # unordered pairs deduplicated


def test_config_reports_every_error():
    with pytest.raises(InputError) as e:
        PairMiningConfig(alpha=0, max_items_per_user=0, swing_topk=-1).validate()
    msg = str(e.value)
    assert "alpha" in msg and "max_items_per_user" in msg and "swing_topk" in msg and "\n" not in msg
