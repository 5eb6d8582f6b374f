"""Cold start's neighbour ranking: each placed item lists the k indexed items under its code
prefix nearest to it, by (distance to the item's decoded code row, SID order), its own row
left out. The ranking avoids sorting every candidate (a prefix lists up to
``nearest_candidates``); these tests hold it to a stable sort over all of them."""

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.indexer import IndexConfig, SIDIndex
from tokenizer_kit.indexer._cold_start import _run_top, _stable_top


def _ties(rng, b, n):
    d = rng.integers(0, int(rng.integers(1, 8)), size=(b, n)).astype(np.float32)  # many equal values
    if rng.random() < 0.5:
        d[rng.random((b, n)) < 0.2] = np.inf
    return d


def test_stable_top_is_the_head_of_a_stable_argsort():
    rng = np.random.default_rng(0)
    for _ in range(300):
        b, n, k = int(rng.integers(1, 40)), int(rng.integers(1, 300)), int(rng.integers(0, 12))
        d = _ties(rng, b, n) if rng.random() < 0.7 else rng.random((b, n)).astype(np.float32)
        np.testing.assert_array_equal(_stable_top(d, k), np.argsort(d, axis=1, kind="stable")[:, :k])


def test_run_top_equals_the_stable_argsort_over_every_candidate():
    rng = np.random.default_rng(1)
    for _ in range(300):
        u, b, k = int(rng.integers(1, 30)), int(rng.integers(1, 20)), int(rng.integers(1, 9))
        runs = rng.integers(1, 6, u)
        du = _ties(rng, b, u)
        inv = np.repeat(np.arange(u), runs)  # candidate c belongs to distinct row inv[c]
        ref = np.argsort(du[:, inv], axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(_run_top(du, runs, k), ref)


def _reference(index, tok, xp, own_row, prefix_len, k, cap):
    """Brute force: the first ``cap`` indexed items in SID order whose SID starts with the item's
    prefix, ranked by squared distance of their decoded codes (a stable sort), own row out."""
    order = np.lexsort(np.asarray(index.sids)[:, ::-1].T)
    sids = np.asarray(index.sids)[order]
    raw = np.asarray(index.raw_codes)[order]

    def near(prefix, x, own):
        under = order[(sids[:, :prefix_len] == prefix).all(1)][:cap]
        codes = raw[(sids[:, :prefix_len] == prefix).all(1)][:cap]
        d = ((tok.decode(codes) - x[None]) ** 2).sum(1)
        d[under == own] = np.inf
        ranked = under[np.argsort(d, kind="stable")]
        return ranked[ranked != own][:k]

    return near


@pytest.mark.parametrize("cap", [4096, 7])
def test_cold_start_neighbours_match_a_brute_force_ranking(cap):
    rng = np.random.default_rng(2)
    c = rng.normal(size=(5, 8)).astype(np.float32) * 3
    x = (c[rng.integers(0, 5, 900)] + rng.normal(scale=0.3, size=(900, 8))).astype(np.float32)
    ids = np.arange(900)
    tok = SemanticTokenizer.build(x[:700], ids=ids[:700], codebook_sizes=[3, 3, 4], seed=0, index=False)
    index = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy="suffix"), x=x[:700])
    assert len(np.unique(tok.codes, axis=0)) < 100  # groups of many items: runs of equal distances
    new_x = x[700:].copy()
    new_x[:3] += 0.01  # no exact duplicates needed; a few items replaced below
    rep = np.array([5, 17, 300])
    q_ids = np.concatenate([ids[700:], rep])
    q_x = np.concatenate([new_x, x[rep] + 0.5])
    cfg = IndexConfig(policy="suffix", nearest_k=6, nearest_candidates=cap)
    _, table, summary = index.assign(tok, q_ids, q_x, replace=True, config=cfg)
    assert summary["new"] == 200 and summary["replaced"] == 3
    near = _reference(index, tok, None, None, index.levels - 1, cfg.nearest_k, cap)
    xp = tok.preprocess(q_x)
    codes = tok.encode(q_x)
    row_of = {int(i): r for r, i in enumerate(np.asarray(index.item_ids).tolist())}
    for j, row in enumerate(table):
        own = row_of.get(int(row["item_id"]), -1)
        want = near(codes[j, : index.levels - 1], xp[j], own)
        assert row["nearest"] == [int(index.item_ids[r]) for r in want], j
