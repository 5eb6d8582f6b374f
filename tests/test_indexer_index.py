"""SIDIndex: collision policies, persistence, cold start, atomic updates, LC-Rec interop, CLI."""

import json

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.errors import InputError
from tokenizer_kit.indexer import IndexConfig, SIDIndex, SIDTrie, suffix_sids


def _data(n, d=16, seed=0, centers=12):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d)).astype(np.float32) * 3
    lab = rng.integers(0, centers, n)
    return (c[lab] + rng.normal(scale=0.5, size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def small_tok():
    x = _data(700, seed=1)
    ids = np.asarray([f"i{k}" for k in range(len(x))], dtype=object)
    tok = SemanticTokenizer.build(x, ids=ids, codebook_sizes=[6, 6, 24], seed=0, index=False)
    return tok, x, ids


def _assert_index_ok(idx):
    n = len(idx)
    assert len(np.unique(idx.sids, axis=0)) == n, "duplicate SIDs"
    trie = SIDTrie.build(idx.sids)
    np.testing.assert_array_equal(idx.trie.leaf_sids(), np.unique(idx.sids, axis=0))
    assert trie.n_items == n == idx.trie.n_items
    for r in range(0, n, max(1, n // 50)):
        assert idx.trie.item_of(idx.sids[r]) == r
    idx.check()


@pytest.mark.parametrize("policy", ["suffix", "reassign"])
def test_policies_remove_every_collision(small_tok, policy):
    tok, x, ids = small_tok
    assert len(np.unique(tok.codes, axis=0)) < len(tok.codes)  # the data does collide
    idx = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy=policy), x=x)
    _assert_index_ok(idx)
    assert idx.stats["collision_rate_codes"] > 0.1 and idx.stats["collision_rate_sids"] == 0.0
    raw = tok.codes
    if policy == "suffix":
        assert idx.sid_length == 4
        np.testing.assert_array_equal(idx.sids[:, :3], raw)
        # within each group the suffixes are exactly 0..m-1
        _, inv, cnt = np.unique(raw, axis=0, return_inverse=True, return_counts=True)
        for g in range(len(cnt)):
                assert sorted(idx.sids[inv.ravel() == g, 3].tolist()) == list(range(cnt[g]))
        assert idx.stats["max_suffix"] == cnt.max()
        assert idx.level_sizes[-1] == max(8, cnt.max())  # suffix vocabulary reserved for cold start
    else:
        assert idx.sid_length == 3
        # items alone on their code keep it; every moved item was in a colliding group
        _, inv, cnt = np.unique(raw, axis=0, return_inverse=True, return_counts=True)
        alone = cnt[inv.ravel()] == 1
        np.testing.assert_array_equal(idx.sids[alone], raw[alone])
        assert not idx.moved[alone].any() and idx.moved.sum() > 0
        # the reported cost equals the recomputed one, and it is a cost (>= 0)
        xp = tok.preprocess(x)
        e0 = ((xp - tok.decode(raw)) ** 2).sum()
        e1 = ((xp - tok.decode(idx.sids)) ** 2).sum()
        assert e1 >= e0
        assert idx.stats["reconstruction_cost_relative"] == pytest.approx(e1 / e0 - 1, rel=1e-4)


def test_reassign_beats_random_free_codes(small_tok):
    """Hungarian on reconstruction error: no worse than giving movers random free codes of their prefix."""
    tok, x, _ = small_tok
    xp = tok.preprocess(x)
    idx = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy="reassign"), x=x)
    e_opt = ((xp - tok.decode(idx.sids)) ** 2).sum(1)[idx.moved].sum()
    rng = np.random.default_rng(0)
    sids = idx.sids.copy()
    mv = np.flatnonzero(idx.moved)
    for r in mv:  # permute moved items' last codes among themselves within a prefix
        same = mv[(sids[mv, :2] == sids[r, :2]).all(1)]
        j = rng.choice(same)
        sids[[r, j], 2] = sids[[j, r], 2]
    e_rand = ((xp - tok.decode(sids)) ** 2).sum(1)[idx.moved].sum()
    assert e_opt <= e_rand + 1e-6


def test_suffix_skips_retired():
    codes = np.array([[1, 2], [1, 2], [3, 4]])
    s = suffix_sids(codes, retired=[[1, 2, 0], [1, 2, 2]])
    assert sorted(s[:2, 2].tolist()) == [1, 3] and s[2, 2] == 0


@pytest.mark.parametrize("policy", ["suffix", "reassign", "none"])
def test_save_load_roundtrip(tmp_path, small_tok, policy):
    tok, x, _ = small_tok
    tok = SemanticTokenizer.build(x, ids=small_tok[2], codebook_sizes=[6, 6, 24], seed=0, index=False)
    idx = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy=policy), x=x)
    idx.save(tok, tmp_path / "tok")
    back = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    j = SIDIndex.from_tokenizer(back)
    assert j.policy == policy and j.version == 1 and j.sid_length == idx.sid_length
    np.testing.assert_array_equal(j.sids, idx.sids)
    np.testing.assert_array_equal(j.raw_codes, idx.raw_codes)
    np.testing.assert_array_equal(j.emb_hash, idx.emb_hash)
    np.testing.assert_array_equal(j.trie.leaf_sids(), idx.trie.leaf_sids())
    assert back.sid_strings()[0] == idx.sid_strings()[0]
    first = j.item_ids[0]
    assert j.item_of(j.sid_of(first)) == first


