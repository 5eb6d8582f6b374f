"""K-means engine: Lloyd's k-means with machine-independent assignments (GEMMs on the CPU,
or on the GPU with torch) and batched nearest search.

``nearest``: the closest codes of a batch (one GEMM, ``||c||^2 - 2 r.c`` + an optional
per-code bias, then an argmin or a top-k), decided by the exact rule of ``_exact``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, TokenizerKitError
from ._encode import run_blocks
from ._exact import CodeTable, exact_argmin, exact_scores, exact_sqdist, exact_top

__all__ = ["KMeansConfig", "kmeans_plusplus", "train_kmeans", "assign_codes", "update_centroids", "cluster_sums", "nearest", "resolve_device", "kmeans_device", "faiss_num_gpus"]

logger = logging.getLogger(__name__)


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - install problem
        raise TokenizerKitError(
            "FAISS is not installed; `pip install tokenizer-kit[cpu]` (faiss-cpu) or "
            "`tokenizer-kit[gpu]` (faiss-gpu), never both"
        ) from None
    return faiss


def faiss_num_gpus() -> int:
    faiss = _faiss()
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _torch_cuda_available() -> bool:
    # importing torch costs ~2 s; only ask it when it is already loaded
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when FAISS or torch sees a GPU, else ``cpu``."""
    if device not in ("auto", "cpu", "cuda"):
        raise TokenizerKitError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return "cuda" if (faiss_num_gpus() > 0 or _torch_cuda_available()) else "cpu"
    if device == "cuda" and not (faiss_num_gpus() > 0 or _torch_cuda_available()):
        raise TokenizerKitError("device 'cuda' requested but no GPU is visible; set `device` to cpu or auto")
    return device


def _torch_gpu() -> bool:
    """Whether torch (imported here if it is not yet) sees a GPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def kmeans_device(device: str) -> str:
    """Where k-means' GEMMs run for a requested ``device``: ``cuda`` when torch sees a GPU
    (logged when ``cuda`` was asked for and it does not), else ``cpu``. Codes are the same
    either way; only the time differs."""
    if resolve_device(device) == "cuda" and _torch_gpu():
        return "cuda"
    if device == "cuda":
        logger.warning("torch sees no GPU here; k-means runs on the CPU (its codes are the same)")
    return "cpu"


@dataclass
class KMeansConfig:
    niter: int = 20
    seed: int = 1234
    max_points_per_centroid: int = 256
    nredo: int = 1
    # "random" (FAISS's own sampling) or "kmeans++" (greedy, 2 + ln K trials per step, as
    # scikit-learn). On Office 3x256 k-means++ lowers plain relative error 0.170 -> 0.148 but
    # raises collisions 25% -> 55% (level-2/3 entropy 0.37 of ln K), and costs K passes.
    init: str = "random"
    # k-means++ runs on at most this many points per centroid (it is K sequential passes)
    init_points_per_centroid: int = 32


def kmeans_plusplus(x: np.ndarray, k: int, *, seed: int, n_trials: int | None = None) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; greedy trials as scikit-learn).

    ``x`` (n, d) float32 -> centroids (k, d). Each step samples ``n_trials`` candidates with
    probability proportional to the squared distance to the nearest chosen centroid and keeps
    the one that lowers the potential most. Distances are exact float64 sums in a fixed order
    (no GEMM), so the sampled centroids are the same on every machine. Cost O(n k d n_trials).
    """
    rng = np.random.default_rng(seed)
    n, d = x.shape
    t = n_trials or (2 + int(np.log(k)))
    cents = np.empty((k, d), dtype=np.float32)
    first = int(rng.integers(n))
    cents[0] = x[first]
    dmin = exact_sqdist(x, x[first : first + 1])[:, 0]
    for j in range(1, k):
        cum = np.cumsum(dmin, dtype=np.float64)
        if cum[-1] <= 0:  # fewer distinct points than k: repeat points
            cand = rng.integers(n, size=t)
        else:
            cand = np.minimum(np.searchsorted(cum, rng.random(t) * cum[-1]), n - 1)
        dc = exact_sqdist(x, x[cand]).T  # [t, n]
        np.minimum(dc, dmin[None, :], out=dc)
        best = int(np.add.reduce(dc, axis=1).argmin())
        cents[j] = x[cand[best]]
        dmin = dc[best]
    return cents


def assign_codes(x: np.ndarray, table: CodeTable, *, device: str = "cpu") -> np.ndarray:
    """Exact nearest code (n,) of every row of ``x`` (n, d): GEMM blocks on every core, or
    torch on the GPU for ``device == 'cuda'``; the same codes either way (``_exact``)."""
    n = x.shape[0]
    if device == "cuda":
        from ._encode import TorchEncoder

        return TorchEncoder([table]).encode(x)[:, 0]
    out = np.empty(n, dtype=np.int64)

    def one(s: int, e: int) -> None:
        out[s:e] = exact_argmin(x[s:e], table)

    run_blocks(one, n)
    return out


