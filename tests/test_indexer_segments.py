"""Segmented index: cold start appends one segment per round (O(new items) written), lookups
and the trie see every segment, compaction folds them, no SID ever moves."""

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.errors import TokenizerKitError
from tokenizer_kit.indexer import IndexConfig, SIDIndex, SIDTrie
from tokenizer_kit.indexer._segments import LiveSIDs, decode_ids, encode_ids


def _data(n, d=12, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(10, d)).astype(np.float32) * 3
    return (c[rng.integers(0, 10, n)] + rng.normal(scale=0.6, size=(n, d))).astype(np.float32)


def _rounds(n_rounds=4):
    """Cold-start rounds: new items, a few known ones, every other round a replaced one."""
    out, nxt = [], 300
    for r in range(n_rounds):
        take = list(range(nxt, nxt + 25 + 5 * r))
        nxt = take[-1] + 1
        known = [3 * r, 3 * r + 1]
        replaced = [100 + r] if r % 2 == 1 else []
        out.append((take, known, replaced))
    return out


def _round_input(ids, x, take, known, replaced):
    rows = take + known + replaced
    xr = x[rows].copy()
    if replaced:
        xr[-len(replaced):] += 1.0
    return ids[rows], xr, bool(replaced)


def _assert_same(a: SIDIndex, b: SIDIndex):
    assert a.version == b.version and a.suffix_size == b.suffix_size
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    for k in ("sids", "raw_codes", "moved", "emb_hash", "retired"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)


def _assert_lookups_match_one_trie(idx: SIDIndex):
    """Every prefix query through the live view (base trie + overlay) equals one trie over all SIDs."""
    ref = SIDTrie.build(idx.sids)
    seen = set()
    for row in idx.sids.tolist()[::3] + [[0, 0, 0, 0][: idx.sid_length]]:
        for t in range(idx.sid_length + 1):
            p = tuple(row[:t])
            if p in seen:
                continue
            seen.add(p)
            np.testing.assert_array_equal(idx.live.allowed_next(p), ref.allowed_next(p))
            assert idx.live.count_under(p) == ref.count_under(p)
            np.testing.assert_array_equal(idx.rows_under(p), ref.items_under(p))
            np.testing.assert_array_equal(idx.rows_under(p, limit=3), ref.items_under(p)[:3])
        assert idx.live.item_row(row) == ref.item_of(row)
        assert idx.live.contains(row) == ref.contains(row)


@pytest.mark.parametrize("policy,with_x", [("suffix", True), ("suffix", False), ("reassign", True), ("none", True)])
def test_segments_equal_one_rewrite(tmp_path, policy, with_x):
    """with_x=False: items indexed without embeddings get theirs pinned on first sight (row updates)."""
    x = _data(600, seed=4)
    ids = np.asarray([f"i{k}" for k in range(600)], dtype=object)
    tok = SemanticTokenizer.build(x[:300], ids=ids[:300], codebook_sizes=[4, 4, 32], seed=0, index=False)
    # reference: the same rounds in memory, no disk; the segmented one saved and reloaded each round
    mem = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy=policy), x=x[:300] if with_x else None)
    path = tmp_path / "tok"
    mem.save(tok, path)
    base_files = {p.name: (p.stat().st_ino, p.read_bytes()) for p in path.iterdir()}
    for r, (take, known, replaced) in enumerate(_rounds()):
        nid, nx, rep = _round_input(ids, x, take, known, replaced)
        mem, t_mem, s_mem = mem.assign(tok, nid, nx, replace=rep)
        disk_tok = SemanticTokenizer.from_pretrained(path)
        disk = SIDIndex.from_tokenizer(disk_tok)
        new, t_disk, s_disk = disk.assign(disk_tok, nid, nx, replace=rep)
        assert t_disk == t_mem and s_disk == s_mem
        new.save(disk_tok, path)
        back = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(path))
        _assert_same(back, mem)
        assert [g["version"] for g in back.segments] == list(range(2, r + 3))
        # the base files are untouched (same inode and bytes): a round writes its segment and the manifest only
        for name, (ino, data) in base_files.items():
            if name not in ("manifest.json", "README.md"):  # the manifest and the model card are rewritten
                assert (path / name).stat().st_ino == ino and (path / name).read_bytes() == data
    _assert_lookups_match_one_trie(back)
    if policy != "none":
        assert back.item_of(back.sids[-1]) == back.item_ids[-1]
    assert len(back.retired) == (2 if with_x else 0)
    if policy != "none":
        back.check()  # no duplicate SIDs, none of them retired
    # compaction folds the segments into a new base; nothing moves
    tok2 = SemanticTokenizer.from_pretrained(path)
    SIDIndex.from_tokenizer(tok2).compact(tok2)
    assert not any(p.name.startswith("index-seg-") for p in path.iterdir())
    comp = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(path))
    _assert_same(comp, back)
    assert comp.segments == [] and comp.trie.n_items == len(comp)