@pytest.mark.parametrize("policy", ["suffix", "reassign"])
def test_ten_rounds_of_cold_start(tmp_path, policy):
    x = _data(900, seed=2)
    ids = np.asarray([f"i{k}" for k in range(900)], dtype=object)
    tok = SemanticTokenizer.build(x[:400], ids=ids[:400], codebook_sizes=[5, 5, 48], seed=0, index=False)
    idx = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy=policy), x=x[:400])
    path = tmp_path / "tok"
    idx.save(tok, path)
    rng = np.random.default_rng(3)
    pool = list(range(400, 900))
    rng.shuffle(pool)
    retired_seen = set()
    for rnd in range(10):
        tok = SemanticTokenizer.from_pretrained(path)
        old = SIDIndex.from_tokenizer(tok)
        before = {str(i): tuple(s) for i, s in zip(old.item_ids.tolist(), old.sids.tolist())}
        take = [pool.pop() for _ in range(int(rng.integers(10, 40)))]
        # mix in a few known items (idempotent) and, every third round, one replaced item
        known = rng.choice(len(old), 3, replace=False)
        new_ids = np.concatenate([ids[take], old.item_ids[known]])
        xk = x[[int(str(i)[1:]) for i in old.item_ids[known]]]
        new_x = np.concatenate([x[take], xk])
        replace = rnd % 3 == 2
        if replace:
            new_x[-1] = new_x[-1] + 1.0
        new, table, summary = old.assign(tok, new_ids, new_x, replace=replace)
        new.save(tok, path)
        re = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(path))
        assert re.version == old.version + 1
        after = {str(i): tuple(s) for i, s in zip(re.item_ids.tolist(), re.sids.tolist())}
        replaced = {str(new_ids[-1])} if replace else set()
        for k, v in before.items():
            if k not in replaced:
                assert after[k] == v, "an existing SID changed"
        if replace:
            old_sid = before[str(new_ids[-1])]
            assert after[str(new_ids[-1])] != old_sid
            retired_seen.add(old_sid)
            assert summary["replaced"] == 1
        assert not (retired_seen & set(after.values())), "a retired SID was reissued"
        assert summary["new"] == len(take) and summary["known"] == 3 - int(replace)
        for row in table[len(take) : len(take) + 3 - int(replace)]:
            assert row["status"] == "known" and tuple(row["codes"]) == before[str(row["item_id"])]
        _assert_index_ok(re)
        assert len(re) == len(before) + len(take)
        assert re.sid_length == (4 if policy == "suffix" else 3)
    # idempotent: the same items again change nothing
    tok = SemanticTokenizer.from_pretrained(path)
    cur = SIDIndex.from_tokenizer(tok)
    again, table, summary = cur.assign(tok, ids[take], x[take])
    assert again.version == cur.version and summary["known"] == len(take)
    assert [r["sid"] for r in table] == [cur.sid_strings()[cur.row_of(i)] for i in ids[take]]


def test_known_item_with_new_embedding_needs_replace(small_tok):
    tok, x, ids = small_tok
    idx = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy="suffix"), x=x)
    with pytest.raises(InputError, match="set `replace` to retire their SIDs"):
        idx.assign(tok, ids[:2], x[:2] + 0.5)
    new, table, summary = idx.assign(tok, ids[:2], x[:2] + 0.5, replace=True)
    assert summary["replaced"] == 2 and len(new.retired) == 2
    assert all(tuple(r) not in {tuple(s) for s in new.sids.tolist()} for r in new.retired.tolist())
    with pytest.raises(InputError, match="twice"):
        idx.assign(tok, np.array(["n1", "n1"], dtype=object), x[:2])


