"""``index --from-shards`` installs the sharded index in bounded memory.

``engines.install_sharded_index`` (``indexer.index_from_parts``: the parts streamed, the trie
built bucket by bucket) writes the files that loading the whole sharded index and saving it
(``load_sharded_index(out).save(tok, dir)``, the in-memory install) writes: trie and index
arrays byte for byte, the same SIDs and manifest section; into a fresh tokenizer and into one
already indexed (version + 1, history carried over).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.engines import AssignParts, EngineConfig, Sharding, assign_sharded, index_shards, install_sharded_index, load_sharded_index
from tokenizer_kit.errors import InputError
from tokenizer_kit.indexer import SIDIndex, embedding_hash
from tokenizer_kit.quantizers import RQKMeansConfig

N = 3000
FILES = [(0, 1300), (1300, 1301), (1301, N)]  # parts of odd sizes, one of a single row


def _tok_and_input(tmp: Path, string_ids: bool, *, indexed: bool = False):
    """A tokenizer with many collisions (8 x 4 x 4 codes for 3,000 items) and its items in three
    Parquet files, ids permuted (integers or strings)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 8)).astype(np.float32)
    perm = rng.permutation(N)
    ids = np.array([f"item{i}" for i in perm], object) if string_ids else perm.astype(np.int64) * 7
    tok = SemanticTokenizer.build(x, ids=ids, config=RQKMeansConfig(codebook_sizes=[8, 4, 4], seed=0, niter=5), index=indexed)
    tok.save_pretrained(tmp / "tok")
    (tmp / "emb").mkdir()
    for k, (a, b) in enumerate(FILES):
        pq.write_table(pa.table({"item_id": pa.array(list(ids[a:b])),
                                 "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x[a:b].ravel()), 8)}), tmp / "emb" / f"f{k}.parquet")
    return x, ids


def _codes(tmp: Path, errors: bool, name: str = "codes") -> Path:
    tok = SemanticTokenizer.from_pretrained(tmp / "tok", load_sids=False)
    assign_sharded(tok, tmp / "emb", tmp / name, engine=EngineConfig(), sharding=Sharding(batch_size=1024, shard_size=1024),
                   parts=AssignParts(hashes=True, errors=errors), summary=False)
    return tmp / name


def _in_memory_install(out: Path, tokenizer: Path) -> None:
    """The install as ``index --from-shards`` did it in one process: every SID loaded, then saved."""
    tok = SemanticTokenizer.from_pretrained(tokenizer, load_sids=False)
    old = SIDIndex.stored(SemanticTokenizer.from_pretrained(tokenizer)) if tok.sections.get("index") else None
    idx = load_sharded_index(out)
    idx.version = old.version + 1 if old is not None else 1
    idx.history = ([] if old is None else list(old.history)) + [{**idx.history[-1], "version": idx.version}]
    idx.save(tok, tokenizer)


def _without_timings(d: Path) -> dict:
    m = json.loads((d / "manifest.json").read_text())
    for k in ("files", "manifest_sha256", "written_at", "created_at"):
        m.pop(k, None)
    m["sections"]["index"].pop("updated_at")
    return m


def _assert_same_dirs(a: Path, b: Path) -> None:
    for name in ("trie.safetensors", "index.safetensors", "quantizer.safetensors"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert pq.read_table(a / "sids.parquet").equals(pq.read_table(b / "sids.parquet"))
    assert _without_timings(a) == _without_timings(b)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())


@pytest.mark.parametrize("string_ids,errors,policy", [(False, True, "suffix"), (True, False, "suffix"), (True, True, "none")])
def test_bounded_install_writes_the_in_memory_install_files(tmp_path, string_ids, errors, policy):
    """Several buckets (500 rows) over three parts, collisions, ranks by err or by row; then a
    re-index of the installed directories (the other rank: other SIDs, version 2)."""
    x, ids = _tok_and_input(tmp_path, string_ids)
    codes = _codes(tmp_path, errors)
    res = index_shards(codes, tmp_path / "sids", codebook_sizes=[8, 4, 4], policy=policy, bucket_rows=700)
    assert res["shards"] == 3
    a, b = tmp_path / "memory", tmp_path / "disk"
    shutil.copytree(tmp_path / "tok", a)
    shutil.copytree(tmp_path / "tok", b)
    _in_memory_install(tmp_path / "sids", a)
    sec = install_sharded_index(tmp_path / "sids", b, bucket_rows=500)
    _assert_same_dirs(a, b)
    assert sec["version"] == 1 and sec["n_items"] == N and sec["history"][-1]["from"] == "shards"
    if policy == "suffix":
        assert sec["stats"]["max_suffix"] > 2 and sec["stats"]["items_in_collisions"] > N // 2  # the suffix level is exercised
    loaded = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(b))
    loaded.check()
    assert list(loaded.item_ids) == list(ids) and np.array_equal(loaded.emb_hash, embedding_hash(x))
    # re-index both from the other numbering (err <-> input row): version 2, the first entry kept
    codes2 = _codes(tmp_path, not errors, "codes2")
    index_shards(codes2, tmp_path / "sids2", codebook_sizes=[8, 4, 4], policy=policy, bucket_rows=1000)
    _in_memory_install(tmp_path / "sids2", a)
    sec2 = install_sharded_index(tmp_path / "sids2", b, bucket_rows=300)
    _assert_same_dirs(a, b)
    assert sec2["version"] == 2 and [h["version"] for h in sec2["history"]] == [1, 2]
    if policy == "suffix":
        assert not np.array_equal(SemanticTokenizer.from_pretrained(b).sids, loaded.sids)  # the other rank renumbered groups


def test_stage_installs_into_an_indexed_tokenizer_and_refuses_retired_sids(tmp_path):
    """The stage on a tokenizer indexed at build time: the in-memory install's files, the same
    result keys, the vocabulary export; an index with retired SIDs is refused before any work."""
    from tokenizer_kit.pipeline import IndexStageConfig, stages

    x, ids = _tok_and_input(tmp_path, False, indexed=True)
    codes = _codes(tmp_path, True)
    a, b = tmp_path / "memory", tmp_path / "disk"
    shutil.copytree(tmp_path / "tok", a)
    shutil.copytree(tmp_path / "tok", b)
    index_shards(codes, tmp_path / "sids-a", codebook_sizes=[8, 4, 4])
    _in_memory_install(tmp_path / "sids-a", a)
    res = stages.index_from_shards(b, codes, tmp_path / "sids-b", IndexStageConfig(), vocab_out=tmp_path / "vocab.json",
                                   export_lcrec=tmp_path / "lcrec.json")
    _assert_same_dirs(a, b)
    idx = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(a))
    assert res["version"] == idx.version == 2 and res["n_items"] == N and res["level_sizes"] == idx.level_sizes
    assert set(res) >= {"tokenizer", "policy", "sid_length", "shards_out", "max_suffix", "suffix_size", "buckets", "vocab", "lcrec_index"}
    assert json.loads((tmp_path / "lcrec.json").read_text()) == idx.to_lcrec()
    idx.vocab().save(tmp_path / "vocab-a.json")
    assert (tmp_path / "vocab.json").read_bytes() == (tmp_path / "vocab-a.json").read_bytes()
    # a cold start that replaces two items retires their SIDs: a new index from shards must not reissue them
    tok = SemanticTokenizer.from_pretrained(b)
    new, _, _ = SIDIndex.from_tokenizer(tok).assign(tok, ids[:2], x[:2] + 0.5, replace=True)
    new.save(tok, b)
    with pytest.raises(InputError, match="2 retired SIDs"):
        stages.index_from_shards(b, codes, tmp_path / "sids-c", IndexStageConfig())
    assert not (tmp_path / "sids-c").exists()
    with pytest.raises(InputError, match="2 retired SIDs"):
        install_sharded_index(tmp_path / "sids-b", b)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc")
def test_install_memory_does_not_grow_with_the_catalogue(tmp_path):
    """The install alone (a process that runs ``install_sharded_index``) of 100,000 and of
    400,000 items x 16: the larger's peak RssAnon is within 30 MiB of the smaller's (measured +6
    and +10 here; loading the whole index and saving it grows by 96). Arrow allocates from the
    system allocator: its default one keeps freed pages per thread, so the peaks of two runs of
    the same install differ by up to 35 MiB."""
    import os
    import sys

    from tokenizer_kit.io import EmbeddingSource, write_clustered_npy

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    from bench_scale import run_measured

    env = {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1",
           "ARROW_DEFAULT_MEMORY_POOL": "system"}
    write_clustered_npy(tmp_path / "x.npy", 400_000, 16, seed=1)
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    SemanticTokenizer.build(np.asarray(x[:20_000]), config=RQKMeansConfig(codebook_sizes=[64, 64, 64], seed=0, niter=5),
                            index=False).save_pretrained(tmp_path / "tok")
    tok = SemanticTokenizer.from_pretrained(tmp_path / "tok", load_sids=False)
    peaks = {}
    for n in (100_000, 400_000):
        np.save(tmp_path / f"x{n}.npy", x[:n])
        assign_sharded(tok, EmbeddingSource(tmp_path / f"x{n}.npy", row_ids=True), tmp_path / f"codes{n}", engine=EngineConfig(),
                       sharding=Sharding(shard_size=1 << 16), parts=AssignParts(hashes=True, errors=True), summary=False)
        index_shards(tmp_path / f"codes{n}", tmp_path / f"sids{n}", codebook_sizes=tok.codebook_sizes)
        shutil.copytree(tmp_path / "tok", tmp_path / f"tok{n}")
        res = run_measured([sys.executable, "-c", "import sys; from tokenizer_kit.engines import install_sharded_index; "
                            "install_sharded_index(sys.argv[1], sys.argv[2])", str(tmp_path / f"sids{n}"), str(tmp_path / f"tok{n}")],
                           env=env, interval=0.01)
        assert res["returncode"] == 0, res.get("stderr_tail")
        peaks[n] = res["peak_rss_anon_mib"]
        assert SemanticTokenizer.read_manifest(tmp_path / f"tok{n}")["sections"]["index"]["n_items"] == n
    assert peaks[400_000] - peaks[100_000] < 30, peaks
