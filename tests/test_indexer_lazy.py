"""Cold start without sids.parquet: a tokenizer loaded with load_sids="ids" reads the item ids
(from the index when they are integers) and its index reads the base SIDs through the trie,
row by row (LazySIDs). Same SIDs, lookups and segments as the full load."""

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.build import _tokenizer as tokmod
from tokenizer_kit.errors import ArtifactError
from tokenizer_kit.indexer import IndexConfig, SIDIndex, SIDTrie
from tokenizer_kit.indexer._lazy import LazySIDs

from test_indexer_segments import _assert_lookups_match_one_trie, _assert_same, _data, _round_input, _rounds


def test_lazy_sids_read_rows_like_the_array():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 5, (300, 4))
    base[:20] = base[0]  # duplicate SIDs share a leaf
    lazy = LazySIDs(SIDTrie.build(base))
    rows = rng.integers(0, 300, 50)
    np.testing.assert_array_equal(lazy[rows], base[rows])
    np.testing.assert_array_equal(lazy[-1], base[-1])
    np.testing.assert_array_equal(lazy[7], base[7])
    np.testing.assert_array_equal(lazy[rows, :2], base[rows, :2])
    np.testing.assert_array_equal(lazy[base[:, 0] == 2], base[base[:, 0] == 2])
    np.testing.assert_array_equal(lazy[10:40:3], base[10:40:3])
    assert lazy[np.zeros(0, np.int64)].shape == (0, 4) and len(lazy) == 300 and lazy.shape == (300, 4)
    assert not lazy.materialized
    # segments append rows and update some; the dense equivalent agrees before and after materializing
    tail = rng.integers(0, 6, (25, 4))
    ext = lazy.extended([tail[:10], tail[10:]])
    dense = np.concatenate([base, tail])
    upd = np.asarray([3, 150, 310])
    ext[upd] = rng.integers(6, 9, (3, 4))
    dense[upd] = ext[upd]
    np.testing.assert_array_equal(ext[np.arange(325)], dense)
    np.testing.assert_array_equal(np.asarray(ext), dense)
    assert ext.materialized
    np.testing.assert_array_equal(np.concatenate([ext, tail]), np.concatenate([dense, tail]))
    with pytest.raises(IndexError):
        lazy[np.asarray([300])]


@pytest.mark.parametrize("policy,int_ids", [("suffix", True), ("suffix", False), ("reassign", True), ("none", True)])
def test_cold_start_from_the_trie_equals_the_full_load(tmp_path, policy, int_ids, monkeypatch):
    """Rounds of new, known and replaced items: loaded with load_sids="ids" the cold start gives
    the same lookup rows, summary and stored index as from a full load."""
    x = _data(600, seed=4)
    ids = np.arange(600) * 3 + 5 if int_ids else np.asarray([f"i{k}" for k in range(600)], dtype=object)
    tok = SemanticTokenizer.build(x[:300], ids=ids[:300], codebook_sizes=[4, 4, 32], seed=0)
    mem = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy=policy), x=x[:300])
    path = tmp_path / "tok"
    mem.save(tok, path)
    for take, known, replaced in _rounds():
        nid, nx, rep = _round_input(ids, x, take, known, replaced)
        mem, t_mem, s_mem = mem.assign(tok, nid, nx, replace=rep)
        if int_ids:  # integer ids come from index.safetensors: sids.parquet is not read
            monkeypatch.setattr(tokmod, "_read_sids", lambda *a, **k: pytest.fail("sids.parquet read"))
        lt = SemanticTokenizer.from_pretrained(path, load_sids="ids")
        monkeypatch.undo()
        assert lt.codes is None and len(lt.item_ids) == 300  # the base; rounds live in segments
        lazy = SIDIndex.from_tokenizer(lt)
        new, t_lazy, s_lazy = lazy.assign(lt, nid, nx, replace=rep)
        assert t_lazy == t_mem and s_lazy == s_mem
        new.save(lt, path)
        back = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(path))
        _assert_same(back, mem)
    lazy = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(path, load_sids="ids"))
    assert isinstance(lazy.sids, LazySIDs)
    _assert_same(lazy, back)
    _assert_lookups_match_one_trie(lazy)


def test_new_items_read_no_base_sid(tmp_path):
    """Only new items: the round reads no base row's SID (nothing of O(catalogue) is built)."""
    x = _data(500, seed=5)
    tok = SemanticTokenizer.build(x[:400], ids=np.arange(400), codebook_sizes=[4, 4, 16], seed=0)
    SIDIndex.for_tokenizer(tok).save(tok, tmp_path / "tok")
    for a, b in [(400, 450), (450, 500)]:  # the second round loads over a segment
        lt = SemanticTokenizer.from_pretrained(tmp_path / "tok", load_sids="ids")
        idx = SIDIndex.from_tokenizer(lt)
        base = idx.sids
        new, table, summary = idx.assign(lt, np.arange(a, b), x[a:b])
        new.save(lt)
        assert summary["new"] == b - a and all(r["nearest"] for r in table)
        assert isinstance(base, LazySIDs) and not base.materialized and base._pos is None
    assert len(SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tmp_path / "tok"))) == 500


def test_stored_ids_are_checked(tmp_path):
    x = _data(120, seed=6)
    tok = SemanticTokenizer.build(x, ids=np.arange(120), codebook_sizes=[4, 8], seed=0)
    SIDIndex.for_tokenizer(tok).save(tok, tmp_path / "tok")
    lt = SemanticTokenizer.from_pretrained(tmp_path / "tok", load_sids="ids")
    np.testing.assert_array_equal(lt.item_ids, np.arange(120))
    full = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    full.attachments["index"] = {**full.attachments["index"], "item_ids": np.zeros(120, np.int64)}
    full.save_pretrained(tmp_path / "dup")
    with pytest.raises(ArtifactError, match="duplicate"):
        SemanticTokenizer.from_pretrained(tmp_path / "dup", load_sids="ids")
    with pytest.raises(Exception, match="load_sids"):
        SemanticTokenizer.from_pretrained(tmp_path / "tok", load_sids="codes")


def test_attachments_are_read_only_maps_and_a_bad_header_is_one_error(tmp_path):
    x = _data(100, seed=7)
    tok = SemanticTokenizer.build(x, ids=np.arange(100), codebook_sizes=[4, 8], seed=0)
    SIDIndex.for_tokenizer(tok).save(tok, tmp_path / "tok")
    lt = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    arr = lt.attachments["index"]["raw_codes"]
    assert isinstance(arr, np.memmap) and not arr.flags.writeable
    p = tmp_path / "tok" / "trie.safetensors"
    data = bytearray(p.read_bytes())
    data[8:10] = b"[1"  # the header is no longer a JSON object
    bad = p.with_name("x.safetensors")
    bad.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="safetensors"):
        tokmod._map_safetensors(bad, None)
    bad.write_bytes(p.read_bytes()[:-8])  # a tensor runs past the end of the file
    with pytest.raises(ArtifactError, match="safetensors"):
        tokmod._map_safetensors(bad, None)
