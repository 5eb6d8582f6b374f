"""The ``reassign`` index built from files in bounded memory (``index_on_disk``) is the one
``SIDIndex.for_tokenizer`` builds in memory: the same SIDs, moved flags, trie and index files
byte for byte, and the same manifest section, on catalogues that nearly fill small codebooks
(many prefixes overflow, items go under other prefixes), in one bucket or many."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.errors import InputError
from tokenizer_kit.indexer import IndexConfig, SIDIndex, index_on_disk
from tokenizer_kit.indexer.policies import OccupiedSet, SortedOccupied, place_overflow, reassign_prefixes, reassign_sids, sid_keys
from tokenizer_kit.io import EmbeddingSource
from tokenizer_kit.quantizers import RQKMeansConfig

from _same_index import assert_same_index

REASSIGN = IndexConfig(policy="reassign")


def _catalogue(n: int, d: int, sizes, seed: int, string_ids: bool, per_centre: int = 12):
    """Clustered vectors (many equal codes: ``per_centre`` items a cluster) and their ids."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(2, n // per_centre), d))
    x = (centres[rng.integers(0, len(centres), n)] + 0.05 * rng.standard_normal((n, d))).astype(np.float32)
    ids = np.array([f"item{i}" for i in rng.permutation(n)], object) if string_ids else np.arange(n, dtype=np.int64) * 3 + 7
    tok = SemanticTokenizer.build(x, ids=ids, config=RQKMeansConfig(codebook_sizes=list(sizes), seed=seed, niter=4), index=False)
    return tok, x, ids


def _save_source(tmp_path, x, ids) -> EmbeddingSource:
    np.save(tmp_path / "emb.npy", x)
    (tmp_path / "emb.ids.json").write_text(json.dumps([i if isinstance(i, str) else int(i) for i in ids.tolist()]))
    return EmbeddingSource(tmp_path / "emb.npy")


def _both(tmp_path, tok, x, ids, pre_index: str | None = None, **kw):
    """The directory indexed in memory (``a``) and on disk (``b``); ``pre_index``: a policy
    both are indexed under first (re-indexing)."""
    a, b = tmp_path / "memory", tmp_path / "disk"
    for d in (a, b):
        tok.save_pretrained(d)
        if pre_index:
            t = SemanticTokenizer.from_pretrained(d)
            SIDIndex.for_tokenizer(t, config=IndexConfig(policy=pre_index)).save(t, d)
    ta = SemanticTokenizer.from_pretrained(a)
    SIDIndex.for_tokenizer(ta, config=REASSIGN, x=x, ids=ids).save(ta, a)
    sec = index_on_disk(b, config=REASSIGN, embeddings=_save_source(tmp_path, x, ids), **kw)
    return a, b, sec


def _assert_same(a, b):
    la, lb = assert_same_index(a, b)
    ia, ib = SIDIndex.from_tokenizer(la), SIDIndex.from_tokenizer(lb)
    assert np.array_equal(ia.moved, ib.moved) and np.array_equal(ia.emb_hash, ib.emb_hash)
    ib.check()


@pytest.mark.parametrize("string_ids", [False, True])
@pytest.mark.parametrize("sizes,n,bucket_rows", [([4, 4, 4], 60, 1 << 16), ([8, 4, 4], 120, 20), ([3, 4], 12, 5), ([16, 8, 8], 950, 100)])
def test_on_disk_reassign_equals_the_in_memory_one(tmp_path, monkeypatch, string_ids, sizes, n, bucket_rows):
    import tokenizer_kit.indexer._reassign_on_disk as on_disk

    monkeypatch.setattr(on_disk, "_MOVED_ROWS", 3)  # several chunks of moved and left-over items
    monkeypatch.setattr(on_disk, "_OVERFLOW_ROWS", 2)
    tok, x, ids = _catalogue(n, 6, sizes, seed=n, string_ids=string_ids)
    a, b, sec = _both(tmp_path, tok, x, ids, bucket_rows=bucket_rows, batch_rows=7)
    st = sec["stats"]
    assert st["moved_items"] > 0 and st["moved_other_prefix"] > 0 and st["duplicate_sids"] == 0  # both steps are exercised
    assert sec["sid_length"] == len(sizes) and sec["suffix_size"] == 0
    _assert_same(a, b)


