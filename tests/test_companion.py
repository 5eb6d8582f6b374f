"""Companion generative retriever: metrics, split, constrained generation, training, determinism, CLI."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from tokenizer_kit.cli.app import app
from tokenizer_kit.companion import (
    GenerativeRetriever,
    RetrievalConfig,
    evaluate_retrieval,
    load_sid_index,
    random_sid_index,
    retrieval_metrics,
    sequence_split,
    target_ranks,
)
from tokenizer_kit.errors import InputError
from tokenizer_kit.indexer import SIDIndex

TINY = dict(d_model=32, d_ff=64, n_layers=1, n_heads=2, batch_size=32, eval_batch_size=64, lr=5e-3)


def _index(n=40, sizes=(4, 4, 4), seed=0):
    sids = random_sid_index([f"i{k}" for k in range(n)], list(sizes), seed=seed).sids
    return SIDIndex(item_ids=np.asarray([f"i{k}" for k in range(n)], dtype=object), sids=sids, raw_codes=sids,
                    codebook_sizes=list(sizes), policy="none")


def _sequences(n_users=60, n_items=40, seed=0):
    """Users walk the item ring: a learnable next-item rule (item k -> k+1)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(5, 9))
        seqs.append(np.asarray([(start + j) % n_items for j in range(length)], np.int64))
    return seqs


def _table(seqs, ids=lambda r: f"i{r}"):
    """Interactions of users u0, u1, ... walking ``seqs`` in order (one time step per item)."""
    import pyarrow as pa

    users = [f"u{u:03d}" for u, s in enumerate(seqs) for _ in s]
    items = [ids(int(r)) for s in seqs for r in s]
    ts = [t for s in seqs for t in range(len(s))]
    return pa.table({"user_id": users, "item_id": items, "timestamp": pa.array(ts, pa.int64())})


def _split(seqs, max_history=20):
    """``sequence_split`` of sequences of item rows (the index is the identity on them)."""
    n = max(int(max(s)) for s in seqs) + 1
    idx = SIDIndex(item_ids=np.asarray([f"i{k}" for k in range(n)], dtype=object), sids=np.arange(n)[:, None],
                   raw_codes=np.arange(n)[:, None], codebook_sizes=[n], policy="none")
    return sequence_split(_table(seqs), idx, max_history=max_history)


def _write_lcrec(tmp_path, index, seqs):
    idx_path = tmp_path / "tiny.index.json"
    index.export_lcrec(idx_path)
    inter = {f"u{u}": [f"i{r}" for r in s.tolist()] for u, s in enumerate(seqs)}
    inter_path = tmp_path / "tiny.inter.json"
    inter_path.write_text(json.dumps(inter))
    return idx_path, inter_path


# ---- metrics ---------------------------------------------------------------------------------
def test_metrics_match_hand_computed_values():
    ranked = np.array([
        [7, 1, 2, 3, 4, 5, 6, 8, 9, 10],   # target 7 at rank 0
        [1, 2, 7, 3, 4, 5, 6, 8, 9, 10],   # rank 2
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],   # rank 6: in @10, not @5
        [1, 2, 3, 4, 5, 6, 8, 9, 10, -1],  # absent
    ])
    targets = np.array([7, 7, 7, 7])
    assert target_ranks(ranked, targets).tolist() == [0, 2, 6, -1]
    m = retrieval_metrics(ranked, targets, ks=(5, 10))
    assert m["recall@5"] == pytest.approx(2 / 4)
    assert m["recall@10"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx((1.0 + 1 / math.log2(4)) / 4)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(4) + 1 / math.log2(8)) / 4)
    with pytest.raises(InputError, match="fewer than K"):
        retrieval_metrics(ranked[:, :5], targets, ks=(10,))


