"""Nearest-code decisions that do not depend on the BLAS kernel, the thread count or the device.

Every greedy encode, k-means assignment and beam step ranks codes by
``g_k = ||c_k||^2 + p_k - 2 r.c_k`` computed by an fp32 GEMM. A GEMM sums its products in an
order that depends on the kernel (OpenBLAS picks one per CPU), the thread count and the
device, so two machines can see two near-equal ``g_k`` in a different order and pick a
different code. The rule here makes the decision a function of the inputs alone:

1. ``g`` from the GEMM, as before (any kernel, any order).
2. A rigorous bound ``E`` on ``|g_k + ||r||^2 - f_k|`` where ``f_k = sum_j (r_j - c_kj)^2 + p_k``:
   the float32 dot product error ``gamma_d * 2 ||r|| ||c_k||`` (Higham, Accuracy and Stability
   of Numerical Algorithms, eq. 3.5; it holds for every summation order, FMA or not), plus
   the rounding of ``||c_k||^2 + p_k`` and of the final add. ``E`` is doubled for slack.
3. Any code within ``2E`` of the GEMM minimum might be the exact minimum on another machine.
   Where a row has more than one such code (a near-tie; about 1 row in 10^3 to 10^4 on real
   embeddings), the candidates' ``f_k`` are recomputed in float64 from the fp32 inputs
   (exact differences, exact squares, numpy's fixed pairwise sum: no BLAS) and the smallest
   wins, ties to the lowest code index.

The exact argmin of ``f`` is always among the candidates, whatever kernel produced ``g``, so
every machine returns the same code. Rows without a near-tie keep the GEMM's argmin, which
is then the exact one too. The cost is one extra pass over the distance block and a
recomputation for the few near-tied rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CodeTable", "U32", "row_norms", "exact_sqdist", "exact_scores", "resolve_near_ties", "exact_argmin", "exact_top"]

U32 = 2.0**-24  # unit roundoff of float32


def _gamma(n: int) -> float:
    """``gamma_n = n u / (1 - n u)`` for float32, with the extra terms of the offset and add."""
    nu = (n + 4) * U32
    return nu / (1.0 - nu)


@dataclass(frozen=True)
class CodeTable:
    """One level's codes, prepared for the GEMM and for the exact re-decision.

    ``codebook`` (K, d) fp32; ``price`` (K,) fp32 (zeros unless balanced); ``neg2ct`` (d, K)
    ``-2 C^T``; ``offset`` (K,) fp32 ``||c||^2 + price``; ``bound_r``/``bound_0``: the error
    bound of ``g`` is ``bound_r * ||r|| + bound_0`` (already doubled, see the module doc).
    """

    codebook: np.ndarray
    price: np.ndarray
    neg2ct: np.ndarray
    offset: np.ndarray
    bound_r: float
    bound_0: float

    @classmethod
    def make(cls, codebook: np.ndarray, price: np.ndarray | None = None) -> "CodeTable":
        c = np.ascontiguousarray(codebook, dtype=np.float32)
        k, d = c.shape
        p = np.zeros(k, np.float32) if price is None else np.ascontiguousarray(price, dtype=np.float32)
        cn = (c * c).sum(1)  # numpy's own pairwise sum: the same on every machine
        offset = (cn + p).astype(np.float32)
        g = _gamma(d)
        cmax = float(np.sqrt(np.max(cn.astype(np.float64)))) if k else 0.0
        # |g + ||r||^2 - f| <= g_d 2||r|| cmax (GEMM) + g_d max||c||^2 (||c||^2 in fp32) + u |p|
        #                      + u (2||r|| cmax + max|offset|) (the final add)
        omax = float(np.max(np.abs(offset.astype(np.float64)))) if k else 0.0
        pmax = float(np.max(np.abs(p.astype(np.float64)))) if k else 0.0
        bound_r = 2.0 * (g + U32) * 2.0 * cmax
        bound_0 = 2.0 * (g * cmax * cmax + U32 * pmax + U32 * omax) + 1e-30
        return cls(c, p, np.ascontiguousarray(-2.0 * c.T, dtype=np.float32), offset, bound_r, bound_0)

    @property
    def size(self) -> int:
        return int(self.codebook.shape[0])

    def slack(self, r: np.ndarray, rnorm: np.ndarray | None = None) -> np.ndarray:
        """``2E`` per row of ``r`` (b, d): how far above the GEMM minimum a code may still be the
        exact minimum. ``rnorm`` (b,): ``||r||`` if known (see :func:`row_norms`)."""
        rn = row_norms(r) if rnorm is None else rnorm
        return 2.0 * (self.bound_r * rn + self.bound_0)


def row_norms(r: np.ndarray) -> np.ndarray:
    """``||r_i||`` (b,) float64, over-estimated by 0.1%: it only has to bound, not to agree
    between machines (an fp32 sum of d squares is within d u of the true value)."""
    sq = np.einsum("ij,ij->i", r, r).astype(np.float64)
    return np.sqrt(sq) * 1.001


def exact_scores(r: np.ndarray, rows: np.ndarray, codes: np.ndarray, table: CodeTable) -> np.ndarray:
    """``f = sum_j (r[rows]_j - c[codes]_j)^2 + p[codes]`` (P,) in float64, from fp32 inputs.

    The differences and squares of fp32 values are exact in float64 (for inputs within 2^29 of
    each other in magnitude); the sum is numpy's pairwise sum along a contiguous row, whose
    order is fixed by the length ``d`` alone. No BLAS, so no kernel or thread count enters.
    """
    out = np.empty(len(rows), dtype=np.float64)
    step = 1 << 14
    for s in range(0, len(rows), step):
        diff = r[rows[s : s + step]].astype(np.float64)
        diff -= table.codebook[codes[s : s + step]]
        np.multiply(diff, diff, out=diff)
        out[s : s + step] = np.add.reduce(diff, axis=1)
    out += table.price[codes].astype(np.float64)
    return out


def exact_sqdist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``||x_i - y_j||^2`` (m, k) float64 for rows ``x`` (m, d) and ``y`` (k, d), without BLAS:
    exact differences and squares of the float64 values, numpy's pairwise sum along each row
    (an order fixed by ``d``), looping over the shorter side."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    m, k = x.shape[0], y.shape[0]
    out = np.empty((m, k), dtype=np.float64)
    if m <= k:
        for i in range(m):
            diff = y - x[i]
            np.multiply(diff, diff, out=diff)
            out[i] = np.add.reduce(diff, axis=1)
    else:
        for j in range(k):
            diff = x - y[j]
            np.multiply(diff, diff, out=diff)
            out[:, j] = np.add.reduce(diff, axis=1)
    return out


def _first_per_row(rows: np.ndarray, codes: np.ndarray, f: np.ndarray, t: int) -> np.ndarray:
    """For pairs (rows, codes, f) the code with the smallest f per row (ties: lowest code)."""
    order = np.lexsort((codes, f, rows))
    rs = rows[order]
    first = np.ones(len(rs), dtype=bool)
    first[1:] = rs[1:] != rs[:-1]
    out = np.empty(t, dtype=np.int64)
    out[rs[first]] = codes[order][first]
    return out


def resolve_near_ties(buf: np.ndarray, r: np.ndarray, ids: np.ndarray, table: CodeTable, rnorm: np.ndarray | None = None) -> int:
    """Re-decide ``ids`` (b,) where the GEMM distances ``buf`` (b, K) (``g``, any order) hold a
    near-tie; ``r`` (b, d) fp32 are the rows that produced ``buf`` (``rnorm`` their norms, if
    known). Changes ``ids`` in place and returns how many rows were re-decided. ``buf`` is left
    as it was."""
    b = buf.shape[0]
    if b == 0 or buf.shape[1] < 2:
        return 0
    rows = np.arange(b)
    best = buf[rows, ids]
    buf[rows, ids] = np.inf
    second = buf.min(1)
    buf[rows, ids] = best
    thr = best.astype(np.float64) + table.slack(r, rnorm)
    tied = np.flatnonzero(second <= thr)
    if tied.size == 0:
        return 0
    ri, ki = np.nonzero(buf[tied] <= thr[tied, None])
    f = exact_scores(r, tied[ri], ki, table)
    ids[tied] = _first_per_row(ri, ki, f, tied.size)
    return int(tied.size)


def exact_argmin(r: np.ndarray, table: CodeTable, buf: np.ndarray | None = None) -> np.ndarray:
    """Codes (b,) int64: the exact ``argmin_k f_k`` for each row of ``r`` (b, d) fp32 (GEMM,
    then the near-ties re-decided)."""
    b, k = r.shape[0], table.size
    if buf is None or buf.shape != (b, k):
        buf = np.empty((b, k), dtype=np.float32)
    np.matmul(r, table.neg2ct, out=buf)  # [b, K] the GEMM
    buf += table.offset
    ids = buf.argmin(1)
    resolve_near_ties(buf, r, ids, table)
    return ids


def exact_top(r: np.ndarray, table: CodeTable, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best codes per row of ``r`` (b, d) by the exact ``f`` (ties: lowest code).

    Returns (scores (b, k) float64 = ``f`` with ``||r - c||^2`` in full, ids (b, k) int64),
    ascending. Candidates are every code within ``2E`` of the GEMM's k-th best, so the exact
    top-k is among them on any machine; only the candidates are recomputed exactly.
    """
    b, kk = r.shape[0], min(k, table.size)
    g = r @ table.neg2ct  # [b, K]
    g += table.offset
    kth = np.partition(g, kk - 1, axis=1)[:, kk - 1] if kk < table.size else g.max(1)
    thr = kth.astype(np.float64) + table.slack(r)
    ri, ki = np.nonzero(g <= thr[:, None])  # at least kk per row
    f = exact_scores(r, ri, ki, table)
    order = np.lexsort((ki, f, ri))
    ri, ki, f = ri[order], ki[order], f[order]
    starts = np.searchsorted(ri, np.arange(b))
    pick = starts[:, None] + np.arange(kk)[None, :]  # [b, kk] the first kk of each row
    return f[pick], ki[pick].astype(np.int64)
