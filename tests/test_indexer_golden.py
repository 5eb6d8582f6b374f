"""Golden index SIDs: every policy's SIDs, cold-start placements and lookup tables stay
bit-identical, on any CPU, BLAS kernel and thread count (nothing here pins either). Seeded
synthetic data: three policies, build and three cold-start rounds with a replaced item.
Re-recorded when k-means and the policies' distances became machine-independent."""

import hashlib
import json

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.indexer import IndexConfig, SIDIndex


def _data(n, d=16, seed=0, centers=12):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d)).astype(np.float32) * 3
    lab = rng.integers(0, centers, n)
    return (c[lab] + rng.normal(scale=0.5, size=(n, d))).astype(np.float32)


def _h(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _run(policy: str, with_x: bool) -> list[str]:
    x = _data(900, seed=7)
    ids = np.asarray([f"i{k}" for k in range(900)], dtype=object)
    tok = SemanticTokenizer.build(x[:600], ids=ids[:600], codebook_sizes=[4, 8, 64], seed=0, index=False)
    idx = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy=policy), x=x[:600] if with_x else None)
    stats = {k: v for k, v in idx.stats.items() if not k.endswith("_seconds")}
    out = [_h(idx.sids.astype(np.int64), idx.moved, idx.level_sizes, stats)]
    cur = idx
    for rnd, (a, b) in enumerate([(600, 700), (700, 800), (800, 900)]):
        new_ids = np.concatenate([ids[a:b], ids[2 * rnd : 2 * rnd + 2]])
        new_x = np.concatenate([x[a:b], x[2 * rnd : 2 * rnd + 2]])
        replace = rnd == 1
        if replace:
            new_x[-1] = new_x[-1] + 1.0
        cur, table, summary = cur.assign(tok, new_ids, new_x, replace=replace)
        summary = {k: v for k, v in summary.items() if k != "version_before"}
        out.append(_h(cur.sids.astype(np.int64), cur.retired.astype(np.int64), cur.level_sizes, table, summary))
    return out


GOLDEN = {
    ("suffix", True): ["a7b7fd2c014876af", "9cc3a31d9dae1df6", "96972b8bed336ffe", "6b1740b63a9450e1"],
    ("suffix", False): ["e8cef55ca77e7056", "6b79277d853d52a3", "bc23e48130b3738c", "0e1e1f9bc839f31c"],
    ("reassign", True): ["a51b73c045758ca1", "82aea4df245c2430", "a0de28792e57526b", "7914c53431cb55ee"],
    ("none", False): ["91210ac93028031b", "735ce25aed4cd46e", "c8dbeaf06fce423a", "730c2e8648ef7034"],
}


@pytest.mark.parametrize("policy,with_x", list(GOLDEN))
def test_index_sids_unchanged(policy, with_x):
    assert _run(policy, with_x) == GOLDEN[(policy, with_x)]