def test_segment_bytes_grow_with_new_items_only(tmp_path):
    x = _data(2400, seed=5)
    tok = SemanticTokenizer.build(x[:2000], ids=np.arange(2000), codebook_sizes=[8, 8, 16], seed=0, index=False)
    SIDIndex.for_tokenizer(tok).save(tok, tmp_path / "tok")
    sizes = []
    for a, b in [(2000, 2050), (2050, 2250)]:
        t = SemanticTokenizer.from_pretrained(tmp_path / "tok")
        before = {p.name for p in (tmp_path / "tok").iterdir()}
        new, _, _ = SIDIndex.from_tokenizer(t).assign(t, np.arange(a, b), x[a:b])
        new.save(t)
        added = {p.name for p in (tmp_path / "tok").iterdir()} - before
        assert len(added) == 1
        sizes.append((tmp_path / "tok" / added.pop()).stat().st_size)
    per_item = [(s - 400) / n for s, n in zip(sizes, (50, 200))]  # a segment is ~ a fixed header + bytes per item
    assert per_item[1] == pytest.approx(per_item[0], rel=0.25) and per_item[1] < 200


def test_commit_refuses_an_index_that_changed_since_it_was_loaded(tmp_path):
    x = _data(400, seed=6)
    tok = SemanticTokenizer.build(x[:300], ids=np.arange(300), codebook_sizes=[4, 4, 32], seed=0, index=False)
    SIDIndex.for_tokenizer(tok).save(tok, tmp_path / "tok")
    t1, t2 = (SemanticTokenizer.from_pretrained(tmp_path / "tok") for _ in range(2))
    a, _, _ = SIDIndex.from_tokenizer(t1).assign(t1, np.arange(300, 350), x[300:350])
    b, _, _ = SIDIndex.from_tokenizer(t2).assign(t2, np.arange(350, 400), x[350:400])
    a.save(t1)
    with pytest.raises(TokenizerKitError, match="changed since it was loaded"):
        b.save(t2)
    back = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tmp_path / "tok"))
    assert len(back) == 350 and back.version == 2


def test_two_rounds_before_one_save(tmp_path):
    x = _data(400, seed=7)
    tok = SemanticTokenizer.build(x[:300], ids=np.arange(300), codebook_sizes=[4, 4, 32], seed=0, index=False)
    SIDIndex.for_tokenizer(tok).save(tok, tmp_path / "tok")
    t = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    idx = SIDIndex.from_tokenizer(t)
    one, _, _ = idx.assign(t, np.arange(300, 350), x[300:350])
    two, _, _ = one.assign(t, np.arange(350, 400), x[350:400])
    assert len(two.pending) == 2
    two.save(t)
    back = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tmp_path / "tok"))
    _assert_same(back, two)
    assert [g["appended"] for g in back.segments] == [50, 50]


def test_live_view_with_dead_rows_matches_one_trie():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3, (200, 3))
    trie = SIDTrie.build(base)
    sids = np.concatenate([base, rng.integers(0, 3, (40, 3))])
    dead = np.sort(rng.choice(200, 30, replace=False))
    dead_sids = base[dead].copy()
    sids[dead] = rng.integers(0, 4, (30, 3))  # updated rows take new SIDs (code 3 is new)
    live = LiveSIDs(trie, sids, 200, dead, dead_sids)
    ref = SIDTrie.build(sids)
    for p in [(), (0,), (1,), (3,), (0, 1), (2, 2), (3, 0), (1, 1, 1), (0, 2, 3)]:
        np.testing.assert_array_equal(live.allowed_next(p), ref.allowed_next(p))
        assert live.count_under(p) == ref.count_under(p)
        np.testing.assert_array_equal(live.rows_under(p), ref.items_under(p))
    for s in sids[::7].tolist():
        assert live.item_row(s) == ref.item_of(s)


@pytest.mark.parametrize("ids", [np.arange(5) * 7 - 3, np.asarray(["a", "é", "", "x y", "42"], dtype=object)])
def test_segment_ids_roundtrip(ids):
    back = decode_ids(encode_ids(ids), "test")
    assert back.dtype == ids.dtype and back.tolist() == ids.tolist()


