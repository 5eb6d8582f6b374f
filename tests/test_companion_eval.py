"""Companion evaluation: collision-corrected metrics, the fast beam search, statistics over seeds and users, comparisons."""

import itertools
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from tokenizer_kit.cli.app import app
from tokenizer_kit.companion import (
    GenerativeRetriever,
    RetrievalConfig,
    UserRanks,
    compare_retrieval,
    evaluate_retrieval,
    list_retrieval_presets,
    random_sid_index,
    retrieval_metrics,
    sequence_split,
    summarize_runs,
    user_ranks,
)
from tokenizer_kit.companion._stats import bootstrap_sets, holm
from tokenizer_kit.errors import InputError, TokenizerKitError
from tokenizer_kit.indexer import SIDIndex

TINY = dict(d_model=32, d_ff=64, n_layers=1, n_heads=2, batch_size=32, eval_batch_size=64, lr=5e-3)


def _ring_table(n_users=60, n_items=40, seed=0):
    """Users walk the item ring (item k -> k+1): a rule the model can learn."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(5, 9))
        for j in range(length):
            users.append(f"u{u:03d}")
            items.append(f"i{(start + j) % n_items}")
            ts.append(j)
    return pa.table({"user_id": users, "item_id": items, "timestamp": pa.array(ts, pa.int64())})


def _index(sids, sizes):
    n = len(sids)
    sids = np.asarray(sids, np.int64)
    return SIDIndex(item_ids=np.asarray([f"i{k}" for k in range(n)], dtype=object), sids=sids, raw_codes=sids,
                    codebook_sizes=list(sizes), policy="none")


def _random_index(n=40, sizes=(4, 4, 4), seed=0):
    return _index(random_sid_index([f"i{k}" for k in range(n)], list(sizes), seed=seed).sids, sizes)


# ---- collision-corrected metrics ------------------------------------------------------------------
def test_item_metrics_match_hand_computed_values():
    sizes = np.asarray([1, 3, 2, 1])  # items per SID
    # user 0: beams SID 1 (3 items), SID 2 (2 items, the target's), SID 0: P = 3, G = 2
    # user 1: target SID 3 first (G = 1); user 2: target SID 0 not among the beams
    ur = user_ranks(np.asarray([[1, 2, 0], [3, 1, -1], [1, 2, 3]]), np.asarray([2, 3, 0]), sizes)
    assert ur.rank.tolist() == [1, 0, -1] and ur.before.tolist() == [3, 0, 0] and ur.group.tolist() == [2, 1, 1]
    assert ur.per_user("item_hit@4").tolist() == [0.5, 1.0, 0.0]  # one of the two positions (3, 4) is inside the top 4
    assert ur.per_user("item_hit@5").tolist() == [1.0, 1.0, 0.0]
    assert ur.per_user("item_ndcg@4")[0] == pytest.approx(1 / math.log2(5) / 2)
    assert ur.per_user("item_ndcg@5")[0] == pytest.approx((1 / math.log2(5) + 1 / math.log2(6)) / 2)
    assert ur.per_user("recall@2").tolist() == [1.0, 1.0, 0.0]  # the SID-level hit credits user 0 fully
    assert ur.per_user("ndcg@2")[0] == pytest.approx(1 / math.log2(3))
    assert ur.metrics((4,))["shared_target_rate"] == pytest.approx(1 / 3)
    with pytest.raises(InputError):
        ur.per_user("hits@10")


def test_item_metrics_are_the_expectation_over_orders_within_each_sid():
    """Reference: expand every beam SID into its items in every possible order and average the
    item-level hit / NDCG of the target; the closed form must agree exactly."""
    rng = np.random.default_rng(3)
    for _ in range(30):
        n_sids = 6
        sizes = rng.integers(1, 4, n_sids)
        beams = rng.permutation(n_sids)[:4]
        target_sid = int(rng.integers(n_sids))
        items = {g: [f"{g}.{j}" for j in range(sizes[g])] for g in range(n_sids)}
        target = items[target_sid][int(rng.integers(sizes[target_sid]))]
        ur = user_ranks(beams[None, :], np.asarray([target_sid]), sizes)
        for k in (1, 2, 3, 5, 8):
            hits, ndcgs = [], []
            for orders in itertools.product(*[list(itertools.permutations(items[g])) for g in beams]):
                ranked = [i for o in orders for i in o]
                pos = ranked.index(target) if target in ranked else -1
                hits.append(float(0 <= pos < k))
                ndcgs.append(1 / math.log2(pos + 2) if 0 <= pos < k else 0.0)
            assert ur.per_user(f"item_hit@{k}")[0] == pytest.approx(np.mean(hits))
            assert ur.per_user(f"item_ndcg@{k}")[0] == pytest.approx(np.mean(ndcgs))


def test_without_collisions_item_metrics_equal_the_standard_ones():
    rng = np.random.default_rng(0)
    beams = np.stack([rng.permutation(50)[:10] for _ in range(200)])
    targets = rng.integers(0, 50, 200)
    ur = user_ranks(beams, targets, np.ones(50, np.int64))
    m = ur.metrics((5, 10))
    ref = retrieval_metrics(beams, targets, (5, 10))
    for k in (5, 10):
        assert m[f"item_hit@{k}"] == m[f"recall@{k}"] == pytest.approx(ref[f"recall@{k}"])
        assert m[f"item_ndcg@{k}"] == pytest.approx(m[f"ndcg@{k}"]) and m[f"ndcg@{k}"] == pytest.approx(ref[f"ndcg@{k}"])
    assert m["shared_target_rate"] == 0.0


def test_user_ranks_json_round_trip_keeps_every_metric():
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 4, 30)
    beams = np.stack([rng.permutation(30)[:10] for _ in range(300)])
    ur = user_ranks(beams, rng.integers(0, 30, 300), sizes)
    back = UserRanks.from_json(json.loads(json.dumps(ur.to_json())))
    assert back.metrics((1, 5, 10)) == ur.metrics((1, 5, 10))


# ---- decoding -------------------------------------------------------------------------------------
def _trained(index, table, **kw):
    split = sequence_split(table, index)
    r = GenerativeRetriever(index, RetrievalConfig(epochs=2, seed=0, **{**TINY, **kw}))
    r.fit(split.train_hist, split.train_target)
    return r, split


def test_fast_beam_search_returns_what_generate_returns():
    r, split = _trained(_random_index(), _ring_table())
    r.model.eval()
    b = r._batch(split.test_hist, None)
    toks, scores = r._beam_search_t5(b)
    ref, _ = r._generate_hf(split.test_hist)
    assert (toks == ref).all()
    assert (np.diff(scores, axis=1) <= 1e-5).all()  # best first


def test_decoding_over_shared_sids_scores_them_by_the_collision_corrected_rule():
    sids = random_sid_index([f"i{k}" for k in range(40)], [4, 4, 4], seed=0).sids
    sids[1], sids[2] = sids[0], sids[0]  # three items share one SID (a peer index without zero-collision reassignment)
    index = _index(sids, (4, 4, 4))
    res = evaluate_retrieval(index, _ring_table(), RetrievalConfig(epochs=2, **TINY))
    t = res["test"]
    assert res["duplicate_sids"] == 2 and t["invalid_sid_rate"] == 0.0
    assert 0 < t["shared_target_rate"] < 1
    assert t["item_hit@10"] <= t["recall@10"] + 1e-12 and t["item_ndcg@10"] <= t["ndcg@10"] + 1e-12
    assert res["test_users"]["n"] == t["users"]


def test_beam_wider_than_the_trie_leaves_empty_slots():
    index = _index([[0, 0], [0, 1], [1, 0]], (2, 2))  # 3 SIDs, beam 10
    import pyarrow as pa

    table = pa.table({"user_id": ["u"] * 4 + ["v"] * 4, "item_id": ["i0", "i1", "i2", "i0", "i2", "i1", "i0", "i1"],
                      "timestamp": pa.array(list(range(4)) * 2, pa.int64())})
    res = evaluate_retrieval(index, table, RetrievalConfig(epochs=1, **TINY))
    assert res["test"]["invalid_sid_rate"] == pytest.approx(0.7)  # 7 of 10 slots have no SID


# ---- training ---------------------------------------------------------------------------------------
def test_early_stopping_stops_and_keeps_the_best_epoch():
    index, table = _random_index(), _ring_table()
    split = sequence_split(table, index)
    cfg = RetrievalConfig(epochs=30, eval_every=1, patience=2, **{**TINY, "lr": 1e-5})  # too small an lr to improve for long
    r = GenerativeRetriever(index, cfg)
    hist = r.fit(split.train_hist, split.train_target, valid=split.subset("valid", None))
    assert len(hist) < 30 and hist[-1].get("early_stop")
    best = [h for h in hist if h.get("best")][-1]
    assert all(h["valid"]["item_ndcg@10"] <= best["valid"]["item_ndcg@10"] for h in hist)


def test_tiger_preset_is_tigers_shape_and_runs_a_tiny_budget():
    assert "tiger" in list_retrieval_presets() and "fast" in list_retrieval_presets()
    cfg = RetrievalConfig.preset("tiger", epochs=1, device="cpu", warmup_steps=5, eval_batch_size=64)
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_kv, cfg.d_ff, cfg.dropout, cfg.batch_size) == (128, 4, 6, 64, 1024, 0.1, 256)
    assert cfg.optimizer == "adafactor" and cfg.lr_schedule == "inverse_sqrt" and cfg.eval_every == 1 and cfg.patience > 0
    res = evaluate_retrieval(_random_index(), _ring_table(), cfg)
    assert res["parameters"] > 1_000_000 and res["valid"]["epoch"] == 1 and res["test"]["users"] == 60
    with pytest.raises(TokenizerKitError, match="no preset 'huge'"):
        RetrievalConfig.preset("huge")
    with pytest.raises(InputError, match="patience needs eval_every"):
        RetrievalConfig(patience=3).validate()


# ---- statistics -------------------------------------------------------------------------------------
def test_bootstrap_pairs_users_and_marks_only_real_differences():
    rng = np.random.default_rng(0)
    base = (rng.random((3, 2000)) < 0.05).astype(float)
    noise = (rng.random((3, 2000)) < 0.05).astype(float)
    better = np.maximum(base, (rng.random((3, 2000)) < 0.04).astype(float))  # base plus extra hits for the same users
    boot = bootstrap_sets({"a": base, "same": base.copy(), "better": better, "other": noise}, n_boot=1000)
    same = boot.difference("same", "a")  # seeds are drawn per set: identical sets still differ a little per replicate
    assert same["diff"] == 0 and same["lo"] < 0 < same["hi"] and same["p"] > 0.5
    one = bootstrap_sets({"a": base[:1], "same": base[:1].copy()}, n_boot=200).difference("same", "a")
    assert one["lo"] == one["hi"] == 0 and one["p"] == 1.0  # one seed each: the plain paired bootstrap over users
    up = boot.difference("better", "a")
    assert up["diff"] > 0 and up["lo"] > 0 and up["p"] < 0.01
    lo, hi = boot.interval("a")
    assert lo < base.mean() < hi
    # pairing over users: 20 more hits among 2,000 users hide inside either set's own interval,
    # yet the paired difference is clearly positive
    plus = base[:1].copy()
    plus[0, np.flatnonzero(plus[0] == 0)[:20]] = 1
    b1 = bootstrap_sets({"a": base[:1], "plus": plus}, n_boot=500)
    assert b1.interval("plus")[0] < b1.interval("a")[1]
    assert b1.difference("plus", "a")["lo"] > 0
    with pytest.raises(InputError):
        bootstrap_sets({"a": base, "b": base[:, :10]})


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def _fake_run(seed, ranks, fp="f"):
    ur = UserRanks(*[np.asarray(v, np.int64) for v in ranks])
    return {"config": {"seed": seed}, "test_users": {"fingerprint": fp, **ur.to_json()}, "test": ur.metrics((5, 10)),
            "seconds": {"train": 1.0}, "sids": "x", "sid_length": 3, "level_sizes": [4, 4, 4], "duplicate_sids": 0, "n_items": 10}


def test_summarize_runs_reports_seeds_intervals_and_refuses_unpaired_runs():
    n = 400
    rng = np.random.default_rng(0)
    good = [_fake_run(s, (np.where(rng.random(n) < 0.3, 0, -1), np.zeros(n), np.ones(n))) for s in range(3)]
    bad = [_fake_run(s, (np.where(rng.random(n) < 0.05, 0, -1), np.zeros(n), np.ones(n))) for s in range(3)]
    out = summarize_runs({"good": good, "bad": bad}, n_boot=500)
    g = out["sets"]["good"]["item_hit@10"]
    assert len(g["per_seed"]) == 3 and g["lo"] <= g["mean"] <= g["hi"] and out["reference"] == "good"
    d = out["comparisons"]["item_hit@10"]["bad"]
    assert d["diff"] < 0 and d["significant"] and "good" not in out["comparisons"]["item_hit@10"]
    with pytest.raises(InputError, match="same test users"):
        summarize_runs({"good": good, "other": [_fake_run(0, (np.zeros(n), np.zeros(n), np.ones(n)), fp="g")]})


def test_compare_retrieval_resumes_from_its_runs_dir(tmp_path, monkeypatch):
    table = _ring_table()
    sets = {"a": _random_index(seed=0), "b": _random_index(seed=1)}
    cfg = RetrievalConfig(epochs=1, **TINY)
    first = compare_retrieval(sets, table, cfg, seeds=[0, 1], runs_dir=tmp_path, n_boot=200)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["seed0.json", "seed1.json"]

    import tokenizer_kit.companion._compare as cmp

    def boom(*a, **k):
        raise AssertionError("trained again although the run was stored")

    monkeypatch.setattr(cmp, "evaluate_retrieval", boom)
    again = compare_retrieval(sets, table, cfg, seeds=[0, 1], runs_dir=tmp_path, n_boot=200)
    assert again["sets"] == first["sets"] and again["comparisons"] == first["comparisons"]
    with pytest.raises(AssertionError, match="trained again"):  # other settings: not reused
        compare_retrieval(sets, table, RetrievalConfig(epochs=2, **TINY), seeds=[0], runs_dir=tmp_path)
    with pytest.raises(InputError, match="names"):
        compare_retrieval({"../x": sets["a"]}, table, cfg)


def test_cli_compares_sets_over_seeds(tmp_path):
    import pyarrow.parquet as pq

    inter = tmp_path / "inter.parquet"
    pq.write_table(_ring_table(), inter)
    paths = []
    for s in (0, 1):
        p = tmp_path / f"s{s}.index.json"
        idx = _random_index(seed=s)
        p.write_text(json.dumps({str(i): [f"<{'abc'[l]}_{c}>" for l, c in enumerate(row)] for i, row in zip(idx.item_ids, idx.sids.tolist())}))
        paths.append(p)
    out = tmp_path / "cmp.json"
    tiny = ["--d-model", "32", "--d-ff", "64", "--n-layers", "1", "--n-heads", "2", "--batch-size", "32", "--epochs", "1"]
    res = CliRunner().invoke(app, ["evaluate-retrieval", "-t", f"first={paths[0]}", "-t", str(paths[1]), "-i", str(inter),
                                   "--seeds", "0,1", *tiny, "--out", str(out), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert list(data["sets"]) == ["first", "s1"] and data["seeds"] == [0, 1]
    assert set(data["comparisons"]["item_ndcg@10"]) == {"s1"} and len(data["runs"]["s1"]) == 2
    table = CliRunner().invoke(app, ["evaluate-retrieval", "-t", str(paths[0]), "-t", str(paths[1]), "-i", str(inter), *tiny])
    assert table.exit_code == 0 and "s0" in table.output and "s1" in table.output
    bad = CliRunner().invoke(app, ["evaluate-retrieval", "-t", str(paths[0]), "-i", str(inter), "--seeds", "0,x"])
    assert bad.exit_code == 2 and "--seeds" in bad.output
