"""Seeded synthetic embeddings for tests and benchmarks.

A hierarchical Gaussian mixture: ``n_topics`` topic centres on the unit sphere, each with
``n_sub`` sub-centres at distance ~``spread``; items scatter around a sub-centre with noise
``noise``, and a share ``dup_rate`` of items are near-duplicates of another item (as
catalogues have: colour / size variants). Rows are L2-normalised, like sentence embeddings.
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_clustered_embeddings", "write_clustered_npy"]


def make_clustered_embeddings(
    n: int,
    d: int,
    *,
    n_topics: int = 64,
    n_sub: int = 16,
    spread: float = 0.5,
    noise: float = 0.35,
    dup_rate: float = 0.0,
    seed: int = 0,
    dtype=np.float32,
    chunk: int = 262144,
) -> np.ndarray:
    """(n, d) float32 embeddings, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((n_topics, d))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    subs = topics[:, None, :] + spread * rng.standard_normal((n_topics, n_sub, d)) / np.sqrt(d)
    subs = subs.reshape(n_topics * n_sub, d)
    # Zipf-like topic popularity, as real catalogues have
    w = 1.0 / np.arange(1, n_topics * n_sub + 1) ** 0.6
    w = rng.permutation(w / w.sum())
    out = np.empty((n, d), dtype=dtype)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = rng.choice(len(subs), size=m, p=w)
        x = subs[z] + noise * rng.standard_normal((m, d)) / np.sqrt(d)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s : s + m] = x
    if dup_rate > 0 and n > 1:
        k = int(dup_rate * n)
        src = rng.integers(0, n, size=k)
        dst = rng.integers(0, n, size=k)
        y = out[src] + 0.02 * rng.standard_normal((k, d)).astype(dtype) / np.sqrt(d)
        out[dst] = y / np.linalg.norm(y, axis=1, keepdims=True)
    return out


def write_clustered_npy(
    path,
    n: int,
    d: int,
    *,
    n_topics: int = 256,
    n_sub: int = 32,
    spread: float = 0.5,
    noise: float = 0.35,
    dup_rate: float = 0.02,
    seed: int = 0,
    chunk: int = 262144,
    dtype=np.float32,
) -> "np.memmap":
    """Write (n, d) embeddings of the same mixture as :func:`make_clustered_embeddings` to a
    ``.npy`` file chunk by chunk (memory: one chunk), for benchmarks larger than memory.

    Chunk ``i`` is drawn from ``default_rng([seed, i])``: the file is deterministic in
    ``(n, d, seed, chunk)``. Near-duplicates (a share ``dup_rate``) copy another row of the same
    chunk with noise 0.02 / sqrt(d). Returns the file, memory-mapped read-only.
    """
    from numpy.lib.format import open_memmap

    rng = np.random.default_rng([seed, 1 << 30])
    topics = rng.standard_normal((n_topics, d))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    subs = (topics[:, None, :] + spread * rng.standard_normal((n_topics, n_sub, d)) / np.sqrt(d)).reshape(n_topics * n_sub, d).astype(np.float32)
    w = 1.0 / np.arange(1, n_topics * n_sub + 1) ** 0.6
    w = rng.permutation(w / w.sum())
    out = open_memmap(str(path), mode="w+", dtype=dtype, shape=(n, d))
    for i, s in enumerate(range(0, n, chunk)):
        m = min(chunk, n - s)
        r = np.random.default_rng([seed, i])
        z = r.choice(len(subs), size=m, p=w)
        x = subs[z] + (noise / np.sqrt(d)) * r.standard_normal((m, d), dtype=np.float32)
        k = int(dup_rate * m)
        if k and m > 1:
            src, dst = r.integers(0, m, size=k), r.integers(0, m, size=k)
            x[dst] = x[src] + (0.02 / np.sqrt(d)) * r.standard_normal((k, d), dtype=np.float32)
        x /= np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
        out[s : s + m] = x
    out.flush()
    del out
    return np.load(str(path), mmap_mode="r")
