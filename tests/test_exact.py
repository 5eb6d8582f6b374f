"""The exact nearest-code rule (quantizers/_exact.py): any GEMM whose error stays within the
fp32 bound gives the same codes, and those codes are the float64 brute-force argmin."""

import numpy as np
import pytest

from tokenizer_kit.quantizers._exact import CodeTable, exact_argmin, exact_scores, exact_top, resolve_near_ties
from tokenizer_kit.quantizers._kmeans import nearest, train_kmeans, KMeansConfig


def _brute(r, table):
    """Exact argmin by float64 brute force over every code, ties to the lowest index."""
    b, k = r.shape[0], table.size
    f = exact_scores(r, np.repeat(np.arange(b), k), np.tile(np.arange(k), b), table).reshape(b, k)
    return f.argmin(1), f  # argmin takes the first minimum: the lowest index


def _near_tied(seed=0, b=4000, k=64, d=96):
    """Rows placed on (or within a few ulps of) the bisector of two codes: every row a near-tie."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((k, d)).astype(np.float32)
    a, z = rng.integers(0, k, b), rng.integers(0, k, b)
    z = np.where(z == a, (z + 1) % k, z)
    mid = (c[a] + c[z]) / 2
    r = (mid + 1e-6 * rng.standard_normal((b, d))).astype(np.float32)
    return r, c


@pytest.mark.parametrize("price", [False, True])
def test_exact_argmin_is_the_float64_brute_force(price):
    r, c = _near_tied()
    p = np.random.default_rng(1).uniform(-1e-3, 1e-3, c.shape[0]).astype(np.float32) if price else None
    table = CodeTable.make(c, p)
    want, _ = _brute(r, table)
    np.testing.assert_array_equal(exact_argmin(r, table), want)
    # the plain GEMM argmin disagrees on some of these rows: the test exercises the re-decision
    g = r @ table.neg2ct + table.offset
    assert (g.argmin(1) != want).any()


def test_any_gemm_within_the_bound_gives_the_same_codes():
    """Another kernel = another rounding of g within the bound: simulate many and compare."""
    r, c = _near_tied(seed=2)
    table = CodeTable.make(c)
    want, _ = _brute(r, table)
    g = (r @ table.neg2ct + table.offset).astype(np.float32)
    half = (table.slack(r) / 4).astype(np.float32)  # the error bound E of one kernel
    rng = np.random.default_rng(3)
    for _ in range(20):
        other = g + rng.uniform(-1, 1, g.shape).astype(np.float32) * half[:, None]
        ids = other.argmin(1)
        resolve_near_ties(other, r, ids, table)
        np.testing.assert_array_equal(ids, want)


def test_exact_ties_go_to_the_lowest_code():
    c = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)  # codes 0 and 2 identical
    r = np.array([[0.5, 0.5], [1.0, 0.1], [0.1, 1.0]], np.float32)
    table = CodeTable.make(c)
    np.testing.assert_array_equal(exact_argmin(r, table), [0, 0, 1])
    s, ids = exact_top(r, table, 2)
    np.testing.assert_array_equal(ids, [[0, 1], [0, 2], [1, 0]])
    assert s.dtype == np.float64 and (np.diff(s, axis=1) >= 0).all()


def test_exact_top_matches_brute_force_order():
    r, c = _near_tied(seed=4, b=500)
    table = CodeTable.make(c)
    _, f = _brute(r, table)
    s, ids = exact_top(r, table, 5)
    want = np.lexsort((np.tile(np.arange(c.shape[0]), (len(r), 1)), f), axis=1)[:, :5]
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_array_equal(s, np.take_along_axis(f, want, 1))


def test_nearest_k1_and_kmeans_are_invariant_to_row_blocks():
    r, c = _near_tied(seed=5)
    s1, i1 = nearest(r, c)
    s2, i2 = nearest(r[::-1], c)
    np.testing.assert_array_equal(i1, i2[::-1])
    np.testing.assert_array_equal(s1, s2[::-1])
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    cfg = KMeansConfig(niter=5, seed=3, max_points_per_centroid=1000)
    a = train_kmeans(x, 32, cfg)
    b = train_kmeans(x, 32, cfg)
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all() and len(np.unique(a, axis=0)) == 32