# ---- data --------------------------------------------------------------------------------------
def test_sequence_split_positions_and_truncation():
    seqs = [np.arange(10, 16), np.array([1, 2]), np.arange(100, 130)]
    sp = _split(seqs, max_history=4)
    assert sp.stats["users"] == 3 and sp.stats["users_without_test"] == 1
    assert sp.test_target.tolist() == [15, 129] and sp.valid_target.tolist() == [14, 128]
    assert sp.test_users.tolist() == ["u000", "u002"] and sp.valid_users.tolist() == ["u000", "u002"]
    assert sp.test_hist[0].tolist() == [11, 12, 13, 14]  # last 4 before the test item
    assert sp.test_hist[1].tolist() == [125, 126, 127, 128]
    assert sp.valid_hist[0].tolist() == [10, 11, 12, 13]
    # training targets: every position after the first and before the validation item, never
    # the held-out ones; the short user (2 items) gives one training example and no test
    tr0 = [t for h, t in zip(sp.train_hist, sp.train_target) if h[0] < 100]
    assert sorted(tr0) == [2, 11, 12, 13]
    assert not {14, 15, 128, 129} & set(sp.train_target.tolist()) and len(sp.train_target) == 3 + 1 + 27
    assert all(len(h) <= 4 for h in sp.train_hist)


def test_sequence_split_orders_by_time_and_drops_unknown_items():
    import pyarrow as pa

    idx = _index(n=5)
    table = pa.table({"user_id": ["a", "a", "a", "a", "b"], "item_id": ["i2", "i0", "zz", "i3", "i1"], "timestamp": [5, 1, 3, 0, 0]})
    sp = sequence_split(table, idx)
    # a in time order: i3 i0 zz i2 -> roles train train valid test; zz has no SID and is
    # dropped after the roles are given, so i2 stays a's test item and a has no validation item
    assert sp.test_users.tolist() == ["a"] and sp.test_target.tolist() == [2] and sp.test_hist[0].tolist() == [3, 0]
    assert len(sp.valid_target) == 0
    assert sp.train_target.tolist() == [0] and sp.train_hist[0].tolist() == [3]
    assert sp.stats["unknown_item_interactions"] == 1 and sp.stats["users_without_test"] == 1


def test_random_sid_index_is_distinct_with_the_given_shape():
    r = random_sid_index([str(i) for i in range(500)], [8, 8, 8], seed=3)
    assert r.sids.shape == (500, 3) and r.level_sizes == [8, 8, 8]
    assert len(np.unique(r.sids, axis=0)) == 500
    assert (r.sids.max(0) < 8).all()
    np.testing.assert_array_equal(r.sids, random_sid_index([str(i) for i in range(500)], [8, 8, 8], seed=3).sids)


# ---- model -------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["t5", "decoder"])
def test_every_generated_sid_is_an_item(arch):
    idx = _index()
    seqs = _sequences()
    r = GenerativeRetriever(idx, RetrievalConfig(arch=arch, beam_size=12, **TINY))
    toks, scores = r.generate_sids([s[:-1] for s in seqs[:20]])
    assert toks.shape == (20, 12, 3)
    rows = r.items_of_sids(toks)
    assert (rows >= 0).all(), "the trie mask must keep every beam on a valid SID"
    for i in range(20):
        assert len(set(rows[i].tolist())) == 12  # distinct beams -> distinct items
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_training_lowers_the_loss_and_learns_the_rule():
    idx = _index()
    sp = _split(_sequences(n_users=120), max_history=20)
    r = GenerativeRetriever(idx, RetrievalConfig(epochs=20, **TINY))
    before = r.loss(sp.valid_hist, sp.valid_target)
    hist = r.fit(sp.train_hist, sp.train_target)
    after = r.loss(sp.valid_hist, sp.valid_target)
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"]
    assert after < 0.7 * before
    m = retrieval_metrics(r.rank(sp.test_hist), sp.test_target)
    assert m["recall@10"] > 10 / 40 + 0.2  # far above the 10-of-40 chance of a random ranking