@pytest.mark.parametrize("where", ["segment", "manifest", "compact"])
def test_failed_update_leaves_previous_index_loadable(tmp_path, small_tok, monkeypatch, where):
    tok, x, ids = small_tok
    tok = SemanticTokenizer.build(x[:500], ids=ids[:500], codebook_sizes=[6, 6, 24], seed=0, index=False)
    path = tmp_path / "tok"
    SIDIndex.for_tokenizer(tok, x=x[:500]).save(tok, path)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    tok = SemanticTokenizer.from_pretrained(path)
    idx = SIDIndex.from_tokenizer(tok)
    new, _, _ = idx.assign(tok, ids[500:], x[500:])

    import safetensors.numpy as stn


    def boom(*a, **k):
        raise OSError("disk full (injected)")

    if where == "segment":  # the segment file fails
        monkeypatch.setattr(stn, "save_file", boom)
    elif where == "manifest":  # the segment is written, the manifest replace fails
        import tokenizer_kit.io._manifest as tman

        monkeypatch.setattr(tman, "_dump", boom)
    else:  # a full rewrite fails after some files were written
        real, calls = stn.save_file, {"n": 0}

        def flaky(tensors, filename, *a, **k):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("disk full (injected)")
            return real(tensors, filename, *a, **k)

        monkeypatch.setattr(stn, "save_file", flaky)
    with pytest.raises(OSError, match="injected"):
        new.compact(tok, path) if where == "compact" else new.save(tok, path)
    monkeypatch.undo()
    back = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(path))
    assert back.version == 1 and len(back) == 500
    np.testing.assert_array_equal(back.sids, idx.sids)
    assert not any(p.name.endswith(".staging") for p in tmp_path.iterdir())
    after = {p.name: p.read_bytes() for p in path.iterdir() if not p.name.startswith(".")}
    assert after.keys() - before.keys() <= {f"{new.pending[0].name}.safetensors"}  # at most an unreferenced segment
    assert all(after[k] == before[k] for k in before)


def test_lcrec_export_import_roundtrip(tmp_path, small_tok):
    tok, x, _ = small_tok
    idx = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy="suffix"), x=x)
    p = idx.export_lcrec(tmp_path / "Office.index.json")
    data = json.loads(p.read_text())
    first = str(idx.item_ids[0])
    assert data[first] == [f"<{'abcd'[l]}_{c}>" for l, c in enumerate(idx.sids[0].tolist())]
    imp = SIDIndex.from_lcrec(p)
    assert imp.stats["duplicate_sids"] == 0 and imp.stats["n_items"] == len(idx)
    np.testing.assert_array_equal(imp.trie.leaf_sids(), idx.trie.leaf_sids())
    assert imp.item_of(idx.sid_strings()[5]) == str(idx.item_ids[5])


def test_cli_build_index_assign_lookup(tmp_path):
    from typer.testing import CliRunner

    from tokenizer_kit.cli.app import app

    x = _data(500, seed=5)
    np.save(tmp_path / "base.npy", x[:420])
    (tmp_path / "base.ids.txt").write_text("\n".join(str(i) for i in range(420)) + "\n")
    np.save(tmp_path / "new.npy", x[420:])
    (tmp_path / "new.ids.txt").write_text("\n".join(str(i) for i in range(420, 500)) + "\n")
    tok = tmp_path / "tok"
    r = CliRunner()
    res = r.invoke(app, ["build-codebook", str(tmp_path / "base.npy"), "--out", str(tok), "--codebook-size", "8", "--no-index", "--format", "json"])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["index", str(tok), "--policy", "reassign", "--embeddings", str(tmp_path / "base.npy"),
                         "--export-lcrec", str(tmp_path / "x.index.json"), "--vocab-out", str(tmp_path / "vocab.json"), "--format", "json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)
    assert st["duplicate_sids"] == 0 and st["version"] == 1 and st["sid_length"] == 3
    assert len(json.loads((tmp_path / "vocab.json").read_text())["vocab"]) == 24
    # report only
    res = r.invoke(app, ["assign", str(tmp_path / "new.npy"), "--tokenizer", str(tok), "--format", "json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # a summary: the items' rows go to --out (or --print-items)
    assert "lookup" not in summary and summary["lookup_rows"] == 80 and "--out" in summary["lookup_note"]
    res = r.invoke(app, ["assign", str(tmp_path / "new.npy"), "--tokenizer", str(tok), "--format", "json", "--print-items"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["updated"] is False and rep["new"] == 80 and len(rep["lookup"]) == 80
    assert SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tok)).version == 1
    res = r.invoke(app, ["assign", str(tmp_path / "new.npy"), "--tokenizer", str(tok), "--update",
                         "--out", str(tmp_path / "cold.parquet"), "--format", "json", "--print-items"])
    assert res.exit_code == 0, res.output
    up = json.loads(res.stdout)
    assert up["updated"] is True and up["version_after"] == 2 and up["index_items"] == 500
    assert [row["sid"] for row in up["lookup"]] == [row["sid"] for row in rep["lookup"]]
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "cold.parquet").column_names[-4:] == ["status", "collided", "moved", "nearest"]
    sid = up["lookup"][0]["sid"]
    res = r.invoke(app, ["lookup", str(tok), "--item", "420", "--sid", sid, "--prefix", sid[: sid.index(">") + 1], "--format", "json"])
    assert res.exit_code == 0, res.output
    lk = json.loads(res.stdout)
    assert lk["item"]["sid"] == sid and str(lk["sid"]["item_id"]) == "420" and lk["prefix"]["count"] >= 1
    res = r.invoke(app, ["lookup", str(tok), "--sid", "<a_0>"])
    assert res.exit_code == 1 and "error" in res.output
    res = r.invoke(app, ["import-index", str(tmp_path / "x.index.json"), "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["duplicate_sids"] == 0