@pytest.mark.parametrize("pre", ["suffix", "none"])
def test_on_disk_reassign_re_indexes_like_for_tokenizer(tmp_path, pre):
    """A directory indexed under a policy that keeps the codes: version 2, history carried, the changed SIDs counted."""
    tok, x, ids = _catalogue(200, 5, [8, 8, 4], seed=3, string_ids=False)
    a, b, sec = _both(tmp_path, tok, x, ids, pre_index=pre, bucket_rows=50, batch_rows=33)
    assert sec["version"] == 2 and len(sec["history"]) == 2 and "changed_sids_vs_previous" in sec["stats"]
    _assert_same(a, b)


def test_on_disk_reassign_without_collisions(tmp_path):
    tok, x, ids = _catalogue(64, 4, [64, 64], seed=5, string_ids=False, per_centre=1)
    a, b, sec = _both(tmp_path, tok, x, ids)
    assert sec["stats"]["colliding_items_codes"] == 0 and sec["stats"]["moved_items"] == 0
    _assert_same(a, b)


def test_on_disk_reassign_refuses_what_it_cannot_do(tmp_path):
    tok, x, ids = _catalogue(60, 4, [4, 4, 4], seed=1, string_ids=False)
    tok.save_pretrained(tmp_path / "t")
    with pytest.raises(InputError, match="needs the items' embeddings"):
        index_on_disk(tmp_path / "t", config=REASSIGN)
    src = _save_source(tmp_path, x[::-1].copy(), ids[::-1].copy())
    with pytest.raises(InputError, match="another order"):
        index_on_disk(tmp_path / "t", config=REASSIGN, embeddings=src)
    t = SemanticTokenizer.from_pretrained(tmp_path / "t")
    SIDIndex.for_tokenizer(t, config=REASSIGN, x=x, ids=ids).save(t, tmp_path / "t")
    with pytest.raises(InputError, match="moved items away from their codes"):
        index_on_disk(tmp_path / "t", config=REASSIGN, embeddings=_save_source(tmp_path, x, ids))
    big, xb, ib = _catalogue(80, 4, [4, 4, 4], seed=1, string_ids=False)
    big.save_pretrained(tmp_path / "big")
    with pytest.raises(InputError, match="80 items do not fit in 64 SIDs"):
        index_on_disk(tmp_path / "big", config=REASSIGN, embeddings=_save_source(tmp_path, xb, ib))