def cluster_sums(x: np.ndarray, assign: np.ndarray, k: int, *, xt: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums (k, d) float64 and counts (k,) of ``x`` (n, d) under ``assign`` (n,).

    One ``bincount`` per dimension: each cluster's rows added in row order, in float64, a fixed
    order, so the sums are the same on every machine. ``xt``: ``x.T`` as a C-contiguous (d, n)
    array, when the caller sums the same rows many times (k-means' rounds)."""
    n, d = x.shape
    xt = np.ascontiguousarray(x.T) if xt is None else xt
    sums = np.empty((k, d), dtype=np.float64)
    for j in range(d):
        sums[:, j] = np.bincount(assign, weights=xt[j], minlength=k)
    return sums, np.bincount(assign, minlength=k)


# FAISS's relative perturbation when an empty cluster takes half of a large one
SPLIT_EPS = 1.0 / 1024.0


def update_centroids(x: np.ndarray, assign: np.ndarray, old: np.ndarray, *, xt: np.ndarray | None = None) -> np.ndarray:
    """Means of the clusters (k, d) fp32; an empty cluster splits the largest one (as FAISS
    does, but always the largest, ties to the lowest index: no random draw)."""
    k, d = old.shape
    sums, counts = cluster_sums(x, assign, k, xt=xt)
    cents = old.astype(np.float64)
    filled = counts > 0
    cents[filled] = sums[filled] / counts[filled, None]
    sizes = counts.astype(np.float64)
    sign = np.where(np.arange(d) % 2 == 0, 1.0, -1.0) * SPLIT_EPS
    for j in np.flatnonzero(~filled).tolist():
        big = int(np.argmax(sizes))
        if sizes[big] < 2:
            continue
        cents[j] = cents[big] * (1.0 + sign)
        cents[big] = cents[big] * (1.0 - sign)
        sizes[j] = sizes[big] / 2.0
        sizes[big] -= sizes[j]
    return np.ascontiguousarray(cents, dtype=np.float32)


def inertia(x: np.ndarray, assign: np.ndarray, table: CodeTable) -> float:
    """``sum_i ||x_i - c_{assign_i}||^2`` in float64, in a fixed order."""
    return float(np.add.reduce(exact_scores(x, np.arange(x.shape[0]), assign, table)))


def train_kmeans(x: np.ndarray, k: int, cfg: KMeansConfig, *, device: str = "cpu") -> np.ndarray:
    """Lloyd's k-means on ``x`` (n, d) -> centroids (k, d) float32, the same on every machine.

    FAISS's recipe (at most ``max_points_per_centroid x k`` points, drawn with the seed; k
    random points or k-means++ as the start; ``niter`` rounds of assign + mean; an empty
    cluster splits a large one; the best of ``nredo`` runs) with every assignment decided by
    the exact rule of ``_exact`` and the means summed in float64 in a fixed order: FAISS's
    own loop assigns with a GEMM whose near-ties depend on the BLAS kernel and thread count.
    The GEMMs run on the GPU for ``device == 'cuda'`` (torch); the result does not change.
    """
    x = np.ascontiguousarray(x, dtype="float32")
    n, d = x.shape
    if n < k:
        raise InputError(f"k-means needs at least k={k} points, got {n}")
    if cfg.init not in ("kmeans++", "random"):
        raise TokenizerKitError(f"k-means init must be 'kmeans++' or 'random', got {cfg.init!r}")
    rng = np.random.default_rng(cfg.seed)
    cap = cfg.max_points_per_centroid * k
    if n > cap:
        x = x[np.sort(rng.choice(n, cap, replace=False))]
    m = x.shape[0]
    xt = np.ascontiguousarray(x.T)  # [d, m] for the centroid sums
    best, best_obj = None, np.inf
    for redo in range(max(cfg.nredo, 1)):
        if cfg.init == "kmeans++":
            sub = x if m <= cfg.init_points_per_centroid * k else x[np.sort(rng.choice(m, cfg.init_points_per_centroid * k, replace=False))]
            cents = kmeans_plusplus(sub, k, seed=cfg.seed + redo)
        else:
            cents = x[rng.choice(m, k, replace=False)].copy()
        for _ in range(cfg.niter):
            assign = assign_codes(x, CodeTable.make(cents), device=device)
            cents = update_centroids(x, assign, cents, xt=xt)
        if cfg.nredo <= 1:
            return cents
        table = CodeTable.make(cents)
        obj = inertia(x, assign_codes(x, table, device=device), table)
        if obj < best_obj:
            best, best_obj = cents, obj
    return best


def nearest(
    r: np.ndarray,
    centroids: np.ndarray,
    *,
    cnorm: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    k: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Closest ``k`` centroids for each row of ``r`` (b, d) under ``||r - c||^2 + bias``, decided
    by the exact rule of ``_exact`` (the same on every machine; ties to the lowest index).

    Returns (scores (b, k) float32, ids (b, k) int64), ascending by score. Scores are the
    full squared distances (``||r||^2`` included) plus the bias. ``cnorm`` is accepted for
    compatibility and recomputed.
    """
    del cnorm
    r = np.ascontiguousarray(r, dtype=np.float32)
    table = CodeTable.make(centroids, bias)
    if k == 1:
        ids = np.empty(r.shape[0], dtype=np.int64)
        for s in range(0, r.shape[0], 1 << 14):
            ids[s : s + (1 << 14)] = exact_argmin(r[s : s + (1 << 14)], table)
        scores = exact_scores(r, np.arange(r.shape[0]), ids, table)
        return scores.astype(np.float32)[:, None], ids[:, None]
    scores, ids = exact_top(r, table, k)
    return scores.astype(np.float32), ids
