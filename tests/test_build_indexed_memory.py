"""The indexed build (``build-codebook``, which indexes by default) in bounded memory.

``index_on_disk`` gives a built directory the same files as ``SIDIndex.for_tokenizer`` +
``save`` (trie and index arrays byte for byte, the same SIDs and manifest section), and the
whole indexed build's peak anonymous memory does not grow with the catalogue.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.indexer import SIDIndex, embedding_hash, index_on_disk
from tokenizer_kit.io import write_clustered_npy
from tokenizer_kit.quantizers import RQKMeansConfig

from _same_index import assert_same_index

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("string_ids", [False, True])
def test_on_disk_index_equals_the_in_memory_one(tmp_path, string_ids):
    """Several buckets and batches that do not divide the catalogue: same files, same load."""
    rng = np.random.default_rng(0)
    n = 3000
    x = rng.standard_normal((n, 8)).astype(np.float32)
    ids = np.array([f"item{i}" for i in rng.permutation(n)], object) if string_ids else None
    tok = SemanticTokenizer.build(x, ids=ids, config=RQKMeansConfig(codebook_sizes=[8, 4, 4], seed=0, niter=5), index=False)
    a, b = tmp_path / "memory", tmp_path / "disk"
    tok.save_pretrained(a)
    tok.save_pretrained(b)
    hashes = embedding_hash(x)
    ta = SemanticTokenizer.from_pretrained(a)
    idx = SIDIndex.for_tokenizer(ta)
    idx.emb_hash = hashes
    idx.save(ta, a)
    sec = index_on_disk(b, hashes=hashes, bucket_rows=500, batch_rows=777)
    assert sec["stats"]["max_suffix"] > 1 and sec["stats"]["colliding_items_codes"] > 0  # the suffix level is exercised
    _, lb = assert_same_index(a, b)
    SIDIndex.from_tokenizer(lb).check()


def test_on_disk_index_refuses_what_it_cannot_do(tmp_path):
    from tokenizer_kit.errors import ArtifactError, InputError
    from tokenizer_kit.indexer import IndexConfig

    x = np.random.default_rng(1).standard_normal((300, 4)).astype(np.float32)
    tok = SemanticTokenizer.build(x, config=RQKMeansConfig(codebook_sizes=[4, 4], seed=0, niter=2), index=False)
    tok.save_pretrained(tmp_path / "t")
    with pytest.raises(InputError, match="reassign policy"):
        index_on_disk(tmp_path / "t", config=IndexConfig(policy="reassign"))
    with pytest.raises(ArtifactError, match="299 embedding fingerprints for 300 items"):
        index_on_disk(tmp_path / "t", hashes=np.zeros(299, np.uint64))
    index_on_disk(tmp_path / "t")
    with pytest.raises(InputError, match="already indexed"):
        index_on_disk(tmp_path / "t")


def _peak_rss_anon_mib(cmd: list[str]) -> float:
    """Peak of the summed RssAnon over the process tree of ``cmd`` (the benchmarks' poller, every 20 ms)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_scale import run_measured

    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "HF_HUB_OFFLINE": "1"}
    res = run_measured(cmd, env=env, interval=0.02)
    assert res["returncode"] == 0, res.get("stderr_tail")
    return res["peak_rss_anon_mib"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc")
def test_indexed_build_memory_does_not_grow_with_the_catalogue(tmp_path):
    """``build-codebook`` (indexed, the default) of 100,000 and of 400,000 items x 16: the
    larger's peak RssAnon is within 48 MiB of the smaller's (measured +11 MiB with two threads
    and the machine's BLAS kernel, +29 with one thread and OPENBLAS_CORETYPE=Sandybridge; the
    unindexed build +4; the same build indexed in memory by ``SIDIndex.for_tokenizer`` grows by
    about 108)."""
    peaks = {}
    for n in (100_000, 400_000):
        x = tmp_path / f"x{n}.npy"
        write_clustered_npy(x, n, 16, seed=1)
        peaks[n] = _peak_rss_anon_mib([sys.executable, "-m", "tokenizer_kit.cli.app", "build-codebook", str(x), "--levels", "3",
                                       "--codebook-size", "64", "--row-ids", "--out", str(tmp_path / f"t{n}"), "--format", "json"])
        assert SemanticTokenizer.read_manifest(tmp_path / f"t{n}")["sections"]["index"]["n_items"] == n
    assert peaks[400_000] - peaks[100_000] < 48, peaks