def test_cli_assign_update_appends_and_compact_merges(tmp_path):
    import json

    from typer.testing import CliRunner

    from tokenizer_kit.cli.app import app

    x = _data(500, seed=8)
    np.save(tmp_path / "base.npy", x[:400])
    (tmp_path / "base.ids.txt").write_text("\n".join(str(i) for i in range(400)) + "\n")
    for k, (a, b) in enumerate([(400, 450), (450, 500)]):
        np.save(tmp_path / f"new{k}.npy", x[a:b])
        (tmp_path / f"new{k}.ids.txt").write_text("\n".join(str(i) for i in range(a, b)) + "\n")
    tok = tmp_path / "tok"
    r = CliRunner()
    # build-codebook indexes by default (suffix policy): assign --update works right after it
    res = r.invoke(app, ["build-codebook", str(tmp_path / "base.npy"), "--out", str(tok), "--codebook-size", "8", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tokenizers"][0]["index"]["policy"] == "suffix"
    for k in range(2):
        res = r.invoke(app, ["assign", str(tmp_path / f"new{k}.npy"), "--tokenizer", str(tok), "--update", "--format", "json"])
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tok.iterdir() if p.name.startswith("index-seg-")) == ["index-seg-000002.safetensors", "index-seg-000003.safetensors"]
    before = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tok))
    res = r.invoke(app, ["lookup", str(tok), "--item", "470", "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["item"]["codes"] == before.sid_of(470)
    import shutil

    shutil.copytree(tok, tmp_path / "copy")  # re-indexing a segmented directory sees every item
    res = r.invoke(app, ["index", str(tmp_path / "copy"), "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["n_items"] == 500
    res = r.invoke(app, ["compact", str(tok), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"tokenizer": str(tok), "segments_merged": 2, "items": 500, "version": 3}
    # --no-index leaves the directory unindexed, as before
    res = r.invoke(app, ["build-codebook", str(tmp_path / "base.npy"), "--out", str(tmp_path / "bare"), "--codebook-size", "8", "--no-index"])
    assert res.exit_code == 0, res.output
    assert SIDIndex.stored(SemanticTokenizer.from_pretrained(tmp_path / "bare")) is None
    res = r.invoke(app, ["assign", str(tmp_path / "new0.npy"), "--tokenizer", str(tmp_path / "bare"), "--update"])
    assert res.exit_code != 0 and "no SID index" in res.output
    assert not any(p.name.startswith("index-seg-") for p in tok.iterdir())
    after = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tok))
    _assert_same(after, before)


def test_a_segment_the_index_lists_must_be_in_the_manifest(tmp_path):
    import json

    from tokenizer_kit.errors import ArtifactError
    from tokenizer_kit.io._manifest import seal

    x = _data(360, seed=9)
    tok = SemanticTokenizer.build(x[:300], ids=np.arange(300), codebook_sizes=[4, 4, 32], seed=0, index=False)
    SIDIndex.for_tokenizer(tok).save(tok, tmp_path / "tok")
    t = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    SIDIndex.from_tokenizer(t).assign(t, np.arange(300, 360), x[300:360])[0].save(t)
    mpath = tmp_path / "tok" / "manifest.json"
    data = json.loads(mpath.read_text())
    del data["files"]["index-seg-000002.safetensors"]  # dropped from the files map, resealed
    mpath.write_text(json.dumps(seal(data)))
    with pytest.raises(ArtifactError, match="does not list index-seg-000002.safetensors"):
        SemanticTokenizer.from_pretrained(tmp_path / "tok")


def test_cold_start_appends_to_a_first_wave_tokenizer(tmp_path):
    """A format-1 directory (sha256-only file entries) takes a segment; the manifest is sealed in format 2."""
    import json
    import shutil
    from pathlib import Path

    legacy = Path(__file__).parent / "data" / "legacy"
    shutil.copytree(legacy / "tokenizer_v1", tmp_path / "tok")
    x = np.load(legacy / "tokenizer_v1_x.npy").astype(np.float32)
    t = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    idx = SIDIndex.from_tokenizer(t)
    new, _, summary = idx.assign(t, np.asarray([f"new{k}" for k in range(20)], dtype=object), x[:20] + 0.01)
    new.save(t)
    m = json.loads((tmp_path / "tok" / "manifest.json").read_text())
    assert m["format_version"] == 2 and all(isinstance(e["size"], int) for e in m["files"].values())
    back = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tmp_path / "tok"))
    _assert_same(back, new)
    assert len(back) == len(idx) + 20 and summary["new"] == 20