def test_shared_sids_put_every_item_at_their_rank():
    sids = np.array([[0, 0], [0, 0], [1, 0], [1, 1]])  # items 0 and 1 share a SID
    idx = SIDIndex(item_ids=np.array(["a", "b", "c", "d"], dtype=object), sids=sids, raw_codes=sids,
                   codebook_sizes=[2, 2], policy="none")
    r = GenerativeRetriever(idx, RetrievalConfig(beam_size=3, ks=(1, 3), **TINY))
    toks = r.vocab.encode_batch(np.array([[1, 0], [0, 0], [1, 1]]))[None]  # (1, beam, S)
    assert r.rank_sids(toks).tolist() == [[2, 0, 1]]


def test_same_seed_same_result(tmp_path):
    idx = _index()
    seqs = _sequences()
    _, inter = _write_lcrec(tmp_path, idx, seqs)
    cfg = RetrievalConfig(epochs=2, seed=7, **TINY)
    a = evaluate_retrieval(idx, inter, cfg)
    b = evaluate_retrieval(idx, inter, cfg)
    assert a["train"]["losses"] == b["train"]["losses"]
    assert a["test"] == b["test"]
    c = evaluate_retrieval(idx, inter, RetrievalConfig(epochs=2, seed=8, **TINY))
    assert c["train"]["losses"] != a["train"]["losses"]


def test_save_load_round_trip(tmp_path):
    idx = _index()
    sp = _split(_sequences(), max_history=20)
    r = GenerativeRetriever(idx, RetrievalConfig(epochs=1, **TINY))
    r.fit(sp.train_hist, sp.train_target)
    r.save(tmp_path / "m")
    r2 = GenerativeRetriever.load(tmp_path / "m", idx)
    np.testing.assert_array_equal(r.rank(sp.test_hist[:10]), r2.rank(sp.test_hist[:10]))
    assert r.recommend([["i1", "i2"]], k=5) == r2.recommend([["i1", "i2"]], k=5)
    with pytest.raises(Exception, match="level sizes"):
        GenerativeRetriever.load(tmp_path / "m", _index(sizes=(5, 4, 4)))


def test_config_reports_every_error_at_once():
    with pytest.raises(InputError) as e:
        RetrievalConfig(arch="rnn", d_model=30, n_heads=4, beam_size=5, lr=0).validate()
    msg = str(e.value)
    for part in ("arch", "divisible", "beam_size", "lr"):
        assert part in msg


def test_load_sid_index_from_lcrec_and_errors(tmp_path):
    idx = _index()
    path, _ = _write_lcrec(tmp_path, idx, _sequences())
    back = load_sid_index(path)
    np.testing.assert_array_equal(back.sids, idx.sids)
    with pytest.raises(InputError, match="does not exist"):
        load_sid_index(tmp_path / "nope")


# ---- CLI -----------------------------------------------------------------------------------------
def test_cli_end_to_end_json(tmp_path):
    idx = _index()
    idx_path, inter = _write_lcrec(tmp_path, idx, _sequences())
    out = tmp_path / "res.json"
    res = CliRunner().invoke(app, [
        "evaluate-retrieval", "--tokenizer", str(idx_path), "--interactions", str(inter), "--epochs", "1",
        "--d-model", "32", "--d-ff", "64", "--n-layers", "1", "--n-heads", "2", "--batch-size", "32",
        "--out", str(out), "--format", "json",
    ])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    for k in ("recall@5", "recall@10", "ndcg@5", "ndcg@10"):
        assert 0.0 <= data["test"][k] <= 1.0
    assert data["test"]["recall@10"] >= data["test"]["recall@5"]
    assert data["test"]["invalid_sid_rate"] == 0.0
    assert data["test"]["users"] == 60 and data["n_items"] == 40
    assert json.loads(out.read_text())["test"] == data["test"]


def test_cli_bad_input_is_one_line_error(tmp_path):
    res = CliRunner().invoke(app, ["evaluate-retrieval", "--tokenizer", str(tmp_path / "missing"),
                                   "--interactions", str(tmp_path / "x.inter.json")])
    assert res.exit_code == 1
    assert "does not exist" in res.output