@pytest.mark.parametrize("shuffled", [False, True])
def test_the_index_command_builds_reassign_on_disk(tmp_path, monkeypatch, shuffled):
    """``index DIR --policy reassign -e E``: on disk when E lists the directory's items in its
    order (the in-memory build is not called), in memory otherwise; the same output and files."""
    from typer.testing import CliRunner

    from tokenizer_kit.cli.app import app

    tok, x, ids = _catalogue(120, 5, [8, 4, 4], seed=4, string_ids=True)
    a, b = tmp_path / "memory", tmp_path / "cli"
    tok.save_pretrained(a)
    tok.save_pretrained(b)
    ta = SemanticTokenizer.from_pretrained(a)
    idx = SIDIndex.for_tokenizer(ta, config=REASSIGN, x=x, ids=ids)
    idx.save(ta, a)
    perm = np.random.default_rng(0).permutation(len(x)) if shuffled else np.arange(len(x))
    emb = tmp_path / "emb.parquet"
    pq.write_table(pa.table({"item_id": ids[perm].tolist(), "embedding": x[perm].tolist()}), emb)
    if not shuffled:
        monkeypatch.setattr(SIDIndex, "for_tokenizer", classmethod(lambda *a, **k: pytest.fail("indexed in memory")))
    r = CliRunner().invoke(app, ["index", str(b), "--policy", "reassign", "-e", str(emb), "--format", "json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["moved_items"] == idx.stats["moved_items"] > 0 and out["version"] == 1
    _assert_same(a, b)


def test_the_two_steps_give_reassign_sids():
    """``reassign_prefixes`` per range of the first level, then ``place_overflow`` in row order
    over the sorted taken keys: ``reassign_sids``' SIDs, on random codes with ties."""
    rng = np.random.default_rng(0)
    sizes, d = [4, 3, 4], 3
    cb = [np.round(rng.standard_normal((k, d)), 1) for k in sizes]  # rounded: equal costs happen

    def decode(c):
        return sum(cb[l][c[:, l]] for l in range(len(sizes))).astype(np.float32)

    codes = np.stack([rng.integers(0, k, 44) for k in sizes], 1)
    codes[:15] = codes[0]
    x = np.round(decode(codes) + rng.standard_normal((44, d)), 1).astype(np.float32)
    want, moved, _ = reassign_sids(codes, x, sizes, decode)
    keys = sid_keys(codes, sizes)
    out, left = codes.copy(), []
    for c0 in range(sizes[0]):
        rows = np.flatnonzero(codes[:, 0] == c0)
        new, lo = reassign_prefixes(keys[rows], sizes, decode, lambda i, rows=rows: x[rows[i]])
        out[rows] = new
        left += rows[lo].tolist()
    left = np.sort(np.asarray(left, np.int64))
    stay = np.setdiff1d(np.arange(len(codes)), left)
    blocked = SortedOccupied(np.sort(sid_keys(out[stay], sizes)))
    out[left] = place_overflow(codes[left], x[left], sizes, decode, blocked)
    assert len(left) > 0 and moved.sum() > len(left)
    assert np.array_equal(out, want)


def test_sorted_occupied_is_an_occupied_set(monkeypatch):
    monkeypatch.setattr(SortedOccupied, "_RECENT", 4)  # additions in several merged runs
    rng = np.random.default_rng(2)
    base = np.unique(rng.integers(0, 5000, 1200))
    a, b = OccupiedSet(base), SortedOccupied(base)
    for k in rng.choice(np.setdiff1d(np.arange(5000), base), 700, replace=False).tolist():
        a.add(k)
        b.add(k)
    assert len(b.runs) > 1 and sum(map(len, b.runs)) + len(b.recent) == 700
    for lo in range(0, 5000, 37):
        assert np.array_equal(np.unique(a.used_in_range(lo, lo + 50)), np.sort(b.used_in_range(lo, lo + 50)))
    assert all((k in a) == (k in b) for k in range(5000))


_INDEX = """
import sys
from tokenizer_kit.indexer import IndexConfig, index_on_disk
from tokenizer_kit.io import EmbeddingSource
index_on_disk(sys.argv[1], config=IndexConfig(policy="reassign"), embeddings=EmbeddingSource(sys.argv[2], row_ids=True),
              bucket_rows=1024, batch_rows=1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc")
def test_reassign_index_memory_does_not_grow_with_the_catalogue(tmp_path):
    """``index_on_disk`` under ``reassign`` of 10,000 and of 40,000 items x 16 (clustered: some
    items go under another prefix), buckets and batches of 1,024 items so both sizes fill them:
    the larger's peak RssAnon is within 8 MiB of the smaller's (measured +4.6 MiB; the same
    index built in memory by ``SIDIndex.for_tokenizer`` grows by 31.7 MiB)."""
    from test_build_indexed_memory import _peak_rss_anon_mib

    from tokenizer_kit.io import write_clustered_npy

    peaks = {}
    for n in (10_000, 40_000):
        x, out = tmp_path / f"x{n}.npy", tmp_path / f"t{n}"
        write_clustered_npy(x, n, 16, seed=1)
        SemanticTokenizer.build(np.load(x), config=RQKMeansConfig(codebook_sizes=[64, 64, 64], seed=0, niter=3),
                                index=False).save_pretrained(out)
        peaks[n] = _peak_rss_anon_mib([sys.executable, "-c", _INDEX, str(out), str(x)])
        sec = SemanticTokenizer.read_manifest(out)["sections"]["index"]
        assert sec["policy"] == "reassign" and sec["n_items"] == n and sec["stats"]["moved_other_prefix"] > 0, sec["stats"]
    assert peaks[40_000] - peaks[10_000] < 8, peaks
