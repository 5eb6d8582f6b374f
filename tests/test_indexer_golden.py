"""Golden index SIDs: the policy refactor (issue 12) keeps every policy's SIDs, cold-start
placements and lookup tables bit-identical. Hashes recorded on main 86dc514, before the
refactor, on seeded synthetic data (three policies, build and three cold-start rounds with
a replaced item)."""

import hashlib
import json

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.indexer import IndexConfig, SIDIndex


@pytest.fixture(autouse=True)
def one_thread():
    """k-means sums in another order with another thread count: pin one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


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
    tok = SemanticTokenizer.build(x[:600], ids=ids[:600], codebook_sizes=[4, 8, 64], seed=0)
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
    ("suffix", True): ["7ff44bfd2f60380f", "16194f8183364885", "11f998d5dbcd1fb0", "0dfc864c67a5cad4"],
    ("suffix", False): ["3783cf8ded65ca3c", "1cd37e36ea5c9fd0", "e2e0c508dcf73013", "3dca38b065790cf9"],
    ("reassign", True): ["b4674e0a61b3701b", "723b604250b2e6b3", "448d022b4818ad75", "59e651ef5a728a61"],
    ("none", False): ["8658c77a43497aee", "b0fd47881ec7af4b", "412e9c81a251c7ab", "a28f8913f8002d4e"],
}


@pytest.mark.parametrize("policy,with_x", list(GOLDEN))
def test_index_sids_unchanged(policy, with_x):
    assert _run(policy, with_x) == GOLDEN[(policy, with_x)]
